// Internal header. The datagram header of protocol version 1 and its codec.
//
// Layer: wire (pure functions over byte spans, no I/O, no allocation).
// Every datagram starts with this fixed 56-byte little-endian header, followed
// by `payload_len` bytes of payload (one fragment of a message) and, when
// kFlagAuth is set, a 16-byte authentication tag (reserved for packet
// security; version 1 senders never set it). docs/protocol.md is the spec.
// Thread contract: stateless functions, safe anywhere.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace broach::wire {

inline constexpr std::uint16_t kMagic = 0x4252;  // "BR" read as little-endian u16
inline constexpr std::uint8_t kVersion = 1;
inline constexpr std::size_t kHeaderSize = 56;
inline constexpr std::size_t kAuthTagSize = 16;
/// Largest payload of one datagram: 65507 (IPv4 UDP max) minus header and tag.
inline constexpr std::size_t kMaxFragmentPayload = 65507 - kHeaderSize - kAuthTagSize;
/// A message may have at most this many fragments (bounds every per-message table).
inline constexpr std::uint32_t kMaxFragments = 1u << 20;

/// Message types. WARNING: append only; the values are on the wire.
enum class MsgType : std::uint8_t {
  kRequest = 1,      ///< a call: payload is msgpack [service, args]
  kResponse = 2,     ///< the answer to request `message_id`: msgpack [code, body]
  kInProgress = 3,   ///< "received, running": the caller stops retransmitting
  kFragmentAck = 4,  ///< selective ack of a fragmented message (see FragmentAck)
  kStatusQuery = 5,  ///< caller asks what became of request `message_id`
  kUnknownCall = 6,  ///< answer to a status query: "I never received it; resend"
  kChallenge = 7,    ///< "prove this address receives": a token instead of a large reply
  kAddressProof = 8, ///< the caller echoes a challenge's token
  kBundle = 9,       ///< several datagrams to one peer in one (see docs/protocol.md)
  kPing = 16,        ///< membership layer (reserved for it)
  kGossip = 17,      ///< membership layer (reserved for it)
};

/// Flag bits. WARNING: append only.
inline constexpr std::uint16_t kFlagAuth = 1u << 0;     ///< payload encrypted, tag follows
inline constexpr std::uint16_t kFlagForResponse = 1u << 1;  ///< FragmentAck/query refers to a response

struct Header {
  MsgType type = MsgType::kRequest;
  std::uint16_t flags = 0;
  /// Key used for kFlagAuth; 0 = none. Lets keys rotate without a version break.
  std::uint16_t key_id = 0;
  /// Random per process start: tells a restarted peer at the same address
  /// from its previous life, so its request ids cannot collide in dedup.
  std::uint64_t node_id = 0;
  /// The sender's advertised address (the source address of the datagram may
  /// differ behind NAT or on a wildcard bind); replies go to the source address.
  std::uint32_t sender_ip = 0;  ///< IPv4, host byte order
  std::uint16_t sender_port = 0;
  /// Request id, unique per (node_id) and monotonically increasing; a
  /// response, ack or query carries the id of the request it answers.
  std::uint64_t message_id = 0;
  std::uint32_t fragment_index = 0;
  std::uint32_t fragment_count = 1;
  /// Length of the whole message this fragment belongs to.
  std::uint32_t total_len = 0;
  /// Length of this datagram's payload (excluding any auth tag).
  std::uint16_t payload_len = 0;
  /// Caller's remaining deadline in microseconds when sent; 0 = none. Relative
  /// so that clocks need not agree; the receiver adds it to its own now().
  std::uint32_t deadline_us = 0;
  /// Sealed datagrams only (kFlagAuth): the sender's per-life datagram
  /// counter, part of the nonce and of the replay check; 0 otherwise. Kept
  /// in the three reserved fields (see encode_header).
  std::uint64_t counter = 0;
};

/// Why a datagram was rejected. WARNING: append only (metric labels use names).
enum class DecodeError : std::uint8_t {
  kOk = 0,
  kTooShort,          ///< shorter than the header
  kBadMagic,
  kBadVersion,
  kBadType,
  kLengthMismatch,    ///< payload_len (+tag) does not match the datagram size
  kBadFragment,       ///< index >= count, count 0, count too large
  kBadTotalLength,    ///< total_len inconsistent with fragment count and size
  kTooLarge,          ///< total_len exceeds the configured maximum
  kBadPayload,        ///< payload does not decode (msgpack, ack body)
  kBadAuth,           ///< sealed, but the tag does not verify (forged, tampered, wrong key)
  kBadKeyId,          ///< sealed with a key id this node does not hold
  kReplayed,          ///< sealed and valid, but seen before or older than the replay window
  kUnsealed,          ///< plaintext while this node verifies incoming datagrams
  kUnauthenticated,   ///< sealed while this node has no keys
  kCount_,
};
const char* decode_error_name(DecodeError e) noexcept;

/// Writes `h` into out[0..kHeaderSize). Precondition: out.size() >= kHeaderSize.
void encode_header(const Header& h, std::span<std::byte> out) noexcept;

/// Parses the fixed header at the start of `bytes` (magic, version and type
/// checked; nothing about the payload, which may be cut off: the quote of a
/// datagram in an ICMP error).
DecodeError decode_header(std::span<const std::byte> bytes, Header& h) noexcept;

/// Parses and validates a datagram. On success fills `h` and `payload` (a view
/// into `datagram`). `max_message` bounds total_len.
DecodeError decode_datagram(std::span<const std::byte> datagram, std::uint64_t max_message,
                            Header& h, std::span<const std::byte>& payload) noexcept;

}  // namespace broach::wire
