// Circuit breaking and retries on the simulated network, in virtual time:
// the CallRouter (policies, breakers, retry rules) drives reliable engines;
// one provider is cut off, fused, skipped, and re-admitted after healing.
#include <gtest/gtest.h>

#include <optional>

#include "api/call_router.hpp"
#include "support/sim_rpc.hpp"

namespace broach {
namespace {

using testing::make_node;
using testing::request_body;

const Endpoint kCaller{0x0a000001, 7000};
const Endpoint kP1{0x0a000002, 7000};
const Endpoint kP2{0x0a000003, 7000};

struct Cluster {
  explicit Cluster(std::uint64_t seed, Config cfg) : net(seed), router(cfg, seed) {
    caller = make_node(net, kCaller, 1, opts());
    p1 = make_node(net, kP1, 2, opts());
    p2 = make_node(net, kP2, 3, opts());
    MemberInfo a, b;
    a.address = kP1;
    a.meta.services = {"echo"};
    b.address = kP2;
    b.meta.services = {"echo"};
    table = routing::RouteTable::build({a, b});
  }
  static reliable::EngineOptions opts() {
    reliable::EngineOptions o;
    o.delivery_timeout = milliseconds(300);
    return o;
  }
  // One call by name: pick, call, report, retry while the router allows.
  Errc call(const CallOptions& o, Endpoint* served_by = nullptr) {
    std::vector<Endpoint> tried;
    int retries = 0;
    for (;;) {
      auto choice = router.pick(*table, "echo", o, tried, net.now());
      if (!choice.ok()) return choice.error().code();
      const Endpoint to = choice.value().address;
      tried.push_back(to);
      std::optional<reliable::CallResult> got;
      const TimePoint t0 = net.now();
      caller.engine->call(to, request_body("echo", std::string("x")), t0 + seconds(2),
                          [&](reliable::CallResult&& r) { got = std::move(r); });
      net.run_until([&] { return got.has_value(); }, seconds(5));
      router.on_finish(to, "echo", got->code, net.now() - t0, net.now());
      if (got->code == Errc::kOk) {
        if (served_by) *served_by = to;
        return Errc::kOk;
      }
      if (!router.may_retry("echo", o, got->code, retries)) return got->code;
      ++retries;
    }
  }
  sim::SimNetwork net;
  api::CallRouter router;
  testing::SimNode caller, p1, p2;
  std::shared_ptr<const routing::RouteTable> table;
};

Config breaker_config() {
  Config c = default_config();
  c.breaker.consecutive_failures = 3;
  c.breaker.open_ms = 2000;
  c.retry.idempotent = {"echo"};
  return c;
}

TEST(BreakerSim, CutOffProviderIsFusedSkippedAndReadmittedAfterHeal) {
  Cluster c(21, breaker_config());
  c.net.partition({kCaller}, {kP1});
  // Idempotent calls that land on P1 time out (300 ms of silence) and are
  // retried on P2; after 3 such failures P1 is fused and no longer tried.
  int ok = 0;
  TimePoint fused_at{};
  for (int i = 0; i < 12; ++i) {
    Endpoint by;
    if (c.call(CallOptions{}, &by) == Errc::kOk) ++ok;
    EXPECT_EQ(by, kP2);
    if (fused_at == TimePoint{} && c.p1.handler->total_runs == 0) {
      for (const auto& b : c.router.breakers(c.net.now())) {
        if (b.provider == kP1 && b.service.empty() && b.state == breaker::BreakerState::kOpen) fused_at = c.net.now();
      }
    }
  }
  EXPECT_EQ(ok, 12);  // every call answered, by P2
  ASSERT_NE(fused_at, TimePoint{});
  const auto delivery_failures = c.caller.engine->stats().failures[static_cast<int>(Errc::kDeliveryTimeout)];
  EXPECT_EQ(delivery_failures, 3u);  // only until the breaker opened
  // Heal; after the open period a probe goes to P1, succeeds, and P1 serves again.
  c.net.heal();
  c.net.run_for(milliseconds(2100));
  int p1_served = 0;
  for (int i = 0; i < 10; ++i) {
    Endpoint by;
    ASSERT_EQ(c.call(CallOptions{}, &by), Errc::kOk);
    p1_served += by == kP1;
  }
  EXPECT_GE(p1_served, 4);  // round robin again over both
  EXPECT_GT(c.p1.handler->total_runs, 0);
}

TEST(BreakerSim, EveryProviderFusedFailsAtOnce) {
  Cluster c(22, breaker_config());
  c.net.partition({kCaller}, {kP1, kP2});
  CallOptions never;
  never.retry = RetryMode::kNever;
  for (int i = 0; i < 6; ++i) EXPECT_EQ(c.call(never), Errc::kDeliveryTimeout);
  const TimePoint t0 = c.net.now();
  EXPECT_EQ(c.call(never), Errc::kCircuitOpen);
  EXPECT_EQ(c.net.now(), t0);  // no network wait at all
}

TEST(BreakerSim, RetryBudgetStopsARetryStorm) {
  Config cfg = breaker_config();
  cfg.breaker.consecutive_failures = 100000;  // keep both providers in play
  cfg.breaker.min_calls = 100000;
  cfg.retry.max_retries = 1;
  cfg.retry.budget_ratio = 0.1;
  Cluster c(23, cfg);
  c.net.partition({kCaller}, {kP1, kP2});  // everything fails
  const int calls = 200;
  for (int i = 0; i < calls; ++i) {
    c.router.on_call();
    c.call(CallOptions{});
  }
  // Each failed call wants one retry; the budget allows 10% of calls plus a
  // reserve of 10: attempts stay near 1.1 per call instead of 2.
  const auto attempts = c.caller.engine->stats().calls_started;
  EXPECT_LE(attempts, static_cast<std::uint64_t>(calls + calls / 10 + 11));
  EXPECT_GE(attempts, static_cast<std::uint64_t>(calls + calls / 10 - 1));
}

}  // namespace
}  // namespace broach
