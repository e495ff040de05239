// `broach trace`: recent traced calls, gathered from every member.
//
// The seed gives the member list; every live member is asked (its
// __broach.rpcz internal service) for the traces it holds that match the
// filters; then every member is asked again for all the spans of those
// traces, so that a call chain that crossed members prints whole even where
// only one member's span matched (say, the slow one). The CLI does not join.
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <map>
#include <set>

#include "cli.hpp"

namespace broach::cli {
namespace {

struct TraceFlags {
  std::string seed;
  std::string service;
  double min_ms = 0;
  bool errors = false;
  std::vector<std::string> ids;
  std::size_t limit = 20;
  bool json = false;
  double timeout_s = 3;
};

using Json = nlohmann::json;

std::string fmt_ms(std::int64_t us) {
  char buf[32];
  std::snprintf(buf, sizeof buf, us < 10000 ? "%.3f ms" : "%.1f ms", static_cast<double>(us) / 1000.0);
  return buf;
}

std::string wall_time(std::int64_t us) {
  const std::time_t t = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03d", buf, static_cast<int>((us / 1000) % 1000));
  return out;
}

void print_trace(const std::string& id, const std::vector<Json>& spans) {
  std::set<std::string> ids, members;
  std::int64_t t0 = INT64_MAX, t1 = INT64_MIN;
  for (const auto& s : spans) {
    ids.insert(s["span_id"].get<std::string>());
    members.insert(s["node"].get<std::string>());
    t0 = std::min(t0, s["start_us"].get<std::int64_t>());
    t1 = std::max(t1, s["start_us"].get<std::int64_t>() + s["duration_us"].get<std::int64_t>());
  }
  std::printf("trace %s  %s  %s  %zu span%s on %zu member%s\n", id.c_str(), wall_time(t0).c_str(),
              fmt_ms(t1 - t0).c_str(), spans.size(), spans.size() == 1 ? "" : "s", members.size(),
              members.size() == 1 ? "" : "s");
  // Children by parent; a span whose parent is not here (on a member that
  // did not answer, or forgotten there) is shown as a root.
  std::map<std::string, std::vector<const Json*>> kids;
  for (const auto& s : spans) {
    const std::string parent = s["parent_id"].get<std::string>();
    kids[ids.count(parent) ? parent : std::string()].push_back(&s);
  }
  for (auto& [p, v] : kids) {
    std::sort(v.begin(), v.end(), [](const Json* a, const Json* b) {
      return (*a)["start_us"].get<std::int64_t>() < (*b)["start_us"].get<std::int64_t>();
    });
  }
  auto walk = [&](auto&& self, const std::string& parent, int depth) -> void {
    auto it = kids.find(parent);
    if (it == kids.end()) return;
    for (const Json* sp : it->second) {
      const Json& s = *sp;
      const std::string kind = s["kind"];
      std::string where;
      if (kind == "serve") {
        where = s["node"].get<std::string>() + " <- " + s["peer"].get<std::string>();
      } else {
        const std::string peer = s["peer"].get<std::string>();
        where = s["node"].get<std::string>() + " -> " + (peer.empty() ? std::string("(by name)") : peer);
      }
      std::string extra;
      if (kind == "call") {
        const int n = s["attempts"].get<int>();
        extra = std::to_string(n) + (n == 1 ? " attempt" : " attempts");
      } else if (kind == "attempt") {
        if (s.contains("policy")) {
          extra = s["policy"].get<std::string>() + " of " + std::to_string(s["candidates"].get<int>());
          if (s["fused"].get<int>() > 0) extra += ", " + std::to_string(s["fused"].get<int>()) + " fused";
          if (s["probe"].get<bool>()) extra += ", breaker probe";
        }
        const int sends = s.value("sends", -1);
        if (sends > 1) extra += (extra.empty() ? "" : ", ") + std::to_string(sends) + " sends";
        if (s.value("hedge", false)) extra += (extra.empty() ? "" : ", ") + std::string("hedge");
      } else if (kind == "serve") {
        const auto q = s["queue_us"].get<std::int64_t>();
        const auto b = s["response_bytes"].get<std::int64_t>();
        extra = "queue " + (q < 0 ? std::string("?") : fmt_ms(q)) + (b >= 0 ? ", " + std::to_string(b) + " B" : "");
      }
      if (s.contains("message")) extra += (extra.empty() ? "" : "; ") + s["message"].get<std::string>();
      std::printf("  %*s%-7s %-16s %-44s %-16s %11s  %s\n", depth * 2, "", kind.c_str(),
                  s["service"].get<std::string>().c_str(), where.c_str(), s["outcome"].get<std::string>().c_str(),
                  fmt_ms(s["duration_us"].get<std::int64_t>()).c_str(), extra.c_str());
      self(self, s["span_id"].get<std::string>(), depth + 1);
    }
  };
  walk(walk, std::string(), 0);
}

int run_trace(const TraceFlags& f) {
  Endpoint seed;
  std::string why;
  if (!Endpoint::parse(f.seed, seed, &why, /*allow_port_zero=*/false)) {
    std::cerr << "broach: --seed: expected IP:PORT, got '" << f.seed << "' (" << why << ")\n";
    return kExitUsage;
  }
  try {
    Node node(client_config(seed, f.timeout_s));
    Json members;
    if (int rc = call_json(node, seed, "__broach.members", detail::pack_args(), members); rc != kExitOk) return rc;
    std::vector<Endpoint> live;
    for (const auto& m : members) {
      if (m["state"] != "alive" && m["state"] != "suspect") continue;
      Endpoint e;
      if (Endpoint::parse(m["address"].get<std::string>(), e, nullptr, false)) live.push_back(e);
    }
    if (std::find(live.begin(), live.end(), seed) == live.end()) live.push_back(seed);

    // 1: which traces match, on any member.
    std::map<std::string, std::string> filter;
    if (!f.service.empty()) filter["service"] = f.service;
    if (f.min_ms > 0) filter["min_ms"] = std::to_string(f.min_ms);
    if (f.errors) filter["errors"] = "1";
    if (!f.ids.empty()) {
      std::string all;
      for (const auto& id : f.ids) all += (all.empty() ? "" : ",") + id;
      filter["trace"] = all;
    }
    filter["limit"] = std::to_string(f.limit);
    std::map<std::string, std::int64_t> matched;  // trace id -> latest start seen
    int failures = 0;
    for (const auto& m : live) {
      Json j;
      if (call_json(node, m, "__broach.rpcz", detail::pack_args(filter), j) != kExitOk) {
        ++failures;
        continue;
      }
      for (const auto& t : j["traces"]) {
        std::int64_t start = 0;
        for (const auto& s : t["spans"]) start = std::max(start, s["start_us"].get<std::int64_t>());
        auto& slot = matched[t["trace_id"].get<std::string>()];
        slot = std::max(slot, start);
      }
    }
    // Newest first, --limit of them.
    std::vector<std::pair<std::int64_t, std::string>> order;
    for (const auto& [id, start] : matched) order.emplace_back(start, id);
    std::sort(order.rbegin(), order.rend());
    if (order.size() > f.limit) order.resize(f.limit);
    // 2: every span of those traces, from every member.
    std::map<std::string, std::vector<Json>> spans;
    if (!order.empty()) {
      std::string all;
      for (const auto& [start, id] : order) all += (all.empty() ? "" : ",") + id;
      const std::map<std::string, std::string> by_id{{"trace", all}, {"limit", std::to_string(order.size())}};
      for (const auto& m : live) {
        Json j;
        if (call_json(node, m, "__broach.rpcz", detail::pack_args(by_id), j) != kExitOk) continue;
        for (const auto& t : j["traces"]) {
          auto& v = spans[t["trace_id"].get<std::string>()];
          for (const auto& s : t["spans"]) v.push_back(s);
        }
      }
    }
    if (f.json) {
      Json out = Json::array();
      for (const auto& [start, id] : order) out.push_back({{"trace_id", id}, {"spans", spans[id]}});
      std::cout << out.dump() << "\n";
    } else {
      if (order.empty()) std::printf("no trace matches on %zu member%s\n", live.size(), live.size() == 1 ? "" : "s");
      for (const auto& [start, id] : order) {
        print_trace(id, spans[id]);
        std::printf("\n");
      }
    }
    if (failures > 0) {
      std::cerr << failures << " of " << live.size() << " members did not answer: their spans are missing\n";
    }
    return kExitOk;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return kExitRuntime;
  }
}

}  // namespace

void register_trace(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("trace", "print recent traced calls, gathered from every member (see docs/observability.md)");
  auto f = std::make_shared<TraceFlags>();
  cmd->add_option("--seed", f->seed, "IP:PORT of any live member")->required();
  cmd->add_option("--service", f->service, "only traces with a span of this service");
  cmd->add_option("--min-ms", f->min_ms, "only traces with a span that took at least this long")->check(CLI::NonNegativeNumber);
  cmd->add_flag("--errors", f->errors, "only traces with a span that failed");
  cmd->add_option("--trace", f->ids, "only these trace ids (repeatable)");
  cmd->add_option("--limit", f->limit, "at most this many traces, newest first (default 20)")->check(CLI::Range(1, 10000));
  cmd->add_flag("--json", f->json, "print JSON: [{trace_id, spans}]");
  cmd->add_option("--timeout", f->timeout_s, "seconds to wait for each member (default 3)");
  add_keyring_flag(*cmd);
  cmd->callback([f, &exit_code] { exit_code = run_trace(*f); });
}

}  // namespace broach::cli
