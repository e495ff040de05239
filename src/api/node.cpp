// Node: the only place where the layers are wired together (loop, UDP
// transport, reliable engine, worker pool, service registry).
#include "broach/node.hpp"
#include "api/node_impl.hpp"

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


}  // namespace

Node::Impl::Impl(Config cfg)
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
