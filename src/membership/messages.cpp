#include "membership/messages.hpp"

#include <msgpack.hpp>
#include <sodium.h>

#include <array>
#include <cstring>


namespace broach::membership {
namespace {

using wire::Bytes;

struct ByteSink {
  Bytes& out;
  void write(const char* p, std::size_t n) {
    const std::size_t at = out.size();
    out.resize(at + n);
    std::memcpy(out.data() + at, p, n);
  }
};

void pack_meta(msgpack::packer<ByteSink>& pk, const MemberMeta& m) {
  pk.pack_array(5);
  pk.pack(m.name);
  pk.pack(m.version);
  pk.pack(m.services);
  pk.pack(m.weight);
  pk.pack(m.tags);
}

// An address on the wire: IPv4 as an unsigned integer (host order value),
// IPv6 as bin 8 of exactly 16 bytes (network order).
bool as_endpoint(const msgpack::object& ip, const msgpack::object& port, Endpoint& out) {
  if (port.type != msgpack::type::POSITIVE_INTEGER || port.via.u64 > 0xffff) return false;
  Endpoint e;
  if (ip.type == msgpack::type::POSITIVE_INTEGER) {
    // Port 0 / ip 0 are valid "none" values and still positive integers in msgpack.
    if (ip.via.u64 > 0xffffffffu) return false;
    e.ip = static_cast<std::uint32_t>(ip.via.u64);
  } else if (ip.type == msgpack::type::BIN && ip.via.bin.size == 16) {
    std::array<std::uint8_t, 16> a{};
    std::memcpy(a.data(), ip.via.bin.ptr, 16);
    endpoint_detail::set_ip6(e, a);  // a mapped IPv4 address is that IPv4 address
  } else {
    return false;
  }
  e.port = static_cast<std::uint16_t>(port.via.u64);
  out = e;
  return true;
}

void pack_address(msgpack::packer<ByteSink>& pk, const Endpoint& e) {
  if (!e.v6) {
    pk.pack(e.ip);
    return;
  }
  pk.pack_bin(16);
  pk.pack_bin_body(reinterpret_cast<const char*>(e.ip6.data()), 16);
}

bool read_meta(const msgpack::object& o, MemberMeta& m) {
  if (o.type != msgpack::type::ARRAY || o.via.array.size != 5) return false;
  const auto* a = o.via.array.ptr;
  o.via.array.ptr[0].convert(m.name);
  a[1].convert(m.version);
  a[2].convert(m.services);
  a[3].convert(m.weight);
  a[4].convert(m.tags);
  return true;
}

// Everything but the metadata; read_update_meta reads that.
bool read_update_head(const msgpack::object& o, Update& u) {
  if (o.type != msgpack::type::ARRAY || o.via.array.size != 8) return false;
  const auto* a = o.via.array.ptr;
  if (a[0].type != msgpack::type::POSITIVE_INTEGER || a[0].via.u64 > 3) return false;
  u.state = static_cast<MemberState>(a[0].via.u64);
  if (!as_endpoint(a[1], a[2], u.addr)) return false;
  if (a[3].type != msgpack::type::POSITIVE_INTEGER || a[4].type != msgpack::type::POSITIVE_INTEGER ||
      a[4].via.u64 > 0xffffffffu) {
    return false;
  }
  u.life = a[3].via.u64;
  u.incarnation = static_cast<std::uint32_t>(a[4].via.u64);
  return as_endpoint(a[5], a[6], u.from);
}

bool read_update_meta(const msgpack::object& o, Update& u) {
  const auto* a = o.via.array.ptr;
  if (a[7].type == msgpack::type::NIL) {
    u.meta.reset();
  } else {
    MemberMeta m;
    if (!read_meta(a[7], m)) return false;
    u.meta = std::make_shared<const MemberMeta>(std::move(m));
  }
  return true;
}

bool read_update(const msgpack::object& o, Update& u) { return read_update_head(o, u) && read_update_meta(o, u); }

void append_array_header(Bytes& out, std::uint32_t n) {
  ByteSink sink{out};
  msgpack::packer<ByteSink> pk(sink);
  pk.pack_array(n);
}

}  // namespace


Bytes encode_update(const Update& u) {
  Bytes out;
  out.reserve(u.meta ? 96 : 32);
  encode_update_into(u, out);
  return out;
}

void encode_update_into(const Update& u, Bytes& out) {
  ByteSink sink{out};
  msgpack::packer<ByteSink> pk(sink);
  pk.pack_array(8);
  pk.pack(static_cast<std::uint8_t>(u.state));
  pack_address(pk, u.addr);
  pk.pack(u.addr.port);
  pk.pack(u.life);
  pk.pack(u.incarnation);
  pack_address(pk, u.from);
  pk.pack(u.from.port);
  if (u.meta) {
    pack_meta(pk, *u.meta);
  } else {
    pk.pack_nil();
  }
}

ProbeWriter::ProbeWriter(Kind kind, std::uint32_t seq, const std::optional<Endpoint>& target) {
  ByteSink sink{head_};
  msgpack::packer<ByteSink> pk(sink);
  pk.pack_array(4);
  pk.pack(static_cast<std::uint8_t>(kind));
  pk.pack(seq);
  if (target) {
    pk.pack_array(2);
    pack_address(pk, *target);
    pk.pack(target->port);
  } else {
    pk.pack_nil();
  }
}

std::size_t ProbeWriter::size() const { return head_.size() + 5 + updates_.size(); }

bool ProbeWriter::try_add(std::span<const std::byte> u, std::size_t limit) {
  if (size() + u.size() > limit) return false;
  updates_.insert(updates_.end(), u.begin(), u.end());
  ++count_;
  return true;
}

Bytes ProbeWriter::finish() const {
  Bytes out = head_;
  append_array_header(out, count_);
  out.insert(out.end(), updates_.begin(), updates_.end());
  return out;
}

bool decode_probe(std::span<const std::byte> body, ProbeMessage& out) {
  // Check the whole body first without building objects: msgpack::unpack
  // reserves room for as many elements as a header claims before reading
  // any, so a 5-byte "map of 4 billion pairs" must never reach it. A body
  // that is one complete object of bounded depth has at most as many
  // elements as bytes.
  if (wire::msgpack_object_size(body) != body.size()) return false;
  try {
    auto oh = msgpack::unpack(reinterpret_cast<const char*>(body.data()), body.size());
    const auto& o = oh.get();
    if (o.type != msgpack::type::ARRAY || o.via.array.size != 4) return false;
    const auto* a = o.via.array.ptr;
    if (a[0].type != msgpack::type::POSITIVE_INTEGER || a[0].via.u64 < 1 || a[0].via.u64 > 5) {
      return false;
    }
    out.kind = static_cast<Kind>(a[0].via.u64);
    if (a[1].type != msgpack::type::POSITIVE_INTEGER || a[1].via.u64 > 0xffffffffu) return false;
    out.seq = static_cast<std::uint32_t>(a[1].via.u64);
    out.target.reset();
    if (a[2].type == msgpack::type::ARRAY) {
      if (a[2].via.array.size != 2) return false;
      Endpoint t;
      if (!as_endpoint(a[2].via.array.ptr[0], a[2].via.array.ptr[1], t)) return false;
      out.target = t;
    } else if (a[2].type != msgpack::type::NIL) {
      return false;
    }
    if (a[3].type != msgpack::type::ARRAY) return false;
    out.updates.clear();
    out.updates.reserve(a[3].via.array.size);
    for (std::uint32_t i = 0; i < a[3].via.array.size; ++i) {
      Update u;
      if (!read_update(a[3].via.array.ptr[i], u)) return false;
      out.updates.push_back(std::move(u));
    }
    return true;
  } catch (...) {
    return false;
  }
}

void PushPullWriter::begin(bool join, std::size_t count) {
  out_.clear();
  out_.reserve(16 + count * 64);
  ByteSink sink{out_};
  msgpack::packer<ByteSink> pk(sink);
  pk.pack_array(2);
  pk.pack(join);
  pk.pack_array(static_cast<std::uint32_t>(count));
}

namespace {
template <class Pk>
void pack_record_head(Pk& pk, MemberState state, const Endpoint& addr, std::uint64_t life, std::uint32_t incarnation) {
  pk.pack_array(8);
  pk.pack(static_cast<std::uint8_t>(state));
  pack_address(pk, addr);
  pk.pack(addr.port);
  pk.pack(life);
  pk.pack(incarnation);
  pack_address(pk, Endpoint{});
  pk.pack(std::uint16_t{0});
}
}  // namespace

void PushPullWriter::add(MemberState state, const Endpoint& addr, std::uint64_t life, std::uint32_t incarnation,
                         const MemberMeta* meta) {
  ByteSink sink{out_};
  msgpack::packer<ByteSink> pk(sink);
  pack_record_head(pk, state, addr, life, incarnation);
  if (meta == nullptr) {
    pk.pack_nil();
  } else {
    pack_meta(pk, *meta);
  }
}

void PushPullWriter::add_packed(MemberState state, const Endpoint& addr, std::uint64_t life,
                                std::uint32_t incarnation, const Bytes& packed_meta) {
  ByteSink sink{out_};
  msgpack::packer<ByteSink> pk(sink);
  pack_record_head(pk, state, addr, life, incarnation);
  out_.insert(out_.end(), packed_meta.begin(), packed_meta.end());
}

Bytes pack_member_meta(const MemberMeta& m) {
  Bytes out;
  ByteSink sink{out};
  msgpack::packer<ByteSink> pk(sink);
  pack_meta(pk, m);
  return out;
}

Bytes encode_push_pull(bool join, const std::vector<Update>& state) {
  Bytes out;
  ByteSink sink{out};
  msgpack::packer<ByteSink> pk(sink);
  pk.pack_array(2);
  pk.pack(join);
  pk.pack_array(static_cast<std::uint32_t>(state.size()));
  out.reserve(16 + state.size() * 48);
  for (const auto& u : state) encode_update_into(u, out);
  return out;
}

bool decode_push_pull(std::span<const std::byte> body, bool& join, std::vector<Update>& state,
                      const std::function<bool(const Update&)>& old_news) {
  if (wire::msgpack_object_size(body) != body.size()) return false;  // see decode_probe
  try {
    auto oh = msgpack::unpack(reinterpret_cast<const char*>(body.data()), body.size());
    const auto& o = oh.get();
    if (o.type != msgpack::type::ARRAY || o.via.array.size != 2) return false;
    if (o.via.array.ptr[0].type != msgpack::type::BOOLEAN) return false;
    join = o.via.array.ptr[0].via.boolean;
    const auto& list = o.via.array.ptr[1];
    if (list.type != msgpack::type::ARRAY) return false;
    state.clear();
    state.reserve(list.via.array.size);
    for (std::uint32_t i = 0; i < list.via.array.size; ++i) {
      const auto& item = list.via.array.ptr[i];
      Update u;
      if (!read_update_head(item, u)) return false;
      if (old_news && old_news(u)) {
        // Its metadata is not decoded (most of the cost of a record), only
        // checked for shape.
        const auto& m = item.via.array.ptr[7];
        if (m.type != msgpack::type::NIL && (m.type != msgpack::type::ARRAY || m.via.array.size != 5)) return false;
        continue;
      }
      if (!read_update_meta(item, u)) return false;
      state.push_back(std::move(u));
    }
    return true;
  } catch (...) {
    return false;
  }
}

std::uint64_t digest_member(const Endpoint& addr, std::uint64_t life, std::uint32_t incarnation) {
  std::array<std::uint8_t, 30> in{};
  if (addr.v6) {
    std::memcpy(in.data(), addr.ip6.data(), 16);
  } else {
    in[10] = in[11] = 0xff;
    for (int i = 0; i < 4; ++i) in[12 + i] = static_cast<std::uint8_t>(addr.ip >> (24 - 8 * i));
  }
  in[16] = static_cast<std::uint8_t>(addr.port >> 8);
  in[17] = static_cast<std::uint8_t>(addr.port);
  for (int i = 0; i < 8; ++i) in[18 + i] = static_cast<std::uint8_t>(life >> (56 - 8 * i));
  for (int i = 0; i < 4; ++i) in[26 + i] = static_cast<std::uint8_t>(incarnation >> (24 - 8 * i));
  static const std::array<unsigned char, crypto_shorthash_siphash24_KEYBYTES> kZeroKey{};
  std::array<unsigned char, crypto_shorthash_siphash24_BYTES> out{};
  crypto_shorthash_siphash24(out.data(), in.data(), in.size(), kZeroKey.data());
  std::uint64_t h = 0;
  for (int i = 7; i >= 0; --i) h = (h << 8) | out[static_cast<std::size_t>(i)];
  return h;
}

void StateDigest::add(const Endpoint& addr, std::uint64_t life, std::uint32_t incarnation) {
  ++count;
  sum += digest_member(addr, life, incarnation);
}

Bytes encode_digest(const StateDigest& d) {
  Bytes out;
  ByteSink sink{out};
  msgpack::packer<ByteSink> pk(sink);
  pk.pack_array(3);
  pk.pack(false);
  pk.pack_array(0);
  pk.pack_array(2);
  pk.pack(d.count);
  pk.pack(d.sum);
  return out;
}

bool decode_digest(std::span<const std::byte> body, StateDigest& out) {
  if (wire::msgpack_object_size(body) != body.size()) return false;
  try {
    auto oh = msgpack::unpack(reinterpret_cast<const char*>(body.data()), body.size());
    const auto& o = oh.get();
    if (o.type != msgpack::type::ARRAY || o.via.array.size != 3) return false;
    const auto* a = o.via.array.ptr;
    if (a[0].type != msgpack::type::BOOLEAN || a[1].type != msgpack::type::ARRAY || a[1].via.array.size != 0) {
      return false;
    }
    if (a[2].type != msgpack::type::ARRAY || a[2].via.array.size != 2) return false;
    const auto* d = a[2].via.array.ptr;
    if (d[0].type != msgpack::type::POSITIVE_INTEGER || d[1].type != msgpack::type::POSITIVE_INTEGER) return false;
    out.count = d[0].via.u64;
    out.sum = d[1].via.u64;
    return true;
  } catch (...) {
    return false;
  }
}

}  // namespace broach::membership

namespace broach {
const char* member_state_name(MemberState s) noexcept {
  switch (s) {
    case MemberState::kAlive: return "alive";
    case MemberState::kSuspect: return "suspect";
    case MemberState::kDead: return "dead";
    case MemberState::kLeft: return "left";
  }
  return "unknown";
}
}  // namespace broach
