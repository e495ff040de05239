#include "breaker/concurrency_limiter.hpp"

#include <algorithm>
#include <cmath>

#include "base/assert.hpp"

namespace broach::breaker {

ConcurrencyLimiter::ConcurrencyLimiter(const ConcurrencyLimitOptions& o, TimePoint now)
    : adaptive_(o.adaptive), limit_(o.adaptive ? kInitialLimit : std::clamp(o.fixed, kMinLimit, kMaxLimit)) {
  MutexLock lock(mu_);
  window_start_ = now;
  base_limit_ = limit_.load(std::memory_order_relaxed);
  // The first re-measurement after two windows: the first one started with
  // an empty queue and its average is too low to compare against.
  next_remeasure_ = now + 2 * kWindow;
}

bool ConcurrencyLimiter::try_admit() noexcept {
  const int before = in_flight_.fetch_add(1, std::memory_order_relaxed);
  if (before >= limit_.load(std::memory_order_relaxed)) {
    in_flight_.fetch_sub(1, std::memory_order_relaxed);
    refused_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  if (adaptive_) {
    int peak = peak_.load(std::memory_order_relaxed);
    while (before + 1 > peak && !peak_.compare_exchange_weak(peak, before + 1, std::memory_order_relaxed)) {
    }
  }
  return true;
}

void ConcurrencyLimiter::reset_window(TimePoint now) {
  window_start_ = now;
  window_count_ = 0;
  window_sum_us_ = 0;
  peak_.store(in_flight_.load(std::memory_order_relaxed), std::memory_order_relaxed);
}

void ConcurrencyLimiter::finish(TimePoint admitted, TimePoint now) {
  const int left = in_flight_.fetch_sub(1, std::memory_order_relaxed) - 1;
  BROACH_ASSERT(left >= 0);
  if (!adaptive_) return;
  MutexLock lock(mu_);
  const Duration open = now - window_start_;
  if (remeasuring_ && !remeasure_counting_) {
    // A re-measurement starts counting once the queue of the old limit has
    // drained to the halved one (or after kWindowMax, whatever is left),
    // and then only requests admitted after that.
    if (left > limit_.load(std::memory_order_relaxed) && open < kWindowMax) return;
    remeasure_counting_ = true;
    reset_window(now);
    return;
  }
  if (!remeasuring_ || admitted >= window_start_) {
    window_sum_us_ += std::max(0.0, std::chrono::duration<double, std::micro>(now - admitted).count());
    ++window_count_;
  }
  // A long queue closes the window early (from half its samples, after at
  // least a tenth of a window): the sooner the cut, the fewer requests wait.
  const bool alarm = !remeasuring_ && noload_us_ > 0 && open >= kWindow / 10 &&
                     window_count_ >= kWindowMinSamples / 2 &&
                     window_sum_us_ / static_cast<double>(window_count_) > 2 * noload_us_ * (1 + kHeadroom);
  // At a low limit behind a slow handler few requests finish per window (a
  // limit of 1 and a 100 ms handler: 10 a second): after kWindowMax a
  // window closes with kWindowFewSamples, or the limit could never grow.
  const bool full = open >= kWindow && window_count_ >= kWindowMinSamples;
  const bool slow = open >= kWindowMax && window_count_ >= kWindowFewSamples;
  if (full || slow || alarm) {
    close_window(now);
  } else if (open >= kWindowMax) {
    // Too little traffic to learn from: start again, limit unchanged (a
    // re-measurement that finds no traffic ends: there is no queue to drain).
    if (remeasuring_) end_remeasure(now);
    reset_window(now);
  }
}

void ConcurrencyLimiter::set_limit(double l) {
  const int v = static_cast<int>(std::clamp(std::round(l), double(kMinLimit), double(kMaxLimit)));
  limit_.store(v, std::memory_order_relaxed);
}

void ConcurrencyLimiter::end_remeasure(TimePoint now) {
  remeasuring_ = false;
  remeasure_counting_ = false;
  cuts_in_a_row_ = 0;
  next_remeasure_ = now + kRemeasureEvery;
  set_limit(base_limit_);
}

void ConcurrencyLimiter::close_window(TimePoint now) {
  const double secs = std::chrono::duration<double>(now - window_start_).count();
  const double avg_us = window_sum_us_ / static_cast<double>(window_count_);
  const double throughput = static_cast<double>(window_count_) / secs;  // per second
  const int peak = peak_.load(std::memory_order_relaxed);
  reset_window(now);

  if (remeasuring_) {
    // The limit was halved for this window: its average is the latency
    // without (most of) the queue. Clearly lower than the window before
    // means the old limit queued: the halved one becomes the limit and is
    // halved again at once. Otherwise this is noload.
    noload_us_ = avg_us;
    if (avg_us < 0.9 * last_avg_us_) {
      base_limit_ = limit_.load(std::memory_order_relaxed);
      last_avg_us_ = avg_us;
      remeasure_counting_ = false;
      set_limit(std::max(double(kMinLimit), std::floor(base_limit_ / 2)));
      if (limit_.load(std::memory_order_relaxed) < static_cast<int>(base_limit_)) return;
    }
    end_remeasure(now);
    return;
  }
  last_avg_us_ = avg_us;
  if (noload_us_ == 0 || avg_us < noload_us_) noload_us_ = avg_us;
  const double target_us = noload_us_ * (1 + kHeadroom);
  const double fit = throughput * target_us / 1e6;  // Little's law
  // Reached (or within a rounding of) the limit: the limit bound this window.
  const bool binding = peak >= static_cast<int>(base_limit_);
  if (avg_us > target_us) {
    // Queueing. When the limit was reached, or the queue is long (average
    // beyond 1.5x target), this throughput is what the provider can do: cut
    // to its fit. A mild queue under the limit is a burst: the limit did not
    // let it in, and only comes down to the peak seen (a slow rise then
    // meets the limit next time).
    const bool heavy = avg_us > 1.5 * target_us;
    const double to = binding || heavy ? fit : std::min(base_limit_, double(peak));
    if (to < base_limit_) ++cuts_in_a_row_;
    base_limit_ = std::clamp(std::min(base_limit_, to), double(kMinLimit), double(kMaxLimit));
  } else {
    cuts_in_a_row_ = 0;
    if (binding) {
      base_limit_ = std::clamp(std::max(base_limit_ + std::max(1.0, std::sqrt(base_limit_) / 2), fit),
                               double(kMinLimit), double(kMaxLimit));
    }
  }
  if (now >= next_remeasure_ || cuts_in_a_row_ >= kCutsBeforeRemeasure) {
    remeasuring_ = true;
    remeasure_counting_ = false;
    set_limit(std::max(double(kMinLimit), std::floor(base_limit_ / 2)));
    return;
  }
  set_limit(base_limit_);
}

Duration ConcurrencyLimiter::noload() const {
  MutexLock lock(mu_);
  return std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::micro>(noload_us_));
}

}  // namespace broach::breaker
