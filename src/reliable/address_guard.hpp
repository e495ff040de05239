// Internal header. Anti-amplification: what a node may send in reply to
// datagrams from an address that has not proven it receives what is sent
// to it (QUIC's rule, RFC 9000 §8).
//
// Layer: reliable (owned by the DatagramPath). A reply is a datagram sent
// because of one received: responses, in-progress notes, acks of request
// fragments, unknown-call answers, challenges, membership acks and nacks.
// A reply to `addr` is free when the datagram that caused it was sealed (a
// key holder: trusted, see docs/security.md) or when (addr, sender node id)
// is proven; otherwise everything sent to `addr` in reply is charged against
// kFactor times the bytes received from `addr`, and what does not fit is not
// sent. An address proves itself by echoing a challenge token (kChallenge /
// kAddressProof: a keyed BLAKE2b MAC of the address, the sender's node id
// and a one-minute epoch, valid for two epochs, so nothing is stored until
// the proof comes back) or, for members, by acking a ping that carried a
// random sequence number.
//
// Memory: at most kMaxEntries credit records and kMaxEntries proven pairs;
// the oldest are forgotten first. Forgetting a credit record forgets what
// was received and what was sent together, so over any time span the bytes
// sent to an unproven address stay within kFactor times those received.
// Thread contract: loop thread only (the DatagramPath asserts it).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <unordered_map>

#include "base/time.hpp"
#include "broach/endpoint.hpp"

namespace broach::reliable {

/// Where a datagram goes. A reply (sent because a datagram was received
/// from `addr`) carries what the 3x rule needs; a datagram this node sends
/// on its own initiative (a request to a provider it chose, a status query,
/// a ping to a member) is not metered.
struct Dest {
  Endpoint addr;
  bool reply = false;         ///< sent because of a datagram received from addr
  std::uint64_t node_id = 0;  ///< reply: that datagram's sender node id
  bool sealed = false;        ///< reply: that datagram was sealed (and opened)

  friend bool operator==(const Dest&, const Dest&) = default;
  static Dest initiated(const Endpoint& a) { return Dest{a, false, 0, false}; }
  static Dest reply_to(const Endpoint& a, std::uint64_t node_id, bool sealed) {
    return Dest{a, true, node_id, sealed};
  }
};

class AddressGuard {
 public:
  static constexpr std::uint64_t kFactor = 3;
  static constexpr std::uint64_t kUnlimited = ~std::uint64_t{0};
  static constexpr std::size_t kMaxEntries = 65536;
  static constexpr std::size_t kTokenSize = 16;
  using Token = std::array<std::byte, kTokenSize>;
  /// A proven pair is forgotten after this long without a reply to it.
  static constexpr Duration kProvenIdle = std::chrono::minutes(10);
  /// Credit of an address not heard from for this long is forgotten.
  static constexpr Duration kCreditIdle = std::chrono::seconds(30);
  static constexpr Duration kEpoch = std::chrono::seconds(60);

  /// `secret`: 32 random bytes, this node's for its life (keys the tokens).
  explicit AddressGuard(std::span<const std::byte, 32> secret);

  /// An unsealed datagram of `bytes` bytes arrived from `from`.
  void received(const Endpoint& from, std::size_t bytes, TimePoint now);
  /// Bytes that may still be sent in reply to `to` (kUnlimited when free:
  /// not a reply, sealed, or proven).
  std::uint64_t allowance(const Dest& to, TimePoint now);
  /// Charges `bytes` to `to` if they fit its allowance; false (nothing
  /// charged) if not.
  bool try_charge(const Dest& to, std::size_t bytes, TimePoint now);
  /// Gives back bytes charged but not sent.
  void refund(const Endpoint& to, std::uint64_t bytes);

  /// True at most once per kChallengeEvery for `addr` (while it has a
  /// credit record): time to ask it for a proof unprompted, so that later
  /// replies (Bundles included) are free. Repeated because a challenge or
  /// its proof may be lost.
  bool challenge_due(const Endpoint& addr, TimePoint now);
  static constexpr Duration kChallengeEvery = std::chrono::milliseconds(200);

  bool proven(const Endpoint& addr, std::uint64_t node_id, TimePoint now);
  void mark_proven(const Endpoint& addr, std::uint64_t node_id, TimePoint now);

  /// The challenge token for (addr, node_id) now.
  Token token(const Endpoint& addr, std::uint64_t node_id, TimePoint now) const;
  /// True when `echo` is the token of this or the previous epoch.
  bool check_token(const Endpoint& addr, std::uint64_t node_id, std::span<const std::byte> echo,
                   TimePoint now) const;

  /// Forgets idle records (call now and then).
  void sweep(TimePoint now);
  std::size_t credit_entries() const { return credit_.size(); }
  std::size_t proven_entries() const { return proven_.size(); }

 private:
  struct Credit {
    std::uint64_t received = 0, sent = 0;
    TimePoint last{};
    TimePoint challenged{};  // last unprompted challenge (epoch: never)
  };
  struct Pair {
    Endpoint addr;
    std::uint64_t node_id;
    friend bool operator==(const Pair&, const Pair&) = default;
  };
  struct PairHash {
    std::size_t operator()(const Pair& p) const noexcept {
      return std::hash<Endpoint>{}(p.addr) ^ (p.node_id * 0x9e3779b97f4a7c15ULL);
    }
  };
  Token token_for_epoch(const Endpoint& addr, std::uint64_t node_id, std::int64_t epoch) const;
  template <class Map>
  static void make_room(Map& m, TimePoint now);

  std::array<std::byte, 32> secret_;
  std::unordered_map<Endpoint, Credit> credit_;
  std::unordered_map<Pair, TimePoint, PairHash> proven_;  // -> last used
};

}  // namespace broach::reliable
