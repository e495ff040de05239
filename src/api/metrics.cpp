#include "api/metrics.hpp"

#include <cmath>
#include <mutex>

namespace broach::api {

int LatencyHistogram::index(double us) {
  if (!(us >= 1.0)) return 0;
  int e = 0;
  const double m = std::frexp(us, &e);  // us = m * 2^e, m in [0.5, 1)
  const int exp = std::min(e - 1, kExp - 1);
  const int sub = std::min(kSub - 1, static_cast<int>((m * 2 - 1) * kSub));
  return exp * kSub + sub;
}

double LatencyHistogram::upper(int i) {
  const int exp = i / kSub;
  const int sub = i % kSub;
  return std::ldexp(1.0 + (sub + 1.0) / kSub, exp);
}

void LatencyHistogram::record(double us) {
  counts_[static_cast<std::size_t>(index(us))].fetch_add(1, std::memory_order_relaxed);
  total_.fetch_add(1, std::memory_order_relaxed);
  const auto ns = static_cast<std::uint64_t>(std::max(0.0, us) * 1000.0);
  sum_ns_.fetch_add(ns, std::memory_order_relaxed);
  auto prev = max_ns_.load(std::memory_order_relaxed);
  while (ns > prev && !max_ns_.compare_exchange_weak(prev, ns, std::memory_order_relaxed)) {
  }
}

double LatencyHistogram::percentile(double p) const {
  const auto total = count();
  if (total == 0) return 0;
  const auto want = static_cast<std::uint64_t>(std::ceil(p * static_cast<double>(total)));
  std::uint64_t seen = 0;
  for (int i = 0; i < kSub * kExp; ++i) {
    seen += counts_[static_cast<std::size_t>(i)].load(std::memory_order_relaxed);
    if (seen >= want && seen > 0) return std::min(upper(i), std::max(max_us(), 1.0));
  }
  return max_us();
}

std::vector<std::uint64_t> LatencyHistogram::cumulative(const std::vector<double>& bounds_us) const {
  std::vector<std::uint64_t> out(bounds_us.size(), 0);
  for (int i = 0; i < kSub * kExp; ++i) {
    const auto n = counts_[static_cast<std::size_t>(i)].load(std::memory_order_relaxed);
    if (n == 0) continue;
    // A bucket counts towards every bound at or above its upper edge.
    for (std::size_t b = 0; b < bounds_us.size(); ++b) {
      if (upper(i) <= bounds_us[b] * 1.0000001) out[b] += n;
    }
  }
  return out;
}

ServiceMetrics& Metrics::service(const std::string& name) {
  {
    std::shared_lock lock(mu_);
    auto it = services_.find(name);
    if (it != services_.end()) return *it->second;
  }
  std::unique_lock lock(mu_);
  auto it = services_.find(name);
  if (it != services_.end()) return *it->second;
  if (services_.size() >= kMaxServices) return overflow_;
  return *services_.emplace(name, std::make_unique<ServiceMetrics>()).first->second;
}

std::vector<std::pair<std::string, const ServiceMetrics*>> Metrics::all() const {
  std::shared_lock lock(mu_);
  std::vector<std::pair<std::string, const ServiceMetrics*>> out;
  for (const auto& [name, m] : services_) out.emplace_back(name, m.get());
  return out;
}

}  // namespace broach::api
