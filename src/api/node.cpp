// Node: a real node, and the one place that names the concrete seams
// (EpollLoop, UdpTransport, ThreadPool, SteadyClock). Everything else of the
// node is NodeCore (node_core.hpp), which runs on simulated seams too.
#include "broach/node.hpp"

#include <sched.h>
#include <unistd.h>

#include <future>
#include <mutex>
#include <random>
#include <thread>

#include "api/http_endpoint.hpp"
#include "api/node_core.hpp"
#include "api/status.hpp"
#include "base/allocator.hpp"
#include "base/assert.hpp"
#include "base/burst.hpp"
#include "base/log.hpp"
#include "exec/thread_pool.hpp"
#include "transport/epoll_loop.hpp"
#include "transport/udp_transport.hpp"

namespace broach {
namespace {

std::uint64_t random_u64() {
  std::random_device rd;
  std::uint64_t x = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  x ^= static_cast<std::uint64_t>(steady_now().time_since_epoch().count()) * 0x9e3779b97f4a7c15ULL;
  x ^= static_cast<std::uint64_t>(::getpid()) << 17;
  return x == 0 ? 1 : x;
}

Endpoint bind_endpoint(const Config& c) {
  Endpoint e;
  if (!Endpoint::parse_host(c.rpc_ip, e)) {
    throw Error(Errc::kBadConfig, c.source + ": params.rpcIp: not an IPv4 or IPv6 address: " + c.rpc_ip);
  }
  e.port = static_cast<std::uint16_t>(c.rpc_port);
  return e;
}

std::vector<Endpoint> seed_endpoints(const Config& c) {
  std::vector<Endpoint> out;
  for (const auto& s : c.cluster_address) {
    Endpoint e;
    std::string why;
    if (!Endpoint::parse(s, e, &why, /*allow_port_zero=*/false)) {
      throw Error(Errc::kBadConfig, c.source + ": params.clusterAddress: " + why);
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

void pool_samples(const ThreadPool& pool, std::vector<api::Sample>& out) {
  const auto s = pool.stats();
  const std::pair<const char*, double> gauges[] = {{"threads", static_cast<double>(s.threads)},
                                                   {"idle", static_cast<double>(s.idle)},
                                                   {"queued", static_cast<double>(s.queued)}};
  const char* help[] = {"Worker threads alive.", "Worker threads idle.", "Requests waiting in the worker queue."};
  for (std::size_t i = 0; i < 3; ++i) {
    out.push_back(api::Sample{"pool", gauges[i].first, std::string("broach_pool_") + gauges[i].first, help[i],
                              gauges[i].second, true});
  }
  out.push_back(api::Sample{"pool", "completed", "broach_pool_completed_total", "Tasks the workers ran.",
                            static_cast<double>(s.completed)});
  out.push_back(api::Sample{"pool", "rejected", "broach_pool_rejected_total",
                            "Tasks refused: queue and threads full.", static_cast<double>(s.rejected)});
  out.push_back(api::Sample{"pool", "caller_ran", "broach_pool_caller_ran_total",
                            "Tasks run by the submitting thread (caller-runs).", static_cast<double>(s.caller_ran)});
}

void udp_samples(const UdpTransport& t, std::vector<api::Sample>& out) {
  const auto s = t.stats();
  out.push_back(api::Sample{"udp", "gso_active", "broach_udp_gso_active",
                            "1 while batches of equal-size datagrams leave as UDP GSO sends.",
                            t.gso_active() ? 1.0 : 0.0, true});
  out.push_back(api::Sample{"udp", "gro_active", "broach_udp_gro_active", "1 when the socket takes UDP GRO.",
                            t.gro_active() ? 1.0 : 0.0, true});
  out.push_back(api::Sample{"udp", "gso_sends", "broach_udp_gso_sends_total",
                            "UDP GSO sends (each carried 2 or more datagrams).", static_cast<double>(s.gso_sends)});
  out.push_back(api::Sample{"udp", "gso_datagrams", "broach_udp_gso_datagrams_total",
                            "Datagrams that left in UDP GSO sends.", static_cast<double>(s.gso_datagrams)});
  out.push_back(api::Sample{"udp", "gso_fallbacks", "broach_udp_gso_fallbacks_total",
                            "UDP GSO sends the kernel refused (then GSO is turned off).",
                            static_cast<double>(s.gso_fallbacks)});
  out.push_back(api::Sample{"udp", "gro_receives", "broach_udp_gro_receives_total",
                            "Received buffers that held 2 or more datagrams (UDP GRO).",
                            static_cast<double>(s.gro_receives)});
  out.push_back(api::Sample{"udp", "port_unreachable", "broach_udp_port_unreachable_total",
                            "ICMP port-unreachable errors read for datagrams sent (a peer's port was closed).",
                            static_cast<double>(s.port_unreachable)});
  out.push_back(api::Sample{"udp", "icmp_other", "broach_udp_icmp_other_total",
                            "Other ICMP errors read from the socket's error queue (ignored).",
                            static_cast<double>(s.icmp_other)});
}

}  // namespace

struct Node::Impl {
  explicit Impl(Config cfg)
      : transport(loop, bind_endpoint(cfg), UdpOptions{cfg.transport.socket_buffer_bytes, 32, cfg.transport.gso}),
        pool(cfg.thread_pool, "broach-worker"),
        core(cfg, api::NodeSeams{loop, transport, pool, clock, random_u64(), life_now(), random_u64()}) {
    const auto seeds = seed_endpoints(core.config());
    if (core.config().transport.tune_allocator) tune_allocator();
    loop.set_busy_poll(std::chrono::nanoseconds(
        static_cast<std::int64_t>(core.config().transport.busy_poll_micros * 1000.0)));
    core.status().add_source([this](std::vector<api::Sample>& out) { pool_samples(pool, out); });
    core.status().add_source([this](std::vector<api::Sample>& out) { udp_samples(transport, out); });
    loop.start_thread("broach-loop");
    on_loop([&] { core.start(seeds); });
    if (!core.config().http.empty()) {
      http = std::make_unique<api::HttpEndpoint>(core.config().http, core.config().source, loop, core.status(),
                                                 stopping_flag());
      try {
        http->start();
      } catch (...) {
        loop.stop();
        throw;
      }
    }
  }

  // Runs `f` on the loop thread and waits (the caller must not be the loop).
  template <class F>
  void on_loop(F&& f) {
    std::promise<void> done;
    loop.post([&] {
      f();
      done.set_value();
    });
    done.get_future().wait();
  }
  const std::atomic<bool>& stopping_flag() { return stopping; }

  // Runs on the thread that called stop() (never the loop).
  void stop() {
    // Announce a graceful leave first, so the cluster does not take the
    // silence that follows for a failure.
    std::size_t members = 0;
    on_loop([&] {
      members = core.membership().alive_count();
      core.leave();
    });
    if (members > 1) drain();
    stopping.store(true);
    core.set_stopping();
    if (http) http->stop();
    // Queued requests are answered with kShutdown while the loop still
    // runs (Server checks stopping), then pending calls end with kShutdown.
    pool.shutdown();
    on_loop([this] { core.fail_pending(Errc::kShutdown, "node is stopping"); });
    loop.stop();
    BROACH_LOG_INFO("node {} stopped", core.address().to_string());
  }

  // Keeps serving after the leave until callers have stopped sending: no
  // new request for a quiet period (three gossip intervals, at least 300 ms:
  // time for the leave to reach the members and for their route tables to
  // drop this node), or params.broach.drainMs at most. Requests that arrive
  // afterwards are refused with `overloaded` (not run: callers retry on
  // another provider); requests already running finish.
  void drain() {
    const auto& c = core.config();
    if (c.drain_ms <= 0) return;
    BROACH_ASSERT(!loop.in_loop_thread());
    const auto bound = std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::milli>(c.drain_ms));
    const auto quiet = std::max<Duration>(
        std::chrono::milliseconds(300),
        std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::milli>(3 * c.membership.gossip_interval_ms)));
    const TimePoint start = steady_now();
    TimePoint last_change = start;
    std::uint64_t seen = core.counters().requests_received.load(std::memory_order_relaxed);
    for (TimePoint now = start; now - start < bound && now - last_change < quiet; now = steady_now()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      const std::uint64_t v = core.counters().requests_received.load(std::memory_order_relaxed);
      if (v != seen) {
        seen = v;
        last_change = steady_now();
      }
    }
    BROACH_LOG_INFO("node {} drained in {} ms", core.address().to_string(),
                    std::chrono::duration_cast<std::chrono::milliseconds>(steady_now() - start).count());
  }

  EpollLoop loop;
  UdpTransport transport;
  ThreadPool pool;
  SteadyClock clock;
  std::atomic<bool> stopping{false};
  api::NodeCore core;
  std::unique_ptr<api::HttpEndpoint> http;
  std::once_flag stop_once;
};

Node::Node(Config config) {
  validate_config(config);
  log::set_level(config.log_level);
  impl_ = std::make_unique<Impl>(std::move(config));
  BROACH_LOG_INFO("node {} ({} {}) listening on {}", impl_->core.config().name, impl_->core.config().name,
                  impl_->core.config().version, impl_->core.address().to_string());
}

Node::~Node() { stop(); }

void Node::stop() {
  if (!impl_) return;
  BROACH_REQUIRE(!impl_->loop.in_loop_thread() && !impl_->pool.in_worker_thread(),
                 "stop() on the node's own loop or worker thread would wait for itself");
  std::call_once(impl_->stop_once, [this] { impl_->stop(); });
}

bool Node::in_loop_thread() const noexcept { return impl_ && impl_->loop.in_loop_thread(); }
bool Node::in_worker_thread() const noexcept { return impl_ && impl_->pool.in_worker_thread(); }

Endpoint Node::address() const { return impl_->core.address(); }
const Config& Node::config() const { return impl_->core.config(); }

void Node::provide_raw(std::string name, RawHandler handler, ServiceOptions options) {
  BROACH_REQUIRE(!name.empty(), "service name must not be empty");
  BROACH_REQUIRE(static_cast<bool>(handler), "handler must not be empty");
  impl_->core.provide(std::move(name), std::move(handler), options);
}

void Node::provide_raw_async(std::string name, RawAsyncHandler handler, ServiceOptions options) {
  BROACH_REQUIRE(!name.empty(), "service name must not be empty");
  BROACH_REQUIRE(static_cast<bool>(handler), "handler must not be empty");
  impl_->core.provide_async(std::move(name), std::move(handler), options);
}

bool Node::withdraw(const std::string& name) { return impl_->core.withdraw(name); }
void Node::add_interceptor(std::shared_ptr<ClientInterceptor> i) { impl_->core.add_interceptor(std::move(i)); }
void Node::add_interceptor(std::shared_ptr<ServerInterceptor> i) { impl_->core.add_interceptor(std::move(i)); }

void Node::call_raw_async(const std::string& service, Bytes args, const CallOptions& opts,
                          std::function<void(RawResult)> done) {
  impl_->core.call_by_name(service, std::move(args), opts, std::move(done));
}

void Node::call_raw_async(const Endpoint& to, const std::string& service, Bytes args,
                          const CallOptions& opts, std::function<void(RawResult)> done) {
  impl_->core.call_to(to, service, std::move(args), opts, std::move(done));
}

namespace {
template <class Start>
RawResult wait_for(EpollLoop& loop, Start&& start) {
  BROACH_REQUIRE(!loop.in_loop_thread(), "a blocking call from the loop thread would deadlock; use call_raw_async");
  // A handler on a pool worker that blocks on a call first sends the
  // responses its burst holds (base/burst.hpp): their callers must not wait
  // as long as this call takes.
  burst::flush();
  std::promise<RawResult> promise;
  auto fut = promise.get_future();
  start([&promise](RawResult r) { promise.set_value(std::move(r)); });
  const Duration spin = loop.busy_poll();
  if (spin > Duration::zero()) {
    // Low-latency mode: spin (yielding, so that a loop thread sharing this
    // CPU still runs) before sleeping on the future.
    const auto until = std::chrono::steady_clock::now() + spin;
    while (fut.wait_for(std::chrono::seconds(0)) != std::future_status::ready &&
           std::chrono::steady_clock::now() < until) {
      sched_yield();
    }
  }
  return fut.get();
}
}  // namespace

RawResult Node::call_raw(const std::string& service, Bytes args, const CallOptions& opts) {
  return wait_for(impl_->loop, [&](std::function<void(RawResult)> done) {
    call_raw_async(service, std::move(args), opts, std::move(done));
  });
}

RawResult Node::call_raw(const Endpoint& to, const std::string& service, Bytes args, const CallOptions& opts) {
  return wait_for(impl_->loop, [&](std::function<void(RawResult)> done) {
    call_raw_async(to, service, std::move(args), opts, std::move(done));
  });
}

std::string Node::http_address() const { return impl_->http ? impl_->http->address() : ""; }

std::string Node::stats_json() const {
  if (impl_->stopping.load()) return "{}";
  if (impl_->loop.in_loop_thread()) return impl_->core.status().snapshot().dump();
  std::string out;
  impl_->on_loop([&] { out = impl_->core.status().snapshot().dump(); });
  return out;
}

std::vector<MemberInfo> Node::members() const {
  std::vector<MemberInfo> out;
  if (impl_->stopping.load()) return out;
  if (impl_->loop.in_loop_thread()) return impl_->core.members();
  impl_->on_loop([&] { out = impl_->core.members(); });
  return out;
}

std::vector<ServiceRoute> Node::routes() const {
  std::vector<ServiceRoute> out;
  const auto table = impl_->core.routes();
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

NodeStats Node::stats() const {
  std::vector<api::Sample> samples;
  if (impl_->stopping.load()) return {};
  if (impl_->loop.in_loop_thread()) {
    samples = impl_->core.status().samples();
  } else {
    impl_->on_loop([&] { samples = impl_->core.status().samples(); });
  }
  NodeStats s;
  auto get = [&](const char* group, const char* key) {
    std::uint64_t v = 0;
    for (const auto& x : samples) {
      if (x.key == key && std::string_view(x.group) == group) v += static_cast<std::uint64_t>(x.value);
    }
    return v;
  };
  s.calls_made = get("transport", "calls_started");
  s.calls_ok = get("transport", "calls_ok");
  s.calls_failed = get("transport", "calls_failed");
  s.retransmits = get("transport", "retransmits");
  s.duplicate_requests = get("transport", "duplicate_requests");
  s.datagrams_dropped = get("transport", "dropped");
  s.calls_by_name = get("calls", "by_name");
  s.retries = get("calls", "retries");
  s.hedges = get("calls", "hedges");
  s.local_calls = get("calls", "local");
  s.circuit_open_rejections = get("calls", "circuit_open_rejections");
  s.requests_received = get("calls", "requests_received");
  s.handlers_run = get("calls", "handlers_run");
  s.handler_errors = get("calls", "handler_errors");
  s.expired_in_queue = get("calls", "expired_in_queue");
  s.rejected_overloaded = get("calls", "rejected_overloaded");
  s.rejected_concurrency_limit = get("calls", "rejected_concurrency_limit");
  return s;
}

std::unique_ptr<Node> run(const std::string& config_path) {
  return std::make_unique<Node>(load_config_file(config_path));
}

}  // namespace broach
