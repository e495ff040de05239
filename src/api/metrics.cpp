#include "api/metrics.hpp"


namespace broach::api {

ServiceMetrics& Metrics::service(const std::string& name) {
  {
    ReaderLock lock(mu_);
    auto it = services_.find(name);
    if (it != services_.end()) return *it->second;
  }
  WriterLock lock(mu_);
  auto it = services_.find(name);
  if (it != services_.end()) return *it->second;
  if (services_.size() >= kMaxServices) return overflow_;
  return *services_.emplace(name, std::make_unique<ServiceMetrics>()).first->second;
}

std::vector<std::pair<std::string, const ServiceMetrics*>> Metrics::all() const {
  ReaderLock lock(mu_);
  std::vector<std::pair<std::string, const ServiceMetrics*>> out;
  for (const auto& [name, m] : services_) out.emplace_back(name, m.get());
  return out;
}

}  // namespace broach::api
