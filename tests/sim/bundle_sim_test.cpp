// Coalescing (Bundles) on the simulated network: thousands of calls started
// at once travel in Bundles, plaintext and sealed, and under loss,
// duplication and reordering every call ends correctly with its handler run
// exactly once; a lone call leaves at once (no timer); forged Bundles are
// dropped entry by entry and counted. Over 20 seeds ($BROACH_SIM_SEEDS).
#include <gtest/gtest.h>

#include "reliable/keyring.hpp"
#include "support/sim_node.hpp"
#include "support/sim_rpc.hpp"
#include "wire/header.hpp"

namespace broach {
namespace {

using reliable::CallResult;
using testing::make_node;
using testing::request_body;

const Endpoint kA{0x0a000001, 7000};
const Endpoint kB{0x0a000002, 7000};

std::string unpack_string(const Bytes& b) {
  auto oh = msgpack::unpack(reinterpret_cast<const char*>(b.data()), b.size());
  return oh.get().as<std::string>();
}

reliable::EngineOptions options(bool sealed, std::uint64_t seed) {
  reliable::EngineOptions o;
  if (sealed) {
    Rng rng(seed);
    reliable::Key k;
    for (auto& b : k.bytes) b = static_cast<std::uint8_t>(rng.next());
    o.security.keyring = std::make_shared<const reliable::Keyring>(
        reliable::Keyring::from_base64({reliable::Keyring::to_base64(k)}, "test"));
  }
  return o;
}

void calls_in_bundles(bool sealed) {
  for (auto seed : testing::sim_seeds()) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    sim::SimNetwork net(seed);
    sim::LinkPolicy bad;
    bad.loss = 0.2;
    bad.duplicate = 0.05;
    bad.reorder = 0.05;
    auto a = make_node(net, kA, 1, options(sealed, seed));
    auto b = make_node(net, kB, 2, options(sealed, seed));
    if (!sealed) {
      // A first call gets the caller's address proven (the provider asks
      // after the response): from then on the provider's replies are not
      // metered and may share Bundles too.
      std::optional<CallResult> first;
      a.engine->call(kB, request_body("echo", std::string("hello")), net.now() + seconds(1),
                     [&](CallResult&& r) { first = std::move(r); });
      ASSERT_TRUE(net.run_until([&] { return b.engine->stats().address_proofs > 0; }, seconds(1)));
    }
    net.set_default_policy(bad);
    constexpr int kWave = 2000, kCalls = 2 * kWave;
    int ok = 0, failed = 0;
    // Two waves, each started within one event: they leave together.
    for (int wave = 0; wave < 2; ++wave) {
      a.n.loop->post([&, wave] {
        for (int i = wave * kWave; i < (wave + 1) * kWave; ++i) {
          const std::string v = "v" + std::to_string(i);
          a.engine->call(kB, request_body("echo", v), net.now() + seconds(8), [&, v](CallResult&& r) {
            (r.code == Errc::kOk && unpack_string(r.body) == v ? ok : failed)++;
          });
        }
      });
      ASSERT_TRUE(net.run_until([&] { return ok + failed == (wave + 1) * kWave; }, seconds(10)))
          << net.trace_tail();
    }
    EXPECT_EQ(ok, kCalls) << net.trace_tail();
    EXPECT_EQ(b.handler->total_runs, kCalls + (sealed ? 0 : 1));
    EXPECT_EQ(b.handler->max_runs_per_request(), 1);
    const auto& pa = a.engine->path().stats();
    const auto& pb = b.engine->path().stats();
    EXPECT_GT(pa.bundles_out, 0u);
    EXPECT_GT(pb.bundles_out, 0u);
    // Requests and responses of 16 calls and more share a datagram on average.
    EXPECT_GT(pa.bundled_out, 16 * pa.bundles_out);
    EXPECT_GT(pb.bundles_in, 0u);
    if (sealed) {
      EXPECT_GT(pb.sealed_in, 0u);
    }
  }
}

TEST(BundleSim, ThousandsOfCallsInBundlesUnderLossDuplicationAndReordering) { calls_in_bundles(false); }
TEST(BundleSim, SealedBundles) { calls_in_bundles(true); }

TEST(BundleSim, ALoneCallLeavesAtOnce) {
  for (auto seed : testing::sim_seeds(5)) {
    sim::SimNetwork net(seed);
    auto a = make_node(net, kA, 1);
    auto b = make_node(net, kB, 2);
    TimePoint sent{};
    net.set_on_send([&](const Endpoint& from, const Endpoint&, std::span<const std::byte>) {
      if (from == kA && sent == TimePoint{}) sent = net.now();
      return sim::Verdict::kDeliver;
    });
    net.run_for(milliseconds(3));
    std::optional<CallResult> got;
    TimePoint started{};
    a.n.loop->post([&] {
      started = net.now();
      a.engine->call(kB, request_body("echo", std::string("x")), net.now() + seconds(1),
                     [&](CallResult&& r) { got = std::move(r); });
    });
    ASSERT_TRUE(net.run_until([&] { return got.has_value(); }, seconds(1)));
    EXPECT_EQ(got->code, Errc::kOk);
    EXPECT_EQ(sent, started);  // same virtual instant: flushed at the end of the event
    EXPECT_EQ(a.engine->path().stats().bundles_out, 0u);  // one datagram alone is not wrapped
  }
}

// Entries that break the rules are dropped one by one; the good ones in the
// same Bundle are delivered.
TEST(BundleSim, ForgedEntriesAreDroppedAndCounted) {
  sim::SimNetwork net(7);
  auto b = make_node(net, kB, 2);
  auto* attacker = net.add_node(Endpoint{0x0b000001, 9000}).transport;
  auto entry = [](std::uint64_t node, std::uint64_t id, wire::MsgType type, std::uint16_t flags) {
    const Bytes body = request_body("echo", std::string("e") + std::to_string(id));
    wire::Header h;
    h.type = type;
    h.flags = flags;
    h.node_id = node;
    h.message_id = id;
    h.total_len = static_cast<std::uint32_t>(body.size());
    h.payload_len = static_cast<std::uint16_t>(body.size());
    std::vector<std::byte> d(wire::kHeaderSize + body.size());
    wire::encode_header(h, d);
    std::copy(body.begin(), body.end(), d.begin() + wire::kHeaderSize);
    return d;
  };
  std::vector<std::byte> body;
  auto add = [&](const std::vector<std::byte>& d) {
    body.push_back(static_cast<std::byte>(d.size() & 0xff));
    body.push_back(static_cast<std::byte>(d.size() >> 8));
    body.insert(body.end(), d.begin(), d.end());
  };
  add(entry(77, 1, wire::MsgType::kRequest, 0));               // good
  add(entry(78, 2, wire::MsgType::kRequest, 0));               // another sender's: dropped
  add(entry(77, 3, wire::MsgType::kBundle, 0));                // nested: dropped
  add(entry(77, 4, wire::MsgType::kRequest, wire::kFlagAuth)); // claims a seal: dropped
  add(entry(77, 5, wire::MsgType::kRequest, 0));               // good
  body.push_back(std::byte{0xff});                             // truncated length: ends it
  wire::Header h;
  h.type = wire::MsgType::kBundle;
  h.node_id = 77;
  h.total_len = static_cast<std::uint32_t>(body.size());
  h.payload_len = static_cast<std::uint16_t>(body.size());
  std::vector<std::byte> d(wire::kHeaderSize + body.size());
  wire::encode_header(h, d);
  std::copy(body.begin(), body.end(), d.begin() + wire::kHeaderSize);
  auto all_drops = [&] {
    std::uint64_t n = 0;
    for (auto x : b.engine->path().stats().drops) n += x;
    return n;
  };
  const auto before = all_drops();
  attacker->send(kB, d);
  net.run_for(milliseconds(10));
  EXPECT_EQ(b.handler->total_runs, 2);
  EXPECT_EQ(b.engine->path().stats().bundled_in, 2u);
  EXPECT_EQ(all_drops() - before, 4u);  // 3 entries (bad_payload, length_mismatch) + the truncation
}

}  // namespace
}  // namespace broach
