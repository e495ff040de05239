// Node: the only place where the layers are wired together (loop, UDP
// transport, reliable engine, worker pool, service registry).
#include "broach/node.hpp"

#include <unistd.h>

#include <atomic>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <unordered_map>

#include "base/assert.hpp"
#include "base/log.hpp"
#include "exec/thread_pool.hpp"
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

}  // namespace

struct Node::Impl final : reliable::RequestHandler {
  explicit Impl(Config cfg)
      : config(std::move(cfg)),
        transport(loop, bind_endpoint(config),
                  UdpOptions{config.transport.socket_buffer_bytes, 32}),
        engine(loop, transport, engine_options(config, transport.local()), this),
        pool(config.thread_pool, "broach-worker") {
    loop.start_thread("broach-loop");
  }

  // Runs on the loop thread for every new (non-duplicate) request.
  void on_request(reliable::IncomingRequest&& req) override {
    ++requests_received;
    RawHandler handler;
    {
      std::shared_lock lock(services_mu);
      auto it = services.find(req.service);
      if (it != services.end()) handler = it->second;
    }
    if (!handler) {
      respond_error(req.token, Errc::kNotFound, req.service);
      return;
    }
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
  void run(const RawHandler& handler, reliable::IncomingRequest& req) {
    Bytes body;
    if (stopping.load(std::memory_order_relaxed)) {
      wire::encode_response_error(Errc::kShutdown, "provider is stopping", body);
    } else if (loop.now() >= req.deadline) {
      // The caller has given up: running the work now would only waste it.
      ++expired_in_queue;
      wire::encode_response_error(Errc::kDeadlineExpired,
                                  "caller's deadline passed while the request was queued", body);
    } else {
      ++handlers_run;
      try {
        const Bytes result = handler(req.args);
        wire::encode_response_ok(result, body);
      } catch (const Error& e) {
        ++handler_errors;
        body.clear();
        wire::encode_response_error(e.code() == Errc::kBadArguments ? Errc::kBadArguments
                                                                    : Errc::kRemoteError,
                                    e.message(), body);
      } catch (const std::exception& e) {
        ++handler_errors;
        body.clear();
        wire::encode_response_error(Errc::kRemoteError, e.what(), body);
      } catch (...) {
        ++handler_errors;
        body.clear();
        wire::encode_response_error(Errc::kRemoteError, "unknown exception", body);
      }
    }
    if (loop.in_loop_thread()) {
      engine.respond(req.token, std::move(body));
    } else {
      loop.post([this, token = req.token, body = std::move(body)]() mutable {
        engine.respond(token, std::move(body));
      });
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
  std::atomic<bool> stopping{false};
  std::once_flag stop_once;

  mutable std::shared_mutex services_mu;
  std::unordered_map<std::string, RawHandler> services;  // guarded by services_mu

  std::atomic<std::uint64_t> requests_received{0}, handlers_run{0}, handler_errors{0},
      expired_in_queue{0}, rejected_overloaded{0};
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

void Node::provide_raw(std::string name, RawHandler handler) {
  BROACH_REQUIRE(!name.empty(), "service name must not be empty");
  BROACH_REQUIRE(static_cast<bool>(handler), "handler must not be empty");
  std::unique_lock lock(impl_->services_mu);
  impl_->services[std::move(name)] = std::move(handler);
}

bool Node::withdraw(const std::string& name) {
  std::unique_lock lock(impl_->services_mu);
  return impl_->services.erase(name) > 0;
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
  const TimePoint deadline = steady_now() + timeout;
  auto task = [&impl, to, payload = std::move(payload), deadline, done = std::move(done)]() mutable {
    impl.engine.call(to, std::move(payload), deadline,
                     [done = std::move(done)](reliable::CallResult&& r) {
                       if (r.code == Errc::kOk) {
                         done(RawResult(std::move(r.body)));
                       } else {
                         done(RawResult(Error(r.code, std::move(r.message))));
                       }
                     });
  };
  if (impl.loop.in_loop_thread()) {
    task();
  } else {
    impl.loop.post(std::move(task));
  }
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
    impl.stopping.store(true);
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
