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

void encode_request(std::string_view service, std::span<const std::byte> args, Bytes& out,
                    std::span<const std::byte> metadata) {
  out.reserve(out.size() + 6 + service.size() + args.size() + metadata.size());
  put_byte(out, metadata.empty() ? 0x92 : 0x93);
  put_str_header(out, service.size());
  const auto* s = reinterpret_cast<const std::byte*>(service.data());
  out.insert(out.end(), s, s + service.size());
  append(out, args);
  append(out, metadata);
}

namespace {

// Reads a map header at `off`: its pair count.
bool read_map_header(std::span<const std::byte> in, std::size_t& off, std::size_t& n) {
  if (off >= in.size()) return false;
  const auto b = static_cast<unsigned>(in[off]);
  if ((b & 0xf0) == 0x80) {
    n = b & 0x0f;
    off += 1;
    return true;
  }
  if (b == 0xde && off + 3 <= in.size()) {
    n = get_be(in, off + 1, 2);
    off += 3;
    return true;
  }
  return false;  // a map32 is far beyond the bounds anyway
}

// Walks a packed metadata map, calling put(key, value) for each pair; false
// when it is not exactly one map of strings within the bounds.
template <class Put>
bool walk_metadata(std::span<const std::byte> in, Put&& put) {
  if (in.empty() || in.size() > kMaxMetadataBytes) return false;
  std::size_t off = 0, n = 0;
  if (!read_map_header(in, off, n) || n == 0 || n > kMaxMetadataEntries) return false;
  for (std::size_t i = 0; i < n; ++i) {
    std::size_t klen = 0, vlen = 0;
    if (!read_str(in, off, klen) || klen == 0) return false;
    const std::string_view key(reinterpret_cast<const char*>(in.data() + off), klen);
    off += klen;
    if (!read_str(in, off, vlen)) return false;
    const std::string_view value(reinterpret_cast<const char*>(in.data() + off), vlen);
    off += vlen;
    put(key, value);
  }
  return off == in.size();
}

}  // namespace

bool decode_request(std::span<const std::byte> in, RequestView& out) noexcept {
  if (in.empty()) return false;
  const auto marker = static_cast<unsigned>(in[0]);
  if (marker != 0x92 && marker != 0x93) return false;
  std::size_t off = 1, len = 0;
  if (!read_str(in, off, len)) return false;
  out.service = std::string_view(reinterpret_cast<const char*>(in.data() + off), len);
  off += len;
  auto rest = in.subspan(off);
  if (rest.empty() || !is_array_marker(rest[0])) return false;
  const std::size_t args = msgpack_object_size(rest);
  if (args == 0) return false;
  out.args = rest.first(args);
  out.metadata = rest.subspan(args);
  if (marker == 0x92) return out.metadata.empty();
  return walk_metadata(out.metadata, [](std::string_view, std::string_view) {});
}

bool encode_metadata(const MetadataView& pairs, Bytes& out) {
  out.clear();
  if (pairs.empty()) return true;
  if (pairs.size() > kMaxMetadataEntries) return false;
  out.reserve(64);
  if (pairs.size() < 16) {
    put_byte(out, 0x80 | static_cast<unsigned>(pairs.size()));
  } else {
    put_byte(out, 0xde);
    put_be(out, pairs.size(), 2);
  }
  for (const auto& [k, v] : pairs) {
    if (k.empty() || k.size() + v.size() > kMaxMetadataBytes) return false;
    put_str_header(out, k.size());
    append(out, std::as_bytes(std::span(k.data(), k.size())));
    put_str_header(out, v.size());
    append(out, std::as_bytes(std::span(v.data(), v.size())));
  }
  return out.size() <= kMaxMetadataBytes;
}

bool decode_metadata(std::span<const std::byte> packed, MetadataView& out) {
  out.clear();
  return walk_metadata(packed, [&](std::string_view k, std::string_view v) { out.emplace_back(k, v); });
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
