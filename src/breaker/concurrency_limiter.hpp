// Internal header. A provider's concurrency limit for one service
// (params.broach.maxConcurrency): requests admitted and not yet finished
// ("in flight": queued for the pool or running) may not exceed the limit;
// one more is refused at once, `overloaded`, so that the caller retries on
// another provider instead of waiting in a queue until its deadline.
//
// Layer: breaker. Time is passed in (the node's Clock), so the same code
// runs in the simulator. Thread contract: every method is safe from any
// thread (admission is one atomic; finished requests are recorded under a
// mutex, only for services that have a limit).
//
// A fixed limit (`"service": 64`) never changes. An adaptive one
// (`"service": "auto"`), in the spirit of brpc's auto limiter and Netflix's
// gradient limiter, works in sample windows:
//   - A window collects the latency (admission to finish: queue wait plus
//     handler) of every request that finished in it. It closes at the first
//     finish after kWindow with at least kWindowMinSamples samples; early,
//     from half of those, when its average shows a long queue (beyond 2x
//     target); or after kWindowMax with kWindowFewSamples (a low limit
//     behind a slow handler finishes few requests, and must still grow).
//     One with fewer after kWindowMax is discarded (too little traffic to
//     learn from; the limit stays).
//   - noload: the latency without queueing. The lowest window average seen;
//     re-measured every kRemeasureEvery (and after kCutsBeforeRemeasure
//     windows in a row that cut the limit), counting from when the old
//     queue has drained to the halved limit (at most kWindowMax later): for one window the limit is
//     halved so that any queue drains, and that window's average replaces
//     noload (so it follows a handler that really became slower). The
//     first re-measurement comes after the first window, and another
//     follows at once, from the halved limit, while each finds noload >10%
//     lower than before (the halved limit still queued).
//   - target = noload * (1 + kHeadroom).
//   - A window whose average exceeds the target, when its peak in-flight
//     reached the limit or its average exceeds 1.5x target, cuts the limit
//     to throughput * target (Little's law: the concurrency at which this
//     throughput waits no longer than the target); a milder queue under the
//     limit (a burst) only brings the limit down to the peak seen.
//   - A window under the target whose peak in-flight reached the limit
//     raises it by sqrt(limit) / 2 (at least 1), or to throughput * target
//     if that is higher: probing for capacity that is there.
//   - The limit stays within [kMinLimit, kMaxLimit]; it starts at
//     kInitialLimit.
#pragma once

#include <atomic>
#include <cstdint>

#include "base/thread_annotations.hpp"
#include "base/time.hpp"

namespace broach::breaker {

/// What params.broach.maxConcurrency says for one service.
struct ConcurrencyLimitOptions {
  bool adaptive = false;  ///< "auto"
  int fixed = 0;          ///< a number: the limit (adaptive == false)
};

class ConcurrencyLimiter {
 public:
  static constexpr int kInitialLimit = 40;
  static constexpr int kMinLimit = 1;
  static constexpr int kMaxLimit = 100000;
  static constexpr double kHeadroom = 0.25;
  static constexpr Duration kWindow = std::chrono::milliseconds(100);
  static constexpr Duration kWindowMax = std::chrono::seconds(1);
  static constexpr int kWindowMinSamples = 20;
  static constexpr int kWindowFewSamples = 4;
  static constexpr Duration kRemeasureEvery = std::chrono::seconds(10);
  static constexpr int kCutsBeforeRemeasure = 3;

  ConcurrencyLimiter(const ConcurrencyLimitOptions& o, TimePoint now);
  ConcurrencyLimiter(const ConcurrencyLimiter&) = delete;
  ConcurrencyLimiter& operator=(const ConcurrencyLimiter&) = delete;

  /// Admits one request (true: in flight, finish() must follow) or refuses it.
  bool try_admit() noexcept;
  /// A request admitted at `admitted` has finished (answered or dropped) at `now`.
  void finish(TimePoint admitted, TimePoint now) BROACH_EXCLUDES(mu_);

  int limit() const noexcept { return limit_.load(std::memory_order_relaxed); }
  int in_flight() const noexcept { return in_flight_.load(std::memory_order_relaxed); }
  bool adaptive() const noexcept { return adaptive_; }
  /// The current no-load latency estimate (zero before the first window).
  Duration noload() const BROACH_EXCLUDES(mu_);
  std::uint64_t refused() const noexcept { return refused_.load(std::memory_order_relaxed); }

 private:
  void close_window(TimePoint now) BROACH_REQUIRES(mu_);
  void reset_window(TimePoint now) BROACH_REQUIRES(mu_);
  void end_remeasure(TimePoint now) BROACH_REQUIRES(mu_);
  void set_limit(double l) BROACH_REQUIRES(mu_);

  const bool adaptive_;
  std::atomic<int> limit_;
  std::atomic<int> in_flight_{0};
  std::atomic<int> peak_{0};  ///< highest in-flight of the open window
  std::atomic<std::uint64_t> refused_{0};

  mutable Mutex mu_;
  TimePoint window_start_ BROACH_GUARDED_BY(mu_);
  std::int64_t window_count_ BROACH_GUARDED_BY(mu_) = 0;
  double window_sum_us_ BROACH_GUARDED_BY(mu_) = 0;
  double noload_us_ BROACH_GUARDED_BY(mu_) = 0;
  double base_limit_ BROACH_GUARDED_BY(mu_);  ///< the limit (without a re-measurement's halving)
  TimePoint next_remeasure_ BROACH_GUARDED_BY(mu_);
  bool remeasuring_ BROACH_GUARDED_BY(mu_) = false;
  bool remeasure_counting_ BROACH_GUARDED_BY(mu_) = false;  ///< the old queue has drained
  double last_avg_us_ BROACH_GUARDED_BY(mu_) = 0;           ///< the last ordinary window's average
  int cuts_in_a_row_ BROACH_GUARDED_BY(mu_) = 0;
};

}  // namespace broach::breaker
