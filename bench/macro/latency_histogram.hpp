// Bench support, not part of the library. A log-bucketed latency histogram
// in the HdrHistogram spirit, small enough to read in one sitting.
//
// Values are nanoseconds. Every power of two is split into 16 linear
// sub-buckets, so a bucket is at most 1/16 (6.25 %) of its value wide and a
// reported percentile (the bucket's midpoint) is within about 3 % of the
// true sample. 976 counters (7.8 KiB) cover 0 ns .. 2^64 ns; recording is a
// count-leading-zeros and an increment, with no allocation.
// Thread contract: none; one histogram per thread, merge() them afterwards.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>

namespace broach::bench {

class LatencyHistogram {
 public:
  static constexpr int kSubBits = 4;  // 16 sub-buckets per power of two
  static constexpr int kSub = 1 << kSubBits;
  static constexpr std::size_t kBuckets = (64 - kSubBits + 1) * kSub;

  void record(std::uint64_t ns) {
    ++counts_[index_of(ns)];
    ++count_;
    sum_ += ns;
    max_ = std::max(max_, ns);
    min_ = std::min(min_, ns);
  }

  void merge(const LatencyHistogram& o) {
    for (std::size_t i = 0; i < kBuckets; ++i) counts_[i] += o.counts_[i];
    count_ += o.count_;
    sum_ += o.sum_;
    max_ = std::max(max_, o.max_);
    min_ = std::min(min_, o.min_);
  }

  /// The value at quantile `q` (0..1) in nanoseconds: the midpoint of the
  /// bucket holding the q-th sample, clamped to the recorded min and max.
  double quantile_ns(double q) const {
    if (count_ == 0) return 0;
    const auto rank = static_cast<std::uint64_t>(q * static_cast<double>(count_ - 1)) + 1;
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) {
        const double mid = static_cast<double>(lower_bound(i)) + static_cast<double>(width(i)) / 2;
        return std::clamp(mid, static_cast<double>(min_), static_cast<double>(max_));
      }
    }
    return static_cast<double>(max_);
  }

  std::uint64_t count() const { return count_; }
  double mean_ns() const { return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0; }
  std::uint64_t max_ns() const { return count_ ? max_ : 0; }

  // Bucket layout: values below 16 get one bucket each; a value with its top
  // bit at position e >= 4 goes to block (e - 3), sub-bucket = the 4 bits
  // below the top bit.
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
  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t count_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t max_ = 0;
  std::uint64_t min_ = UINT64_MAX;
};

}  // namespace broach::bench
