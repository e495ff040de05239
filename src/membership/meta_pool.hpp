// Internal header. Shares member metadata between records: every node keeps
// a record of every member, and a process that hosts many nodes (the
// simulator: N nodes hold N^2 records) would otherwise hold N copies of each
// member's name, version, services and tags.
// Layer: membership. Thread contract: any thread (one mutex; taken only when
// a member's metadata is new or has changed, never per datagram).
#pragma once

#include <memory>

#include "broach/member.hpp"
#include "wire/payload.hpp"

namespace broach::membership {

/// A member's metadata as records share it, with its MessagePack encoding
/// (as a push-pull record carries it), made once when it was interned.
struct InternedMeta {
  MemberMeta meta;
  wire::Bytes packed;
};

/// The shared copy of `meta`: equal metadata gives the same object while
/// any holder keeps it. Never null.
std::shared_ptr<const InternedMeta> intern_meta(const MemberMeta& meta);

/// Distinct metadata values currently held (expired entries excluded).
std::size_t interned_meta_count();

}  // namespace broach::membership
