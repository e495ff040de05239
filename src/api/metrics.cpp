#include "api/metrics.hpp"

#include <chrono>


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

std::int64_t unix_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void Metrics::record_error(CallError e) {
  MutexLock lock(recent_mu_);
  if (errors_.size() >= kRecentErrors) errors_.pop_front();
  errors_.push_back(std::move(e));
}

std::vector<CallError> Metrics::recent_errors() const {
  MutexLock lock(recent_mu_);
  return {errors_.begin(), errors_.end()};
}

void Metrics::record_event(MemberEvent e) {
  MutexLock lock(recent_mu_);
  if (events_.size() >= kRecentEvents) events_.pop_front();
  events_.push_back(std::move(e));
}

std::vector<MemberEvent> Metrics::recent_events() const {
  MutexLock lock(recent_mu_);
  return {events_.begin(), events_.end()};
}

std::vector<std::pair<std::string, const ServiceMetrics*>> Metrics::all() const {
  ReaderLock lock(mu_);
  std::vector<std::pair<std::string, const ServiceMetrics*>> out;
  for (const auto& [name, m] : services_) out.emplace_back(name, m.get());
  return out;
}

}  // namespace broach::api
