// Anti-amplification on the simulated network, whole nodes, plaintext (no
// keys: every datagram is unauthenticated). For every datagram type and
// internal service, one datagram written from docs/protocol.md alone is sent
// to a provider from a fresh address; everything the cluster then sends to
// any address that is not a member, over the next udpTimeOut, must stay
// within 3x its size. An honest caller from an unproven address still gets
// a large response (after one challenge round trip), and the internal
// services answer only who they should. Each scenario over 20 seeds
// ($BROACH_SIM_SEEDS for more).
#include <gtest/gtest.h>

#include <map>

#include "membership/messages.hpp"
#include "support/sim_node.hpp"
#include "wire/header.hpp"
#include "wire/payload.hpp"

namespace broach {
namespace {

using testing::SimNodes;

constexpr std::size_t kBig = 100000;

Config plaintext() {
  Config c = default_config();
  c.rpc_timeout = 1.0;
  c.udp_timeout = 0.3;
  return c;
}

void provide(api::NodeCore& core) {
  core.provide("echo", detail::make_raw_handler([](std::string s) { return s; }), {});
  core.provide("big", detail::make_raw_handler([] { return std::string(kBig, 'b'); }), {});
}

// One datagram as an independent client would write it from docs/protocol.md.
std::vector<std::byte> datagram(wire::MsgType type, std::uint64_t id, std::span<const std::byte> body,
                                std::uint16_t flags = 0, std::uint32_t index = 0, std::uint32_t count = 1,
                                std::uint32_t total = 0) {
  wire::Header h;
  h.type = type;
  h.flags = flags;
  h.node_id = 0x5eed0000 + id;
  h.message_id = id;
  h.fragment_index = index;
  h.fragment_count = count;
  h.total_len = count == 1 ? static_cast<std::uint32_t>(body.size()) : total;
  h.payload_len = static_cast<std::uint16_t>(body.size());
  std::vector<std::byte> d(wire::kHeaderSize + body.size());
  wire::encode_header(h, d);
  std::copy(body.begin(), body.end(), d.begin() + wire::kHeaderSize);
  return d;
}

std::vector<std::byte> request(std::uint64_t id, const std::string& service, const Bytes& args) {
  Bytes body;
  wire::encode_request(service, args, body);
  return datagram(wire::MsgType::kRequest, id, body);
}

Bytes probe(membership::Kind kind, std::uint32_t seq, std::optional<Endpoint> target,
            const std::vector<membership::Update>& updates = {}) {
  membership::ProbeWriter w(kind, seq, target);
  for (const auto& u : updates) w.try_add(membership::encode_update(u), 1400);
  return w.finish();
}

Bytes push_pull_args(const std::vector<membership::Update>& state) {
  const auto bin = membership::encode_push_pull(false, state);
  return detail::pack_args(std::vector<char>(reinterpret_cast<const char*>(bin.data()),
                                             reinterpret_cast<const char*>(bin.data()) + bin.size()));
}

struct Case {
  std::string name;
  std::vector<std::byte> bytes;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  auto add = [&](std::string name, std::vector<std::byte> d) { out.push_back({std::move(name), std::move(d)}); };
  std::uint64_t id = 100;
  add("request echo", request(++id, "echo", detail::pack_args(std::string(8, 'x'))));
  add("request big response", request(++id, "big", detail::pack_args()));
  add("request unknown service", request(++id, "nothing.here", detail::pack_args()));
  add("request __broach.members", request(++id, "__broach.members", detail::pack_args()));
  add("request __broach.routes", request(++id, "__broach.routes", detail::pack_args()));
  add("request __broach.stats", request(++id, "__broach.stats", detail::pack_args()));
  add("request __broach.keys", request(++id, "__broach.keys", detail::pack_args(std::string("list"))));
  add("request __broach.pushpull", request(++id, "__broach.pushpull", push_pull_args({})));
  {
    const std::vector<std::byte> junk(5, std::byte{0xc1});
    add("request malformed body", datagram(wire::MsgType::kRequest, ++id, junk));
  }
  {
    const std::vector<std::byte> part(1000, std::byte{0x41});
    add("first fragment of a request", datagram(wire::MsgType::kRequest, ++id, part, 0, 0, 2, 1500));
  }
  add("unsolicited response", datagram(wire::MsgType::kResponse, ++id, Bytes{std::byte{0x92}, std::byte{0}, std::byte{0xc0}}));
  add("in progress", datagram(wire::MsgType::kInProgress, ++id, {}));
  {
    std::byte ack[wire::FragmentAck::kSize] = {};
    wire::encode_fragment_ack(wire::FragmentAck{}, ack);
    add("fragment ack (request)", datagram(wire::MsgType::kFragmentAck, ++id, ack));
    add("fragment ack (response)", datagram(wire::MsgType::kFragmentAck, ++id, ack, wire::kFlagForResponse));
  }
  add("status query", datagram(wire::MsgType::kStatusQuery, ++id, {}));
  add("status query (response)", datagram(wire::MsgType::kStatusQuery, ++id, {}, wire::kFlagForResponse));
  add("unknown call", datagram(wire::MsgType::kUnknownCall, ++id, {}));
  {
    const std::vector<std::byte> token(16, std::byte{7});
    add("challenge", datagram(wire::MsgType::kChallenge, ++id, token));
    add("address proof (forged)", datagram(wire::MsgType::kAddressProof, ++id, token));
  }
  add("ping", datagram(wire::MsgType::kPing, 0, probe(membership::Kind::kPing, 77, std::nullopt)));
  add("ack", datagram(wire::MsgType::kPing, 0, probe(membership::Kind::kAck, 77, std::nullopt)));
  add("nack", datagram(wire::MsgType::kPing, 0, probe(membership::Kind::kNack, 77, std::nullopt)));
  add("ping-req for a stranger",
      datagram(wire::MsgType::kPing, 0, probe(membership::Kind::kPingReq, 78, Endpoint{0x0c000001, 9999})));
  add("ping-req for a member", datagram(wire::MsgType::kPing, 0, probe(membership::Kind::kPingReq, 79, SimNodes::address(0))));
  {
    membership::Update u;
    u.state = MemberState::kSuspect;
    u.addr = SimNodes::address(0);
    u.life = 1;
    u.incarnation = 0;
    u.from = Endpoint{0x0c000002, 9999};
    add("gossip (a stale suspicion)", datagram(wire::MsgType::kGossip, 0, probe(membership::Kind::kGossip, 0, std::nullopt, {u})));
  }
  return out;
}

// Everything the cluster sends to non-members after one datagram from a
// fresh address, over udpTimeOut, is at most 3x that datagram.
TEST(AmplificationSim, EveryDatagramTypeAndInternalService) {
  const auto all = cases();
  for (auto seed : testing::sim_seeds()) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    SimNodes s(seed, 2, plaintext());
    s.start(0);
    s.start(1, provide);
    ASSERT_TRUE(s.net.run_until([&] { return s.all_see_alive({0, 1}) && s.routes_to(0, "big", {1}); }, seconds(30)));
    std::map<Endpoint, std::uint64_t> to_outsiders;
    s.net.set_on_send([&](const Endpoint& from, const Endpoint& to, std::span<const std::byte> d) {
      const bool member_from = from == SimNodes::address(0) || from == SimNodes::address(1);
      const bool member_to = to == SimNodes::address(0) || to == SimNodes::address(1);
      if (member_from && !member_to) to_outsiders[to] += d.size();
      return sim::Verdict::kDeliver;
    });
    std::uint32_t host = 0;
    for (const auto& c : all) {
      SCOPED_TRACE(c.name);
      // A fresh address each time: credit does not carry over between cases.
      auto sender = s.net.add_node(Endpoint{0x0b000000u + (static_cast<std::uint32_t>(seed) << 8) + ++host, 9000});
      to_outsiders.clear();
      sender.transport->send(SimNodes::address(1), c.bytes);
      s.net.run_for(milliseconds(300));  // udpTimeOut
      std::uint64_t total = 0;
      for (const auto& [to, n] : to_outsiders) total += n;
      EXPECT_LE(total, 3 * c.bytes.size()) << "sent " << c.bytes.size() << " bytes";
      if (std::getenv("AMP_DEBUG")) std::printf("%s: %zu -> %llu\n", c.name.c_str(), c.bytes.size(), (unsigned long long)total);
    }
    const auto& st = s.core(1).engine().stats();
    EXPECT_GT(st.challenges_sent, 0u);  // the big response was held back
    EXPECT_EQ(st.address_proofs, 0u);
    EXPECT_EQ(st.address_proofs_bad, 1u);
    EXPECT_GT(s.core(1).membership().stats().ping_req_refused, 0u);
  }
}

// An honest caller at an address the provider has never heard from: a
// response of 100 KB (far above 3x a small request) arrives after one
// challenge round trip; the next call needs none.
TEST(AmplificationSim, HonestStrangerGetsALargeResponseAfterOneChallenge) {
  for (auto seed : testing::sim_seeds()) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    SimNodes s(seed, 2, plaintext());
    s.start(0);
    s.start(1, provide);
    ASSERT_TRUE(s.net.run_until([&] { return s.all_see_alive({0, 1}); }, seconds(30)));
    auto client = testing::make_node(s.net, Endpoint{0x0b0000fe, 9000}, 0xc11e47);
    for (int k = 0; k < 2; ++k) {
      std::optional<reliable::CallResult> got;
      client.engine->call(SimNodes::address(1), testing::request_body("big"), s.net.now() + seconds(2),
                          [&](reliable::CallResult&& r) { got = std::move(r); });
      ASSERT_TRUE(s.net.run_until([&] { return got.has_value(); }, seconds(3)));
      ASSERT_EQ(got->code, Errc::kOk) << got->message;
      EXPECT_EQ(detail::unpack_value<std::string>(got->body).size(), kBig);
    }
    const auto& st = s.core(1).engine().stats();
    EXPECT_EQ(st.challenges_sent, 1u);
    EXPECT_EQ(st.address_proofs, 1u);
  }
}

// Internal services: a stranger gets permission_denied (a small answer), a
// member gets the answer; __broach.keys answers sealed requests only.
TEST(AmplificationSim, InternalServicesAnswerMembersOnly) {
  for (auto seed : testing::sim_seeds(5)) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    SimNodes s(seed, 2, plaintext());
    s.start(0);
    s.start(1, provide);
    ASSERT_TRUE(s.net.run_until([&] { return s.all_see_alive({0, 1}); }, seconds(30)));
    auto stranger = testing::make_node(s.net, Endpoint{0x0b0000fd, 9000}, 0x57a);
    // From the stranger (an engine at a non-member address) and from member 0.
    auto from_stranger = [&](const std::string& service, const Bytes& args) {
      std::optional<reliable::CallResult> got;
      stranger.engine->call(SimNodes::address(1), reliable::request_payload(service, args),
                            s.net.now() + seconds(2), [&](reliable::CallResult&& r) { got = std::move(r); });
      EXPECT_TRUE(s.net.run_until([&] { return got.has_value(); }, seconds(3)));
      return got ? got->code : Errc::kShutdown;
    };
    auto from_member = [&](const std::string& service, const Bytes& args) {
      std::optional<Errc> got;
      s.core(0).call_to(SimNodes::address(1), service, args, {},
                        [&](RawResult r) { got = r.ok() ? Errc::kOk : r.error().code(); });
      EXPECT_TRUE(s.net.run_until([&] { return got.has_value(); }, seconds(3)));
      return got.value_or(Errc::kShutdown);
    };
    for (const char* svc : {"__broach.members", "__broach.routes", "__broach.stats"}) {
      SCOPED_TRACE(svc);
      EXPECT_EQ(from_stranger(svc, detail::pack_args()), Errc::kPermissionDenied);
      EXPECT_EQ(from_member(svc, detail::pack_args()), Errc::kOk);
    }
    EXPECT_EQ(from_member("__broach.keys", detail::pack_args(std::string("list"))), Errc::kPermissionDenied);
    EXPECT_EQ(from_stranger("echo", detail::pack_args(std::string("hi"))), Errc::kOk);
  }
}

}  // namespace
}  // namespace broach
