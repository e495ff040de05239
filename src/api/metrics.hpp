// Internal header (api layer). Per-service call counters and latency
// histograms, updated from any thread without locks on the hot path.
//
// LatencyHistogram is HDR-style: log-linear buckets (16 per power of two,
// about 6% resolution) from 1 us to about 12 days, so percentiles come from
// counts, never from a sorted vector of samples.
// Thread contract: record() and the readers are thread-safe (atomics);
// Metrics::service() takes a shared lock only to find the entry.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

#include "broach/error.hpp"

namespace broach::api {

class LatencyHistogram {
 public:
  static constexpr int kSub = 16;
  static constexpr int kExp = 40;
  void record(double us);
  std::uint64_t count() const { return total_.load(std::memory_order_relaxed); }
  double sum_us() const { return static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1000.0; }
  /// The value below which a fraction p of the samples fall (bucket upper edge).
  double percentile(double p) const;
  double max_us() const { return static_cast<double>(max_ns_.load(std::memory_order_relaxed)) / 1000.0; }
  /// Samples <= each bound (cumulative), for Prometheus buckets.
  std::vector<std::uint64_t> cumulative(const std::vector<double>& bounds_us) const;

 private:
  static int index(double us);
  static double upper(int index);
  std::array<std::atomic<std::uint64_t>, kSub * kExp> counts_{};
  std::atomic<std::uint64_t> total_{0}, sum_ns_{0}, max_ns_{0};
};

struct CodeCounters {
  std::array<std::atomic<std::uint64_t>, 32> by_code{};
  void add(Errc c) {
    const auto i = static_cast<std::size_t>(c);
    if (i < by_code.size()) by_code[i].fetch_add(1, std::memory_order_relaxed);
  }
};

struct ServiceMetrics {
  std::atomic<std::uint64_t> served{0}, made{0};
  CodeCounters served_errors, made_errors;
  LatencyHistogram served_latency;  ///< handler run time at the provider
  LatencyHistogram made_latency;    ///< round trip seen by the caller
};

class Metrics {
 public:
  ServiceMetrics& service(const std::string& name);
  /// A stable snapshot of the service names (entries are never removed).
  std::vector<std::pair<std::string, const ServiceMetrics*>> all() const;

 private:
  static constexpr std::size_t kMaxServices = 4096;  // bound: names come from the network
  mutable std::shared_mutex mu_;
  std::map<std::string, std::unique_ptr<ServiceMetrics>> services_;  // guarded by mu_
  ServiceMetrics overflow_;  // everything past kMaxServices names
};

}  // namespace broach::api
