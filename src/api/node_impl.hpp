// Internal header (api layer). The inside of a Node: the loop, transport,
// engine, worker pool, router, membership, route table, metrics and the HTTP
// endpoint, and how requests reach services. Shared by node.cpp (wiring,
// calls, services) and node_status.cpp (stats, /metrics, status page).
// Thread contract: as documented per member; the struct is not public.
#pragma once

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <future>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

#include "api/call_router.hpp"
#include "api/metrics.hpp"
#include "broach/node.hpp"
#include "exec/thread_pool.hpp"
#include "membership/membership.hpp"
#include "reliable/engine.hpp"
#include "routing/route_table.hpp"
#include "transport/epoll_loop.hpp"
#include "transport/udp_transport.hpp"
#include "wire/payload.hpp"

namespace broach {

inline constexpr const char* kMembersService = "__broach.members";
inline constexpr const char* kRoutesService = "__broach.routes";
inline constexpr const char* kStatsService = "__broach.stats";

struct Node::Impl final : reliable::RequestHandler, membership::Listener {
  explicit Impl(Config cfg);

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

  // node_status.cpp: what stats, /metrics and the status page show.
  static nlohmann::json latency_json(const api::LatencyHistogram& h);
  static nlohmann::json codes_json(const api::CodeCounters& c);
  nlohmann::json snapshot();
  std::string prometheus_text();
  nlohmann::json members_json();
  nlohmann::json routes_json();
  void start_http();
  void stop_http();

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

}  // namespace broach
