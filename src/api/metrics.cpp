#include "api/metrics.hpp"

#include <mutex>

namespace broach::api {

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
