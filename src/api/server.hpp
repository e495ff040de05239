// Internal header (api layer). Serving: how a request that reached this node
// becomes a handler run and a response.
//
// The engine hands every new request to Server::on_request on the loop
// thread. Internal services (__broach.*) are answered there; a user service
// runs on the executor (the worker pool, the seed's semantics) or, for
// run_on_loop services, on the loop thread. Before a handler runs, a request
// whose caller has given up (deadline passed while queued) or that arrives
// while the node stops is answered without running it; exceptions become
// typed errors. Requests for the pool are handed over once per loop
// iteration, in one batch (Executor::try_submit_batch). The response goes
// back through Engine::respond_from_any_thread (a worker holds responses
// back while it has more queued work and then sends them together: see
// base/burst.hpp).
// A service with a concurrency limit (params.broach.maxConcurrency) is
// admitted first: beyond its limit a request is answered `overloaded` at
// once; an admitted one counts as in flight until its response is made
// (or it is dropped unrun).
// Thread contract: on_request and admit run on the loop thread (asserted);
// invoke() and finish() are safe from any thread.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <unordered_map>
#include <string>
#include <vector>

#include "api/counters.hpp"
#include "api/interceptors.hpp"
#include "api/metrics.hpp"
#include "api/service_registry.hpp"
#include "api/tracing.hpp"
#include "base/clock.hpp"
#include "base/executor.hpp"
#include "breaker/concurrency_limiter.hpp"
#include "reliable/engine.hpp"

namespace broach::api {

/// Answers the internal services (members, routes, stats, push-pull).
class InternalHandler {
 public:
  virtual ~InternalHandler() = default;
  /// Loop thread: true when `req` was an internal service and is answered.
  virtual bool handle(reliable::IncomingRequest& req) = 0;
};

class Server final : public reliable::RequestHandler {
 public:
  struct Deps {
    Loop& loop;
    const Clock& clock;
    Executor& executor;
    ServiceRegistry& services;
    NodeCounters& counters;
    Metrics& metrics;
    const std::atomic<bool>& stopping;
    const InterceptorChain& interceptors;
    /// params.broach.maxConcurrency (service or "*" -> limit).
    const std::map<std::string, ConcurrencyLimitConfig>& max_concurrency;
    /// A request that carries a trace arrived (any thread): the node makes
    /// sure its tracer is installed. Empty: ignored.
    std::function<void()> on_traced_request;
  };
  /// A request let in under its service's concurrency limit. It leaves the
  /// limit once: at release() (called before the response is sent, so a
  /// caller that sends again at once finds room), or, when that never
  /// happens (a completion dropped uncalled, a task destroyed unrun, an
  /// exception), when the last copy of its Admission goes away. A second
  /// release() does nothing (a completion called twice).
  class AdmissionHold {
   public:
    AdmissionHold(breaker::ConcurrencyLimiter& limiter, const Clock& clock)
        : limiter_(limiter), clock_(clock), at_(clock.now()) {}
    ~AdmissionHold() { release(); }
    AdmissionHold(const AdmissionHold&) = delete;
    AdmissionHold& operator=(const AdmissionHold&) = delete;
    void release() {
      if (!released_.exchange(true, std::memory_order_acq_rel)) limiter_.finish(at_, clock_.now());
    }

   private:
    breaker::ConcurrencyLimiter& limiter_;
    const Clock& clock_;
    const TimePoint at_;
    std::atomic<bool> released_{false};
  };
  /// Null when the service has no limit.
  using Admission = std::shared_ptr<AdmissionHold>;
  /// `engine` is where responses go; it may still be under construction
  /// (it is not used before the first request).
  /// Installs the loop's idle hook that hands requests to the executor
  /// (constructed before the loop runs, or on the loop thread).
  Server(const Deps& deps, reliable::Engine& engine, InternalHandler& internal);
  ~Server() override;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void on_request(reliable::IncomingRequest&& req) override;

  /// Loop thread: lets one request for user service `service` in under its
  /// concurrency limit, or refuses it (nullopt; counted, and the caller
  /// answers `overloaded` with limit_message()).
  std::optional<Admission> admit(const std::string& service);
  /// Any thread: an admitted request is answered (or dropped).
  static void finish(const Admission& a) {
    if (a) a->release();
  }
  /// The message of a refusal by admit().
  std::string limit_message(const std::string& service) const;
  /// Loop thread: service -> its limiter, for stats (only services that have one).
  const std::unordered_map<std::string, std::unique_ptr<breaker::ConcurrencyLimiter>>& limiters() const {
    return limiters_;
  }

  /// Any thread: runs `handler` with the provider-side rules (stopping,
  /// expired deadline, server interceptors, exceptions to typed errors) and
  /// records the per-service served counters and handler time. `caller`:
  /// the request's source (nullopt: this node, an in-process call);
  /// `metadata`: as it came (packed, checked).
  RawResult invoke(const std::string& service, const RawHandler& handler, std::span<const std::byte> args,
                   TimePoint deadline, std::optional<Endpoint> caller = std::nullopt,
                   std::span<const std::byte> metadata = {}, TimePoint received = {});
  /// Loop thread: starts an async (coroutine) handler with the same rules;
  /// `done` runs once, on the thread where the handler finishes (at once,
  /// here, when it is refused or its arguments do not unpack).
  void invoke_async(const std::string& service, const RawAsyncHandler& handler, std::span<const std::byte> args,
                    TimePoint deadline, std::function<void(RawResult)> done,
                    std::optional<Endpoint> caller = std::nullopt, std::span<const std::byte> metadata = {},
                    TimePoint received = {});

 private:
  /// What interceptors and nested calls see of a request (only built when
  /// an interceptor is installed).
  /// `received` {}: now. A request that carries a trace installs the
  /// node's tracer if it was not (a traced call is traced on every node).
  ServerCall server_call(const std::string& service, TimePoint deadline, const std::optional<Endpoint>& caller,
                         std::span<const std::byte> metadata, TimePoint received) const;
  RawResult invoke_unmeasured(const std::string& service, const RawHandler& handler, std::span<const std::byte> args,
                              TimePoint deadline, const std::optional<Endpoint>& caller,
                              std::span<const std::byte> metadata, TimePoint received);
  static RawResult call_handler(NodeCounters& counters, const RawHandler& handler, std::span<const std::byte> args);
  void run(const RawHandler& handler, reliable::IncomingRequest& req, const Admission& a);
  void refuse(const reliable::RequestToken& token, Errc code, std::string message);
  /// Loop thread, end of each iteration: the requests of this iteration to
  /// the executor in one batch.
  void hand_off();
  void arm_nudge();

  static constexpr Duration kNudgeEvery = std::chrono::milliseconds(2);

  Deps d_;
  reliable::Engine& engine_;
  InternalHandler& internal_;
  std::uint64_t hook_ = 0;
  std::vector<Task> handoff_;                          // loop thread
  std::vector<reliable::RequestToken> handoff_tokens_; // loop thread, same order
  /// Loop thread: limiters made on first use; null: the service has none.
  std::unordered_map<std::string, std::unique_ptr<breaker::ConcurrencyLimiter>> limiters_;
  bool any_limit_ = false;
  std::vector<Errc> results_;                          // loop thread
  std::atomic<std::int64_t> outstanding_{0};           ///< handed to the executor, not finished
  TimerId nudge_timer_ = kNoTimer;                    // loop thread; 0: not armed
};

/// The reply a RawResult makes.
inline reliable::CallResult to_call_result(RawResult&& r) {
  if (r.ok()) return reliable::CallResult{Errc::kOk, std::move(r.value()), {}};
  return reliable::CallResult{r.error().code(), {}, r.error().message()};
}

}  // namespace broach::api
