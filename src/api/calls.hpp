// Internal header (api layer). Calls this node makes: to one address
// (DirectCalls) and in-process to its own services (LocalCalls), the two
// kinds of attempt a call by name (named_calls.hpp) is made of.
//
// Thread rule for every completion in the api layer: `done` runs on the
// node's loop thread, exactly once, and never before the call that started
// it has returned. Immediate failures are posted too. The one exception is
// a node whose loop has finished for good (stopped): then `done` runs at
// once on the calling thread with kShutdown, since no loop will ever run it.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "api/counters.hpp"
#include "api/metrics.hpp"
#include "api/server.hpp"
#include "api/service_registry.hpp"
#include "base/clock.hpp"
#include "base/executor.hpp"
#include "reliable/engine.hpp"

namespace broach::api {

using Done = std::function<void(RawResult)>;

/// Any thread: runs done(r) on the loop thread (see the rule above).
void complete_on_loop(Loop& loop, Done done, RawResult r);

/// The deadline of a call started at `now` with `opts` under `config`.
TimePoint call_deadline(const Config& config, const CallOptions& opts, TimePoint now);

class DirectCalls {
 public:
  struct Deps {
    Loop& loop;
    const Clock& clock;
    reliable::Engine& engine;
    Metrics& metrics;
    const std::atomic<bool>& stopping;
  };
  explicit DirectCalls(const Deps& deps) : d_(deps) {}
  /// Any thread: calls `service` at `to`. From a thread other than the
  /// loop's, a single-datagram request leaves from that thread (the fast
  /// path of Engine::call_from_any_thread). Records the per-service "made"
  /// counters and round-trip time.
  /// `metadata`: packed (pack_metadata), sent with the request; empty: none.
  /// `on_sends` (loop thread, just before `done`): how many times the
  /// request was sent (for traces).
  void call(const Endpoint& to, const std::string& service, std::span<const std::byte> args,
            TimePoint deadline, Done done, std::span<const std::byte> metadata = {},
            std::function<void(std::uint32_t)> on_sends = {});

 private:
  Deps d_;
};

class LocalCalls {
 public:
  struct Deps {
    Loop& loop;
    Executor& executor;
    ServiceRegistry& services;
    Server& server;
    NodeCounters& counters;
  };
  explicit LocalCalls(const Deps& deps) : d_(deps) {}
  /// Loop thread: runs a service of this very node without the network (the
  /// seed's local call), with the rules of a remote call: the pool (or the
  /// loop for run_on_loop services), the deadline, typed errors.
  /// `metadata`: packed, as a remote caller would send it.
  void run(const std::string& service, Bytes args, TimePoint deadline, Done done, Bytes metadata = {});

 private:
  Deps d_;
};

}  // namespace broach::api
