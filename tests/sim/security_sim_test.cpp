// Sealed datagrams on the simulated network, whole nodes: a keyed cluster
// works and seals everything; forged, tampered and replayed datagrams are
// dropped, counted, and never reach a handler; a keyless node cannot join or
// call; a removed key stops working. Each scenario over 20 seeds
// ($BROACH_SIM_SEEDS for more).
#include <gtest/gtest.h>

#include <map>

#include "reliable/keyring.hpp"
#include "support/sim_node.hpp"
#include "wire/header.hpp"

namespace broach {
namespace {

using testing::SimNodes;

std::string test_key(std::uint64_t seed) {
  Rng rng(seed * 977 + 13);
  reliable::Key k;
  for (auto& b : k.bytes) b = static_cast<std::uint8_t>(rng.next());
  return reliable::Keyring::to_base64(k);
}

Config keyed(std::vector<std::string> keys) {
  Config c = default_config();
  c.rpc_timeout = 1.0;
  c.udp_timeout = 0.3;
  c.security.keys = std::move(keys);
  return c;
}

struct Counted {
  int runs = 0;
};

void provide_echo(api::NodeCore& core, Counted& n) {
  core.provide("echo", detail::make_raw_handler([&n](std::uint64_t x) {
                 ++n.runs;
                 return x;
               }),
               {});
}

std::uint64_t drops(SimNodes& s, std::size_t i, wire::DecodeError why) {
  return s.core(i).engine().path().stats().drops[static_cast<int>(why)];
}

bool all_alive(SimNodes& s, std::size_t n) {
  std::vector<std::size_t> all;
  for (std::size_t i = 0; i < n; ++i) all.push_back(i);
  return s.all_see_alive(all);
}

// One captured datagram: where it went and its bytes.
struct Capture {
  Endpoint from, to;
  std::vector<std::byte> bytes;
};

TEST(SecuritySim, KeyedClusterSealsEveryDatagramAndServes) {
  for (auto seed : testing::sim_seeds()) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    SimNodes s(seed, 5, keyed({test_key(seed)}));
    std::uint64_t plaintext = 0, total = 0;
    s.net.set_on_send([&](const Endpoint&, const Endpoint&, std::span<const std::byte> d) {
      wire::Header h;
      std::span<const std::byte> p;
      ++total;
      // Sealed datagrams decode as headers; their payload is ciphertext.
      if (wire::decode_datagram(d, ~0ull, h, p) != wire::DecodeError::kOk || !(h.flags & wire::kFlagAuth)) ++plaintext;
      return sim::Verdict::kDeliver;
    });
    Counted echo;
    for (std::size_t i = 0; i < 5; ++i) s.start(i, [&](api::NodeCore& c) { if (i > 0) provide_echo(c, echo); });
    ASSERT_TRUE(s.net.run_until([&] { return all_alive(s, 5) && s.routes_to(0, "echo", {1, 2, 3, 4}); }, seconds(30)));
    for (std::uint64_t k = 0; k < 50; ++k) {
      auto o = s.call(0, "echo", detail::pack_args(k));
      ASSERT_TRUE(o->result.ok()) << o->result.error().message();
      EXPECT_EQ(detail::unpack_value<std::uint64_t>(o->result.value()), k);
    }
    EXPECT_EQ(plaintext, 0u);
    EXPECT_GT(total, 100u);
    EXPECT_GT(s.core(1).engine().path().stats().sealed_in, 0u);
    EXPECT_EQ(echo.runs, 50);
  }
}

// A sealed request to node 1 is captured on the wire; then an attacker (a
// host with no key) injects it again, tampered copies of it (every bit of
// header, body and tag flipped, one at a time), a plaintext request and one
// sealed with another key. Nothing reaches a handler a second time.
TEST(SecuritySim, ForgedTamperedAndReplayedDatagramsAreDropped) {
  for (auto seed : testing::sim_seeds()) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    SimNodes s(seed, 3, keyed({test_key(seed)}));  // node 2 is the attacker's host: never started
    std::vector<Capture> requests;
    s.net.set_on_send([&](const Endpoint& from, const Endpoint& to, std::span<const std::byte> d) {
      wire::Header h;
      std::span<const std::byte> p;
      if (wire::decode_datagram(d, ~0ull, h, p) == wire::DecodeError::kOk && h.type == wire::MsgType::kRequest &&
          to == SimNodes::address(1)) {
        requests.push_back({from, to, std::vector<std::byte>(d.begin(), d.end())});
      }
      return sim::Verdict::kDeliver;
    });
    Counted echo;
    s.start(0);
    s.start(1, [&](api::NodeCore& c) { provide_echo(c, echo); });
    ASSERT_TRUE(s.net.run_until([&] { return all_alive(s, 2) && s.routes_to(0, "echo", {1}); }, seconds(30)));
    requests.clear();
    ASSERT_TRUE(s.call(0, "echo", detail::pack_args(std::uint64_t{7}))->result.ok());
    ASSERT_EQ(echo.runs, 1);
    ASSERT_FALSE(requests.empty());
    const auto captured = requests.front().bytes;
    auto& attacker = *s.at(2).n.transport;
    auto inject = [&](const std::vector<std::byte>& d, sim::SimTransport& via) {
      via.send(SimNodes::address(1), d);
      s.net.run_for(milliseconds(5));
    };
    // Replays: from the caller's own address (through node 0's socket) and from another host.
    const auto replayed0 = drops(s, 1, wire::DecodeError::kReplayed);
    inject(captured, *s.at(0).n.transport);
    inject(captured, attacker);
    s.net.run_for(milliseconds(500));
    EXPECT_EQ(drops(s, 1, wire::DecodeError::kReplayed), replayed0 + 2);
    // Tampering: every bit.
    const auto before_auth = drops(s, 1, wire::DecodeError::kBadAuth);
    std::uint64_t header_level = 0;
    for (std::size_t bit = 0; bit < captured.size() * 8; ++bit) {
      auto t = captured;
      t[bit / 8] ^= static_cast<std::byte>(1u << (bit % 8));
      wire::Header h;
      std::span<const std::byte> p;
      const auto e = wire::decode_datagram(t, ~0ull, h, p);
      if (e != wire::DecodeError::kOk || !(h.flags & wire::kFlagAuth)) ++header_level;
      attacker.send(SimNodes::address(1), t);
    }
    s.net.run_for(milliseconds(500));
    std::uint64_t dropped = 0;
    for (int r = 1; r < static_cast<int>(wire::DecodeError::kCount_); ++r) {
      dropped += drops(s, 1, static_cast<wire::DecodeError>(r));
    }
    EXPECT_GE(drops(s, 1, wire::DecodeError::kBadAuth) - before_auth, captured.size() * 8 - header_level - 16 * 8);
    EXPECT_GE(dropped, captured.size() * 8 + 2);
    // A plaintext request and one sealed with a key node 1 does not hold.
    SimNodes other(seed + 1000, 1, keyed({test_key(seed + 1)}));
    std::vector<Capture> foreign;
    other.net.set_on_send([&](const Endpoint& from, const Endpoint& to, std::span<const std::byte> d) {
      foreign.push_back({from, to, std::vector<std::byte>(d.begin(), d.end())});
      return sim::Verdict::kDeliver;
    });
    other.start(0);
    other.core(0).call_to(SimNodes::address(1), "echo", detail::pack_args(std::uint64_t{9}), {}, [](RawResult) {});
    other.net.run_for(milliseconds(50));
    ASSERT_FALSE(foreign.empty());
    const auto bad_key0 = drops(s, 1, wire::DecodeError::kBadKeyId);
    for (const auto& f : foreign) inject(f.bytes, attacker);
    EXPECT_GE(drops(s, 1, wire::DecodeError::kBadKeyId), bad_key0 + foreign.size());
    const auto unsealed0 = drops(s, 1, wire::DecodeError::kUnsealed);
    reliable::Bytes body = reliable::request_payload("echo", detail::pack_args(std::uint64_t{11}));
    wire::Header h;
    h.type = wire::MsgType::kRequest;
    h.node_id = 0xbadbad;
    h.message_id = 1;
    h.total_len = static_cast<std::uint32_t>(body.size());
    h.payload_len = static_cast<std::uint16_t>(body.size());
    std::vector<std::byte> plain(wire::kHeaderSize + body.size());
    wire::encode_header(h, plain);
    std::copy(body.begin(), body.end(), plain.begin() + wire::kHeaderSize);
    inject(plain, attacker);
    EXPECT_EQ(drops(s, 1, wire::DecodeError::kUnsealed), unsealed0 + 1);
    s.net.run_for(milliseconds(500));
    EXPECT_EQ(echo.runs, 1);  // only the one real call ever ran
  }
}

// A node without the key (or with another one) is never listed by the keyed
// cluster, and its calls to a keyed node fail with a typed error in time.
TEST(SecuritySim, KeylessNodeCannotJoinOrCall) {
  for (auto seed : testing::sim_seeds()) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    SimNodes s(seed, 4, keyed({test_key(seed)}));
    Config plain = keyed({});
    s.overrides[3] = plain;
    Counted echo;
    for (std::size_t i = 0; i < 3; ++i) s.start(i, [&](api::NodeCore& c) { if (i > 0) provide_echo(c, echo); });
    ASSERT_TRUE(s.net.run_until([&] { return all_alive(s, 3); }, seconds(30)));
    s.start(3, [&](api::NodeCore& c) { provide_echo(c, echo); });  // joins through node 0
    s.net.run_for(seconds(5));
    for (std::size_t v = 0; v < 3; ++v) {
      for (const auto& m : s.core(v).members()) EXPECT_NE(m.address, SimNodes::address(3)) << "listed by node " << v;
    }
    EXPECT_EQ(s.core(3).members().size(), 1u);  // alone
    auto o = std::make_shared<SimNodes::Outcome>();
    o->started = s.net.now();
    s.core(3).call_to(SimNodes::address(1), "echo", detail::pack_args(std::uint64_t{1}), {}, [&](RawResult r) {
      o->finished = true;
      o->ended = s.net.now();
      o->result = std::move(r);
    });
    ASSERT_TRUE(s.net.run_until([&] { return o->finished; }, seconds(5)));
    ASSERT_FALSE(o->result.ok());
    EXPECT_EQ(o->result.error().code(), Errc::kDeliveryTimeout);
    EXPECT_LE(o->ended - o->started, milliseconds(330));
    EXPECT_EQ(echo.runs, 0);
    EXPECT_GT(drops(s, 1, wire::DecodeError::kUnsealed), 0u);
  }
}

// Rotation by hand on one pair: a node that holds the old and the new key
// talks to both; once the old key is removed from a ring, datagrams sealed
// with it are dropped there as bad_key_id.
TEST(SecuritySim, RemovedKeyStopsWorking) {
  for (auto seed : testing::sim_seeds()) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    const std::string k_old = test_key(seed), k_new = test_key(seed + 500);
    SimNodes s(seed, 3, keyed({k_old, k_new}));  // node 0 seals with the old key
    s.overrides[1] = keyed({k_new, k_old});       // node 1 seals with the new key, opens both
    s.overrides[2] = keyed({k_new});              // node 2 no longer holds the old key
    Counted echo;
    s.start(0);
    s.start(1, [&](api::NodeCore& c) { provide_echo(c, echo); });
    s.start(2, [&](api::NodeCore& c) { provide_echo(c, echo); });
    s.net.run_for(seconds(3));
    // Node 0 (old key) reaches node 1, which holds both; node 2 drops it.
    bool ok1 = false, done2 = false;
    RawResult r2 = Error(Errc::kShutdown, "");
    s.core(0).call_to(SimNodes::address(1), "echo", detail::pack_args(std::uint64_t{1}), {},
                      [&](RawResult r) { ok1 = r.ok(); });
    s.core(0).call_to(SimNodes::address(2), "echo", detail::pack_args(std::uint64_t{2}), {}, [&](RawResult r) {
      done2 = true;
      r2 = std::move(r);
    });
    ASSERT_TRUE(s.net.run_until([&] { return ok1 && done2; }, seconds(5)));
    ASSERT_FALSE(r2.ok());
    EXPECT_EQ(r2.error().code(), Errc::kDeliveryTimeout);
    EXPECT_GT(drops(s, 2, wire::DecodeError::kBadKeyId), 0u);
  }
}

// Key rotation on a 5-node cluster while calls by name run: install the new
// key everywhere, make it primary everywhere, remove the old one everywhere
// (through __broach.keys, as `broach keys` does). No call fails, and a node
// that still holds only the old key is shut out afterwards.
TEST(SecuritySim, KeyRotationUnderLoadLosesNoCall) {
  for (auto seed : testing::sim_seeds()) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    const std::string k_old = test_key(seed), k_new = test_key(seed + 500);
    SimNodes s(seed, 6, keyed({k_old}));
    Counted echo;
    for (std::size_t i = 0; i < 5; ++i) s.start(i, [&](api::NodeCore& c) { if (i > 0) provide_echo(c, echo); });
    ASSERT_TRUE(s.net.run_until([&] { return all_alive(s, 5) && s.routes_to(0, "echo", {1, 2, 3, 4}); }, seconds(30)));
    std::vector<std::shared_ptr<SimNodes::Outcome>> calls;
    std::uint64_t k = 0;
    auto load_for = [&](Duration d) {
      const TimePoint end = s.net.now() + d;
      while (s.net.now() < end) {
        calls.push_back(s.call_async(k % 5, "echo", detail::pack_args(k)));
        ++k;
        s.net.run_for(milliseconds(2));
      }
    };
    // One admin step on every member, from node 0, each answered.
    auto on_every_member = [&](std::vector<std::string> args) {
      int answered = 0;
      for (std::size_t i = 0; i < 5; ++i) {
        s.core(0).call_to(SimNodes::address(i), api::kKeysService, detail::pack_value(args), {},
                          [&](RawResult r) {
                            EXPECT_TRUE(r.ok()) << r.error().message();
                            ++answered;
                          });
      }
      load_for(milliseconds(100));
      EXPECT_EQ(answered, 5);
    };
    load_for(milliseconds(200));
    on_every_member({"install", k_new});
    on_every_member({"use", k_new});
    on_every_member({"remove", k_old});
    load_for(milliseconds(200));
    ASSERT_TRUE(s.net.run_until([&] { for (auto& c : calls) if (!c->finished) return false; return true; }, seconds(5)));
    int failed = 0;
    for (auto& c : calls) failed += !c->result.ok();
    EXPECT_EQ(failed, 0) << "of " << calls.size() << " calls";
    // Everyone seals with the new key and no longer opens the old one.
    const auto* ring = s.core(3).engine().path().keyring();
    ASSERT_NE(ring, nullptr);
    EXPECT_EQ(ring->keys().size(), 1u);
    EXPECT_EQ(reliable::Keyring::to_base64(ring->primary()), k_new);
    s.start(5);  // a node with only the old key
    bool done = false;
    RawResult r = Error(Errc::kShutdown, "");
    s.core(5).call_to(SimNodes::address(1), "echo", detail::pack_args(std::uint64_t{1}), {}, [&](RawResult x) {
      done = true;
      r = std::move(x);
    });
    ASSERT_TRUE(s.net.run_until([&] { return done; }, seconds(5)));
    EXPECT_FALSE(r.ok());
    EXPECT_GT(drops(s, 1, wire::DecodeError::kBadKeyId), 0u);
  }
}

// The documented migration from plaintext to keys, as rolling restarts: at
// every moment the cluster holds nodes of two neighbouring steps only, and
// calls between any two of them succeed.
TEST(SecuritySim, RollingMigrationFromPlaintextNeverSplits) {
  for (auto seed : testing::sim_seeds()) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    const std::string key = test_key(seed);
    auto step = [&](int n) {
      Config c = keyed(n == 0 ? std::vector<std::string>{} : std::vector<std::string>{key});
      c.security.seal_outgoing = n >= 2;
      c.security.verify_incoming = n >= 3;
      return c;
    };
    // Pairs of neighbouring steps: 0 plaintext, 1 keys but neither switch,
    // 2 sealing, 3 sealing and verifying.
    for (int a = 0; a < 3; ++a) {
      SimNodes s(seed * 10 + static_cast<std::uint64_t>(a), 2, step(a));
      s.overrides[1] = step(a + 1);
      Counted echo;
      s.start(0, [&](api::NodeCore& c) { provide_echo(c, echo); });
      s.start(1, [&](api::NodeCore& c) { provide_echo(c, echo); });
      ASSERT_TRUE(s.net.run_until([&] { return all_alive(s, 2); }, seconds(30))) << "steps " << a << "/" << a + 1;
      for (std::size_t from = 0; from < 2; ++from) {
        bool ok = false, done = false;
        s.core(from).call_to(SimNodes::address(1 - from), "echo", detail::pack_args(std::uint64_t{5}), {},
                             [&](RawResult r) {
                               done = true;
                               ok = r.ok();
                             });
        ASSERT_TRUE(s.net.run_until([&] { return done; }, seconds(5)));
        EXPECT_TRUE(ok) << "steps " << a << "/" << a + 1 << ", from node " << from;
      }
    }
  }
}

}  // namespace
}  // namespace broach
