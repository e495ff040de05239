// Node: the only place where the layers are wired together (loop, UDP
// transport, reliable engine, worker pool, service registry).
#include "broach/node.hpp"

#include <unistd.h>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <unordered_map>

#include "base/assert.hpp"
#include "base/log.hpp"
#include "api/call_router.hpp"
#include "api/metrics.hpp"
#include "api/status_page.hpp"
#include "breaker/circuit_breaker.hpp"
#include "exec/thread_pool.hpp"
#include "membership/membership.hpp"
#include "routing/route_table.hpp"
#include "reliable/engine.hpp"
#include "transport/epoll_loop.hpp"
#include "transport/udp_transport.hpp"
#include "wire/payload.hpp"

namespace broach {
namespace {

std::uint64_t fresh_node_id() {
  std::random_device rd;
  std::uint64_t id = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  id ^= static_cast<std::uint64_t>(steady_now().time_since_epoch().count()) * 0x9e3779b97f4a7c15ULL;
  id ^= static_cast<std::uint64_t>(::getpid()) << 17;
  return id == 0 ? 1 : id;
}

reliable::EngineOptions engine_options(const Config& c, const Endpoint& advertised) {
  reliable::EngineOptions o;
  o.node_id = fresh_node_id();
  o.advertised = advertised;
  o.max_datagram = static_cast<std::size_t>(c.transport.max_datagram_bytes);
  o.max_message = c.transport.max_message_bytes;
  o.send_window = c.transport.send_window;
  o.rto_initial = seconds_f(c.transport.rto_initial_ms / 1000.0);
  o.rto_min = seconds_f(c.transport.rto_min_ms / 1000.0);
  o.rto_max = seconds_f(c.transport.rto_max_ms / 1000.0);
  o.delivery_timeout = seconds_f(c.udp_timeout);
  o.dedup_max_entries = static_cast<std::size_t>(c.transport.dedup_max_entries);
  o.dedup_max_bytes = c.transport.dedup_max_bytes;
  o.reassembly_max_bytes_per_peer = c.transport.reassembly_max_bytes_per_peer;
  o.reassembly_max_bytes_total = c.transport.reassembly_max_bytes_total;
  return o;
}

Endpoint bind_endpoint(const Config& c) {
  std::uint32_t ip = 0;
  if (!Endpoint::parse_ip(c.rpc_ip, ip)) {
    throw Error(Errc::kBadConfig, c.source + ": params.rpcIp: not an IPv4 address: " + c.rpc_ip);
  }
  return Endpoint{ip, static_cast<std::uint16_t>(c.rpc_port)};
}

membership::MembershipOptions membership_options(const Config& c) {
  const auto& m = c.membership;
  membership::MembershipOptions o;
  o.probe_interval = seconds_f(m.probe_interval_ms / 1000.0);
  o.probe_timeout = seconds_f(m.probe_timeout_ms / 1000.0);
  o.indirect_checks = m.indirect_checks;
  o.suspicion_mult = m.suspicion_mult;
  o.suspicion_max_mult = m.suspicion_max_mult;
  o.gossip_interval = seconds_f(m.gossip_interval_ms / 1000.0);
  o.gossip_nodes = m.gossip_nodes;
  o.retransmit_mult = m.retransmit_mult;
  o.push_pull_interval = seconds_f(m.push_pull_interval_ms / 1000.0);
  o.reconnect_interval = seconds_f(m.reconnect_interval_ms / 1000.0);
  o.dead_reclaim = seconds_f(m.dead_reclaim_ms / 1000.0);
  o.call_timeout = seconds_f(c.udp_timeout);
  return o;
}

std::vector<Endpoint> seed_endpoints(const Config& c) {
  std::vector<Endpoint> out;
  for (const auto& s : c.cluster_address) {
    Endpoint e;
    if (!Endpoint::parse(s, e)) {
      throw Error(Errc::kBadConfig, c.source + ": params.clusterAddress: not IP:PORT: " + s);
    }
    out.push_back(e);
  }
  return out;
}

std::uint64_t life_now() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

constexpr const char* kMembersService = "__broach.members";
constexpr const char* kRoutesService = "__broach.routes";
constexpr const char* kStatsService = "__broach.stats";

}  // namespace

struct Node::Impl final : reliable::RequestHandler, membership::Listener {
  explicit Impl(Config cfg)
      : config(std::move(cfg)),
        transport(loop, bind_endpoint(config),
                  UdpOptions{config.transport.socket_buffer_bytes, 32}),
        engine(loop, transport, engine_options(config, transport.local()), this),
        pool(config.thread_pool, "broach-worker"),
        router(config) {
    MemberMeta meta;
    meta.name = config.name;
    meta.version = config.version;
    meta.weight = static_cast<std::uint32_t>(config.membership.weight);
    membership = std::make_unique<membership::Membership>(
        loop, engine, membership_options(config), life_now(), meta, engine.options().node_id, this);
    routes.store(routing::RouteTable::build(membership->members()));
    const auto seeds = seed_endpoints(config);
    loop.start_thread("broach-loop");
    on_loop([&] { membership->start(seeds); });
    try {
      start_http();
    } catch (...) {
      loop.stop();
      throw;
    }
  }

  ~Impl() override {
    // Membership holds timers on the loop; it goes first, on the loop's
    // terms (the loop has stopped by now, so this thread owns it).
    membership.reset();
  }

  // Runs `f` on the loop thread and waits for it.
  template <class F>
  void on_loop(F&& f) {
    if (loop.in_loop_thread()) {
      f();
      return;
    }
    std::promise<void> done;
    loop.post([&] {
      f();
      done.set_value();
    });
    done.get_future().wait();
  }

  static nlohmann::json latency_json(const api::LatencyHistogram& h) {
    return {{"count", h.count()},
            {"p50", h.percentile(0.50)},
            {"p90", h.percentile(0.90)},
            {"p99", h.percentile(0.99)},
            {"p999", h.percentile(0.999)},
            {"max", h.max_us()}};
  }

  static nlohmann::json codes_json(const api::CodeCounters& c) {
    nlohmann::json out = nlohmann::json::object();
    for (std::size_t i = 1; i < c.by_code.size(); ++i) {
      const auto n = c.by_code[i].load(std::memory_order_relaxed);
      if (n > 0 && errc_known(static_cast<std::uint16_t>(i))) out[errc_name(static_cast<Errc>(i))] = n;
    }
    return out;
  }

  // Everything `broach stats`, /metrics and the status page show. Reads
  // loop-owned counters on the loop thread.
  nlohmann::json snapshot() {
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
  std::string prometheus_text() {
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

  nlohmann::json members_json() {
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

  nlohmann::json routes_json() {
    const auto bytes = pack_routes();
    return nlohmann::json::from_msgpack(reinterpret_cast<const std::uint8_t*>(bytes.data()),
                                        reinterpret_cast<const std::uint8_t*>(bytes.data()) + bytes.size());
  }

  // The HTTP endpoint (params.broach.http): /metrics, /members, /routes,
  // /status.json and the status page. cpp-httplib runs it on its own threads.
  void start_http() {
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

  void stop_http() {
    if (!http) return;
    http->stop();
    if (http_thread.joinable()) http_thread.join();
  }

  // membership::Listener (loop thread): keep the route table current. Dead
  // and left members leave it at once; a burst of events (a join storm)
  // is folded into one rebuild.
  void on_member_event(membership::EventKind, const MemberInfo&) override {
    if (rebuild_pending) return;
    rebuild_pending = true;
    loop.post([this] {
      rebuild_pending = false;
      if (membership) {
        routes.store(routing::RouteTable::build(membership->members(), routes.load().get()));
      }
    });
  }

  // Internal services run on the loop thread: they read loop-owned state.
  bool handle_internal(reliable::IncomingRequest& req) {
    Bytes body;
    try {
      if (req.service == membership::kPushPullService) {
        wire::encode_response_ok(membership->handle_push_pull(req.args), body);
      } else if (req.service == kMembersService) {
        wire::encode_response_ok(pack_members(membership->members()), body);
      } else if (req.service == kRoutesService) {
        wire::encode_response_ok(pack_routes(), body);
      } else if (req.service == kStatsService) {
        const auto bytes = nlohmann::json::to_msgpack(snapshot());
        wire::encode_response_ok(std::as_bytes(std::span(bytes)), body);
      } else {
        return false;
      }
    } catch (const Error& e) {
      body.clear();
      wire::encode_response_error(e.code(), e.message(), body);
    }
    engine.respond(req.token, std::move(body));
    return true;
  }

  static Bytes pack_members(const std::vector<MemberInfo>& members) {
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    pk.pack_array(static_cast<std::uint32_t>(members.size()));
    for (const auto& m : members) {
      pk.pack_map(8);
      pk.pack(std::string("address"));
      pk.pack(m.address.to_string());
      pk.pack(std::string("name"));
      pk.pack(m.meta.name);
      pk.pack(std::string("version"));
      pk.pack(m.meta.version);
      pk.pack(std::string("state"));
      pk.pack(std::string(member_state_name(m.state)));
      pk.pack(std::string("incarnation"));
      pk.pack(m.incarnation);
      pk.pack(std::string("life"));
      pk.pack(m.life);
      pk.pack(std::string("services"));
      pk.pack(m.meta.services);
      pk.pack(std::string("weight"));
      pk.pack(m.meta.weight);
    }
    return detail::to_bytes(buf);
  }

  Bytes pack_routes() const {
    const auto table = routes.load();
    msgpack::sbuffer buf;
    msgpack::packer<msgpack::sbuffer> pk(buf);
    pk.pack_map(static_cast<std::uint32_t>(table->services().size()));
    for (const auto& [name, e] : table->services()) {
      pk.pack(name);
      pk.pack_array(static_cast<std::uint32_t>(e.providers.size()));
      for (const auto& p : e.providers) {
        pk.pack_map(4);
        pk.pack(std::string("address"));
        pk.pack(p.address.to_string());
        pk.pack(std::string("state"));
        pk.pack(std::string(member_state_name(p.state)));
        pk.pack(std::string("name"));
        pk.pack(p.name);
        pk.pack(std::string("version"));
        pk.pack(p.version);
      }
    }
    return detail::to_bytes(buf);
  }

  MemberMeta current_meta() {
    MemberMeta meta;
    meta.name = config.name;
    meta.version = config.version;
    meta.weight = static_cast<std::uint32_t>(config.membership.weight);
    std::shared_lock lock(services_mu);
    for (const auto& [name, h] : services) {
      if (!routing::is_internal_service(name)) meta.services.push_back(name);
    }
    std::sort(meta.services.begin(), meta.services.end());
    return meta;
  }

  void publish_services() {
    auto meta = current_meta();
    loop.post([this, meta = std::move(meta)]() mutable {
      if (membership) membership->set_meta(std::move(meta));
    });
  }

  // Runs on the loop thread for every new (non-duplicate) request.
  void on_request(reliable::IncomingRequest&& req) override {
    if (routing::is_internal_service(req.service) && handle_internal(req)) return;
    ++requests_received;
    Service svc;
    {
      std::shared_lock lock(services_mu);
      auto it = services.find(req.service);
      if (it != services.end()) svc = it->second;
    }
    if (!svc.handler) {
      respond_error(req.token, Errc::kNotFound, req.service);
      return;
    }
    if (svc.options.run_on_loop) {
      run(svc.handler, req);
      return;
    }
    RawHandler handler = std::move(svc.handler);
    auto token = req.token;
    const Errc rc = pool.try_submit(
        [this, handler = std::move(handler), req = std::move(req)]() mutable { run(handler, req); });
    if (rc == Errc::kQueueFull) {
      ++rejected_overloaded;
      respond_error(token, Errc::kOverloaded,
                    "provider " + transport.local().to_string() + " has its queue and threads full");
    } else if (rc != Errc::kOk) {
      respond_error(token, Errc::kShutdown, "provider is stopping");
    }
  }

  // Runs on a worker thread (or on the loop thread under caller-runs).
  // Runs a handler with the provider-side rules (stopping, expired
  // deadline, exceptions to typed errors). Returns the result or the error.
  RawResult invoke(const RawHandler& handler, std::span<const std::byte> args, TimePoint deadline) {
    if (stopping.load(std::memory_order_relaxed)) return Error(Errc::kShutdown, "provider is stopping");
    if (loop.now() >= deadline) {
      // The caller has given up: running the work now would only waste it.
      ++expired_in_queue;
      return Error(Errc::kDeadlineExpired, "caller's deadline passed while the request was queued");
    }
    ++handlers_run;
    try {
      return handler(args);
    } catch (const Error& e) {
      ++handler_errors;
      return Error(e.code() == Errc::kBadArguments ? Errc::kBadArguments : Errc::kRemoteError, e.message());
    } catch (const std::exception& e) {
      ++handler_errors;
      return Error(Errc::kRemoteError, e.what());
    } catch (...) {
      ++handler_errors;
      return Error(Errc::kRemoteError, "unknown exception");
    }
  }

  // Runs on a worker thread (or on the loop thread under caller-runs).
  // invoke() plus the per-service counters and handler-time histogram.
  RawResult invoke_measured(const std::string& service, const RawHandler& handler,
                            std::span<const std::byte> args, TimePoint deadline) {
    const TimePoint t0 = steady_now();
    RawResult r = invoke(handler, args, deadline);
    auto& m = metrics.service(service);
    m.served.fetch_add(1, std::memory_order_relaxed);
    if (!r.ok()) m.served_errors.add(r.error().code());
    m.served_latency.record(std::chrono::duration<double, std::micro>(steady_now() - t0).count());
    return r;
  }

  void run(const RawHandler& handler, reliable::IncomingRequest& req) {
    Bytes body;
    RawResult r = invoke_measured(req.service, handler, req.args, req.deadline);
    if (r.ok()) {
      wire::encode_response_ok(r.value(), body);
    } else {
      wire::encode_response_error(r.error().code(), r.error().message(), body);
    }
    if (loop.in_loop_thread()) {
      engine.respond(req.token, std::move(body));
      return;
    }
    // Fast path: the worker sends a single-datagram response itself and
    // leaves only the at-most-once bookkeeping to the loop. A duplicate that
    // slips in between gets "in progress", which is harmless.
    bool sent = false;
    if (transport.thread_safe_send()) {
      Bytes datagram;
      if (engine.encode_response_datagram(req.token, body, datagram)) {
        transport.send(req.token.reply_to, datagram);
        sent = true;
      }
    }
    auto bookkeeping = [this, token = req.token, body = std::move(body), sent]() mutable {
      engine.respond(token, std::move(body), sent);
    };
    // Already on the wire: caching it for duplicates can wait for the loop's
    // next wake-up instead of waking it now.
    if (sent) {
      loop.try_post_lazy(std::move(bookkeeping));
    } else {
      loop.post(std::move(bookkeeping));
    }
  }

  void respond_error(const reliable::RequestToken& token, Errc code, const std::string& msg) {
    Bytes body;
    wire::encode_response_error(code, msg, body);
    engine.respond(token, std::move(body));
  }

  Config config;
  EpollLoop loop;
  UdpTransport transport;
  reliable::Engine engine;
  ThreadPool pool;
  api::CallRouter router;
  std::unique_ptr<membership::Membership> membership;  // loop thread
  std::atomic<std::shared_ptr<const routing::RouteTable>> routes;
  bool rebuild_pending = false;  // loop thread
  std::atomic<bool> stopping{false};
  std::once_flag stop_once;

  mutable std::shared_mutex services_mu;
  struct Service {
    RawHandler handler;
    ServiceOptions options;
  };
  std::unordered_map<std::string, Service> services;  // guarded by services_mu

  std::atomic<std::uint64_t> requests_received{0}, handlers_run{0}, handler_errors{0},
      expired_in_queue{0}, rejected_overloaded{0};
  std::atomic<std::uint64_t> calls_by_name{0}, retries{0}, hedges{0}, local_calls{0},
      circuit_open_rejections{0};
  api::Metrics metrics;
  std::unique_ptr<httplib::Server> http;
  std::thread http_thread;
  int http_port = 0;

  // Runs a service of this very node without the network (the seed's local
  // call), with the same rules as a remote call: the pool (or the loop for
  // run_on_loop services), the deadline, typed errors. `done` runs on the
  // loop thread.
  void run_local(const std::string& service, Bytes args, TimePoint deadline,
                 std::function<void(RawResult)> done) {
    ++local_calls;
    Service svc;
    {
      std::shared_lock lock(services_mu);
      auto it = services.find(service);
      if (it != services.end()) svc = it->second;
    }
    if (!svc.handler) {
      done(Error(Errc::kNotFound, service));
      return;
    }
    auto shared_done = std::make_shared<std::function<void(RawResult)>>(std::move(done));
    auto task = [this, service, handler = svc.handler, args = std::move(args), deadline, shared_done]() mutable {
      RawResult r = invoke_measured(service, handler, args, deadline);
      if (!loop.try_post([shared_done, r = std::move(r)]() mutable { (*shared_done)(std::move(r)); })) {
        (*shared_done)(Error(Errc::kShutdown, "node is stopping"));
      }
    };
    if (svc.options.run_on_loop) {
      if (!loop.try_post(std::move(task))) (*shared_done)(Error(Errc::kShutdown, "node is stopping"));
      return;
    }
    const Errc rc = pool.try_submit(std::move(task));
    if (rc == Errc::kQueueFull) {
      ++rejected_overloaded;
      (*shared_done)(Error(Errc::kOverloaded, "this node's queue and threads are full"));
    } else if (rc != Errc::kOk) {
      (*shared_done)(Error(Errc::kShutdown, "node is stopping"));
    }
  }
};

Node::Node(Config config) {
  validate_config(config);
  log::set_level(config.log_level);
  impl_ = std::make_unique<Impl>(std::move(config));
  BROACH_LOG_INFO("node {} ({} {}) listening on {}", impl_->config.name, impl_->config.name,
                  impl_->config.version, impl_->transport.local().to_string());
}

Node::~Node() { stop(); }

Endpoint Node::address() const { return impl_->transport.local(); }
const Config& Node::config() const { return impl_->config; }

void Node::provide_raw(std::string name, RawHandler handler, ServiceOptions options) {
  BROACH_REQUIRE(!name.empty(), "service name must not be empty");
  BROACH_REQUIRE(static_cast<bool>(handler), "handler must not be empty");
  {
    std::unique_lock lock(impl_->services_mu);
    impl_->services[std::move(name)] = Impl::Service{std::move(handler), options};
  }
  impl_->publish_services();
}

bool Node::withdraw(const std::string& name) {
  bool removed = false;
  {
    std::unique_lock lock(impl_->services_mu);
    removed = impl_->services.erase(name) > 0;
  }
  if (removed) impl_->publish_services();
  return removed;
}

RawResult Node::call_raw(const std::string& service, Bytes args, const CallOptions& opts) {
  BROACH_REQUIRE(!impl_->loop.in_loop_thread(),
                 "a blocking call from the loop thread would deadlock; use call_raw_async");
  std::promise<RawResult> promise;
  auto fut = promise.get_future();
  call_raw_async(service, std::move(args), opts,
                 [&promise](RawResult r) { promise.set_value(std::move(r)); });
  return fut.get();
}

namespace {

// One call by name across its attempts (first try, retries, a hedge).
struct NamedCall {
  std::string service;
  Bytes args;
  CallOptions opts;
  TimePoint deadline;
  std::function<void(RawResult)> done;

  std::mutex mu;
  bool finished = false;                // guarded by mu
  std::vector<Endpoint> tried;          // guarded by mu
  int retries = 0;                      // guarded by mu
  int running = 0;                      // attempts in flight; guarded by mu
  std::optional<Error> last_error;      // guarded by mu

  void finish(RawResult r) {
    {
      std::lock_guard lock(mu);
      if (finished) return;
      finished = true;
    }
    done(std::move(r));
  }
};

}  // namespace

void Node::call_raw_async(const std::string& service, Bytes args, const CallOptions& opts,
                          std::function<void(RawResult)> done) {
  auto& impl = *impl_;
  ++impl.calls_by_name;
  impl.router.on_call();
  auto c = std::make_shared<NamedCall>();
  c->service = service;
  c->args = std::move(args);
  c->opts = opts;
  const Duration timeout = opts.timeout ? Duration(*opts.timeout) : seconds_f(impl.config.rpc_timeout);
  c->deadline = steady_now() + timeout;
  c->done = std::move(done);
  start_attempt(c);
  // Hedging: an idempotent call still unanswered after hedgeDelayMs gets a
  // backup attempt on another provider; the first answer wins.
  if (impl.router.hedge_delay() > Duration::zero() && impl.router.idempotent(service, opts)) {
    impl.loop.try_post([this, c] {
      impl_->loop.run_after(impl_->router.hedge_delay(), [this, c] {
        {
          std::lock_guard lock(c->mu);
          if (c->finished || c->running != 1) return;
        }
        ++impl_->hedges;
        start_attempt(c, /*hedge=*/true);
      });
    });
  }
}

void Node::start_attempt(const std::shared_ptr<void>& state, bool hedge) {
  auto c = std::static_pointer_cast<NamedCall>(state);
  auto& impl = *impl_;
  const TimePoint now = steady_now();
  if (now >= c->deadline) {
    std::optional<Error> last;
    {
      std::lock_guard lock(c->mu);
      last = c->last_error;
    }
    c->finish(last ? RawResult(*last) : RawResult(Error(Errc::kCallTimeout, "no time left for " + c->service)));
    return;
  }
  std::vector<Endpoint> tried;
  {
    std::lock_guard lock(c->mu);
    tried = c->tried;
  }
  const auto table = impl.routes.load();
  auto choice = impl.router.pick(*table, c->service, c->opts, tried, now);
  if (!choice.ok()) {
    if (hedge) return;  // no second provider for a backup: the first attempt goes on
    std::optional<Error> last;
    {
      std::lock_guard lock(c->mu);
      last = c->last_error;
    }
    if (choice.error().code() == Errc::kCircuitOpen && !last) ++impl.circuit_open_rejections;
    // After failed attempts, report what went wrong with them, not "all tried".
    c->finish(last && choice.error().code() == Errc::kNoProvider ? RawResult(*last)
                                                                  : RawResult(choice.error()));
    return;
  }
  const api::Choice chosen = choice.value();
  {
    std::lock_guard lock(c->mu);
    c->tried.push_back(chosen.address);
    ++c->running;
  }
  auto on_done = [this, c, addr = chosen.address, t0 = now](RawResult r) {
    auto& im = *impl_;
    const Errc code = r.ok() ? Errc::kOk : r.error().code();
    im.router.on_finish(addr, c->service, code, steady_now() - t0, steady_now());
    bool retry = false;
    {
      std::lock_guard lock(c->mu);
      --c->running;
      if (c->finished) return;
      if (!r.ok()) {
        c->last_error = r.error();
        if (c->running > 0) return;  // a hedge is still out: let it answer
        retry = im.router.may_retry(c->service, c->opts, code, c->retries);
        if (retry) ++c->retries;
      }
    }
    if (retry) {
      ++im.retries;
      start_attempt(c);
      return;
    }
    c->finish(std::move(r));
  };
  if (chosen.self && impl.config.load_balance.local_in_process) {
    impl.run_local(c->service, c->args, c->deadline, std::move(on_done));
    return;
  }
  CallOptions attempt = c->opts;
  attempt.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(c->deadline - now) +
                    std::chrono::milliseconds(1);
  call_raw_async(chosen.address, c->service, c->args, attempt, std::move(on_done));
}

std::string Node::http_address() const {
  if (!impl_->http) return "";
  const auto colon = impl_->config.http.rfind(':');
  return impl_->config.http.substr(0, colon) + ":" + std::to_string(impl_->http_port);
}

std::string Node::stats_json() const {
  if (impl_->stopping.load()) return "{}";
  return impl_->snapshot().dump();
}

std::vector<MemberInfo> Node::members() const {
  std::vector<MemberInfo> out;
  if (impl_->stopping.load()) return out;
  impl_->on_loop([&] { out = impl_->membership->members(); });
  return out;
}

std::vector<ServiceRoute> Node::routes() const {
  std::vector<ServiceRoute> out;
  const auto table = impl_->routes.load();
  for (const auto& [name, e] : table->services()) {
    ServiceRoute r;
    r.service = name;
    for (const auto& p : e.providers) {
      MemberInfo m;
      m.address = p.address;
      m.state = p.state;
      m.meta.name = p.name;
      m.meta.version = p.version;
      m.meta.weight = p.weight;
      m.self = p.self;
      r.providers.push_back(std::move(m));
    }
    out.push_back(std::move(r));
  }
  return out;
}

void Node::call_raw_async(const Endpoint& to, const std::string& service, Bytes args,
                          const CallOptions& opts, std::function<void(RawResult)> done) {
  auto& impl = *impl_;
  if (impl.stopping.load()) {
    done(Error(Errc::kShutdown, "node is stopping"));
    return;
  }
  Bytes payload;
  wire::encode_request(service, args, payload);
  const Duration timeout = opts.timeout ? Duration(*opts.timeout) : seconds_f(impl.config.rpc_timeout);
  const TimePoint now = steady_now();
  const TimePoint deadline = now + timeout;
  auto complete = [done = std::move(done), m = &impl.metrics.service(service), now](reliable::CallResult&& r) {
    m->made.fetch_add(1, std::memory_order_relaxed);
    if (r.code != Errc::kOk) m->made_errors.add(r.code);
    m->made_latency.record(std::chrono::duration<double, std::micro>(steady_now() - now).count());
    if (r.code == Errc::kOk) {
      done(RawResult(std::move(r.body)));
    } else {
      done(RawResult(Error(r.code, std::move(r.message))));
    }
  };
  if (impl.loop.in_loop_thread()) {
    impl.engine.call(to, std::move(payload), deadline, std::move(complete));
    return;
  }
  // Fast path: this thread puts a single-datagram request on the wire
  // itself; the loop only adopts the call. The registration is posted
  // before the send, and the loop runs posted tasks before it reads
  // datagrams, so the response always finds the call.
  Bytes datagram;
  if (impl.transport.thread_safe_send()) {
    const std::uint64_t id = impl.engine.allocate_id();
    if (impl.engine.encode_request_datagram(id, payload, deadline, now, datagram)) {
      auto shared_done = std::make_shared<decltype(complete)>(std::move(complete));
      auto adopt = [&impl, id, to, payload = std::move(payload), deadline, now, shared_done]() mutable {
        impl.engine.adopt_call(id, to, std::move(payload), deadline, now, std::move(*shared_done));
      };
      // The adoption need not wake the loop: the response will, and so will
      // the engine's 25 ms housekeeping timer if the request is lost. Short
      // deadlines wake it at once so that they are enforced on time.
      const bool posted = timeout > milliseconds(200) ? impl.loop.try_post_lazy(std::move(adopt))
                                                       : impl.loop.try_post(std::move(adopt));
      if (!posted) {
        (*shared_done)(reliable::CallResult{Errc::kShutdown, {}, "node is stopping"});
        return;
      }
      impl.transport.send(to, datagram);
      return;
    }
  }
  auto shared_done = std::make_shared<decltype(complete)>(std::move(complete));
  const bool posted = impl.loop.try_post([&impl, to, payload = std::move(payload), deadline, shared_done]() mutable {
    impl.engine.call(to, std::move(payload), deadline, std::move(*shared_done));
  });
  if (!posted) (*shared_done)(reliable::CallResult{Errc::kShutdown, {}, "node is stopping"});
}

RawResult Node::call_raw(const Endpoint& to, const std::string& service, Bytes args,
                         const CallOptions& opts) {
  BROACH_REQUIRE(!impl_->loop.in_loop_thread(),
                 "a blocking call from the loop thread would deadlock; use call_raw_async");
  std::promise<RawResult> promise;
  auto fut = promise.get_future();
  call_raw_async(to, service, std::move(args), opts,
                 [&promise](RawResult r) { promise.set_value(std::move(r)); });
  return fut.get();
}

NodeStats Node::stats() const {
  auto& impl = *impl_;
  NodeStats s;
  s.requests_received = impl.requests_received;
  s.handlers_run = impl.handlers_run;
  s.handler_errors = impl.handler_errors;
  s.expired_in_queue = impl.expired_in_queue;
  s.rejected_overloaded = impl.rejected_overloaded;
  s.calls_by_name = impl.calls_by_name;
  s.retries = impl.retries;
  s.hedges = impl.hedges;
  s.local_calls = impl.local_calls;
  s.circuit_open_rejections = impl.circuit_open_rejections;
  if (impl.loop.in_loop_thread() || impl.stopping.load()) return s;
  // Engine counters belong to the loop thread: read them there.
  std::promise<void> done;
  impl.loop.post([&] {
    const auto& e = impl.engine.stats();
    s.calls_made = e.calls_started;
    s.calls_ok = e.calls_ok;
    s.calls_failed = e.calls_failed;
    s.retransmits = e.retransmits;
    s.duplicate_requests = e.duplicate_requests;
    std::uint64_t drops = e.drops_unexpected;
    for (auto d : e.drops) drops += d;
    s.datagrams_dropped = drops;
    done.set_value();
  });
  done.get_future().wait();
  return s;
}

void Node::stop() {
  if (!impl_) return;
  auto& impl = *impl_;
  std::call_once(impl.stop_once, [&impl] {
    // Announce a graceful leave first, so the cluster does not take the
    // silence that follows for a failure.
    impl.on_loop([&impl] { impl.membership->leave(); });
    impl.stopping.store(true);
    impl.stop_http();
    // Queued requests are answered with kShutdown (see Impl::run) while the
    // loop still runs, then pending calls end with kShutdown.
    impl.pool.shutdown();
    std::promise<void> drained;
    impl.loop.post([&] {
      impl.engine.fail_all(Errc::kShutdown, "node is stopping");
      drained.set_value();
    });
    drained.get_future().wait();
    impl.loop.stop();
    BROACH_LOG_INFO("node {} stopped", impl.transport.local().to_string());
  });
}

std::unique_ptr<Node> run(const std::string& config_path) {
  return std::make_unique<Node>(load_config_file(config_path));
}

}  // namespace broach
