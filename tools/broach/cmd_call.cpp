// `broach call --to IP:PORT SERVICE [JSON_ARG...]`: one dynamic call; the
// arguments are JSON, converted to msgpack; the result is printed as JSON.
#include <nlohmann/json.hpp>

#include <fstream>
#include <iostream>
#include <random>

#include "cli.hpp"

namespace broach::cli {
namespace {

struct CallFlags {
  std::string to;
  std::string seed;
  std::string service;
  std::vector<std::string> args;
  double timeout_s = 0;
  bool trace = false;
};

// Asks the member at `seed` for its route table and picks a provider of
// `service` (round robin across runs is meaningless for a one-shot CLI, so
// a random provider is taken).
int pick_provider(const std::string& seed, const std::string& service, double timeout_s, Endpoint& out) {
  Endpoint s;
  std::string why;
  if (!Endpoint::parse(seed, s, &why, /*allow_port_zero=*/false)) {
    std::cerr << "broach call: --seed: expected IP:PORT, got '" << seed << "' (" << why << ")\n";
    return kExitUsage;
  }
  Node node(client_config(s, timeout_s > 0 ? timeout_s : 3));
  auto r = node.call_raw(s, "__broach.routes", detail::pack_args());
  if (!r.ok()) {
    const bool silent = r.error().code() == Errc::kDeliveryTimeout || r.error().code() == Errc::kCallTimeout;
    std::cerr << "error: " << errc_name(r.error().code()) << ": " << r.error().message()
              << " (asking " << seed << " for routes)" << (silent ? unreachable_hint(seed) : "") << "\n";
    return kExitCallFailed;
  }
  const auto* p = reinterpret_cast<const std::uint8_t*>(r.value().data());
  const auto routes = nlohmann::json::from_msgpack(p, p + r.value().size());
  if (!routes.contains(service) || routes[service].empty()) {
    std::cerr << "error: not_found: no live member of the cluster offers " << service << "\n";
    return kExitCallFailed;
  }
  const auto& providers = routes[service];
  std::random_device rd;
  const auto& chosen = providers[rd() % providers.size()];
  const auto address = chosen["address"].get<std::string>();
  if (!Endpoint::parse(address, out, &why, /*allow_port_zero=*/false)) {
    std::cerr << "error: " << seed << " reported a malformed provider address '" << address << "' ("
              << why << ")\n";
    return kExitCallFailed;
  }
  return kExitOk;
}

int run_call(const CallFlags& f) {
  Endpoint to;
  std::string why;
  if (!f.seed.empty()) {
    if (int rc = pick_provider(f.seed, f.service, f.timeout_s, to); rc != kExitOk) return rc;
  } else if (!Endpoint::parse(f.to, to, &why, /*allow_port_zero=*/false)) {
    std::cerr << "broach call: --to: expected IP:PORT, got '" << f.to << "' (" << why << ")\n";
    return kExitUsage;
  }
  nlohmann::json args = nlohmann::json::array();
  for (const auto& raw : f.args) {
    std::string a = raw;
    if (a.size() > 1 && a[0] == '@') {
      // @FILE: the argument's JSON is read from a file (for large values).
      std::ifstream in(a.substr(1), std::ios::binary);
      if (!in) {
        std::cerr << "broach call: cannot read " << a.substr(1) << "\n";
        return kExitUsage;
      }
      a.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    try {
      args.push_back(nlohmann::json::parse(a));
    } catch (const nlohmann::json::parse_error&) {
      // A bare word is taken as a string, so `broach call echo hello` works.
      args.push_back(a);
    }
  }
  const auto packed = nlohmann::json::to_msgpack(args);
  Bytes bytes(reinterpret_cast<const std::byte*>(packed.data()),
              reinterpret_cast<const std::byte*>(packed.data()) + packed.size());
  try {
    Node node(client_config(to, f.timeout_s));
    CallOptions opts;
    opts.trace = f.trace;  // the provider keeps its spans: `broach trace` finds them
    auto r = node.call_raw(to, f.service, std::move(bytes), opts);
    if (!r.ok()) {
      const bool silent = r.error().code() == Errc::kDeliveryTimeout || r.error().code() == Errc::kCallTimeout;
      std::cerr << "error: " << errc_name(r.error().code()) << ": " << r.error().message()
                << (silent ? unreachable_hint(to.to_string()) : "") << "\n";
      return kExitCallFailed;
    }
    const auto& body = r.value();
    const auto* p = reinterpret_cast<const std::uint8_t*>(body.data());
    std::cout << nlohmann::json::from_msgpack(p, p + body.size()).dump() << "\n";
    return kExitOk;
  } catch (const nlohmann::json::exception& e) {
    std::cerr << "error: result is not representable as JSON: " << e.what() << "\n";
    return kExitCallFailed;
  } catch (const Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return kExitRuntime;
  }
}

}  // namespace

void register_call(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("call", "call a service and print its result as JSON");
  auto f = std::make_shared<CallFlags>();
  auto* to = cmd->add_option("--to", f->to, "IP:PORT of the provider");
  auto* seed = cmd->add_option("--seed", f->seed,
                               "IP:PORT of any member: learn the routes from it and call a provider");
  to->excludes(seed);
  seed->excludes(to);
  cmd->add_option("--timeout", f->timeout_s, "seconds (default: rpcTimeOut, 6)");
  cmd->add_flag("--trace", f->trace, "trace the call (and the calls it makes): see `broach trace`");
  add_keyring_flag(*cmd);
  cmd->add_option("service", f->service, "service name")->required();
  cmd->add_option("args", f->args, "arguments, each a JSON value (bare words are strings; @FILE reads one from a file)");
  cmd->callback([f, &exit_code] {
    if (f->to.empty() && f->seed.empty()) {
      std::cerr << "broach call: one of --to or --seed is required\n";
      exit_code = kExitUsage;
      return;
    }
    exit_code = run_call(*f);
  });
}

}  // namespace broach::cli
