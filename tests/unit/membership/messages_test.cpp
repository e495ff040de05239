#include "membership/messages.hpp"
#include "membership/meta_pool.hpp"

#include <gtest/gtest.h>

namespace broach::membership {
namespace {

Update alive_update() {
  Update u;
  u.state = MemberState::kAlive;
  u.addr = Endpoint{0x0a000001, 7946};
  u.life = 1795479227370ULL;
  u.incarnation = 7;
  MemberMeta m;
  m.name = "node";
  m.version = "1.2.3";
  m.services = {"add", "echo"};
  m.weight = 50;
  m.tags = {{"zone", "a"}};
  u.meta = std::make_shared<const MemberMeta>(m);
  return u;
}

TEST(Messages, ProbeRoundTripsWithUpdates) {
  ProbeWriter w(Kind::kPingReq, 42, Endpoint{0x0a000002, 1});
  ASSERT_TRUE(w.try_add(encode_update(alive_update()), 1400));
  Update s;
  s.state = MemberState::kSuspect;
  s.addr = Endpoint{0x0a000003, 2};
  s.from = Endpoint{0x0a000001, 7946};
  ASSERT_TRUE(w.try_add(encode_update(s), 1400));
  ProbeMessage m;
  ASSERT_TRUE(decode_probe(w.finish(), m));
  EXPECT_EQ(m.kind, Kind::kPingReq);
  EXPECT_EQ(m.seq, 42u);
  ASSERT_TRUE(m.target.has_value());
  EXPECT_EQ(m.target->port, 1);
  ASSERT_EQ(m.updates.size(), 2u);
  EXPECT_EQ(m.updates[0].meta->services, alive_update().meta->services);
  EXPECT_EQ(m.updates[0].meta->tags.at("zone"), "a");
  EXPECT_EQ(m.updates[0].life, 1795479227370ULL);
  EXPECT_EQ(m.updates[1].state, MemberState::kSuspect);
  EXPECT_EQ(m.updates[1].from.port, 7946);
  EXPECT_EQ(m.updates[1].meta, nullptr);
}

// IPv6 addresses travel as bin 8 of 16 bytes (IPv4 stays an integer), in
// updates, their `from`, and a ping-req's target.
TEST(Messages, Ipv6AddressesRoundTrip) {
  Endpoint a, b, t;
  ASSERT_TRUE(Endpoint::parse("[fd00::1:2]:7946", a));
  ASSERT_TRUE(Endpoint::parse("[::1]:7000", b));
  ASSERT_TRUE(Endpoint::parse("[2001:db8::ff]:1", t));
  ProbeWriter w(Kind::kPingReq, 9, t);
  Update u = alive_update();
  u.addr = a;
  u.from = b;
  const auto one = encode_update(u);
  ASSERT_TRUE(w.try_add(one, 1400));
  Update v4 = alive_update();  // an IPv4 one beside it
  ASSERT_TRUE(w.try_add(encode_update(v4), 1400));
  ProbeMessage m, m3;
  ASSERT_TRUE(decode_probe(w.finish(), m));
  ASSERT_TRUE(m.target.has_value());
  EXPECT_EQ(*m.target, t);
  ASSERT_EQ(m.updates.size(), 2u);
  EXPECT_EQ(m.updates[0].addr, a);
  EXPECT_EQ(m.updates[0].from, b);
  EXPECT_EQ(m.updates[1].addr, v4.addr);
  EXPECT_FALSE(m.updates[1].addr.v6);
  // The address field is bin 8 (0xc4) of length 16 right after the state.
  ASSERT_GT(one.size(), 20u);
  EXPECT_EQ(std::to_integer<int>(one[2]), 0xc4);
  EXPECT_EQ(std::to_integer<int>(one[3]), 16);
  // A mapped IPv4 address in bin form is that IPv4 address (one identity
  // per host, as the UDP layer reports such senders).
  auto mapped = one;
  const std::uint8_t mapped_ip[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1};
  for (int i = 0; i < 16; ++i) mapped[4 + i] = std::byte{mapped_ip[i]};
  ProbeWriter w3(Kind::kPing, 1, std::nullopt);
  ASSERT_TRUE(w3.try_add(mapped, 1400));
  ASSERT_TRUE(decode_probe(w3.finish(), m3));
  ASSERT_EQ(m3.updates.size(), 1u);
  EXPECT_FALSE(m3.updates[0].addr.v6);
  EXPECT_EQ(m3.updates[0].addr.ip, 0x0a000001u);
  // Any other bin length is refused, like a malformed integer address.
  auto bad = one;
  bad[3] = std::byte{15};
  ProbeWriter w2(Kind::kPing, 1, std::nullopt);
  ASSERT_TRUE(w2.try_add(bad, 1400));
  EXPECT_FALSE(decode_probe(w2.finish(), m));
}

TEST(Messages, WriterRespectsTheSizeLimit) {
  ProbeWriter w(Kind::kGossip, 0, std::nullopt);
  const auto u = encode_update(alive_update());
  int added = 0;
  while (w.try_add(u, 500)) ++added;
  EXPECT_GT(added, 0);
  EXPECT_LE(w.finish().size(), 500u);
}

TEST(Messages, RejectsMalformedBodies) {
  ProbeMessage m;
  EXPECT_FALSE(decode_probe({}, m));
  ProbeWriter w(Kind::kPing, 1, std::nullopt);
  w.try_add(encode_update(alive_update()), 1400);
  const auto body = w.finish();
  for (std::size_t n = 0; n < body.size(); ++n) {
    EXPECT_FALSE(decode_probe(std::span(body).first(n), m)) << n;
  }
  auto bad = body;
  bad[1] = std::byte{9};  // kind out of range
  EXPECT_FALSE(decode_probe(bad, m));
}

TEST(Messages, HeadersClaimingBillionsOfElementsAreRejectedUnread) {
  // A 5-byte body: a map32 header announcing 4,294,967,050 pairs. It must be
  // rejected before msgpack would reserve memory for them.
  const std::byte body[] = {std::byte{0xdf}, std::byte{0xff}, std::byte{0xff}, std::byte{0xff},
                            std::byte{0x0a}};
  ProbeMessage m;
  EXPECT_FALSE(decode_probe(body, m));
  bool join = false;
  std::vector<Update> state;
  EXPECT_FALSE(decode_push_pull(body, join, state));
}

TEST(Messages, PushPullRoundTrips) {
  std::vector<Update> state{alive_update(), alive_update()};
  state[1].state = MemberState::kDead;
  state[1].addr.port = 9;
  bool join = false;
  std::vector<Update> out;
  ASSERT_TRUE(decode_push_pull(encode_push_pull(true, state), join, out));
  EXPECT_TRUE(join);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1].state, MemberState::kDead);
  EXPECT_EQ(out[1].addr.port, 9);
}

// The streaming writer (a node's own state) writes what encode_push_pull
// writes for the same records; old news is left out undecoded.
TEST(Messages, PushPullWriterMatchesAndOldNewsIsSkipped) {
  std::vector<Update> state{alive_update(), alive_update(), alive_update()};
  state[1].state = MemberState::kDead;
  state[1].addr.port = 9;
  state[2].addr.port = 10;
  state[2].meta.reset();
  PushPullWriter w;
  w.begin(false, state.size());
  for (const auto& u : state) w.add(u.state, u.addr, u.life, u.incarnation, u.meta.get());
  const auto written = w.take();
  EXPECT_EQ(written, encode_push_pull(false, state));
  bool join = true;
  std::vector<Update> out;
  std::vector<std::uint16_t> asked;
  ASSERT_TRUE(decode_push_pull(written, join, out, [&](const Update& u) {
    asked.push_back(u.addr.port);
    EXPECT_EQ(u.meta, nullptr) << "asked before the metadata is read";
    return u.addr.port == state[0].addr.port;
  }));
  EXPECT_FALSE(join);
  EXPECT_EQ(asked.size(), 3u);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].addr.port, 9);
  ASSERT_NE(out[0].meta, nullptr);
  EXPECT_EQ(*out[0].meta, *state[1].meta);
  EXPECT_EQ(out[1].meta, nullptr);
}

// Interned metadata carries its encoding, made once: the writer copies it.
TEST(Messages, InternedMetadataIsPackedOnce) {
  const Update u = alive_update();
  const auto shared = intern_meta(*u.meta);
  EXPECT_EQ(shared->meta, *u.meta);
  EXPECT_EQ(shared->packed, pack_member_meta(*u.meta));
  EXPECT_EQ(intern_meta(*u.meta).get(), shared.get()) << "equal metadata, one shared copy";
  PushPullWriter w;
  w.begin(true, 1);
  w.add_packed(u.state, u.addr, u.life, u.incarnation, shared->packed);
  Update plain = u;
  plain.from = Endpoint{};
  EXPECT_EQ(w.take(), encode_push_pull(true, {plain}));
}


// The digest of docs/protocol.md ("Digest first"): the values below were
// computed by an independent SipHash-2-4 written from the paper (checked
// against its test vector), over the 30 bytes the protocol specifies.
TEST(Messages, DigestOfAMemberIsTheSpecifiedSipHash) {
  EXPECT_EQ(digest_member(Endpoint{0x0a000001u, 7946}, 1234567890123ull, 7), 5069784568271884681ull);
  EXPECT_EQ(digest_member(Endpoint{0x0a000002u, 7946}, 42, 0), 5641956778179198691ull);
  StateDigest a, b;
  a.add(Endpoint{0x0a000001u, 7946}, 1234567890123ull, 7);
  a.add(Endpoint{0x0a000002u, 7946}, 42, 0);
  b.add(Endpoint{0x0a000002u, 7946}, 42, 0);  // another order, the same digest
  b.add(Endpoint{0x0a000001u, 7946}, 1234567890123ull, 7);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.count, 2u);
  EXPECT_EQ(a.sum, 10711741346451083372ull);
  StateDigest c;
  c.add(Endpoint{0x0a000001u, 7946}, 1234567890123ull, 8);  // a newer incarnation
  c.add(Endpoint{0x0a000002u, 7946}, 42, 0);
  EXPECT_NE(a, c);
}

TEST(Messages, DigestRoundTripsAndIsNotAFullState) {
  StateDigest d{10000, 0xfedcba9876543210ull};
  const auto body = encode_digest(d);
  StateDigest back;
  ASSERT_TRUE(decode_digest(body, back));
  EXPECT_EQ(back, d);
  // A digest is not a full state, and a full state is not a digest.
  bool join = true;
  std::vector<Update> state;
  EXPECT_FALSE(decode_push_pull(body, join, state));
  const auto full = encode_push_pull(false, {});
  EXPECT_FALSE(decode_digest(full, back));
  // Malformed digests: a non-empty update list, a missing sum, a trailing byte.
  for (const char* hex : {"93c29100920102", "93c290910a", "93c2909201020a"}) {
    wire::Bytes b;
    for (const char* p = hex; *p != 0; p += 2) {
      b.push_back(static_cast<std::byte>(std::stoi(std::string(p, 2), nullptr, 16)));
    }
    EXPECT_FALSE(decode_digest(b, back)) << hex;
  }
}

}  // namespace
}  // namespace broach::membership
