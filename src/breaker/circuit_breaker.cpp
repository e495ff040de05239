#include "breaker/circuit_breaker.hpp"

#include <algorithm>

namespace broach::breaker {

const char* breaker_state_name(BreakerState s) noexcept {
  switch (s) {
    case BreakerState::kClosed: return "closed";
    case BreakerState::kOpen: return "open";
    case BreakerState::kHalfOpen: return "half_open";
  }
  return "unknown";
}

BreakerState CircuitBreaker::state(TimePoint now) const {
  if (state_ == BreakerState::kOpen && now >= open_until_) return BreakerState::kHalfOpen;
  return state_;
}

bool CircuitBreaker::would_allow(TimePoint now) const {
  switch (state(now)) {
    case BreakerState::kClosed: return true;
    case BreakerState::kOpen: return false;
    case BreakerState::kHalfOpen:
      return state_ == BreakerState::kOpen || probes_in_flight_ < opt_.half_open_probes;
  }
  return false;
}

bool CircuitBreaker::allow(TimePoint now) {
  if (state_ == BreakerState::kOpen && now >= open_until_) {
    state_ = BreakerState::kHalfOpen;
    probes_in_flight_ = 0;
  }
  switch (state_) {
    case BreakerState::kClosed: return true;
    case BreakerState::kOpen: return false;
    case BreakerState::kHalfOpen:
      if (probes_in_flight_ >= opt_.half_open_probes) return false;
      ++probes_in_flight_;
      return true;
  }
  return false;
}

CircuitBreaker::Bucket& CircuitBreaker::bucket(TimePoint now) {
  const auto width = std::max<Duration::rep>(1, opt_.window.count() / kBuckets);
  const std::int64_t slot = now.time_since_epoch().count() / width;
  Bucket& b = buckets_[static_cast<std::size_t>(slot % kBuckets)];
  if (b.slot != slot) b = Bucket{slot, 0, 0};
  return b;
}

void CircuitBreaker::count(TimePoint now, bool ok) {
  Bucket& b = bucket(now);
  ++(ok ? b.ok : b.failed);
}

bool CircuitBreaker::rate_exceeded(TimePoint now) const {
  const auto width = std::max<Duration::rep>(1, opt_.window.count() / kBuckets);
  const std::int64_t slot = now.time_since_epoch().count() / width;
  std::uint64_t ok = 0, failed = 0;
  for (const auto& b : buckets_) {
    if (b.slot >= 0 && slot - b.slot < kBuckets) {
      ok += b.ok;
      failed += b.failed;
    }
  }
  const auto total = ok + failed;
  return total >= static_cast<std::uint64_t>(opt_.min_calls) &&
         static_cast<double>(failed) >= opt_.error_rate * static_cast<double>(total);
}

void CircuitBreaker::trip(TimePoint now) {
  backoff_ = backoff_.count() == 0 ? opt_.open_base : std::min(backoff_ * 2, opt_.open_max);
  state_ = BreakerState::kOpen;
  open_until_ = now + backoff_;
  probes_in_flight_ = 0;
  consecutive_ = 0;
  ++trips_;
}

void CircuitBreaker::on_success(TimePoint now) {
  count(now, true);
  consecutive_ = 0;
  refusals_ = 0;
  // A late success of a call made before the trip does not close it: only
  // a half-open probe does.
  if (state_ == BreakerState::kHalfOpen) {
    // A probe came back: the provider works again.
    state_ = BreakerState::kClosed;
    backoff_ = Duration::zero();
    probes_in_flight_ = 0;
    buckets_.fill(Bucket{});
  }
}

void CircuitBreaker::on_failure(TimePoint now) {
  count(now, false);
  if (state_ == BreakerState::kHalfOpen) {
    trip(now);  // the probe failed: open again, for longer
    return;
  }
  if (state_ == BreakerState::kOpen) return;  // late result of an earlier call
  ++consecutive_;
  refusals_ = 0;
  if (consecutive_ >= opt_.consecutive_failures || rate_exceeded(now)) trip(now);
}

void CircuitBreaker::on_refusal(TimePoint now) {
  if (state_ == BreakerState::kHalfOpen) {
    trip(now);  // still refusing: back off longer
    return;
  }
  if (state_ == BreakerState::kOpen) return;
  // Not in the error-rate window (a provider shedding part of its load is
  // healthy); only a long unbroken run of refusals trips.
  if (++refusals_ >= kRefusalsPerFailure * opt_.consecutive_failures) trip(now);
}

void CircuitBreaker::on_gone(TimePoint now) {
  count(now, false);
  if (state_ == BreakerState::kOpen) return;  // another call's report, or a late one
  trip(now);
}

}  // namespace broach::breaker
