// Internal header. Circuit breaker ("fusing", as the seed calls it) for one
// provider, or one provider+service, and the retry budget.
//
// Layer: breaker. Pure state machines over an injected time (no clock, no
// threads): callers pass `now` and hold whatever lock protects them.
//
// closed --(N consecutive failures, or error rate >= R over the window with
//          at least M calls)--> open
// open   --(backoff elapsed)--> half-open: a limited number of probe calls
// half-open --(probe succeeds)--> closed;  --(probe fails)--> open, with the
//          backoff doubled (capped)
#pragma once

#include <array>
#include <cstdint>

#include "base/time.hpp"

namespace broach::breaker {

struct BreakerOptions {
  int consecutive_failures = 5;              ///< trip after this many failures in a row
  double error_rate = 0.5;                   ///< ... or this failure fraction over the window
  int min_calls = 20;                        ///< ... with at least this many calls in it
  Duration window = std::chrono::seconds(10);
  Duration open_base = std::chrono::seconds(1);  ///< first open period
  Duration open_max = std::chrono::seconds(30);  ///< backoff cap
  int half_open_probes = 1;                  ///< calls let through while half-open
};

enum class BreakerState : std::uint8_t { kClosed, kOpen, kHalfOpen };
const char* breaker_state_name(BreakerState s) noexcept;

class CircuitBreaker {
 public:
  explicit CircuitBreaker(const BreakerOptions& o = {}) : opt_(o) {}

  /// May a call go through now? In half-open state this reserves one probe
  /// slot; the caller must then report the outcome with on_success/on_failure.
  bool allow(TimePoint now);
  /// Whether a call would be allowed, without reserving anything.
  bool would_allow(TimePoint now) const;
  void on_success(TimePoint now);
  void on_failure(TimePoint now);
  /// The provider answered that it did not run the call (`overloaded`: a
  /// concurrency limit, a full pool, a drain). Not a failure: it stays out
  /// of the error rate, so a provider that sheds part of its load is not
  /// fused; but kRefusalsPerFailure x consecutive_failures refusals with no
  /// other outcome between them (it refuses everything) trip the breaker,
  /// as does a refused half-open probe.
  void on_refusal(TimePoint now);
  static constexpr int kRefusalsPerFailure = 4;
  /// The provider's process is gone (its host answered ICMP port
  /// unreachable): a failure that opens the breaker at once, whatever the
  /// count, as a failed half-open probe does. The usual half-open probe
  /// later finds out whether a new process took the address.
  void on_gone(TimePoint now);
  /// A call allow() let through was not made after all: gives back its
  /// half-open probe slot, if it took one; counts no outcome.
  void release() {
    if (state_ == BreakerState::kHalfOpen && probes_in_flight_ > 0) --probes_in_flight_;
  }
  BreakerState state(TimePoint now) const;
  /// How many times this breaker has opened (for metrics and tests).
  std::uint64_t trips() const { return trips_; }

 private:
  static constexpr int kBuckets = 10;
  struct Bucket {
    std::int64_t slot = -1;
    std::uint32_t ok = 0, failed = 0;
  };
  Bucket& bucket(TimePoint now);
  void count(TimePoint now, bool ok);
  void trip(TimePoint now);
  bool rate_exceeded(TimePoint now) const;

  BreakerOptions opt_;
  BreakerState state_ = BreakerState::kClosed;
  int consecutive_ = 0;
  int refusals_ = 0;  ///< refusals in a row (on_refusal)
  TimePoint open_until_{};
  Duration backoff_{};
  int probes_in_flight_ = 0;
  std::uint64_t trips_ = 0;
  std::array<Bucket, kBuckets> buckets_{};
};

/// Retries may add at most `ratio` of the calls (plus a small reserve), so a
/// failing cluster does not get a storm of retries on top of its load.
class RetryBudget {
 public:
  explicit RetryBudget(double ratio = 0.1, double reserve = 10) : ratio_(ratio), max_(reserve), tokens_(reserve) {}
  /// Every first attempt earns `ratio` of a retry.
  void on_call() {
    tokens_ += ratio_;
    if (tokens_ > max_ + 1000 * ratio_) tokens_ = max_ + 1000 * ratio_;
  }
  /// Takes one retry from the budget; false when it is spent.
  bool try_retry() {
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
  }
  double tokens() const { return tokens_; }

 private:
  double ratio_;
  double max_;
  double tokens_;
};

}  // namespace broach::breaker
