// Internal header. Message bodies of protocol version 1.
//
// Layer: wire (pure functions, no I/O). A request body is the MessagePack
// array [service: str, args: array] or, when the call carries metadata,
// [service: str, args: array, metadata: map str -> str] (at most
// kMaxMetadataEntries pairs, kMaxMetadataBytes packed, no empty key); a
// response body is [code: uint, body]
// where body is the packed result when code == 0 and an error message string
// otherwise. Only the outer framing is parsed here; `args` and the result
// stay packed, so a typed stub or a dynamic (JSON) client can unpack them.
// A fragment ack body is fixed binary (see FragmentAck).
// Thread contract: stateless functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "broach/error.hpp"

namespace broach::wire {

using Bytes = std::vector<std::byte>;

/// Bounds of a call's metadata (docs/protocol.md, "Call metadata").
inline constexpr std::size_t kMaxMetadataEntries = 16;
inline constexpr std::size_t kMaxMetadataBytes = 1024;  ///< the packed map

/// Metadata pairs as views (into a packed map, or into the caller's strings).
using MetadataView = std::vector<std::pair<std::string_view, std::string_view>>;

struct RequestView {
  std::string_view service;            ///< view into the payload
  std::span<const std::byte> args;     ///< one packed msgpack array
  std::span<const std::byte> metadata; ///< the packed map (checked); empty: none
};

struct ResponseView {
  Errc code = Errc::kOk;
  std::span<const std::byte> body;  ///< packed result (code kOk) or packed message
  std::string message;              ///< error message when code != kOk
};

/// Appends [service, args] to `out`, or [service, args, metadata] when
/// `metadata` (a map packed by encode_metadata) is not empty. `args` must be
/// one packed msgpack array.
void encode_request(std::string_view service, std::span<const std::byte> args, Bytes& out,
                    std::span<const std::byte> metadata = {});
bool decode_request(std::span<const std::byte> payload, RequestView& out) noexcept;

/// Packs `pairs` as a msgpack map into `out` (replacing its contents);
/// false when they break the bounds (too many, too large, an empty key).
/// No pairs: `out` is left empty (a request without metadata).
bool encode_metadata(const MetadataView& pairs, Bytes& out);
/// Reads a packed metadata map (views into `packed`); false when it is not
/// a map of strings within the bounds.
bool decode_metadata(std::span<const std::byte> packed, MetadataView& out);

/// Appends [0, result] to `out`; `result` is one packed msgpack object.
void encode_response_ok(std::span<const std::byte> result, Bytes& out);
/// Appends [code, message] to `out`.
void encode_response_error(Errc code, std::string_view message, Bytes& out);
bool decode_response(std::span<const std::byte> payload, ResponseView& out);

/// Selective acknowledgement of a fragmented message: every fragment below
/// `cumulative` arrived, and bit i of `sack` says fragment cumulative+i arrived.
struct FragmentAck {
  static constexpr std::size_t kSackBits = 256;
  static constexpr std::size_t kSize = 4 + kSackBits / 8;
  std::uint32_t cumulative = 0;
  std::uint8_t sack[kSackBits / 8] = {};
  bool has(std::uint32_t index) const noexcept {
    if (index < cumulative) return true;
    const std::uint64_t off = static_cast<std::uint64_t>(index) - cumulative;
    return off < kSackBits && (sack[off / 8] >> (off % 8)) & 1;
  }
  void set(std::uint32_t index) noexcept {
    const std::uint64_t off = static_cast<std::uint64_t>(index) - cumulative;
    if (index >= cumulative && off < kSackBits) sack[off / 8] |= static_cast<std::uint8_t>(1u << (off % 8));
  }
};
void encode_fragment_ack(const FragmentAck& ack, std::span<std::byte> out) noexcept;  // out.size() >= kSize
bool decode_fragment_ack(std::span<const std::byte> payload, FragmentAck& out) noexcept;

/// Length of one complete msgpack object at the start of `data`, or 0 when
/// `data` does not start with a complete, well-formed object. Bounded work:
/// nesting deeper than 64 is rejected.
std::size_t msgpack_object_size(std::span<const std::byte> data) noexcept;

}  // namespace broach::wire
