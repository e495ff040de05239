// Internal header (api layer). The services this node provides, by name.
//
// Users register and withdraw services from their own threads while the
// loop thread looks them up for every request, so this is the one piece of
// serving state behind a lock (readers share it).
// Thread contract: every method is safe from any thread.
#pragma once

#include <algorithm>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/thread_annotations.hpp"
#include "broach/node.hpp"
#include "routing/route_table.hpp"

namespace broach::api {

struct Service {
  RawHandler handler;             ///< an ordinary handler, or
  RawAsyncHandler async_handler;  ///< one that answers later (a coroutine handler)
  ServiceOptions options;
};

class ServiceRegistry {
 public:
  void add(std::string name, Service s) {
    WriterLock lock(mu_);
    services_[std::move(name)] = std::move(s);
  }
  bool remove(const std::string& name) {
    WriterLock lock(mu_);
    return services_.erase(name) > 0;
  }
  /// A copy of the service (handlers are shared, cheap to copy).
  std::optional<Service> find(const std::string& name) const {
    ReaderLock lock(mu_);
    auto it = services_.find(name);
    if (it == services_.end()) return std::nullopt;
    return it->second;
  }
  /// The names members advertise (internal services excluded), sorted.
  std::vector<std::string> advertised() const {
    std::vector<std::string> out;
    {
      ReaderLock lock(mu_);
      for (const auto& [name, s] : services_) {
        if (!routing::is_internal_service(name)) out.push_back(name);
      }
    }
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  mutable SharedMutex mu_;
  std::unordered_map<std::string, Service> services_ BROACH_GUARDED_BY(mu_);
};

}  // namespace broach::api
