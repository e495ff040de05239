// Node: what `broach stats`, /metrics, /members, /routes and the status page
// show, and the HTTP endpoint that serves them.
#include <cstdio>

#include "api/node_impl.hpp"
#include "api/status_page.hpp"
#include "base/log.hpp"
#include "breaker/circuit_breaker.hpp"

namespace broach {

nlohmann::json Node::Impl::latency_json(const api::LatencyHistogram& h) {
  return {{"count", h.count()},
          {"p50", h.percentile(0.50)},
          {"p90", h.percentile(0.90)},
          {"p99", h.percentile(0.99)},
          {"p999", h.percentile(0.999)},
          {"max", h.max_us()}};
}

nlohmann::json Node::Impl::codes_json(const api::CodeCounters& c) {
  nlohmann::json out = nlohmann::json::object();
  for (std::size_t i = 1; i < c.by_code.size(); ++i) {
    const auto n = c.by_code[i].load(std::memory_order_relaxed);
    if (n > 0 && errc_known(static_cast<std::uint16_t>(i))) out[errc_name(static_cast<Errc>(i))] = n;
  }
  return out;
}

// Everything `broach stats`, /metrics and the status page show. Reads
// loop-owned counters on the loop thread.
nlohmann::json Node::Impl::snapshot() {
  nlohmann::json j;
  j["address"] = transport.local().to_string();
  j["name"] = config.name;
  j["version"] = config.version;
  nlohmann::json services = nlohmann::json::object();
  for (const auto& [name, m] : metrics.all()) {
    services[name] = {{"served", m->served.load()},
                      {"served_errors", codes_json(m->served_errors)},
                      {"served_latency_us", latency_json(m->served_latency)},
                      {"made", m->made.load()},
                      {"made_errors", codes_json(m->made_errors)},
                      {"made_latency_us", latency_json(m->made_latency)}};
  }
  j["services"] = services;
  j["calls"] = {{"by_name", calls_by_name.load()},       {"retries", retries.load()},
                {"hedges", hedges.load()},                {"local", local_calls.load()},
                {"circuit_open_rejections", circuit_open_rejections.load()},
                {"requests_received", requests_received.load()},
                {"handlers_run", handlers_run.load()},    {"handler_errors", handler_errors.load()},
                {"expired_in_queue", expired_in_queue.load()},
                {"rejected_overloaded", rejected_overloaded.load()}};
  const auto ps = pool.stats();
  j["pool"] = {{"threads", ps.threads}, {"idle", ps.idle}, {"queued", ps.queued},
               {"completed", ps.completed}, {"rejected", ps.rejected}, {"caller_ran", ps.caller_ran}};
  nlohmann::json breakers = nlohmann::json::array();
  for (const auto& b : router.breakers(steady_now())) {
    breakers.push_back({{"provider", b.provider.to_string()}, {"service", b.service},
                        {"state", breaker::breaker_state_name(b.state)}, {"trips", b.trips}});
  }
  j["breakers"] = breakers;
  on_loop([&] {
    const auto& e = engine.stats();
    nlohmann::json drops = nlohmann::json::object();
    for (int i = 1; i < static_cast<int>(wire::DecodeError::kCount_); ++i) {
      drops[wire::decode_error_name(static_cast<wire::DecodeError>(i))] = e.drops[i];
    }
    drops["unexpected"] = e.drops_unexpected;
    j["transport"] = {{"calls_started", e.calls_started}, {"calls_ok", e.calls_ok},
                      {"calls_failed", e.calls_failed}, {"requests_sent", e.requests_sent},
                      {"retransmits", e.retransmits}, {"status_queries", e.status_queries},
                      {"requests_received", e.requests_received},
                      {"duplicate_requests", e.duplicate_requests},
                      {"in_progress_sent", e.in_progress_sent}, {"responses_sent", e.responses_sent},
                      {"responses_resent", e.responses_resent}, {"late_responses", e.late_responses},
                      {"fragments_sent", e.fragments_sent}, {"fragments_resent", e.fragments_resent},
                      {"reassembly_refused", e.reassembly_refused},
                      {"reassembly_expired", e.reassembly_expired},
                      {"dedup_entries", e.dedup_entries}, {"dedup_bytes", e.dedup_bytes},
                      {"dedup_evicted", e.dedup_evicted}, {"pending_calls", engine.pending_calls()},
                      {"dropped", drops}};
    const auto& m = membership->stats();
    std::size_t alive = 0, suspect = 0, dead = 0, left = 0;
    for (const auto& mi : membership->members()) {
      switch (mi.state) {
        case MemberState::kAlive: ++alive; break;
        case MemberState::kSuspect: ++suspect; break;
        case MemberState::kDead: ++dead; break;
        case MemberState::kLeft: ++left; break;
      }
    }
    j["membership"] = {{"alive", alive}, {"suspect", suspect}, {"dead", dead}, {"left", left},
                       {"probes", m.probes}, {"probe_failures", m.probe_failures},
                       {"suspicions", m.suspicions}, {"refutes", m.refutes}, {"deaths", m.deaths},
                       {"push_pulls", m.push_pulls}, {"gossip_messages_sent", m.gossip_messages_sent},
                       {"gossip_bytes_sent", m.gossip_bytes_sent}, {"awareness", m.awareness}};
  });
  return j;
}

// The Prometheus text exposition (version 0.0.4) of snapshot() plus the
// per-service latency histograms.
std::string Node::Impl::prometheus_text() {
  const auto j = snapshot();
  std::string out;
  auto metric = [&](const std::string& name, const char* type, const char* help) {
    out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  auto sample = [&](const std::string& name, const std::string& labels, double v) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.17g", v);
    out += name + (labels.empty() ? "" : "{" + labels + "}") + " " + buf + "\n";
  };
  auto label = [](const std::string& k, const std::string& v) {
    std::string e;
    for (char c : v) {
      if (c == '\\' || c == '"') e += '\\';
      if (c == '\n') {
        e += "\\n";
        continue;
      }
      e += c;
    }
    return k + "=\"" + e + "\"";
  };
  const auto services = metrics.all();
  const std::vector<double> bounds_us{50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000,
                                      100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};
  for (const char* side : {"served", "made"}) {
    const bool served = std::string(side) == "served";
    const std::string base = std::string("broach_calls_") + side;
    metric(base + "_total", "counter",
           served ? "Requests this node ran (or refused) per service." : "Calls this node made per service.");
    for (const auto& [name, m] : services) sample(base + "_total", label("service", name), static_cast<double>(served ? m->served.load() : m->made.load()));
    metric(base + "_errors_total", "counter", "Calls that ended with an error, per service and error kind.");
    for (const auto& [name, m] : services) {
      const auto& codes = served ? m->served_errors : m->made_errors;
      for (std::size_t i = 1; i < codes.by_code.size(); ++i) {
        const auto n = codes.by_code[i].load();
        if (n > 0 && errc_known(static_cast<std::uint16_t>(i))) {
          sample(base + "_errors_total", label("service", name) + "," + label("error", errc_name(static_cast<Errc>(i))), static_cast<double>(n));
        }
      }
    }
    const std::string hist = std::string("broach_call_") + side + "_duration_seconds";
    metric(hist, "histogram", served ? "Handler run time per service." : "Call round trip seen by this caller, per service.");
    for (const auto& [name, m] : services) {
      const auto& h = served ? m->served_latency : m->made_latency;
      const auto cum = h.cumulative(bounds_us);
      for (std::size_t b = 0; b < bounds_us.size(); ++b) {
        char le[32];
        std::snprintf(le, sizeof(le), "%g", bounds_us[b] / 1e6);
        sample(hist + "_bucket", label("service", name) + "," + label("le", le), static_cast<double>(cum[b]));
      }
      sample(hist + "_bucket", label("service", name) + "," + label("le", "+Inf"), static_cast<double>(h.count()));
      sample(hist + "_sum", label("service", name), h.sum_us() / 1e6);
      sample(hist + "_count", label("service", name), static_cast<double>(h.count()));
    }
  }
  const auto& t = j["transport"];
  for (const char* k : {"retransmits", "status_queries", "duplicate_requests", "responses_resent",
                        "fragments_sent", "fragments_resent", "late_responses", "reassembly_refused"}) {
    metric(std::string("broach_transport_") + k + "_total", "counter", "Reliable-UDP transport counter.");
    sample(std::string("broach_transport_") + k + "_total", "", t[k].get<double>());
  }
  metric("broach_datagrams_dropped_total", "counter", "Datagrams dropped, by reason.");
  for (const auto& [reason, n] : t["dropped"].items()) {
    sample("broach_datagrams_dropped_total", label("reason", reason), n.get<double>());
  }
  metric("broach_pending_calls", "gauge", "Calls this node is waiting on.");
  sample("broach_pending_calls", "", t["pending_calls"].get<double>());
  const auto& p = j["pool"];
  metric("broach_pool_threads", "gauge", "Worker threads alive.");
  sample("broach_pool_threads", "", p["threads"].get<double>());
  metric("broach_pool_queued", "gauge", "Requests waiting in the worker queue.");
  sample("broach_pool_queued", "", p["queued"].get<double>());
  const auto& c = j["calls"];
  for (const char* k : {"retries", "hedges", "circuit_open_rejections", "expired_in_queue", "rejected_overloaded"}) {
    metric(std::string("broach_") + k + "_total", "counter", "Call outcome counter.");
    sample(std::string("broach_") + k + "_total", "", c[k].get<double>());
  }
  const auto& m = j["membership"];
  metric("broach_members", "gauge", "Members this node knows, by state.");
  for (const char* st : {"alive", "suspect", "dead", "left"}) sample("broach_members", label("state", st), m[st].get<double>());
  for (const char* k : {"probes", "probe_failures", "suspicions", "refutes", "push_pulls",
                        "gossip_messages_sent", "gossip_bytes_sent"}) {
    metric(std::string("broach_gossip_") + k + "_total", "counter", "Membership protocol counter.");
    sample(std::string("broach_gossip_") + k + "_total", "", m[k].get<double>());
  }
  metric("broach_circuit_open", "gauge", "1 while a circuit breaker is open or half-open.");
  for (const auto& b : j["breakers"]) {
    sample("broach_circuit_open",
           label("provider", b["provider"].get<std::string>()) + "," + label("service", b["service"].get<std::string>()),
           b["state"] == "closed" ? 0.0 : 1.0);
  }
  return out;
}

nlohmann::json Node::Impl::members_json() {
  nlohmann::json arr = nlohmann::json::array();
  std::vector<MemberInfo> ms;
  on_loop([&] { ms = membership->members(); });
  for (const auto& mi : ms) {
    arr.push_back({{"address", mi.address.to_string()}, {"name", mi.meta.name},
                   {"version", mi.meta.version}, {"state", member_state_name(mi.state)},
                   {"incarnation", mi.incarnation}, {"services", mi.meta.services},
                   {"weight", mi.meta.weight}, {"self", mi.self}});
  }
  return arr;
}

nlohmann::json Node::Impl::routes_json() {
  const auto bytes = pack_routes();
  return nlohmann::json::from_msgpack(reinterpret_cast<const std::uint8_t*>(bytes.data()),
                                      reinterpret_cast<const std::uint8_t*>(bytes.data()) + bytes.size());
}

// The HTTP endpoint (params.broach.http): /metrics, /members, /routes,
// /status.json and the status page. cpp-httplib runs it on its own threads.
void Node::Impl::start_http() {
  if (config.http.empty()) return;
  const auto colon = config.http.rfind(':');
  const std::string host = config.http.substr(0, colon);
  const int port = std::stoi(config.http.substr(colon + 1));
  http = std::make_unique<httplib::Server>();
  auto guard = [this](auto fn) {
    return [this, fn](const httplib::Request&, httplib::Response& res) {
      if (stopping.load()) {
        res.status = 503;
        return;
      }
      fn(res);
    };
  };
  http->Get("/metrics", guard([this](httplib::Response& res) {
    res.set_content(prometheus_text(), "text/plain; version=0.0.4; charset=utf-8");
  }));
  http->Get("/members", guard([this](httplib::Response& res) {
    res.set_content(members_json().dump(), "application/json");
  }));
  http->Get("/routes", guard([this](httplib::Response& res) {
    res.set_content(routes_json().dump(), "application/json");
  }));
  http->Get("/status.json", guard([this](httplib::Response& res) {
    res.set_content(snapshot().dump(), "application/json");
  }));
  http->Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(api::kStatusPage, "text/html; charset=utf-8");
  });
  const int bound = port == 0 ? http->bind_to_any_port(host) : (http->bind_to_port(host, port) ? port : -1);
  if (bound < 0) {
    throw Error(Errc::kIoError, config.source + ": params.broach.http: cannot listen on " + config.http);
  }
  http_port = bound;
  http_thread = std::thread([this] { http->listen_after_bind(); });
  BROACH_LOG_INFO("status page and metrics on http://{}:{}/", host, bound);
}

void Node::Impl::stop_http() {
  if (!http) return;
  http->stop();
  if (http_thread.joinable()) http_thread.join();
}


}  // namespace broach
