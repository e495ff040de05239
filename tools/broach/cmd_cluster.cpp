// `broach members` and `broach routes`: a member's view of the cluster,
// fetched with one call to its internal service; the CLI does not join.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>

#include "cli.hpp"

namespace broach::cli {
namespace {

struct ViewFlags {
  std::string seed;
  bool json = false;
  double timeout_s = 3;
};

// Calls an internal service at `seed`; fills `out` with the JSON result.
int fetch(const ViewFlags& f, const char* service, nlohmann::json& out) {
  Endpoint to;
  if (!Endpoint::parse(f.seed, to)) {
    std::cerr << "broach: --seed: expected IP:PORT, got '" << f.seed << "'\n";
    return kExitUsage;
  }
  try {
    Node node(client_config(to, f.timeout_s));
    auto r = node.call_raw(to, service, detail::pack_args());
    if (!r.ok()) {
      std::cerr << "error: " << errc_name(r.error().code()) << ": " << r.error().message()
                << (r.error().code() == Errc::kDeliveryTimeout || r.error().code() == Errc::kCallTimeout
                        ? " (is a node running at " + f.seed + "?)"
                        : "")
                << "\n";
      return kExitCallFailed;
    }
    const auto& body = r.value();
    const auto* p = reinterpret_cast<const std::uint8_t*>(body.data());
    out = nlohmann::json::from_msgpack(p, p + body.size());
    return kExitOk;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return kExitRuntime;
  }
}

std::string join_services(const nlohmann::json& list) {
  std::string s;
  for (const auto& x : list) {
    if (!s.empty()) s += ",";
    s += x.get<std::string>();
  }
  return s.empty() ? "-" : s;
}

int run_members(const ViewFlags& f) {
  nlohmann::json members;
  if (int rc = fetch(f, "__broach.members", members); rc != kExitOk) return rc;
  if (f.json) {
    std::cout << members.dump() << "\n";
    return kExitOk;
  }
  std::printf("%-22s %-16s %-9s %-8s %5s  %s\n", "ADDRESS", "NAME", "VERSION", "STATE", "INC",
              "SERVICES");
  for (const auto& m : members) {
    std::printf("%-22s %-16s %-9s %-8s %5u  %s\n", m["address"].get<std::string>().c_str(),
                m["name"].get<std::string>().c_str(), m["version"].get<std::string>().c_str(),
                m["state"].get<std::string>().c_str(), m["incarnation"].get<unsigned>(),
                join_services(m["services"]).c_str());
  }
  return kExitOk;
}

int run_routes(const ViewFlags& f) {
  nlohmann::json routes;
  if (int rc = fetch(f, "__broach.routes", routes); rc != kExitOk) return rc;
  if (f.json) {
    std::cout << routes.dump() << "\n";
    return kExitOk;
  }
  std::printf("%-24s %s\n", "SERVICE", "PROVIDERS");
  for (const auto& [service, providers] : routes.items()) {
    std::string list;
    for (const auto& p : providers) {
      if (!list.empty()) list += " ";
      list += p["address"].get<std::string>();
      if (p["state"] != "alive") list += "(" + p["state"].get<std::string>() + ")";
    }
    std::printf("%-24s %s\n", service.c_str(), list.c_str());
  }
  return kExitOk;
}

void add_view(CLI::App& app, const char* name, const char* help, int (*run)(const ViewFlags&),
              int& exit_code) {
  auto* cmd = app.add_subcommand(name, help);
  auto f = std::make_shared<ViewFlags>();
  cmd->add_option("--seed", f->seed, "IP:PORT of any live member")->required();
  cmd->add_flag("--json", f->json, "print JSON instead of a table");
  cmd->add_option("--timeout", f->timeout_s, "seconds to wait for the member (default 3)");
  cmd->callback([f, run, &exit_code] { exit_code = run(*f); });
}

}  // namespace

Config client_config(const Endpoint& to, double timeout_s) {
  Config c = default_config();
  c.rpc_ip = (to.ip >> 24) == 127 ? "127.0.0.1" : "0.0.0.0";
  c.rpc_port = 0;
  c.log_level = "warn";
  c.thread_pool.core = 1;
  if (timeout_s > 0) {
    c.rpc_timeout = timeout_s;
    c.udp_timeout = std::min(c.udp_timeout, timeout_s);
  }
  return c;
}

void register_cluster_views(CLI::App& app, int& exit_code) {
  add_view(app, "members", "show a member's view of the cluster", run_members, exit_code);
  add_view(app, "routes", "show the route table (service -> providers) of a member", run_routes,
           exit_code);
}

}  // namespace broach::cli
