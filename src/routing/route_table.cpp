#include "routing/route_table.hpp"

#include <algorithm>

namespace broach::routing {

std::shared_ptr<const RouteTable> RouteTable::build(const std::vector<MemberInfo>& members,
                                                    const RouteTable* previous) {
  static std::atomic<std::uint64_t> next_version{1};
  auto table = std::make_shared<RouteTable>();
  table->version_ = next_version.fetch_add(1, std::memory_order_relaxed);
  for (const auto& m : members) {
    if (m.state != MemberState::kAlive && m.state != MemberState::kSuspect) continue;
    for (const auto& s : m.meta.services) {
      if (is_internal_service(s)) continue;
      Provider p;
      p.address = m.address;
      p.state = m.state;
      p.name = m.meta.name;
      p.version = m.meta.version;
      p.weight = m.meta.weight;
      p.self = m.self;
      table->services_[s].providers.push_back(std::move(p));
    }
  }
  for (auto& [name, e] : table->services_) {
    std::sort(e.providers.begin(), e.providers.end(),
              [](const Provider& a, const Provider& b) { return a.address < b.address; });
    if (previous != nullptr) {
      if (const Entry* old = previous->find(name)) {
        e.next.store(old->next.load(std::memory_order_relaxed), std::memory_order_relaxed);
      }
    }
  }
  return table;
}

const RouteTable::Entry* RouteTable::find(std::string_view service) const {
  auto it = services_.find(service);
  return it == services_.end() ? nullptr : &it->second;
}

const Provider* RouteTable::pick_round_robin(std::string_view service) const {
  const Entry* e = find(service);
  if (e == nullptr || e->providers.empty()) return nullptr;
  const auto i = e->next.fetch_add(1, std::memory_order_relaxed) % e->providers.size();
  return &e->providers[i];
}

}  // namespace broach::routing
