// Reassembly under attack, on the simulated network: a flood of fake partial
// messages (many sources, huge claims, 2^20 one-byte fragments, repeats of
// fragment 0) stays within the budget and cannot starve a member's 1 MiB
// call; a partial kept "alive" only by repeats is freed after udpTimeOut.
#include <gtest/gtest.h>

#include "support/sim_node.hpp"
#include "support/sim_rpc.hpp"
#include "wire/header.hpp"

namespace broach {
namespace {

using testing::make_node;
using testing::request_body;

const Endpoint kA{0x0a000001, 7000};  // a member
const Endpoint kB{0x0a000002, 7000};  // the provider

// The first fragment (index `index`) of a fake message of `count` fragments
// of `frag` bytes (the last one `last` bytes).
std::vector<std::byte> fake_fragment(std::uint64_t node_id, std::uint64_t id, std::uint32_t index,
                                     std::uint32_t count, std::uint32_t frag, std::uint32_t last) {
  wire::Header h;
  h.type = wire::MsgType::kRequest;
  h.node_id = node_id;
  h.message_id = id;
  h.fragment_index = index;
  h.fragment_count = count;
  h.total_len = frag * (count - 1) + last;
  h.payload_len = static_cast<std::uint16_t>(index + 1 < count ? frag : last);
  std::vector<std::byte> d(wire::kHeaderSize + h.payload_len, std::byte{0x41});
  wire::encode_header(h, d);
  return d;
}

reliable::EngineOptions tight() {
  reliable::EngineOptions o;
  o.delivery_timeout = milliseconds(500);
  o.reassembly_max_bytes_per_peer = 4u << 20;
  o.reassembly_max_bytes_total = 16u << 20;
  return o;
}

TEST(ReassemblySim, FloodOfFakePartialsCannotStarveAMember) {
  for (auto seed : testing::sim_seeds()) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    sim::SimNetwork net(seed);
    auto a = make_node(net, kA, 1, tight());
    auto b = make_node(net, kB, 2, tight());
    b.engine->set_known_peer_check([](const Endpoint& e) { return e == kA; });
    std::vector<sim::SimTransport*> attackers;
    for (std::uint32_t i = 0; i < 40; ++i) attackers.push_back(net.add_node(Endpoint{0x0b000000u + i, 9000}).transport);
    Rng rng(seed);
    std::uint64_t sent = 0;
    // Runs the flood for `d` of virtual time: every 200 us a new fake claim
    // from some attacker (4 MiB in 1,000-byte fragments, or 2^20 fragments of
    // one byte), and a repeat of fragment 0 of an older one.
    std::uint64_t max_charged = 0;
    auto flood_for = [&](Duration d) {
      const TimePoint end = net.now() + d;
      while (net.now() < end) {
        auto* t = attackers[rng.below(attackers.size())];
        const std::uint64_t id = ++sent;
        const auto frag = (id % 2) ? fake_fragment(9000 + id % 40, id, 0, 4096, 1000, 1000)
                                   : fake_fragment(9000 + id % 40, id, 0, 1u << 20, 1, 1);
        t->send(kB, frag);
        if (id > 10) t->send(kB, (id % 2) ? fake_fragment(9000 + id % 40, id - 10, 0, 4096, 1000, 1000)
                                          : fake_fragment(9000 + id % 40, id - 10, 0, 1u << 20, 1, 1));
        net.run_for(microseconds(200));
        max_charged = std::max(max_charged, b.engine->stats().reassembly_bytes);
      }
    };
    flood_for(milliseconds(100));
    EXPECT_GT(b.engine->stats().reassembly_bytes, 8u << 20);  // the flood fills the budget
    // A member's 1 MiB echo goes through while the flood goes on.
    std::string big(1 << 20, 'x');
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
    std::optional<reliable::CallResult> got;
    a.engine->call(kB, request_body("echo", big), net.now() + seconds(5),
                   [&](reliable::CallResult&& r) { got = std::move(r); });
    const TimePoint t0 = net.now();
    while (!got && net.now() - t0 < seconds(6)) flood_for(milliseconds(20));
    ASSERT_TRUE(got.has_value());
    ASSERT_EQ(got->code, Errc::kOk) << got->message;
    auto oh = msgpack::unpack(reinterpret_cast<const char*>(got->body.data()), got->body.size());
    EXPECT_EQ(oh.get().as<std::string>(), big);
    EXPECT_LE(max_charged, tight().reassembly_max_bytes_total);
    EXPECT_GT(b.engine->stats().reassembly_evicted, 0u);
    EXPECT_EQ(b.handler->total_runs, 1);  // no fake ever completed
  }
}

TEST(ReassemblySim, RepeatsDoNotKeepAPartialAlive) {
  for (auto seed : testing::sim_seeds()) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    sim::SimNetwork net(seed);
    auto b = make_node(net, kB, 2, tight());
    auto* attacker = net.add_node(Endpoint{0x0b000001, 9000}).transport;
    const auto frag0 = fake_fragment(77, 1, 0, 10, 1000, 1000);
    attacker->send(kB, frag0);
    net.run_for(milliseconds(1));
    ASSERT_EQ(b.engine->stats().reassembly_partials, 1u);
    // Fragment 0 again every 100 ms: never new, so never progress. Before,
    // each repeat restarted the udpTimeOut clock (the last one at 400 ms
    // kept the partial until 900 ms); now it is freed 500 ms after fragment 0.
    for (int i = 0; i < 4; ++i) {
      net.run_for(milliseconds(100));
      attacker->send(kB, frag0);
    }
    net.run_for(milliseconds(50));
    EXPECT_EQ(b.engine->stats().reassembly_partials, 1u);
    net.run_for(milliseconds(150));  // 600 ms after fragment 0 (the sweep runs every 25 ms)
    EXPECT_EQ(b.engine->stats().reassembly_partials, 0u);
    EXPECT_EQ(b.engine->stats().reassembly_bytes, 0u);
    EXPECT_EQ(b.engine->stats().reassembly_expired, 1u);
  }
}

}  // namespace
}  // namespace broach

namespace broach {
namespace {

std::vector<std::byte> status_query(std::uint64_t node_id, std::uint64_t id) {
  wire::Header h;
  h.type = wire::MsgType::kStatusQuery;
  h.node_id = node_id;
  h.message_id = id;
  std::vector<std::byte> d(wire::kHeaderSize);
  wire::encode_header(h, d);
  return d;
}

// A status query for a finished call with a large cached response (its
// acknowledgements never reached the provider, so it keeps the response):
// from another address it gets nothing at all; from the caller's own address
// it gets at most one window, never a transfer retransmitted to nobody.
TEST(AmplificationSim, StatusQueryForACachedResponse) {
  for (auto seed : testing::sim_seeds()) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    sim::SimNetwork net(seed);
    auto a_options = tight();
    a_options.coalesce = false;  // its acknowledgements leave as plain datagrams, to be dropped
    auto a = make_node(net, kA, 1, a_options);
    auto b = make_node(net, kB, 2, tight());
    auto* attacker = net.add_node(Endpoint{0x0b000001, 9000}).transport;
    std::uint64_t request_id = 0, bytes_from_b = 0;
    bool drop_acks_from_a = true;
    net.set_on_send([&](const Endpoint& from, const Endpoint&, std::span<const std::byte> d) {
      wire::Header h;
      std::span<const std::byte> p;
      const bool ok = wire::decode_datagram(d, ~0ull, h, p) == wire::DecodeError::kOk;
      if (from == kA && ok && h.type == wire::MsgType::kRequest) request_id = h.message_id;
      if (from == kB) bytes_from_b += d.size();
      // The caller gets the whole response, but the provider never hears
      // so: it keeps the response cached.
      if (from == kA && drop_acks_from_a && ok && h.type == wire::MsgType::kFragmentAck &&
          (h.flags & wire::kFlagForResponse)) {
        return sim::Verdict::kDrop;
      }
      return sim::Verdict::kDeliver;
    });
    std::optional<reliable::CallResult> got;
    // 150 KB: one window of fragments, so it arrives whole without acks.
    a.engine->call(kB, request_body("echo", std::string(150000, 'z')), net.now() + seconds(5),
                   [&](reliable::CallResult&& r) { got = std::move(r); });
    ASSERT_TRUE(net.run_until([&] { return got.has_value(); }, seconds(6)));
    ASSERT_EQ(got->code, Errc::kOk);
    net.run_for(seconds(1));  // the provider's transfer gives up (deliveryTimeout 500 ms)
    drop_acks_from_a = false;
    ASSERT_GT(b.engine->stats().dedup_bytes, 150000u);
    // From elsewhere: nothing back, counted.
    bytes_from_b = 0;
    attacker->send(kB, status_query(1, request_id));
    net.run_for(milliseconds(600));
    EXPECT_EQ(bytes_from_b, 0u);
    EXPECT_EQ(b.engine->stats().amplification_limited, 1u);
    // From the caller's address, by someone who never acknowledges (the
    // link back from A is cut right after the query left): one window at
    // most, and no retransmissions.
    bytes_from_b = 0;
    a.n.transport->send(kB, status_query(1, request_id));
    net.block(kA, kB);
    net.run_for(milliseconds(600));
    EXPECT_GT(bytes_from_b, 0u);
    EXPECT_LE(bytes_from_b, 128u * 1472u);  // one window: sendWindow (128) datagrams of <= 1472 B
  }
}

// A fragmented response whose every fragment the caller acknowledged is
// dropped from the at-most-once cache at once (the record stays): memory
// is not held for responses the caller already has, and a late status query
// or duplicate request for it gets nothing back.
TEST(AmplificationSim, ADeliveredResponseIsForgottenButItsRecordIsKept) {
  for (auto seed : testing::sim_seeds()) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    sim::SimNetwork net(seed);
    auto a = make_node(net, kA, 1, tight());
    auto b = make_node(net, kB, 2, tight());
    std::uint64_t request_id = 0, bytes_from_b = 0;
    std::optional<wire::Bytes> first_fragment;
    net.set_on_send([&](const Endpoint& from, const Endpoint&, std::span<const std::byte> d) {
      wire::Header h;
      std::span<const std::byte> p;
      if (from == kA && wire::decode_datagram(d, ~0ull, h, p) == wire::DecodeError::kOk &&
          h.type == wire::MsgType::kRequest) {
        request_id = h.message_id;
        if (h.fragment_index == 0 && !first_fragment) first_fragment = wire::Bytes(d.begin(), d.end());
      }
      if (from == kB) bytes_from_b += d.size();
      return sim::Verdict::kDeliver;
    });
    for (int i = 0; i < 3; ++i) {
      std::optional<reliable::CallResult> got;
      a.engine->call(kB, request_body("echo", std::string(300000, static_cast<char>('a' + i))),
                     net.now() + seconds(5), [&](reliable::CallResult&& r) { got = std::move(r); });
      ASSERT_TRUE(net.run_until([&] { return got.has_value(); }, seconds(6)));
      ASSERT_EQ(got->code, Errc::kOk);
    }
    // The last acknowledgements may still be on their way.
    ASSERT_TRUE(net.run_until([&] { return b.engine->stats().dedup_bytes == 0; }, seconds(1)));
    EXPECT_EQ(b.engine->stats().dedup_entries, 3u);  // at-most-once records kept
    const auto runs = b.engine->stats().requests_received;
    bytes_from_b = 0;
    a.n.transport->send(kB, status_query(1, request_id));
    net.run_for(milliseconds(600));
    EXPECT_EQ(bytes_from_b, 0u);
    // A stale duplicate of the last request's first fragment: one small
    // "have it all" acknowledgement, and the handler does not run again.
    ASSERT_TRUE(first_fragment.has_value());
    a.n.transport->send(kB, *first_fragment);
    net.run_for(milliseconds(600));
    EXPECT_LT(bytes_from_b, 200u);
    EXPECT_EQ(b.engine->stats().requests_received, runs);
  }
}

}  // namespace
}  // namespace broach
