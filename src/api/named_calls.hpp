// Internal header (api layer). Calls by name: the state machine that turns
// one call of a service into attempts at providers.
//
// For each call: pick a provider from the current route table through the
// CallRouter (policy, breakers, version, not_found exclusion), attempt it
// (remote: DirectCalls; this node, when loadBalance.localInProcess:
// LocalCalls), and on failure retry on an untried provider while the
// router's retry rules and budget allow it and the deadline leaves time. An
// idempotent call still unanswered after hedgeDelayMs gets one backup
// attempt on another provider; the first answer wins, and the other is
// ignored when it ends.
// Thread contract: a call's state (NamedCall) belongs to the loop thread and
// needs no lock. start() is safe from any thread: from another thread it
// makes the first pick and, for a remote provider, sends the first attempt
// from that thread (the fast path) before the state is handed to the loop;
// everything after that runs on the loop thread. `done` follows the rule of
// calls.hpp (loop thread, never before start() returns).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/call_router.hpp"
#include "api/calls.hpp"
#include "api/interceptors.hpp"
#include "api/tracing.hpp"
#include "routing/route_table.hpp"

namespace broach::api {

class NamedCalls {
 public:
  using RouteSource = std::function<std::shared_ptr<const routing::RouteTable>()>;
  struct Deps {
    Loop& loop;
    const Clock& clock;
    const Config& config;
    CallRouter& router;
    RouteSource routes;  ///< any thread
    DirectCalls& direct;
    LocalCalls& local;
    NodeCounters& counters;
    const std::atomic<bool>& stopping;
    const InterceptorChain& interceptors;
    Tracer& tracer;  ///< told how each traced attempt was picked and sent
  };
  explicit NamedCalls(Deps deps) : d_(std::move(deps)) {}

  /// Any thread: calls `service` on some provider.
  void start(const std::string& service, Bytes args, const CallOptions& opts, Done done);

 private:
  struct NamedCall {
    std::string service;
    Bytes args;
    CallOptions opts;
    TimePoint deadline{};
    Done done;
    std::vector<Endpoint> tried;
    int retries = 0;
    int running = 0;  ///< attempts in flight
    bool finished = false;
    std::optional<Error> last_error;
    /// Set when client interceptors were installed as the call started
    /// (shared with the wrapped `done`, which runs after_call).
    std::shared_ptr<InterceptedCall> intercepted;
  };
  using CallPtr = std::shared_ptr<NamedCall>;

  /// Picks and launches one attempt; `hedge`: a backup next to a running
  /// one. Loop thread, or the caller's thread for the first attempt.
  void attempt(const CallPtr& c, bool hedge);
  /// Loop thread: an attempt at `provider` (started at t0) ended with `r`.
  void attempt_ended(const CallPtr& c, const Endpoint& provider, TimePoint t0, RawResult r);
  /// Loop thread: arms the hedge timer of a just-started idempotent call.
  void arm_hedge(const CallPtr& c);
  /// The result of a call that can make no further attempt.
  void fail(const CallPtr& c, Error no_pick);
  /// Loop thread (or posts there): ends the call once.
  void finish(const CallPtr& c, RawResult r);

  Deps d_;
};

}  // namespace broach::api
