// Public header. The latency histogram of BroachRpc: the library's
// per-service metrics, `broach bench` and the benchmarks all use this one.
//
// HDR-style log-linear buckets over nanoseconds: values below 16 ns get one
// bucket each; above, every power of two is split into 16 equal sub-buckets,
// so a bucket is at most 1/16 (6.25 %) of its value wide and a reported
// quantile (the bucket's midpoint, clamped to the recorded min and max) is
// within about 3 % of the true sample. 976 counters (7.8 KiB) cover the whole
// 64-bit range; recording is a count-leading-zeros and an atomic increment,
// with no allocation and no lock.
// Thread contract: record_ns() and every reader are safe from any thread
// (relaxed atomics: a reader sees a consistent-enough snapshot for
// monitoring); merge() reads `other` the same way.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace broach {

class LatencyHistogram {
 public:
  static constexpr int kSubBits = 4;  // 16 sub-buckets per power of two
  static constexpr int kSub = 1 << kSubBits;
  static constexpr std::size_t kBuckets = (64 - kSubBits + 1) * kSub;

  LatencyHistogram() = default;
  /// A copy is a snapshot of `other`'s samples.
  LatencyHistogram(const LatencyHistogram& other) { merge(other); }
  LatencyHistogram& operator=(const LatencyHistogram& other) {
    if (this != &other) {
      reset();
      merge(other);
    }
    return *this;
  }

  /// Forgets every sample (not atomic with respect to concurrent records).
  void reset() {
    for (auto& c : counts_) c.store(0, std::memory_order_relaxed);
    count_.store(0, std::memory_order_relaxed);
    sum_.store(0, std::memory_order_relaxed);
    max_.store(0, std::memory_order_relaxed);
    min_.store(UINT64_MAX, std::memory_order_relaxed);
  }

  void record_ns(std::uint64_t ns) {
    counts_[index_of(ns)].fetch_add(1, std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
    sum_.fetch_add(ns, std::memory_order_relaxed);
    auto prev = max_.load(std::memory_order_relaxed);
    while (ns > prev && !max_.compare_exchange_weak(prev, ns, std::memory_order_relaxed)) {
    }
    prev = min_.load(std::memory_order_relaxed);
    while (ns < prev && !min_.compare_exchange_weak(prev, ns, std::memory_order_relaxed)) {
    }
  }
  template <class Rep, class Period>
  void record(std::chrono::duration<Rep, Period> d) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    record_ns(ns > 0 ? static_cast<std::uint64_t>(ns) : 0);
  }

  /// Adds every sample of `other`.
  void merge(const LatencyHistogram& other) {
    for (std::size_t i = 0; i < kBuckets; ++i) {
      counts_[i].fetch_add(other.counts_[i].load(std::memory_order_relaxed), std::memory_order_relaxed);
    }
    count_.fetch_add(other.count(), std::memory_order_relaxed);
    sum_.fetch_add(other.sum_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    if (other.count() > 0) {
      record_extreme(max_, other.max_.load(std::memory_order_relaxed), true);
      record_extreme(min_, other.min_.load(std::memory_order_relaxed), false);
    }
  }

  std::uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  double mean_ns() const {
    const auto n = count();
    return n ? static_cast<double>(sum_.load(std::memory_order_relaxed)) / static_cast<double>(n) : 0;
  }
  double sum_ns() const { return static_cast<double>(sum_.load(std::memory_order_relaxed)); }
  std::uint64_t max_ns() const { return count() ? max_.load(std::memory_order_relaxed) : 0; }
  std::uint64_t min_ns() const { return count() ? min_.load(std::memory_order_relaxed) : 0; }

  /// The value at quantile `q` (0..1) in nanoseconds: the midpoint of the
  /// bucket holding the q-th sample, clamped to the recorded min and max.
  double quantile_ns(double q) const {
    const auto n = count();
    if (n == 0) return 0;
    const auto rank = static_cast<std::uint64_t>(std::clamp(q, 0.0, 1.0) * static_cast<double>(n - 1)) + 1;
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i].load(std::memory_order_relaxed);
      if (seen >= rank) {
        const double mid = static_cast<double>(lower_bound(i)) + static_cast<double>(width(i)) / 2;
        return std::clamp(mid, static_cast<double>(min_ns()), static_cast<double>(max_ns()));
      }
    }
    return static_cast<double>(max_ns());
  }
  double quantile_us(double q) const { return quantile_ns(q) / 1000.0; }

  /// Samples in buckets that end at or below each bound (ns), cumulative:
  /// the shape of a Prometheus histogram.
  std::vector<std::uint64_t> cumulative_ns(const std::vector<std::uint64_t>& bounds) const {
    std::vector<std::uint64_t> out(bounds.size(), 0);
    for (std::size_t i = 0; i < kBuckets; ++i) {
      const auto c = counts_[i].load(std::memory_order_relaxed);
      if (c == 0) continue;
      const std::uint64_t end = lower_bound(i) + width(i) - 1;
      for (std::size_t b = 0; b < bounds.size(); ++b) {
        if (end <= bounds[b]) out[b] += c;
      }
    }
    return out;
  }

  /// Samples in bucket i (0 <= i < kBuckets): with lower_bound(i) and
  /// width(i), enough to compute quantiles over a window from two snapshots.
  std::uint64_t bucket_count(std::size_t i) const { return counts_[i].load(std::memory_order_relaxed); }

  static std::size_t index_of(std::uint64_t v) {
    if (v < kSub) return static_cast<std::size_t>(v);
    const int e = 63 - std::countl_zero(v);
    const auto sub = static_cast<std::size_t>((v >> (e - kSubBits)) & (kSub - 1));
    return static_cast<std::size_t>(e - kSubBits + 1) * kSub + sub;
  }
  static std::uint64_t lower_bound(std::size_t i) {
    if (i < kSub) return i;
    const int e = static_cast<int>(i / kSub) + kSubBits - 1;
    return (kSub + i % kSub) << (e - kSubBits);
  }
  static std::uint64_t width(std::size_t i) {
    if (i < kSub) return 1;
    const int e = static_cast<int>(i / kSub) + kSubBits - 1;
    return std::uint64_t{1} << (e - kSubBits);
  }

 private:
  static void record_extreme(std::atomic<std::uint64_t>& slot, std::uint64_t v, bool larger) {
    auto prev = slot.load(std::memory_order_relaxed);
    while ((larger ? v > prev : v < prev) && !slot.compare_exchange_weak(prev, v, std::memory_order_relaxed)) {
    }
  }

  std::array<std::atomic<std::uint64_t>, kBuckets> counts_{};
  std::atomic<std::uint64_t> count_{0}, sum_{0}, max_{0}, min_{UINT64_MAX};
};

}  // namespace broach
