// Reliable exchange on the simulated network: loss, duplication, reordering,
// partitions, large messages, at-most-once execution, replay by seed.
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>

#include "support/sim_rpc.hpp"

namespace broach {
namespace {

using reliable::CallResult;
using testing::make_node;
using testing::request_body;
using testing::SimNode;

const Endpoint kA{0x0a000001, 7000};
const Endpoint kB{0x0a000002, 7000};

std::uint64_t seed_from_env(std::uint64_t fallback) {
  const char* s = std::getenv("BROACH_SIM_SEED");
  return s ? std::strtoull(s, nullptr, 10) : fallback;
}

struct Pair {
  explicit Pair(std::uint64_t seed, reliable::EngineOptions opt = {})
      : net(seed), a(make_node(net, kA, 1, opt)), b(make_node(net, kB, 2, opt)) {
    net.set_describer(testing::describe_datagram);
  }
  sim::SimNetwork net;
  SimNode a, b;
};

std::string unpack_string(const reliable::Bytes& body) {
  return msgpack::unpack(reinterpret_cast<const char*>(body.data()), body.size())
      .get()
      .as<std::string>();
}

TEST(ReliableSim, CallReturnsResult) {
  Pair p(1);
  std::optional<CallResult> got;
  p.a.engine->call(kB, request_body("echo", std::string("hi")), p.net.now() + seconds(6),
                   [&](CallResult&& r) { got = std::move(r); });
  ASSERT_TRUE(p.net.run_until([&] { return got.has_value(); }, seconds(1)));
  ASSERT_EQ(got->code, Errc::kOk) << got->message;
  EXPECT_EQ(unpack_string(got->body), "hi");
  EXPECT_EQ(p.b.handler->total_runs, 1);
}

TEST(ReliableSim, MissingServiceGivesNotFound) {
  Pair p(2);
  std::optional<CallResult> got;
  p.a.engine->call(kB, request_body("work02", 1, 2), p.net.now() + seconds(6),
                   [&](CallResult&& r) { got = std::move(r); });
  ASSERT_TRUE(p.net.run_until([&] { return got.has_value(); }, seconds(1)));
  EXPECT_EQ(got->code, Errc::kNotFound);
  EXPECT_EQ(got->message, "work02");
}

TEST(ReliableSim, TenThousandCallsSurviveLossDuplicationAndReordering) {
  const auto seed = seed_from_env(3);
  Pair p(seed);
  sim::LinkPolicy bad;
  bad.loss = 0.30;
  bad.duplicate = 0.05;
  bad.reorder = 0.05;
  p.net.set_default_policy(bad);
  constexpr int kCalls = 10000;
  int ok = 0, failed = 0;
  std::string first_error;
  for (int i = 0; i < kCalls; ++i) {
    const std::string v = "v" + std::to_string(i);
    p.a.engine->call(kB, request_body("echo", v), p.net.now() + seconds(6),
                     [&, v](CallResult&& r) {
                       if (r.code == Errc::kOk && unpack_string(r.body) == v) {
                         ++ok;
                       } else {
                         if (first_error.empty()) first_error = r.message;
                         ++failed;
                       }
                     });
  }
  ASSERT_TRUE(p.net.run_until([&] { return ok + failed == kCalls; }, seconds(10)))
      << p.net.trace_tail();
  EXPECT_EQ(ok, kCalls) << "first error: " << first_error << "\n" << p.net.trace_tail();
  EXPECT_EQ(p.b.handler->total_runs, kCalls);  // every request ran...
  EXPECT_EQ(p.b.handler->max_runs_per_request(), 1);  // ...exactly once
  EXPECT_GT(p.a.engine->stats().retransmits, 1000u);
  EXPECT_GT(p.b.engine->stats().duplicate_requests, 100u);
}

TEST(ReliableSim, SlowHandlerRunsOnceAndCallerWaitsWithoutRetransmitting) {
  Pair p(4);
  p.b.handler->delay = milliseconds(2500);
  std::optional<CallResult> got;
  p.a.engine->call(kB, request_body("echo", std::string("slow")), p.net.now() + seconds(6),
                   [&](CallResult&& r) { got = std::move(r); });
  ASSERT_TRUE(p.net.run_until([&] { return got.has_value(); }, seconds(6)));
  ASSERT_EQ(got->code, Errc::kOk) << got->message;
  EXPECT_EQ(p.b.handler->total_runs, 1);
  EXPECT_GE(p.b.engine->stats().in_progress_sent, 1u);
  // Polling is capped: far fewer sends than a blind retransmitter would make.
  EXPECT_LT(p.a.engine->stats().retransmits + p.a.engine->stats().status_queries, 40u);
}

TEST(ReliableSim, LostResponseIsRecoveredFromCacheWithoutRerunning) {
  Pair p(5);
  int dropped = 0;
  p.net.set_on_send([&](const Endpoint& from, const Endpoint&, std::span<const std::byte> d) {
    wire::Header h;
    std::span<const std::byte> pl;
    if (from == kB && wire::decode_datagram(d, ~0ull, h, pl) == wire::DecodeError::kOk &&
        h.type == wire::MsgType::kResponse && dropped < 3) {
      ++dropped;
      return sim::Verdict::kDrop;
    }
    return sim::Verdict::kDeliver;
  });
  std::optional<CallResult> got;
  p.a.engine->call(kB, request_body("echo", std::string("x")), p.net.now() + seconds(6),
                   [&](CallResult&& r) { got = std::move(r); });
  ASSERT_TRUE(p.net.run_until([&] { return got.has_value(); }, seconds(6)));
  EXPECT_EQ(got->code, Errc::kOk);
  EXPECT_EQ(dropped, 3);
  EXPECT_EQ(p.b.handler->total_runs, 1);
  EXPECT_GE(p.b.engine->stats().responses_resent, 2u);
}

TEST(ReliableSim, SixteenMiBSurvivesTenPercentLossByteForByte) {
  Pair p(seed_from_env(6));
  sim::LinkPolicy lossy;
  lossy.loss = 0.10;
  lossy.reorder = 0.02;
  p.net.set_default_policy(lossy);
  std::string big(16u << 20, '\0');
  Rng rng(99);
  for (auto& c : big) c = static_cast<char>(rng.next());
  std::optional<CallResult> got;
  p.a.engine->call(kB, request_body("echo", big), p.net.now() + seconds(60),
                   [&](CallResult&& r) { got = std::move(r); });
  ASSERT_TRUE(p.net.run_until([&] { return got.has_value(); }, seconds(60))) << p.net.trace_tail();
  ASSERT_EQ(got->code, Errc::kOk) << got->message;
  EXPECT_TRUE(unpack_string(got->body) == big);
  EXPECT_EQ(p.b.handler->total_runs, 1);
  EXPECT_GT(p.a.engine->stats().fragments_resent, 0u);
  EXPECT_GT(p.b.engine->stats().fragments_resent, 0u);
}

TEST(ReliableSim, PartitionLongerThanTimeoutGivesTimeoutsNotHangs) {
  Pair p(7);
  p.net.partition({kA}, {kB});
  constexpr int kCalls = 50;
  int done = 0;
  std::vector<Errc> codes;
  const TimePoint start = p.net.now();
  TimePoint last_done{};
  for (int i = 0; i < kCalls; ++i) {
    p.a.engine->call(kB, request_body("echo", i), start + seconds(6), [&](CallResult&& r) {
      codes.push_back(r.code);
      last_done = p.net.now();
      ++done;
    });
  }
  ASSERT_TRUE(p.net.run_until([&] { return done == kCalls; }, seconds(30)));
  for (auto c : codes) EXPECT_EQ(c, Errc::kDeliveryTimeout);
  // udpTimeOut (3 s) of silence ends each call; nothing waits for rpcTimeOut.
  EXPECT_LE(last_done - start, seconds(3) + milliseconds(10));
  EXPECT_EQ(p.a.engine->pending_calls(), 0u);
}

TEST(ReliableSim, DeadlineShorterThanUdpTimeoutEndsTheCall) {
  Pair p(8);
  p.net.partition({kA}, {kB});
  std::optional<CallResult> got;
  const TimePoint start = p.net.now();
  p.a.engine->call(kB, request_body("echo", 1), start + milliseconds(500),
                   [&](CallResult&& r) { got = std::move(r); });
  ASSERT_TRUE(p.net.run_until([&] { return got.has_value(); }, seconds(5)));
  EXPECT_EQ(got->code, Errc::kCallTimeout);
  EXPECT_LE(p.net.now() - start, milliseconds(501));
}

TEST(ReliableSim, OversizedMessagesFailClearlyOnBothSides) {
  reliable::EngineOptions small;
  small.max_message = 10000;
  sim::SimNetwork net(9);
  auto a = make_node(net, kA, 1);          // default 64 MiB limit
  auto b = make_node(net, kB, 2, small);   // 10 kB limit
  std::optional<CallResult> got;
  a.engine->call(kB, request_body("echo", std::string(20000, 'x')), net.now() + seconds(6),
                 [&](CallResult&& r) { got = std::move(r); });
  ASSERT_TRUE(net.run_until([&] { return got.has_value(); }, seconds(6)));
  EXPECT_EQ(got->code, Errc::kMessageTooLarge);
  EXPECT_NE(got->message.find("maxMessageBytes 10000"), std::string::npos) << got->message;
  EXPECT_EQ(b.handler->total_runs, 0);
  got.reset();
  b.engine->call(kA, request_body("echo", std::string(20000, 'x')), net.now() + seconds(6),
                 [&](CallResult&& r) { got = std::move(r); });
  ASSERT_TRUE(got.has_value());  // refused locally, at once
  EXPECT_EQ(got->code, Errc::kMessageTooLarge);
  // A response bigger than the caller accepts: the caller says so.
  got.reset();
  b.engine->call(kA, request_body("echo", std::string(5000, 'y')), net.now() + seconds(6),
                 [&](CallResult&& r) { got = std::move(r); });
  ASSERT_TRUE(net.run_until([&] { return got.has_value(); }, seconds(6)));
  EXPECT_EQ(got->code, Errc::kOk);  // 5 kB response fits
}

std::string run_scenario(std::uint64_t seed) {
  Pair p(seed);
  sim::LinkPolicy bad;
  bad.loss = 0.2;
  bad.duplicate = 0.05;
  bad.reorder = 0.1;
  p.net.set_default_policy(bad);
  int done = 0;
  for (int i = 0; i < 200; ++i) {
    p.a.engine->call(kB, request_body("echo", std::string(3000 * (i % 3), 'z')), p.net.now() + seconds(6),
                     [&](CallResult&&) { ++done; });
  }
  p.net.run_until([&] { return done == 200; }, seconds(10));
  const auto& s = p.net.stats();
  return p.net.trace_tail(200) + std::to_string(s.sent) + "/" + std::to_string(s.lost) + "/" +
         std::to_string(s.delivered) + "@" + std::to_string(p.net.now().time_since_epoch().count());
}

TEST(ReliableSim, SameSeedSameTrace) {
  const auto a = run_scenario(11);
  EXPECT_EQ(a, run_scenario(11));
  EXPECT_NE(a, run_scenario(12));
}

TEST(ReliableSim, IdlePeersAreForgotten) {
  Pair p(14);
  std::optional<CallResult> got;
  p.a.engine->call(kB, request_body("echo", 1), p.net.now() + seconds(6),
                   [&](CallResult&& r) { got = std::move(r); });
  ASSERT_TRUE(p.net.run_until([&] { return got.has_value(); }, seconds(1)));
  p.net.run_for(seconds(11));
  EXPECT_EQ(p.a.engine->stats().peers_tracked, 1u);
  p.net.run_for(std::chrono::minutes(6));  // no traffic for longer than the idle limit
  EXPECT_EQ(p.a.engine->stats().peers_tracked, 0u);
  EXPECT_EQ(p.b.engine->stats().peers_tracked, 0u);
}

TEST(ReliableSim, MalformedDatagramsAreDroppedAndCounted) {
  Pair p(13);
  Rng rng(5);
  std::vector<std::byte> junk(200);
  for (int i = 0; i < 1000; ++i) {
    for (auto& b : junk) b = static_cast<std::byte>(rng.next());
    if (i % 2) {  // valid magic and version, random rest
      junk[0] = std::byte{0x52};
      junk[1] = std::byte{0x42};
      junk[2] = std::byte{1};
    }
    p.b.engine->path().on_datagram(kA, std::span(junk).first(rng.below(junk.size())));
  }
  std::uint64_t drops = p.b.engine->stats().drops_unexpected;
  for (auto d : p.b.engine->stats().drops) drops += d;
  for (auto d : p.b.engine->path().stats().drops) drops += d;
  EXPECT_EQ(drops, 1000u);
  EXPECT_EQ(p.b.handler->total_runs, 0);
}

}  // namespace
}  // namespace broach
