// Nodes in one process on loopback forming a cluster by gossip: calls by
// service name, route-table updates, joining latency, leave.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "broach/node.hpp"

namespace broach {
namespace {

using Clock = std::chrono::steady_clock;

Config member_config(const std::vector<std::string>& seeds = {}) {
  Config c = default_config();
  c.rpc_ip = "127.0.0.1";
  c.rpc_port = 0;
  c.log_level = "warn";
  c.cluster_address = seeds;
  return c;
}

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  const auto end = Clock::now() + limit;
  while (Clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return pred();
}

std::size_t providers_of(const Node& n, const std::string& service) {
  for (const auto& r : n.routes()) {
    if (r.service == service) return r.providers.size();
  }
  return 0;
}

TEST(Cluster, CallsByNameReachEveryProviderRoundRobin) {
  Node seed(member_config());
  seed.provide("whoami", [a = seed.address().to_string()] { return a; });
  const std::string s = seed.address().to_string();
  Node b(member_config({s}));
  b.provide("whoami", [a = b.address().to_string()] { return a; });
  Node caller(member_config({s}));
  ASSERT_TRUE(eventually([&] { return providers_of(caller, "whoami") == 2; }));
  std::map<std::string, int> seen;
  for (int i = 0; i < 10; ++i) ++seen[caller.call<std::string>("whoami")];
  EXPECT_EQ(seen.size(), 2u);
  for (auto& [addr, n] : seen) EXPECT_EQ(n, 5) << addr;  // round robin
}

TEST(Cluster, ServiceNobodyOffersFailsAtOnceWithNotFound) {
  Node seed(member_config());
  Node caller(member_config({seed.address().to_string()}));
  ASSERT_TRUE(eventually([&] { return caller.members().size() == 2; }));
  const auto t0 = Clock::now();
  try {
    caller.call<int>("work02", 1, 2);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kNotFound);
  }
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(100));  // no network wait at all
}

TEST(Cluster, ServiceRegisteredAfterStartReachesOtherMembers) {
  Node seed(member_config());
  Node other(member_config({seed.address().to_string()}));
  ASSERT_TRUE(eventually([&] { return other.members().size() == 2; }));
  EXPECT_EQ(providers_of(other, "late"), 0u);
  seed.provide("late", [] { return 7; });
  ASSERT_TRUE(eventually([&] { return providers_of(other, "late") == 1; }));
  EXPECT_EQ(other.call<int>("late"), 7);
  seed.withdraw("late");
  EXPECT_TRUE(eventually([&] { return providers_of(other, "late") == 0; }));
}

TEST(Cluster, InternalServicesAreNeverAdvertised) {
  Node seed(member_config());
  seed.provide("__secret", [] { return 1; });
  seed.provide("open", [] { return 2; });
  Node other(member_config({seed.address().to_string()}));
  ASSERT_TRUE(eventually([&] { return providers_of(other, "open") == 1; }));
  EXPECT_EQ(providers_of(other, "__secret"), 0u);
}

TEST(Cluster, NewNodeCanCallAtOnceAfterJoining) {
  Node seed(member_config());
  seed.provide("add", [](int a, int b) { return a + b; });
  Node second(member_config({seed.address().to_string()}));
  ASSERT_TRUE(eventually([&] { return providers_of(second, "add") == 1; }));
  // Measured: construction (bind, join through the seed) until the first
  // successful call by name. The seed's full state arrives in the join reply.
  const auto t0 = Clock::now();
  Node newcomer(member_config({seed.address().to_string()}));
  ASSERT_TRUE(eventually([&] { return providers_of(newcomer, "add") == 1; }, std::chrono::seconds(5)));
  EXPECT_EQ(newcomer.call<int>("add", 1, 2), 3);
  const auto took = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0);
  std::printf("join-to-first-call: %.2f ms\n", took.count() / 1000.0);
  // A newcomer can call at once: it does not wait for a periodic exchange
  // (push-pull: 15 s). Typically tens of ms (printed); the bound is loose
  // because this is a test on a possibly loaded machine, not a benchmark.
  EXPECT_LT(took, std::chrono::seconds(2));
}

TEST(Cluster, GracefulStopIsSeenAsLeftNotDead) {
  Node seed(member_config());
  auto leaving = std::make_unique<Node>(member_config({seed.address().to_string()}));
  leaving->provide("x", [] { return 1; });
  const Endpoint addr = leaving->address();
  ASSERT_TRUE(eventually([&] { return providers_of(seed, "x") == 1; }));
  leaving->stop();
  ASSERT_TRUE(eventually([&] {
    for (const auto& m : seed.members()) {
      if (m.address == addr) return m.state == MemberState::kLeft;
    }
    return false;
  }, std::chrono::seconds(5)));
  EXPECT_EQ(providers_of(seed, "x"), 0u);
}

int twice(int x) { return 2 * x; }

TEST(Cluster, AProviderStoppedUnderLoadDrainsWithoutAFailedCall) {
  // Three providers, four threads calling by name without pause; one
  // provider stops. stop() keeps serving until callers stopped sending
  // (the leave reached them), then refuses what still arrives with a
  // retryable "not run": no call fails, and stop() ends within drainMs.
  Node seed(member_config());
  const std::string s = seed.address().to_string();
  auto add = [](int a, int b) { return a + b; };
  seed.provide("add", add);
  Node b(member_config({s}));
  b.provide("add", add);
  Config leaving_config = member_config({s});
  leaving_config.drain_ms = 3000;
  auto leaving = std::make_unique<Node>(leaving_config);
  leaving->provide("add", add);
  Node caller(member_config({s}));
  ASSERT_TRUE(eventually([&] { return providers_of(caller, "add") == 3; }));
  std::atomic<bool> run{true};
  std::atomic<int> ok{0}, failed{0};
  std::atomic<int> first_error_code{-1};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; run.load(); ++i) {
        try {
          if (caller.call<int>("add", i, t) == i + t) ++ok; else ++failed;
        } catch (const Error& e) {
          int expected = -1;
          first_error_code.compare_exchange_strong(expected, static_cast<int>(e.code()));
          ++failed;
        }
      }
    });
  }
  ASSERT_TRUE(eventually([&] { return ok.load() > 2000; }));
  const auto t0 = Clock::now();
  leaving->stop();
  const auto stop_took = Clock::now() - t0;
  const int at_stop = ok.load();
  ASSERT_TRUE(eventually([&] { return ok.load() > at_stop + 2000; }));  // the others carry on
  run = false;
  for (auto& th : threads) th.join();
  EXPECT_EQ(failed.load(), 0) << "first error: " << errc_name(static_cast<Errc>(first_error_code.load()));
  EXPECT_LT(stop_took, std::chrono::milliseconds(3000 + 1500));
  // Drained, not refused: callers had stopped sending before the provider
  // began to refuse, so nothing needed a retry elsewhere.
  EXPECT_EQ(caller.stats().retries, 0u);
  EXPECT_EQ(providers_of(caller, "add"), 2u);
}

TEST(Cluster, TypedStubAndProvideByFunctionName) {
  Node seed(member_config());
  BROACH_PROVIDE(seed, twice);
  Node caller(member_config({seed.address().to_string()}));
  ASSERT_TRUE(eventually([&] { return providers_of(caller, "twice") == 1; }));
  auto t = caller.stub<int(int)>("twice");
  EXPECT_EQ(t(21), 42);
  EXPECT_EQ(t.async(5).get().value(), 10);
  auto missing = caller.stub<int(int)>("thrice");
  auto r = missing.async(1).get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Errc::kNotFound);
}

TEST(Cluster, RequiredVersionSelectsProviders) {
  Config v1 = member_config();
  v1.version = "1.4.2";
  Node old_provider(v1);
  old_provider.provide("ver", [] { return std::string("1.4.2"); });
  Config v2 = member_config({old_provider.address().to_string()});
  v2.version = "2.0.0";
  Node new_provider(v2);
  new_provider.provide("ver", [] { return std::string("2.0.0"); });
  Node caller(member_config({old_provider.address().to_string()}));
  ASSERT_TRUE(eventually([&] { return providers_of(caller, "ver") == 2; }));
  CallOptions o;
  o.version = "1.*";
  for (int i = 0; i < 6; ++i) EXPECT_EQ(caller.call_with<std::string>("ver", o), "1.4.2");
  o.version = "2.0.0";
  for (int i = 0; i < 6; ++i) EXPECT_EQ(caller.call_with<std::string>("ver", o), "2.0.0");
  o.version = "3.*";
  try {
    caller.call_with<std::string>("ver", o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kNoProvider);
  }
}

TEST(Cluster, HedgedRequestAnswersFromTheFasterProvider) {
  Node slow(member_config());
  slow.provide("h", [] {
    std::this_thread::sleep_for(std::chrono::milliseconds(2000));
    return std::string("slow");
  });
  Node fast(member_config({slow.address().to_string()}));
  fast.provide("h", [] { return std::string("fast"); });
  Config cc = member_config({slow.address().to_string()});
  cc.retry.idempotent = {"h"};
  cc.retry.hedge_delay_ms = 50;
  Node caller(cc);
  ASSERT_TRUE(eventually([&] { return providers_of(caller, "h") == 2; }));
  for (int i = 0; i < 4; ++i) {
    const auto t0 = Clock::now();
    EXPECT_EQ(caller.call<std::string>("h"), "fast");
    EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(1500));  // never waited for the slow one
  }
  EXPECT_GE(caller.stats().hedges, 1u);
}

}  // namespace
}  // namespace broach
