// Internal header. The cluster-wide route table: service name -> the members
// that offer it, built from membership snapshots.
//
// Layer: routing. A RouteTable is immutable once built (only its
// round-robin counters move, atomically), so the loop thread publishes a new
// one with an atomic shared_ptr store and any thread reads the current one
// without blocking the loop. Suspect members stay routable (they may be
// fine; the breaker will judge); dead and left members are never in it.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "broach/member.hpp"

namespace broach::routing {

struct Provider {
  Endpoint address;
  MemberState state = MemberState::kAlive;
  std::string name;
  std::string version;
  std::uint32_t weight = 100;
  bool self = false;
};

class RouteTable {
 public:
  struct Entry {
    std::vector<Provider> providers;
    mutable std::atomic<std::uint64_t> next{0};  // round-robin cursor
  };

  /// Builds a table from a membership snapshot. Round-robin positions carry
  /// over from `previous` (may be null), so a rebuild does not skew the
  /// distribution.
  static std::shared_ptr<const RouteTable> build(const std::vector<MemberInfo>& members,
                                                 const RouteTable* previous = nullptr);

  /// The providers of `service`, or null when nobody offers it.
  const Entry* find(std::string_view service) const;
  /// Round robin over the providers of `service`; null when there is none.
  const Provider* pick_round_robin(std::string_view service) const;
  const std::map<std::string, Entry, std::less<>>& services() const { return services_; }
  /// Distinct for every table built in this process (tells tables apart
  /// without holding on to them).
  std::uint64_t version() const { return version_; }

 private:
  std::uint64_t version_ = 0;
  std::map<std::string, Entry, std::less<>> services_;
};

/// True for names that are never advertised (the seed's "__" convention).
inline bool is_internal_service(std::string_view name) { return name.rfind("__", 0) == 0; }

}  // namespace broach::routing
