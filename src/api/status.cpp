// Status: counters as samples, JSON and Prometheus text made from them.
#include "api/status.hpp"

#include <cstdio>

#include "api/node_core.hpp"
#include "breaker/circuit_breaker.hpp"

namespace broach::api {
namespace {

void engine_samples(const reliable::Engine& e, std::vector<Sample>& out) {
  const auto& s = e.stats();
  const std::string prefix = "broach_transport_";
#define BROACH_X(field, help) \
  out.push_back(Sample{"transport", #field, prefix + #field + "_total", help, static_cast<double>(s.field)});
  BROACH_ENGINE_COUNTERS(BROACH_X)
#undef BROACH_X
#define BROACH_X(field, help) \
  out.push_back(Sample{"transport", #field, prefix + #field, help, static_cast<double>(s.field), true});
  BROACH_ENGINE_GAUGES(BROACH_X)
#undef BROACH_X
  out.push_back(Sample{"transport", "pending_calls", "broach_pending_calls", "Calls this node is waiting on.",
                       static_cast<double>(e.pending_calls()), true});
  const auto& p = e.path().stats();
  out.push_back(Sample{"transport", "datagrams_in", "broach_datagrams_received_total",
                       "Datagrams received (before any check).", static_cast<double>(p.datagrams_in)});
  out.push_back(Sample{"transport", "datagrams_out", "broach_datagrams_sent_total", "Datagrams sent.",
                       static_cast<double>(p.datagrams_out.load())});
  out.push_back(Sample{"transport", "send_failures", "broach_datagram_send_failures_total",
                       "Datagrams the local socket refused (buffer full).", static_cast<double>(p.send_failures.load())});
  // Every drop by reason, from the path (headers), the engine (bodies,
  // stray messages) and membership (malformed gossip).
  const char* drops_help = "Datagrams dropped, by reason.";
  for (int i = 1; i < static_cast<int>(wire::DecodeError::kCount_); ++i) {
    Sample d{"transport", "dropped", "broach_datagrams_dropped_total", drops_help,
             static_cast<double>(p.drops[i] + s.drops[i])};
    d.label_key = "reason";
    d.label_value = wire::decode_error_name(static_cast<wire::DecodeError>(i));
    d.nested = true;
    out.push_back(std::move(d));
  }
  Sample unexpected{"transport", "dropped", "broach_datagrams_dropped_total", drops_help,
                    static_cast<double>(s.drops_unexpected)};
  unexpected.label_key = "reason";
  unexpected.label_value = "unexpected";
  unexpected.nested = true;
  out.push_back(std::move(unexpected));
  out.push_back(Sample{"transport", "sealed_in", "broach_datagrams_opened_total",
                       "Sealed datagrams that opened (key, tag and replay window checked).",
                       static_cast<double>(p.sealed_in)});
  out.push_back(Sample{"transport", "bundles_out", "broach_bundles_sent_total",
                       "Bundle datagrams sent (several datagrams to one peer in one).",
                       static_cast<double>(p.bundles_out)});
  out.push_back(Sample{"transport", "bundled_out", "broach_bundled_sent_total",
                       "Datagrams sent inside Bundles.", static_cast<double>(p.bundled_out)});
  out.push_back(Sample{"transport", "bundles_in", "broach_bundles_received_total", "Bundle datagrams received.",
                       static_cast<double>(p.bundles_in)});
  out.push_back(Sample{"transport", "bundled_in", "broach_bundled_received_total",
                       "Datagrams received inside Bundles.", static_cast<double>(p.bundled_in)});
  out.push_back(Sample{"transport", "unreachable_in", "broach_port_unreachable_total",
                       "ICMP port-unreachable reports whose quote holds a header of this protocol.",
                       static_cast<double>(p.unreachable_in)});
  out.push_back(Sample{"transport", "unreachable_bad", "broach_port_unreachable_malformed_total",
                       "Port-unreachable reports ignored: the quoted datagram had no header of this protocol.",
                       static_cast<double>(p.unreachable_bad)});
}

void membership_samples(const membership::Membership& m, std::vector<Sample>& out) {
  const auto by_state = m.count_by_state();
  for (auto st : {MemberState::kAlive, MemberState::kSuspect, MemberState::kDead, MemberState::kLeft}) {
    Sample g{"membership", member_state_name(st), "broach_members", "Members this node knows, by state.",
             static_cast<double>(by_state[static_cast<std::size_t>(st)]), true};
    g.label_key = "state";
    g.label_value = member_state_name(st);
    out.push_back(std::move(g));
  }
  const auto& s = m.stats();
#define BROACH_X(field, help)                                                                 \
  out.push_back(Sample{"membership", #field, std::string("broach_gossip_") + #field + "_total", help, \
                       static_cast<double>(s.field)});
  BROACH_MEMBERSHIP_COUNTERS(BROACH_X)
#undef BROACH_X
  out.push_back(Sample{"membership", "awareness", "broach_gossip_awareness",
                       "Lifeguard local health score (0 = healthy).", static_cast<double>(s.awareness), true});
}

nlohmann::json latency_json(const LatencyHistogram& h) {
  // The non-empty buckets as [index, count] pairs (LatencyHistogram's
  // bucketing, include/broach/histogram.hpp): two snapshots give the
  // quantiles of what happened between them (`broach top`).
  nlohmann::json buckets = nlohmann::json::array();
  for (std::size_t i = 0; i < LatencyHistogram::kBuckets; ++i) {
    if (const auto c = h.bucket_count(i); c > 0) buckets.push_back({i, c});
  }
  return {{"count", h.count()},
          {"p50", h.quantile_us(0.50)},
          {"p90", h.quantile_us(0.90)},
          {"p99", h.quantile_us(0.99)},
          {"p999", h.quantile_us(0.999)},
          {"max", static_cast<double>(h.max_ns()) / 1000.0},
          {"buckets", std::move(buckets)}};
}

nlohmann::json codes_json(const CodeCounters& c) {
  nlohmann::json out = nlohmann::json::object();
  for (std::size_t i = 1; i < c.by_code.size(); ++i) {
    const auto n = c.by_code[i].load(std::memory_order_relaxed);
    if (n > 0 && errc_known(static_cast<std::uint16_t>(i))) out[errc_name(static_cast<Errc>(i))] = n;
  }
  return out;
}

std::string label(const std::string& k, const std::string& v) {
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
}

struct PromWriter {
  std::string out;
  std::string last;
  void head(const std::string& name, const char* type, const std::string& help) {
    if (name == last) return;
    last = name;
    out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  }
  void sample(const std::string& name, const std::string& labels, double v) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.17g", v);
    out += name + (labels.empty() ? "" : "{" + labels + "}") + " " + buf + "\n";
  }
};

}  // namespace

std::vector<Sample> Status::samples() const {
  BROACH_ASSERT_IN_LOOP(core_.loop());
  std::vector<Sample> out;
  out.reserve(96);
  collect(core_.counters(), out);
  for (const auto& s : sources_) s(out);
  engine_samples(core_.engine(), out);
  membership_samples(core_.membership(), out);
  const auto t = core_.tracer().store().stats();
  out.push_back(Sample{"traces", "spans", "broach_trace_spans_total", "Trace spans recorded on this node.",
                       static_cast<double>(t.spans)});
  out.push_back(Sample{"traces", "spans_dropped", "broach_trace_spans_dropped_total",
                       "Trace spans dropped: their trace already held the most spans a trace keeps.",
                       static_cast<double>(t.spans_dropped)});
  out.push_back(Sample{"traces", "evicted", "broach_traces_evicted_total",
                       "Traces forgotten to keep params.broach.trace.keep.", static_cast<double>(t.traces_evicted)});
  out.push_back(Sample{"traces", "kept", "broach_traces_kept", "Traces held in memory.",
                       static_cast<double>(t.traces), true});
  return out;
}

nlohmann::json Status::rpcz_json(const TraceStore::Filter& f) const { return traces_json(core_.tracer(), f); }

nlohmann::json Status::snapshot() const {
  nlohmann::json j;
  j["address"] = core_.address().to_string();
  j["name"] = core_.config().name;
  j["version"] = core_.config().version;
  nlohmann::json services = nlohmann::json::object();
  for (const auto& [name, m] : core_.metrics().all()) {
    services[name] = {{"served", m->served.load()},
                      {"served_errors", codes_json(m->served_errors)},
                      {"served_latency_us", latency_json(m->served_latency)},
                      {"made", m->made.load()},
                      {"made_errors", codes_json(m->made_errors)},
                      {"made_latency_us", latency_json(m->made_latency)}};
  }
  j["services"] = services;
  for (const auto& s : samples()) {
    auto& slot = j[s.group][s.key];
    if (s.nested) {
      slot[s.label_value] = static_cast<std::uint64_t>(s.value);
    } else {
      const bool whole = s.value >= 0 && s.value == static_cast<double>(static_cast<std::uint64_t>(s.value));
      slot = whole ? nlohmann::json(static_cast<std::uint64_t>(s.value)) : nlohmann::json(s.value);
    }
  }
  nlohmann::json breakers = nlohmann::json::array();
  for (const auto& b : core_.router().breakers(core_.clock().now())) {
    breakers.push_back({{"provider", b.provider.to_string()}, {"service", b.service},
                        {"state", breaker::breaker_state_name(b.state)}, {"trips", b.trips}});
  }
  j["breakers"] = breakers;
  nlohmann::json limits = nlohmann::json::object();
  for (const auto& [name, l] : core_.server().limiters()) {
    if (!l) continue;
    limits[name] = {{"adaptive", l->adaptive()},
                    {"limit", l->limit()},
                    {"in_flight", l->in_flight()},
                    {"refused", l->refused()},
                    {"noload_us", std::chrono::duration<double, std::micro>(l->noload()).count()}};
  }
  j["concurrency_limits"] = limits;
  // The route table as this node calls it: per service, its providers with
  // their breaker, this node's calls in flight to them, their latency and
  // slow start.
  nlohmann::json route_table = nlohmann::json::object();
  const auto routes = core_.routes();
  const TimePoint now = core_.clock().now();
  for (const auto& [service, entry] : routes->services()) {
    nlohmann::json providers = nlohmann::json::array();
    for (const auto& p : entry.providers) {
      const auto v = core_.router().provider_view(p.address, service, now);
      providers.push_back({{"address", p.address.to_string()}, {"name", p.name}, {"state", member_state_name(p.state)},
                           {"breaker", breaker::breaker_state_name(v.breaker)}, {"in_flight", v.outstanding},
                           {"latency_ewma_us", v.latency_ewma_us}, {"warmth", v.warmth}});
    }
    route_table[service] = providers;
  }
  j["route_table"] = route_table;
  nlohmann::json events = nlohmann::json::array();
  for (const auto& e : core_.metrics().recent_events()) {
    events.push_back({{"time_ms", e.unix_ms}, {"event", e.kind}, {"address", e.address}, {"name", e.name}});
  }
  j["events"] = events;
  nlohmann::json errors = nlohmann::json::array();
  for (const auto& e : core_.metrics().recent_errors()) {
    errors.push_back({{"time_ms", e.unix_ms}, {"service", e.service}, {"provider", e.provider},
                      {"error", errc_name(e.code)}, {"message", e.message}});
  }
  j["recent_errors"] = errors;
  return j;
}

void Status::record_series(std::int64_t unix_ms) {
  BROACH_ASSERT_IN_LOOP(core_.loop());
  series_.record(unix_ms, samples(), core_.metrics().all());
}

nlohmann::json Status::series_json(const std::string& prefix, std::size_t last) const {
  BROACH_ASSERT_IN_LOOP(core_.loop());
  return series_.to_json(prefix, last);
}

Bytes Status::stats_msgpack() const {
  const auto bytes = nlohmann::json::to_msgpack(snapshot());
  const auto* p = reinterpret_cast<const std::byte*>(bytes.data());
  return Bytes(p, p + bytes.size());
}

std::string Status::prometheus() const {
  PromWriter w;
  const auto services = core_.metrics().all();
  const std::vector<std::uint64_t> bounds_us{50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000,
                                             100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};
  std::vector<std::uint64_t> bounds_ns;
  for (auto b : bounds_us) bounds_ns.push_back(b * 1000);
  for (const bool served : {true, false}) {
    const std::string base = served ? "broach_calls_served" : "broach_calls_made";
    w.head(base + "_total", "counter",
           served ? "Requests this node ran (or refused) per service." : "Calls this node made per service.");
    for (const auto& [name, m] : services) {
      w.sample(base + "_total", label("service", name), static_cast<double>(served ? m->served.load() : m->made.load()));
    }
    w.head(base + "_errors_total", "counter", "Calls that ended with an error, per service and error kind.");
    for (const auto& [name, m] : services) {
      const auto& codes = served ? m->served_errors : m->made_errors;
      for (std::size_t i = 1; i < codes.by_code.size(); ++i) {
        const auto n = codes.by_code[i].load();
        if (n > 0 && errc_known(static_cast<std::uint16_t>(i))) {
          w.sample(base + "_errors_total",
                   label("service", name) + "," + label("error", errc_name(static_cast<Errc>(i))),
                   static_cast<double>(n));
        }
      }
    }
    const std::string hist = served ? "broach_call_served_duration_seconds" : "broach_call_made_duration_seconds";
    w.head(hist, "histogram", served ? "Handler run time per service." : "Call round trip seen by this caller, per service.");
    for (const auto& [name, m] : services) {
      const auto& h = served ? m->served_latency : m->made_latency;
      const auto cum = h.cumulative_ns(bounds_ns);
      for (std::size_t b = 0; b < bounds_us.size(); ++b) {
        char le[32];
        std::snprintf(le, sizeof(le), "%g", static_cast<double>(bounds_us[b]) / 1e6);
        w.sample(hist + "_bucket", label("service", name) + "," + label("le", le), static_cast<double>(cum[b]));
      }
      w.sample(hist + "_bucket", label("service", name) + "," + label("le", "+Inf"), static_cast<double>(h.count()));
      w.sample(hist + "_sum", label("service", name), h.sum_ns() / 1e9);
      w.sample(hist + "_count", label("service", name), static_cast<double>(h.count()));
    }
  }
  for (const auto& s : samples()) {
    w.head(s.prom, s.gauge ? "gauge" : "counter", s.help);
    w.sample(s.prom, s.label_key ? label(s.label_key, s.label_value) : std::string(), s.value);
  }
  w.head("broach_circuit_open", "gauge", "1 while a circuit breaker is open or half-open.");
  for (const auto& b : core_.router().breakers(core_.clock().now())) {
    w.sample("broach_circuit_open",
             label("provider", b.provider.to_string()) + "," + label("service", b.service),
             b.state == breaker::BreakerState::kClosed ? 0.0 : 1.0);
  }
  w.head("broach_concurrency_limit", "gauge",
         "A service's concurrency limit on this provider (params.broach.maxConcurrency).");
  for (const auto& [name, l] : core_.server().limiters()) {
    if (l) w.sample("broach_concurrency_limit", label("service", name), l->limit());
  }
  w.head("broach_concurrency_in_flight", "gauge", "A limited service's requests in flight (queued or running).");
  for (const auto& [name, l] : core_.server().limiters()) {
    if (l) w.sample("broach_concurrency_in_flight", label("service", name), l->in_flight());
  }
  return w.out;
}

nlohmann::json Status::members_json() const {
  nlohmann::json arr = nlohmann::json::array();
  for (const auto& mi : core_.members()) {
    arr.push_back({{"address", mi.address.to_string()}, {"name", mi.meta.name},
                   {"version", mi.meta.version}, {"state", member_state_name(mi.state)},
                   {"incarnation", mi.incarnation}, {"services", mi.meta.services},
                   {"weight", mi.meta.weight}, {"self", mi.self}});
  }
  return arr;
}

nlohmann::json Status::routes_json() const {
  const auto bytes = InternalServices::pack_routes(*core_.routes());
  return nlohmann::json::from_msgpack(reinterpret_cast<const std::uint8_t*>(bytes.data()),
                                      reinterpret_cast<const std::uint8_t*>(bytes.data()) + bytes.size());
}

}  // namespace broach::api
