#include "wire/header.hpp"

#include <cstring>

namespace broach::wire {
namespace {

template <class T>
void put(std::span<std::byte> out, std::size_t off, T v) noexcept {
  for (std::size_t i = 0; i < sizeof(T); ++i) {
    out[off + i] = static_cast<std::byte>((static_cast<std::uint64_t>(v) >> (8 * i)) & 0xff);
  }
}

template <class T>
T get(std::span<const std::byte> in, std::size_t off) noexcept {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) {
    v |= static_cast<std::uint64_t>(in[off + i]) << (8 * i);
  }
  return static_cast<T>(v);
}

bool known_type(std::uint8_t t) noexcept {
  return (t >= 1 && t <= 9) || t == 16 || t == 17;
}

}  // namespace

const char* decode_error_name(DecodeError e) noexcept {
  switch (e) {
    case DecodeError::kOk: return "ok";
    case DecodeError::kTooShort: return "too_short";
    case DecodeError::kBadMagic: return "bad_magic";
    case DecodeError::kBadVersion: return "bad_version";
    case DecodeError::kBadType: return "bad_type";
    case DecodeError::kLengthMismatch: return "length_mismatch";
    case DecodeError::kBadFragment: return "bad_fragment";
    case DecodeError::kBadTotalLength: return "bad_total_length";
    case DecodeError::kTooLarge: return "too_large";
    case DecodeError::kBadPayload: return "bad_payload";
    case DecodeError::kBadAuth: return "bad_auth";
    case DecodeError::kBadKeyId: return "bad_key_id";
    case DecodeError::kReplayed: return "replayed";
    case DecodeError::kUnsealed: return "unsealed";
    case DecodeError::kUnauthenticated: return "unauthenticated";
    case DecodeError::kCount_: break;
  }
  return "unknown";
}

// Layout (offsets in bytes, little-endian):
//  0 magic u16 | 2 version u8 | 3 type u8 | 4 flags u16 | 6 key_id u16
//  8 node_id u64 | 16 sender_ip u32 | 20 sender_port u16 | 22 counter bits 32-47 u16
// 24 message_id u64 | 32 fragment_index u32 | 36 fragment_count u32
// 40 total_len u32 | 44 payload_len u16 | 46 counter bits 48-63 u16 | 48 deadline_us u32
// 52 counter bits 0-31 u32 (the counter fields are 0 in plaintext datagrams)
void encode_header(const Header& h, std::span<std::byte> out) noexcept {
  put<std::uint16_t>(out, 0, kMagic);
  put<std::uint8_t>(out, 2, kVersion);
  put<std::uint8_t>(out, 3, static_cast<std::uint8_t>(h.type));
  put<std::uint16_t>(out, 4, h.flags);
  put<std::uint16_t>(out, 6, h.key_id);
  put<std::uint64_t>(out, 8, h.node_id);
  put<std::uint32_t>(out, 16, h.sender_ip);
  put<std::uint16_t>(out, 20, h.sender_port);
  put<std::uint16_t>(out, 22, static_cast<std::uint16_t>(h.counter >> 32));
  put<std::uint64_t>(out, 24, h.message_id);
  put<std::uint32_t>(out, 32, h.fragment_index);
  put<std::uint32_t>(out, 36, h.fragment_count);
  put<std::uint32_t>(out, 40, h.total_len);
  put<std::uint16_t>(out, 44, h.payload_len);
  put<std::uint16_t>(out, 46, static_cast<std::uint16_t>(h.counter >> 48));
  put<std::uint32_t>(out, 48, h.deadline_us);
  put<std::uint32_t>(out, 52, static_cast<std::uint32_t>(h.counter));
}

DecodeError decode_header(std::span<const std::byte> d, Header& h) noexcept {
  if (d.size() < kHeaderSize) return DecodeError::kTooShort;
  if (get<std::uint16_t>(d, 0) != kMagic) return DecodeError::kBadMagic;
  if (get<std::uint8_t>(d, 2) != kVersion) return DecodeError::kBadVersion;
  const auto type = get<std::uint8_t>(d, 3);
  if (!known_type(type)) return DecodeError::kBadType;
  h.type = static_cast<MsgType>(type);
  h.flags = get<std::uint16_t>(d, 4);
  h.key_id = get<std::uint16_t>(d, 6);
  h.node_id = get<std::uint64_t>(d, 8);
  h.sender_ip = get<std::uint32_t>(d, 16);
  h.sender_port = get<std::uint16_t>(d, 20);
  h.message_id = get<std::uint64_t>(d, 24);
  h.fragment_index = get<std::uint32_t>(d, 32);
  h.fragment_count = get<std::uint32_t>(d, 36);
  h.total_len = get<std::uint32_t>(d, 40);
  h.payload_len = get<std::uint16_t>(d, 44);
  h.deadline_us = get<std::uint32_t>(d, 48);
  h.counter = static_cast<std::uint64_t>(get<std::uint32_t>(d, 52)) |
              (static_cast<std::uint64_t>(get<std::uint16_t>(d, 22)) << 32) |
              (static_cast<std::uint64_t>(get<std::uint16_t>(d, 46)) << 48);
  return DecodeError::kOk;
}

DecodeError decode_datagram(std::span<const std::byte> d, std::uint64_t max_message, Header& h,
                            std::span<const std::byte>& payload) noexcept {
  if (const DecodeError e = decode_header(d, h); e != DecodeError::kOk) return e;
  const std::size_t tag = (h.flags & kFlagAuth) ? kAuthTagSize : 0;
  if (d.size() != kHeaderSize + h.payload_len + tag) return DecodeError::kLengthMismatch;
  if (h.fragment_count == 0 || h.fragment_count > kMaxFragments ||
      h.fragment_index >= h.fragment_count || h.payload_len > kMaxFragmentPayload) {
    return DecodeError::kBadFragment;
  }
  if (h.total_len > max_message) return DecodeError::kTooLarge;
  // Every fragment but the last carries the same size; the total must be
  // consistent with the count, so a lying total cannot make a receiver
  // allocate for fragments that can never arrive.
  if (h.fragment_count == 1) {
    if (h.total_len != h.payload_len) return DecodeError::kBadTotalLength;
  } else {
    if (h.payload_len == 0) return DecodeError::kBadTotalLength;
    const std::uint64_t rest = static_cast<std::uint64_t>(h.fragment_count) - 1;
    if (h.fragment_index + 1 < h.fragment_count) {
      // A non-last fragment has the message's fixed fragment size.
      const std::uint64_t full = static_cast<std::uint64_t>(h.payload_len) * rest;
      if (full >= h.total_len || h.total_len - full > h.payload_len) {
        return DecodeError::kBadTotalLength;
      }
    } else {
      // The last fragment implies the fragment size: (total - own) / rest.
      if (h.total_len <= h.payload_len) return DecodeError::kBadTotalLength;
      const std::uint64_t before = h.total_len - h.payload_len;
      if (before % rest != 0 || before / rest < h.payload_len || before / rest > kMaxFragmentPayload) {
        return DecodeError::kBadTotalLength;
      }
    }
  }
  payload = d.subspan(kHeaderSize, h.payload_len);
  return DecodeError::kOk;
}

}  // namespace broach::wire
