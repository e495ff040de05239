#include "wire/payload.hpp"

#include <msgpack.hpp>

#include <cstring>

namespace broach::wire {
namespace {

void put_byte(Bytes& out, unsigned v) { out.push_back(static_cast<std::byte>(v & 0xff)); }

void put_be(Bytes& out, std::uint64_t v, int n) {
  for (int i = n - 1; i >= 0; --i) put_byte(out, static_cast<unsigned>(v >> (8 * i)));
}

void put_str_header(Bytes& out, std::size_t len) {
  if (len < 32) {
    put_byte(out, 0xa0 | static_cast<unsigned>(len));
  } else if (len < 256) {
    put_byte(out, 0xd9);
    put_byte(out, static_cast<unsigned>(len));
  } else if (len < 65536) {
    put_byte(out, 0xda);
    put_be(out, len, 2);
  } else {
    put_byte(out, 0xdb);
    put_be(out, len, 4);
  }
}

void put_uint(Bytes& out, std::uint64_t v) {
  if (v < 128) {
    put_byte(out, static_cast<unsigned>(v));
  } else if (v < 65536) {
    put_byte(out, 0xcd);
    put_be(out, v, 2);
  } else {
    put_byte(out, 0xce);
    put_be(out, v, 4);
  }
}

void append(Bytes& out, std::span<const std::byte> b) { out.insert(out.end(), b.begin(), b.end()); }

std::uint64_t get_be(std::span<const std::byte> in, std::size_t off, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | static_cast<std::uint64_t>(in[off + i]);
  return v;
}

// Reads a msgpack str header at `off`; sets the string's offset and length.
bool read_str(std::span<const std::byte> in, std::size_t& off, std::size_t& len) {
  if (off >= in.size()) return false;
  const auto b = static_cast<unsigned>(in[off]);
  std::size_t hdr = 1;
  if ((b & 0xe0) == 0xa0) {
    len = b & 0x1f;
  } else if (b == 0xd9 && off + 2 <= in.size()) {
    len = get_be(in, off + 1, 1);
    hdr = 2;
  } else if (b == 0xda && off + 3 <= in.size()) {
    len = get_be(in, off + 1, 2);
    hdr = 3;
  } else if (b == 0xdb && off + 5 <= in.size()) {
    len = get_be(in, off + 1, 4);
    hdr = 5;
  } else {
    return false;
  }
  off += hdr;
  return len <= in.size() - off;
}

bool read_uint(std::span<const std::byte> in, std::size_t& off, std::uint64_t& v) {
  if (off >= in.size()) return false;
  const auto b = static_cast<unsigned>(in[off]);
  int n = 0;
  if (b < 0x80) {
    v = b;
    off += 1;
    return true;
  }
  if (b == 0xcc) n = 1;
  else if (b == 0xcd) n = 2;
  else if (b == 0xce) n = 4;
  else if (b == 0xcf) n = 8;
  else return false;
  if (off + 1 + static_cast<std::size_t>(n) > in.size()) return false;
  v = get_be(in, off + 1, n);
  off += 1 + static_cast<std::size_t>(n);
  return true;
}

bool is_array_marker(std::byte b) {
  const auto v = static_cast<unsigned>(b);
  return (v & 0xf0) == 0x90 || v == 0xdc || v == 0xdd;
}

}  // namespace

namespace {

// Parses without building anything, and refuses nesting deeper than
// kMaxDepth: consumers that recurse per level (nlohmann's from_msgpack, the
// msgpack-cxx object converters) must never see a document nested a million
// deep.
struct DepthLimitVisitor : msgpack::null_visitor {
  static constexpr int kMaxDepth = 64;
  int depth = 0;
  bool start_array(std::uint32_t) { return ++depth <= kMaxDepth; }
  bool end_array() {
    --depth;
    return true;
  }
  bool start_map(std::uint32_t) { return ++depth <= kMaxDepth; }
  bool end_map() {
    --depth;
    return true;
  }
};

}  // namespace

std::size_t msgpack_object_size(std::span<const std::byte> data) noexcept {
  if (data.empty()) return 0;
  try {
    DepthLimitVisitor v;
    std::size_t off = 0;
    const auto ret = msgpack::detail::parse_imp(reinterpret_cast<const char*>(data.data()),
                                                data.size(), off, v);
    if (ret != msgpack::PARSE_SUCCESS && ret != msgpack::PARSE_EXTRA_BYTES) return 0;
    return off;
  } catch (...) {
    return 0;
  }
}

void encode_request(std::string_view service, std::span<const std::byte> args, Bytes& out) {
  out.reserve(out.size() + 6 + service.size() + args.size());
  put_byte(out, 0x92);
  put_str_header(out, service.size());
  const auto* s = reinterpret_cast<const std::byte*>(service.data());
  out.insert(out.end(), s, s + service.size());
  append(out, args);
}

bool decode_request(std::span<const std::byte> in, RequestView& out) noexcept {
  if (in.empty() || static_cast<unsigned>(in[0]) != 0x92) return false;
  std::size_t off = 1, len = 0;
  if (!read_str(in, off, len)) return false;
  out.service = std::string_view(reinterpret_cast<const char*>(in.data() + off), len);
  off += len;
  auto rest = in.subspan(off);
  if (rest.empty() || !is_array_marker(rest[0])) return false;
  if (msgpack_object_size(rest) != rest.size()) return false;
  out.args = rest;
  return true;
}

void encode_response_ok(std::span<const std::byte> result, Bytes& out) {
  out.reserve(out.size() + 2 + result.size());
  put_byte(out, 0x92);
  put_uint(out, 0);
  append(out, result);
}

void encode_response_error(Errc code, std::string_view message, Bytes& out) {
  put_byte(out, 0x92);
  put_uint(out, static_cast<std::uint16_t>(code));
  put_str_header(out, message.size());
  const auto* s = reinterpret_cast<const std::byte*>(message.data());
  out.insert(out.end(), s, s + message.size());
}

bool decode_response(std::span<const std::byte> in, ResponseView& out) {
  if (in.empty() || static_cast<unsigned>(in[0]) != 0x92) return false;
  std::size_t off = 1;
  std::uint64_t code = 0;
  if (!read_uint(in, off, code) || code > 0xffff) return false;
  auto rest = in.subspan(off);
  if (rest.empty() || msgpack_object_size(rest) != rest.size()) return false;
  out.body = rest;
  if (code == 0) {
    out.code = Errc::kOk;
    out.message.clear();
    return true;
  }
  // An error code this build does not know is still an error: report it as a
  // protocol error rather than guessing what it meant.
  out.code = errc_known(static_cast<std::uint16_t>(code)) ? static_cast<Errc>(code)
                                                          : Errc::kProtocolError;
  std::size_t soff = 0, len = 0;
  if (!read_str(rest, soff, len)) return false;
  out.message.assign(reinterpret_cast<const char*>(rest.data() + soff), len);
  return true;
}

void encode_fragment_ack(const FragmentAck& ack, std::span<std::byte> out) noexcept {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<std::byte>((ack.cumulative >> (8 * i)) & 0xff);
  std::memcpy(out.data() + 4, ack.sack, sizeof(ack.sack));
}

bool decode_fragment_ack(std::span<const std::byte> in, FragmentAck& out) noexcept {
  if (in.size() != FragmentAck::kSize) return false;
  out.cumulative = 0;
  for (int i = 0; i < 4; ++i) out.cumulative |= static_cast<std::uint32_t>(in[i]) << (8 * i);
  std::memcpy(out.sack, in.data() + 4, sizeof(out.sack));
  return true;
}

}  // namespace broach::wire
