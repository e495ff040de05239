// `broach call --to IP:PORT SERVICE [JSON_ARG...]`: one dynamic call; the
// arguments are JSON, converted to msgpack; the result is printed as JSON.
#include <nlohmann/json.hpp>

#include <fstream>
#include <iostream>

#include "cli.hpp"

namespace broach::cli {
namespace {

struct CallFlags {
  std::string to;
  std::string service;
  std::vector<std::string> args;
  double timeout_s = 0;
};

int run_call(const CallFlags& f) {
  Endpoint to;
  if (!Endpoint::parse(f.to, to)) {
    std::cerr << "broach call: --to: expected IP:PORT, got '" << f.to << "'\n";
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
    Config c = default_config();
    c.rpc_ip = (to.ip >> 24) == 127 ? "127.0.0.1" : "0.0.0.0";
    c.rpc_port = 0;
    c.log_level = "warn";
    c.thread_pool.core = 1;
    if (f.timeout_s > 0) c.rpc_timeout = f.timeout_s;
    Node node(c);
    auto r = node.call_raw(to, f.service, std::move(bytes));
    if (!r.ok()) {
      std::cerr << "error: " << errc_name(r.error().code()) << ": " << r.error().message() << "\n";
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
  cmd->add_option("--to", f->to, "IP:PORT of the provider")->required();
  cmd->add_option("--timeout", f->timeout_s, "seconds (default: rpcTimeOut, 6)");
  cmd->add_option("service", f->service, "service name")->required();
  cmd->add_option("args", f->args, "arguments, each a JSON value (bare words are strings; @FILE reads one from a file)");
  cmd->callback([f, &exit_code] { exit_code = run_call(*f); });
}

}  // namespace broach::cli
