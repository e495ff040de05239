// Public header. A BroachRpc node: one UDP endpoint, its event-loop thread,
// its worker pool, the services it provides and the calls it makes.
//
// Thread contract: every method is safe from any thread (the blocking call
// forms throw kInvalidArgument on the loop thread, where they would
// deadlock). Callbacks of async calls always run on the node's loop thread,
// exactly once, and never before the call that started them returns; they
// must not block (block in your own thread on the future form instead). The
// one exception: after stop(), when no loop thread is left, a new call ends
// at once with kShutdown on the calling thread. Destroying a node stops it:
// pending calls end with kShutdown, queued requests are answered with
// kShutdown.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>

#include "broach/async.hpp"
#include "broach/call_future.hpp"
#include "broach/codec.hpp"
#include "broach/config.hpp"
#include "broach/endpoint.hpp"
#include "broach/error.hpp"
#include "broach/interceptor.hpp"
#include "broach/member.hpp"

namespace broach {

/// Whether a failed call may be tried again on another provider.
enum class RetryMode : std::uint8_t {
  kDefault,     ///< when it provably did not run; after timeouts too if the
                ///< service is listed in params.broach.retry.idempotent
  kNever,       ///< one attempt only
  kIdempotent,  ///< this call is safe to run twice: retry after timeouts too
};

/// Options of one call; the defaults come from the node's config.
struct CallOptions {
  /// End-to-end limit, retries included; default params.rpcTimeOut.
  std::optional<std::chrono::milliseconds> timeout;
  /// Key for the consistent_hash policy (same key, same provider).
  std::string routing_key;
  /// Required provider version: exact ("1.2.0"), or a prefix ending in '*'
  /// ("1.*"). Empty: any version.
  std::string version;
  RetryMode retry = RetryMode::kDefault;
  /// Record this call's trace (spans on every node it reaches, and its
  /// nested calls') whatever params.broach.trace.sampleRate says.
  bool trace = false;
};

/// How a provided service runs.
struct ServiceOptions {
  /// Run the handler on the node's loop thread instead of the worker pool
  /// (params.threadPool). Saves two thread hand-offs per call, for short
  /// handlers that never block; a slow handler would delay every message of
  /// this node, so the default is the pool, as in the seed.
  bool run_on_loop = false;
};


/// A handler that answers later: gets the packed argument array and a
/// function to call once, from any thread, with the packed result or an
/// error. It may throw Error(kBadArguments) before it starts.
using RawAsyncHandler = std::function<void(std::span<const std::byte> args, std::function<void(RawResult)> done)>;

namespace detail {
/// A coroutine handler (returning Async<T>) as a RawAsyncHandler.
template <class F>
RawAsyncHandler make_raw_async_handler(F fn) {
  using Traits = fn_traits<F>;
  using Args = typename Traits::args;
  using T = typename is_async<typename Traits::result>::value_type;
  static_assert(Traits::by_value,
                "a coroutine handler takes its parameters by value: the request's arguments are gone once it "
                "first suspends");
  // A lambda coroutine refers to its closure (its captures) through `this`,
  // not by copy: the closure must outlive every coroutine it started, even
  // if the service is withdrawn meanwhile. Each run holds a reference.
  auto shared_fn = std::make_shared<F>(std::move(fn));
  return [shared_fn](std::span<const std::byte> packed, std::function<void(RawResult)> done) {
    Args args = unpack_args<Args>(packed);
    Async<T> coro = std::apply(*shared_fn, std::move(args));
    std::move(coro).start([done = std::move(done), keep = shared_fn](Result<T> r) {
      // Runs from the coroutine's final suspension, where nothing may throw.
      RawResult out = Error(Errc::kRemoteError, "result could not be packed");
      try {
        if (!r.ok()) {
          out = r.error();
        } else if constexpr (std::is_void_v<T>) {
          out = pack_value(msgpack::type::nil_t{});
        } else {
          out = pack_value(r.value());
        }
      } catch (...) {
      }
      done(std::move(out));
    });
  };
}
}  // namespace detail

/// One service and the members that currently provide it.
struct ServiceRoute {
  std::string service;
  std::vector<MemberInfo> providers;
};

struct NodeStats {
  std::uint64_t calls_made = 0, calls_ok = 0, calls_failed = 0;
  std::uint64_t calls_by_name = 0, retries = 0, hedges = 0, local_calls = 0;
  std::uint64_t circuit_open_rejections = 0;  ///< calls failed at once: every provider fused
  std::uint64_t requests_received = 0, handlers_run = 0, handler_errors = 0;
  std::uint64_t expired_in_queue = 0;   ///< dropped unrun: caller's deadline passed while queued
  std::uint64_t rejected_overloaded = 0;
  std::uint64_t rejected_concurrency_limit = 0;  ///< refused: the service was at its maxConcurrency
  std::uint64_t retransmits = 0, duplicate_requests = 0, datagrams_dropped = 0;
};

class Node {
 public:
  /// Binds params.rpcIp:rpcPort, starts the loop thread and the worker pool.
  /// Throws Error (kBadConfig, kIoError with the address) on failure.
  explicit Node(Config config);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  /// The address peers reach this node at (resolved when rpcPort was 0).
  Endpoint address() const;
  const Config& config() const;

  /// Registers `fn` under `name`; its argument and result types define the
  /// wire types. Replaces an earlier registration of the same name.
  template <class F>
  void provide(std::string name, F fn, ServiceOptions options = {}) {
    if constexpr (detail::is_async<typename detail::fn_traits<F>::result>::value) {
      // A coroutine handler (broach/async.hpp): started on the loop thread,
      // holds no thread while it awaits; options.run_on_loop is implied.
      provide_raw_async(std::move(name), detail::make_raw_async_handler(std::move(fn)), options);
    } else {
      provide_raw(std::move(name), detail::make_raw_handler(std::move(fn)), options);
    }
  }
  void provide_raw(std::string name, RawHandler handler, ServiceOptions options = {});
  /// A handler that answers later (a coroutine handler's raw form): runs on
  /// the loop thread and must not block there; calls `done` once.
  void provide_raw_async(std::string name, RawAsyncHandler handler, ServiceOptions options = {});
  /// Removes a service; false when it was not registered.
  bool withdraw(const std::string& name);

  /// Installs an interceptor (broach/interceptor.hpp) for every call this
  /// node makes, or every request it serves, from now on; they run in the
  /// order they were added, after the built-in ones the config switches on
  /// (params.broach.interceptors). There is no removal: install them at
  /// start-up.
  void add_interceptor(std::shared_ptr<ClientInterceptor> interceptor);
  void add_interceptor(std::shared_ptr<ServerInterceptor> interceptor);

  /// Calls `service` at `to`, blocking until the result or an Error.
  template <class R, class... A>
  R call(const Endpoint& to, const std::string& service, const A&... args) {
    return call_with<R>(to, service, CallOptions{}, args...);
  }
  template <class R, class... A>
  R call_with(const Endpoint& to, const std::string& service, const CallOptions& opts,
              const A&... args) {
    Bytes body = call_raw(to, service, detail::pack_args(args...), opts).value();
    return detail::unpack_value<R>(body);
  }
  /// Asynchronous typed call: the future never throws; it holds a Result.
  /// A coroutine may co_await it instead (see broach/call_future.hpp).
  template <class R, class... A>
  CallFuture<R> call_async(const Endpoint& to, const std::string& service, const A&... args) {
    auto [done, fut] = make_future<R>();
    call_raw_async(to, service, detail::pack_args(args...), CallOptions{}, std::move(done));
    return std::move(fut);
  }
  /// Asynchronous typed call with a callback (runs on the loop thread).
  template <class R, class... A>
  void call_then(const Endpoint& to, const std::string& service,
                 std::function<void(Result<R>)> done, const A&... args) {
    call_raw_async(to, service, detail::pack_args(args...), CallOptions{},
                   [done = std::move(done)](RawResult r) { done(convert<R>(std::move(r))); });
  }

  /// Calls `service` by name: a provider is picked from the route table the
  /// cluster's gossip keeps current (round robin). Fails at once with
  /// kNotFound when no live member offers it.
  template <class R, class... A>
  R call(const std::string& service, const A&... args) {
    return call_with<R>(service, CallOptions{}, args...);
  }
  template <class R, class... A>
  R call_with(const std::string& service, const CallOptions& opts, const A&... args) {
    Bytes body = call_raw(service, detail::pack_args(args...), opts).value();
    return detail::unpack_value<R>(body);
  }
  template <class R, class... A>
  CallFuture<R> call_async(const std::string& service, const A&... args) {
    return call_async_with<R>(service, CallOptions{}, args...);
  }
  template <class R, class... A>
  CallFuture<R> call_async_with(const std::string& service, const CallOptions& opts, const A&... args) {
    auto [done, fut] = make_future<R>();
    call_raw_async(service, detail::pack_args(args...), opts, std::move(done));
    return std::move(fut);
  }

  /// A typed caller declared once, then called like a local function:
  ///   auto add = node.stub<int(int, int)>("add");  int r = add(1, 2);
  template <class Sig>
  class Stub;
  template <class Sig>
  Stub<Sig> stub(std::string service, CallOptions opts = {}) {
    return Stub<Sig>(*this, std::move(service), std::move(opts));
  }
  RawResult call_raw(const std::string& service, Bytes args, const CallOptions& opts = {});
  void call_raw_async(const std::string& service, Bytes args, const CallOptions& opts,
                      std::function<void(RawResult)> done);

  /// This node's view of the cluster (itself included), sorted by address.
  std::vector<MemberInfo> members() const;
  /// The current route table: every advertised service and its providers.
  std::vector<ServiceRoute> routes() const;

  /// Untyped forms: `args` is one packed msgpack array.
  RawResult call_raw(const Endpoint& to, const std::string& service, Bytes args,
                     const CallOptions& opts = {});
  void call_raw_async(const Endpoint& to, const std::string& service, Bytes args,
                      const CallOptions& opts, std::function<void(RawResult)> done);

  NodeStats stats() const;
  /// Everything `broach stats` shows, as one JSON object: per-service calls
  /// served and made, errors by kind, latency percentiles (us), transport,
  /// pool, membership and circuit-breaker state.
  std::string stats_json() const;
  /// "ip:port" of the HTTP status/metrics endpoint ("" when off).
  std::string http_address() const;
  /// Stops the node (idempotent); the destructor calls it. Must not run on
  /// the node's own threads (in_loop_thread / in_worker_thread: it waits for
  /// them); a handler that wants its node stopped hands that to another
  /// thread.
  void stop();
  /// True on this node's loop thread: where callbacks run, and where a
  /// blocking call would deadlock.
  bool in_loop_thread() const noexcept;
  /// True on one of this node's worker threads (a handler running there).
  bool in_worker_thread() const noexcept;

 private:
  /// A completion and the CallFuture it fulfils (and resumes, if awaited).
  template <class R>
  static std::pair<std::function<void(RawResult)>, CallFuture<R>> make_future() {
    auto promise = std::make_shared<std::promise<Result<R>>>();
    auto waiter = std::make_shared<detail::CallWaiter>();
    CallFuture<R> fut(promise->get_future(), waiter);
    std::function<void(RawResult)> done = [promise, waiter](RawResult r) {
      promise->set_value(convert<R>(std::move(r)));
      waiter->complete();
    };
    return {std::move(done), std::move(fut)};
  }

  template <class R>
  static Result<R> convert(RawResult r) {
    if (!r.ok()) return r.error();
    try {
      if constexpr (std::is_void_v<R>) {
        return Result<R>();
      } else {
        return detail::unpack_value<R>(r.value());
      }
    } catch (const Error& e) {
      return e;
    }
  }

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

template <class R, class... A>
class Node::Stub<R(A...)> {
 public:
  Stub(Node& node, std::string service, CallOptions opts)
      : node_(&node), service_(std::move(service)), opts_(std::move(opts)) {}
  /// Blocking call; throws Error.
  R operator()(const A&... args) const { return node_->call_with<R>(service_, opts_, args...); }
  /// Future form; never throws, holds a Result.
  CallFuture<R> async(const A&... args) const {
    return node_->call_async_with<R>(service_, opts_, args...);
  }
  const std::string& service() const { return service_; }

 private:
  Node* node_;  // outlives the stub
  std::string service_;
  CallOptions opts_;
};

/// Registers a free function under its own name, as the seed's
/// @rpcRoute() decorator does: BROACH_PROVIDE(node, work01).
#define BROACH_PROVIDE(node, fn) (node).provide(#fn, fn)

/// Starts a node from a config file, as the seed's BroachFramework.run(path):
/// returns at once with the node running in the background.
std::unique_ptr<Node> run(const std::string& config_path);

}  // namespace broach
