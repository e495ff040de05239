// Internal header. Membership messages (carried in kPing / kGossip
// datagrams of the reliable engine) and the push-pull state, as MessagePack.
//
// Layer: membership. Pure encode/decode; decoders never throw and reject
// anything malformed (they are fed network input).
//
// A probe-family datagram body is the array [kind, seq, target, updates]:
//   kind    1 ping, 2 ack, 3 ping_req, 4 nack, 5 gossip (updates only)
//   seq     the prober's sequence number, echoed by ack/nack
//   target  ping_req: [ip, port] of the member to probe indirectly;
//           otherwise nil
//   updates piggybacked member updates, each
//           [state, ip, port, life, incarnation, from_ip, from_port, meta|nil]
//           (from = who suspects, for Lifeguard confirmations; meta =
//           [name, version, [services], weight, {tags}] on alive updates)
// The push-pull body is [join: bool, [update...]] with meta on every alive,
// suspect and dead record, or a digest [false, [], [count, sum]].
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "broach/member.hpp"
#include "wire/payload.hpp"

namespace broach::membership {

enum class Kind : std::uint8_t { kPing = 1, kAck = 2, kPingReq = 3, kNack = 4, kGossip = 5 };

struct Update {
  MemberState state = MemberState::kAlive;
  Endpoint addr;
  std::uint64_t life = 0;
  std::uint32_t incarnation = 0;
  Endpoint from;  ///< the suspecting member (suspect updates)
  /// On alive updates (null: none). Decoded updates hold their own copy;
  /// records keep an interned one (meta_pool.hpp).
  std::shared_ptr<const MemberMeta> meta;
};

struct ProbeMessage {
  Kind kind = Kind::kPing;
  std::uint32_t seq = 0;
  std::optional<Endpoint> target;
  std::vector<Update> updates;
};

/// Encodes the message header part; updates are appended by the caller with
/// append_update while space lasts, then finish() patches the count.
class ProbeWriter {
 public:
  ProbeWriter(Kind kind, std::uint32_t seq, const std::optional<Endpoint>& target);
  /// Appends `u` if the body stays within `limit` bytes; false otherwise.
  bool try_add(std::span<const std::byte> encoded_update, std::size_t limit);
  /// The final body.
  wire::Bytes finish() const;
  std::size_t size() const;

 private:
  wire::Bytes head_;
  wire::Bytes updates_;
  std::uint32_t count_ = 0;
};

/// The encoding of `m` inside an update ([name, version, [services],
/// weight, {tags}]).
wire::Bytes pack_member_meta(const MemberMeta& m);
wire::Bytes encode_update(const Update& u);
/// Appends the encoding of `u` to `out`.
void encode_update_into(const Update& u, wire::Bytes& out);
bool decode_probe(std::span<const std::byte> body, ProbeMessage& out);

wire::Bytes encode_push_pull(bool join, const std::vector<Update>& state);
/// Writes a push-pull body record by record, without an Update per record
/// (a node's whole state: N records, N metadata references): begin() with
/// the count, then exactly that many add()s (`from` is none), then take().
class PushPullWriter {
 public:
  void begin(bool join, std::size_t count);
  /// `meta` null: a record without metadata (a tombstone).
  void add(MemberState state, const Endpoint& addr, std::uint64_t life, std::uint32_t incarnation,
           const MemberMeta* meta);
  /// With metadata already packed (interned metadata carries its encoding).
  void add_packed(MemberState state, const Endpoint& addr, std::uint64_t life, std::uint32_t incarnation,
                  const wire::Bytes& packed_meta);
  wire::Bytes take() { return std::move(out_); }

 private:
  wire::Bytes out_;
};
/// A summary of the live members a node knows (alive or suspect, itself
/// included): how many, and the sum (mod 2^64) of one hash per member over
/// its address, life and incarnation (docs/protocol.md, "Digest first").
/// Two nodes with the same live members at the same lives and incarnations
/// have equal digests whatever order they hold them in; a periodic
/// push-pull sends the whole state only when the digests differ. Suspect
/// counts as alive (suspicion is settled by probes and gossip), and dead,
/// left and reclaimed members are left out (when each node forgets them
/// differs from node to node, and a live member one node still holds while
/// another holds it dead already makes the digests differ).
struct StateDigest {
  std::uint64_t count = 0;
  std::uint64_t sum = 0;
  friend bool operator==(const StateDigest&, const StateDigest&) = default;
  void add(const Endpoint& addr, std::uint64_t life, std::uint32_t incarnation);
};
/// The hash of one member in a digest: SipHash-2-4 with an all-zero key of
/// the 30 bytes address (16, IPv4 as ::ffff:a.b.c.d), port (u16), life
/// (u64), incarnation (u32), integers big-endian; its 8 bytes read as a
/// little-endian u64.
std::uint64_t digest_member(const Endpoint& addr, std::uint64_t life, std::uint32_t incarnation);
/// A digest query or answer: the push-pull body [false, [], [count, sum]].
wire::Bytes encode_digest(const StateDigest& d);
/// True when `body` is a digest query or answer (then `out` is set); false
/// for a full state or anything malformed.
bool decode_digest(std::span<const std::byte> body, StateDigest& out);

/// `old_news` (optional) sees each record before its metadata is decoded;
/// true leaves the record out of `state` undecoded (it would change
/// nothing: most of a push-pull from a settled cluster).
bool decode_push_pull(std::span<const std::byte> body, bool& join, std::vector<Update>& state,
                      const std::function<bool(const Update&)>& old_news = {});

}  // namespace broach::membership
