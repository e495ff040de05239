// libFuzzer target: the wire codec on one datagram.
//
// The input is one datagram. decode_datagram parses it; the payload decoders
// (decode_request, decode_response, decode_fragment_ack, msgpack_object_size)
// then run on its payload, or on the whole input when the header does not
// decode, so the msgpack framing is fuzzed either way. Everything that decodes
// is checked against the contract in header.hpp / payload.hpp:
//  - a decoded header re-encodes to the same bytes (reserved fields aside)
//    and decodes again to the same fields; its fragment geometry is sound;
//  - a decoded request or response re-encodes (encode_request,
//    encode_response_ok/_error) to a body that decodes to the same values,
//    and msgpack-cxx's own unpacker agrees with our framing;
//  - a fragment ack re-encodes to the same bytes;
//  - msgpack_object_size agrees with msgpack-cxx and rejects nesting deeper
//    than 64 (as payload.hpp promises).
// A failed check prints what failed and aborts, so libFuzzer reports it as a
// crash and saves the input.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <msgpack.hpp>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "base/log.hpp"
#include "wire/header.hpp"
#include "wire/payload.hpp"

namespace {

using namespace broach;
using namespace broach::wire;
using Span = std::span<const std::byte>;

constexpr std::uint64_t kMaxMessage = 1u << 20;
// payload.hpp: "nesting deeper than 64 is rejected" ([[...]] 64 deep passes).
constexpr std::size_t kMaxAcceptedDepth = 64;

[[noreturn]] void fail(const char* what, int line) {
  std::fprintf(stderr, "fuzz_wire: check failed (fuzz_wire.cpp:%d): %s\n", line, what);
  std::abort();
}
#define FUZZ_CHECK(cond) ((cond) ? (void)0 : fail(#cond, __LINE__))

bool same(Span a, Span b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

bool inside(Span outer, const void* p, std::size_t n) {
  const auto* b = static_cast<const std::byte*>(p);
  return b >= outer.data() && n <= outer.size() &&
         static_cast<std::size_t>(b - outer.data()) <= outer.size() - n;
}

bool same_header(const Header& a, const Header& b) {
  return a.type == b.type && a.flags == b.flags && a.key_id == b.key_id && a.node_id == b.node_id &&
         a.sender_ip == b.sender_ip && a.sender_port == b.sender_port &&
         a.message_id == b.message_id && a.fragment_index == b.fragment_index &&
         a.fragment_count == b.fragment_count && a.total_len == b.total_len &&
         a.payload_len == b.payload_len && a.deadline_us == b.deadline_us;
}

// Byte offsets encode_header writes as zero (docs/protocol.md: reserved).
bool reserved_byte(std::size_t i) {
  return (i >= 22 && i < 24) || (i >= 46 && i < 48) || (i >= 52 && i < 56);
}

// Container nesting depth of an unpacked object, iteratively (the input may
// nest thousands deep; recursion here would overflow the harness's stack).
std::size_t depth_of(const msgpack::object& root) {
  std::size_t deepest = 0;
  std::vector<std::pair<const msgpack::object*, std::size_t>> todo{{&root, 0}};
  while (!todo.empty()) {
    auto [o, d] = todo.back();
    todo.pop_back();
    if (o->type == msgpack::type::ARRAY) {
      deepest = std::max(deepest, d + 1);
      for (std::uint32_t i = 0; i < o->via.array.size; ++i) {
        todo.emplace_back(&o->via.array.ptr[i], d + 1);
      }
    } else if (o->type == msgpack::type::MAP) {
      deepest = std::max(deepest, d + 1);
      for (std::uint32_t i = 0; i < o->via.map.size; ++i) {
        todo.emplace_back(&o->via.map.ptr[i].key, d + 1);
        todo.emplace_back(&o->via.map.ptr[i].val, d + 1);
      }
    }
  }
  return deepest;
}

// Unpacks one complete object with msgpack-cxx. Only called on data that
// msgpack_object_size accepted whole, so every length inside it is backed by
// input bytes and the unpacker's allocations stay bounded by the input.
msgpack::object_handle unpack_whole(Span data) {
  std::size_t off = 0;
  msgpack::object_handle oh;
  try {
    oh = msgpack::unpack(reinterpret_cast<const char*>(data.data()), data.size(), off);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_wire: msgpack-cxx: %s\n", e.what());
    fail("msgpack-cxx cannot unpack an object msgpack_object_size accepted", __LINE__);
  }
  FUZZ_CHECK(off == data.size());
  return oh;
}

void check_object_size(Span data) {
  const std::size_t n = msgpack_object_size(data);
  FUZZ_CHECK(n <= data.size());
  if (n == 0) return;
  // The object alone is one complete object of the same size.
  FUZZ_CHECK(msgpack_object_size(data.first(n)) == n);
  // Cut short, it is not complete.
  FUZZ_CHECK(msgpack_object_size(data.first(n - 1)) == 0);
  auto oh = unpack_whole(data.first(n));
  if (depth_of(oh.get()) > kMaxAcceptedDepth) {
    std::fprintf(stderr, "fuzz_wire: accepted an object nested %zu deep\n", depth_of(oh.get()));
    fail("msgpack_object_size accepted nesting deeper than 64 (payload.hpp promises to reject it)",
         __LINE__);
  }
}

void check_request(Span p) {
  RequestView rv;
  if (!decode_request(p, rv)) return;
  FUZZ_CHECK(inside(p, rv.service.data(), rv.service.size()));
  FUZZ_CHECK(inside(p, rv.args.data(), rv.args.size()));
  FUZZ_CHECK(!rv.args.empty() && msgpack_object_size(rv.args) == rv.args.size());
  // msgpack-cxx reads the same [service: str, args: array].
  auto oh = unpack_whole(p);
  const msgpack::object& o = oh.get();
  FUZZ_CHECK(o.type == msgpack::type::ARRAY && o.via.array.size == 2);
  const msgpack::object& s = o.via.array.ptr[0];
  FUZZ_CHECK(s.type == msgpack::type::STR &&
             std::string_view(s.via.str.ptr, s.via.str.size) == rv.service);
  FUZZ_CHECK(o.via.array.ptr[1].type == msgpack::type::ARRAY);
  // Round trip.
  Bytes enc;
  encode_request(rv.service, rv.args, enc);
  RequestView again;
  FUZZ_CHECK(decode_request(enc, again));
  FUZZ_CHECK(again.service == rv.service);
  FUZZ_CHECK(same(again.args, rv.args));
}

void check_response(Span p) {
  ResponseView rv;
  if (!decode_response(p, rv)) return;
  FUZZ_CHECK(inside(p, rv.body.data(), rv.body.size()));
  FUZZ_CHECK(!rv.body.empty() && msgpack_object_size(rv.body) == rv.body.size());
  auto oh = unpack_whole(p);
  const msgpack::object& o = oh.get();
  FUZZ_CHECK(o.type == msgpack::type::ARRAY && o.via.array.size == 2);
  const msgpack::object& c = o.via.array.ptr[0];
  FUZZ_CHECK(c.type == msgpack::type::POSITIVE_INTEGER && c.via.u64 <= 0xffff);
  const auto code = static_cast<std::uint16_t>(c.via.u64);
  const Errc expect = code == 0 ? Errc::kOk : errc_known(code) ? static_cast<Errc>(code)
                                                                : Errc::kProtocolError;
  FUZZ_CHECK(rv.code == expect);
  Bytes enc;
  ResponseView again;
  if (rv.code == Errc::kOk) {
    FUZZ_CHECK(rv.message.empty());
    encode_response_ok(rv.body, enc);
    FUZZ_CHECK(decode_response(enc, again));
    FUZZ_CHECK(again.code == Errc::kOk && same(again.body, rv.body));
  } else {
    const msgpack::object& m = o.via.array.ptr[1];
    FUZZ_CHECK(m.type == msgpack::type::STR &&
               std::string_view(m.via.str.ptr, m.via.str.size) == rv.message);
    encode_response_error(rv.code, rv.message, enc);
    FUZZ_CHECK(decode_response(enc, again));
    FUZZ_CHECK(again.code == rv.code && again.message == rv.message);
  }
}

void check_fragment_ack(Span p) {
  FragmentAck ack;
  if (!decode_fragment_ack(p, ack)) {
    FUZZ_CHECK(p.size() != FragmentAck::kSize);
    return;
  }
  std::byte out[FragmentAck::kSize];
  encode_fragment_ack(ack, out);
  FUZZ_CHECK(same(out, p));
  // has() agrees with the bits: everything below cumulative, then the SACK.
  if (ack.cumulative > 0) FUZZ_CHECK(ack.has(ack.cumulative - 1));
  for (std::uint32_t i = 0; i < FragmentAck::kSackBits; ++i) {
    const std::uint64_t index = std::uint64_t{ack.cumulative} + i;
    if (index > 0xffffffffu) break;
    const bool bit = (static_cast<unsigned>(p[4 + i / 8]) >> (i % 8)) & 1;
    FUZZ_CHECK(ack.has(static_cast<std::uint32_t>(index)) == bit);
  }
}

void check_payload(Span p) {
  check_object_size(p);
  check_request(p);
  check_response(p);
  check_fragment_ack(p);
}

// Returns the payload when the datagram decodes.
bool check_header(Span d, Span& payload) {
  Header h;
  const DecodeError err = decode_datagram(d, kMaxMessage, h, payload);
  FUZZ_CHECK(decode_error_name(err) != nullptr);
  Header unbounded;
  Span p2;
  const DecodeError err_unbounded = decode_datagram(d, ~0ull, unbounded, p2);
  if (err != DecodeError::kOk) {
    // Only the size bound may separate the two verdicts.
    if (err_unbounded == DecodeError::kOk) FUZZ_CHECK(err == DecodeError::kTooLarge);
    return false;
  }
  FUZZ_CHECK(err_unbounded == DecodeError::kOk && same_header(h, unbounded) && same(payload, p2));

  const std::size_t tag = (h.flags & kFlagAuth) ? kAuthTagSize : 0;
  FUZZ_CHECK(d.size() == kHeaderSize + h.payload_len + tag);
  FUZZ_CHECK(payload.data() == d.data() + kHeaderSize && payload.size() == h.payload_len);
  FUZZ_CHECK(h.total_len <= kMaxMessage);
  FUZZ_CHECK(h.fragment_count >= 1 && h.fragment_count <= kMaxFragments &&
             h.fragment_index < h.fragment_count);
  // The fragment geometry a receiver will reserve for: count-1 fragments of
  // one size, then a last one of 1..size bytes, adding up to total_len.
  if (h.fragment_count == 1) {
    FUZZ_CHECK(h.total_len == h.payload_len);
  } else {
    const std::uint64_t rest = h.fragment_count - 1u;
    const bool last = h.fragment_index + 1 == h.fragment_count;
    const std::uint64_t size = last ? (h.total_len - h.payload_len) / rest : h.payload_len;
    const std::uint64_t last_len = h.total_len - size * rest;
    FUZZ_CHECK(size > 0 && size * rest < h.total_len);
    FUZZ_CHECK(last_len >= 1 && last_len <= size);
    if (last) FUZZ_CHECK(last_len == h.payload_len);
  }
  // Re-encoding gives back the same bytes except the reserved fields.
  std::vector<std::byte> out(d.begin(), d.end());
  encode_header(h, out);
  for (std::size_t i = 0; i < kHeaderSize; ++i) {
    if (!reserved_byte(i)) FUZZ_CHECK(out[i] == d[i]);
  }
  Header again;
  Span p3;
  FUZZ_CHECK(decode_datagram(out, kMaxMessage, again, p3) == DecodeError::kOk);
  FUZZ_CHECK(same_header(again, h) && same(p3, payload));
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  broach::log::set_level("off");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const Span d(reinterpret_cast<const std::byte*>(data), size);
  Span payload;
  if (check_header(d, payload)) {
    check_payload(payload);
  } else {
    check_payload(d);
  }
  return 0;
}
