// AddressGuard: the credit and proof records behind the 3x reply rule.
#include "reliable/address_guard.hpp"

#include <sodium.h>

#include <algorithm>
#include <cstring>

namespace broach::reliable {

AddressGuard::AddressGuard(std::span<const std::byte, 32> secret) {
  std::copy(secret.begin(), secret.end(), secret_.begin());
}

template <class Map>
void AddressGuard::make_room(Map& m, TimePoint now) {
  if (m.size() < kMaxEntries) return;
  // Full: forget the oldest eighth (one pass; rare, and bounded work per
  // entry added over time).
  std::vector<TimePoint> ages;
  ages.reserve(m.size());
  for (const auto& [k, v] : m) {
    if constexpr (std::is_same_v<typename Map::mapped_type, Credit>) {
      ages.push_back(v.last);
    } else {
      ages.push_back(v);
    }
  }
  auto nth = ages.begin() + static_cast<std::ptrdiff_t>(ages.size() / 8);
  std::nth_element(ages.begin(), nth, ages.end());
  const TimePoint cut = std::min(*nth, now);
  std::erase_if(m, [&](const auto& kv) {
    if constexpr (std::is_same_v<typename Map::mapped_type, Credit>) {
      return kv.second.last <= cut;
    } else {
      return kv.second <= cut;
    }
  });
}

void AddressGuard::received(const Endpoint& from, std::size_t bytes, TimePoint now) {
  auto it = credit_.find(from);
  if (it == credit_.end()) {
    make_room(credit_, now);
    it = credit_.emplace(from, Credit{}).first;
  }
  it->second.received += bytes;
  it->second.last = now;
}

std::uint64_t AddressGuard::allowance(const Dest& to, TimePoint now) {
  if (!to.reply || to.sealed || proven(to.addr, to.node_id, now)) return kUnlimited;
  auto it = credit_.find(to.addr);
  if (it == credit_.end()) return 0;
  const std::uint64_t cap = kFactor * it->second.received;
  return cap > it->second.sent ? cap - it->second.sent : 0;
}

bool AddressGuard::try_charge(const Dest& to, std::size_t bytes, TimePoint now) {
  const std::uint64_t a = allowance(to, now);
  if (a == kUnlimited) return true;
  if (a < bytes) return false;
  credit_[to.addr].sent += bytes;  // a > 0: the record exists
  return true;
}

void AddressGuard::refund(const Endpoint& to, std::uint64_t bytes) {
  auto it = credit_.find(to);
  if (it == credit_.end()) return;
  it->second.sent -= std::min(bytes, it->second.sent);
}

bool AddressGuard::challenge_due(const Endpoint& addr, TimePoint now) {
  auto it = credit_.find(addr);
  if (it == credit_.end()) return false;
  if (it->second.challenged != TimePoint{} && now - it->second.challenged < kChallengeEvery) return false;
  it->second.challenged = now;
  return true;
}

bool AddressGuard::proven(const Endpoint& addr, std::uint64_t node_id, TimePoint now) {
  auto it = proven_.find(Pair{addr, node_id});
  if (it == proven_.end()) return false;
  it->second = now;
  return true;
}

void AddressGuard::mark_proven(const Endpoint& addr, std::uint64_t node_id, TimePoint now) {
  auto it = proven_.find(Pair{addr, node_id});
  if (it != proven_.end()) {
    it->second = now;
    return;
  }
  make_room(proven_, now);
  proven_.emplace(Pair{addr, node_id}, now);
}

AddressGuard::Token AddressGuard::token_for_epoch(const Endpoint& addr, std::uint64_t node_id,
                                                  std::int64_t epoch) const {
  // MAC input: epoch (i64 LE), ipv4 (u32 LE) or ipv6 (16 bytes, network
  // order), port (u16 LE), node id (u64 LE).
  unsigned char in[34];
  std::size_t n = 0;
  auto put = [&](std::uint64_t v, std::size_t bytes) {
    for (std::size_t i = 0; i < bytes; ++i) in[n++] = static_cast<unsigned char>(v >> (8 * i));
  };
  put(static_cast<std::uint64_t>(epoch), 8);
  if (addr.v6) {
    for (auto b : addr.ip6) in[n++] = b;
  } else {
    put(addr.ip, 4);
  }
  put(addr.port, 2);
  put(node_id, 8);
  Token out;
  crypto_generichash(reinterpret_cast<unsigned char*>(out.data()), out.size(), in, n,
                     reinterpret_cast<const unsigned char*>(secret_.data()), secret_.size());
  return out;
}

AddressGuard::Token AddressGuard::token(const Endpoint& addr, std::uint64_t node_id, TimePoint now) const {
  return token_for_epoch(addr, node_id, now.time_since_epoch() / kEpoch);
}

bool AddressGuard::check_token(const Endpoint& addr, std::uint64_t node_id, std::span<const std::byte> echo,
                               TimePoint now) const {
  if (echo.size() != kTokenSize) return false;
  const std::int64_t epoch = now.time_since_epoch() / kEpoch;
  for (std::int64_t e : {epoch, epoch - 1}) {
    const Token t = token_for_epoch(addr, node_id, e);
    if (sodium_memcmp(t.data(), echo.data(), kTokenSize) == 0) return true;
  }
  return false;
}

void AddressGuard::sweep(TimePoint now) {
  std::erase_if(credit_, [&](const auto& kv) { return now - kv.second.last > kCreditIdle; });
  std::erase_if(proven_, [&](const auto& kv) { return now - kv.second > kProvenIdle; });
}

}  // namespace broach::reliable
