// Public header. What a node knows about one member of its cluster.
// Thread contract: immutable values (snapshots).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "broach/endpoint.hpp"

namespace broach {

/// WARNING: append only; the values are on the wire.
enum class MemberState : std::uint8_t {
  kAlive = 0,
  kSuspect = 1,  ///< failed a probe; still routable until declared dead
  kDead = 2,     ///< failed and not refuted; never routed to
  kLeft = 3,     ///< left gracefully
};
const char* member_state_name(MemberState s) noexcept;

/// Metadata a member advertises about itself.
struct MemberMeta {
  std::string name;                   ///< config "name"
  std::string version;                ///< config "version"
  std::vector<std::string> services;  ///< exposed services (never "__" internals), sorted
  std::uint32_t weight = 100;         ///< for weighted load balancing
  std::map<std::string, std::string> tags;
  friend bool operator==(const MemberMeta&, const MemberMeta&) = default;
};

struct MemberInfo {
  Endpoint address;
  MemberState state = MemberState::kAlive;
  std::uint64_t life = 0;         ///< start time of this process life (ms since epoch)
  std::uint32_t incarnation = 0;  ///< raised by the member to refute suspicion
  MemberMeta meta;
  bool self = false;
};

}  // namespace broach
