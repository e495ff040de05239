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
  std::string why;
  if (!Endpoint::parse(f.seed, to, &why, /*allow_port_zero=*/false)) {
    std::cerr << "broach: --seed: expected IP:PORT, got '" << f.seed << "' (" << why << ")\n";
    return kExitUsage;
  }
  try {
    Node node(client_config(to, f.timeout_s));
    return call_json(node, to, service, detail::pack_args(), out);
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

std::uint64_t sum_errors(const nlohmann::json& errors) {
  std::uint64_t n = 0;
  for (const auto& [k, v] : errors.items()) n += v.get<std::uint64_t>();
  return n;
}

int run_stats(const ViewFlags& f) {
  nlohmann::json s;
  if (int rc = fetch(f, "__broach.stats", s); rc != kExitOk) return rc;
  if (f.json) {
    std::cout << s.dump() << "\n";
    return kExitOk;
  }
  std::printf("%s (%s %s)\n", s["address"].get<std::string>().c_str(),
              s["name"].get<std::string>().c_str(), s["version"].get<std::string>().c_str());
  std::printf("\n%-20s %10s %8s %9s %9s   %10s %8s %9s %9s\n", "SERVICE", "SERVED", "ERRORS",
              "p50(us)", "p99(us)", "MADE", "ERRORS", "p50(us)", "p99(us)");
  for (const auto& [name, v] : s["services"].items()) {
    std::printf("%-20s %10llu %8llu %9.0f %9.0f   %10llu %8llu %9.0f %9.0f\n", name.c_str(),
                v["served"].get<unsigned long long>(),
                static_cast<unsigned long long>(sum_errors(v["served_errors"])),
                v["served_latency_us"]["p50"].get<double>(), v["served_latency_us"]["p99"].get<double>(),
                v["made"].get<unsigned long long>(),
                static_cast<unsigned long long>(sum_errors(v["made_errors"])),
                v["made_latency_us"]["p50"].get<double>(), v["made_latency_us"]["p99"].get<double>());
    for (const char* side : {"served_errors", "made_errors"}) {
      for (const auto& [code, n] : v[side].items()) {
        std::printf("    %s %s: %llu\n", side, code.c_str(), n.get<unsigned long long>());
      }
    }
  }
  const auto& t = s["transport"];
  std::printf("\ntransport: %llu retransmits, %llu status queries, %llu duplicate requests, %llu "
              "fragments resent, %llu pending calls\n",
              t["retransmits"].get<unsigned long long>(), t["status_queries"].get<unsigned long long>(),
              t["duplicate_requests"].get<unsigned long long>(),
              t["fragments_resent"].get<unsigned long long>(), t["pending_calls"].get<unsigned long long>());
  std::printf("dropped datagrams:");
  for (const auto& [reason, n] : t["dropped"].items()) {
    if (n.get<std::uint64_t>() > 0) std::printf(" %s=%llu", reason.c_str(), n.get<unsigned long long>());
  }
  std::printf("\n");
  const auto& p = s["pool"];
  std::printf("pool: %llu threads (%llu idle), %llu queued, %llu rejected, %llu run by callers\n",
              p["threads"].get<unsigned long long>(), p["idle"].get<unsigned long long>(),
              p["queued"].get<unsigned long long>(), p["rejected"].get<unsigned long long>(),
              p["caller_ran"].get<unsigned long long>());
  const auto& c = s["calls"];
  std::printf("calls: %llu by name, %llu retries, %llu hedges, %llu in-process, %llu refused (fused); "
              "served: %llu expired in queue, %llu refused (overloaded)\n",
              c["by_name"].get<unsigned long long>(), c["retries"].get<unsigned long long>(),
              c["hedges"].get<unsigned long long>(), c["local"].get<unsigned long long>(),
              c["circuit_open_rejections"].get<unsigned long long>(),
              c["expired_in_queue"].get<unsigned long long>(),
              c["rejected_overloaded"].get<unsigned long long>());
  const auto& m = s["membership"];
  std::printf("membership: %llu alive, %llu suspect, %llu dead, %llu left; %llu probes (%llu failed), "
              "gossip %llu messages / %llu bytes\n",
              m["alive"].get<unsigned long long>(), m["suspect"].get<unsigned long long>(),
              m["dead"].get<unsigned long long>(), m["left"].get<unsigned long long>(),
              m["probes"].get<unsigned long long>(), m["probe_failures"].get<unsigned long long>(),
              m["gossip_messages_sent"].get<unsigned long long>(),
              m["gossip_bytes_sent"].get<unsigned long long>());
  for (const auto& b : s["breakers"]) {
    if (b["state"] != "closed" || b["trips"].get<std::uint64_t>() > 0) {
      std::printf("breaker %s %s: %s (%llu trips)\n", b["provider"].get<std::string>().c_str(),
                  b["service"].get<std::string>().empty() ? "(all services)" : b["service"].get<std::string>().c_str(),
                  b["state"].get<std::string>().c_str(), b["trips"].get<unsigned long long>());
    }
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
  add_keyring_flag(*cmd);
  cmd->callback([f, run, &exit_code] { exit_code = run(*f); });
}

}  // namespace

int call_json(Node& node, const Endpoint& to, const std::string& service, Bytes args, nlohmann::json& out) {
  auto r = node.call_raw(to, service, std::move(args));
  if (!r.ok()) {
    std::cerr << "error: " << to.to_string() << ": " << errc_name(r.error().code()) << ": " << r.error().message()
              << (r.error().code() == Errc::kDeliveryTimeout || r.error().code() == Errc::kCallTimeout
                      ? unreachable_hint(to.to_string())
                      : "")
              << "\n";
    return kExitCallFailed;
  }
  const auto& body = r.value();
  const auto* p = reinterpret_cast<const std::uint8_t*>(body.data());
  try {
    out = nlohmann::json::from_msgpack(p, p + body.size());
  } catch (const std::exception& e) {
    std::cerr << "error: " << to.to_string() << ": " << service << " answered something else than JSON: " << e.what()
              << "\n";
    return kExitRuntime;
  }
  return kExitOk;
}

std::string& keyring_flag() {
  static std::string path;
  return path;
}

void add_keyring_flag(CLI::App& cmd) {
  cmd.add_option("--keyring", keyring_flag(), "keyring file of a sealed cluster (broach keygen > FILE)");
}

std::string unreachable_hint(const std::string& addr) {
  if (keyring_flag().empty()) {
    return " (is a node running at " + addr +
           "? a sealed cluster answers only datagrams sealed with its key: pass --keyring FILE)";
  }
  return " (is a node running at " + addr + ", and does " + keyring_flag() + " hold the cluster's key?)";
}

Config client_config(const Endpoint& to, double timeout_s) {
  Config c = default_config();
  c.security.keyring = keyring_flag();
  // The client's socket has the family of the node it talks to.
  if (to.v6) {
    c.rpc_ip = to.loopback() ? "::1" : "::";
  } else {
    c.rpc_ip = to.loopback() ? "127.0.0.1" : "0.0.0.0";
  }
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
  add_view(app, "stats", "show a member's counters: calls, errors, latency, transport, pool, gossip",
           run_stats, exit_code);
}

}  // namespace broach::cli
