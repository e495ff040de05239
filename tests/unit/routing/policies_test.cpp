#include <gtest/gtest.h>

#include <map>

#include "base/rng.hpp"
#include "broach/lb.hpp"

namespace broach::lb {
namespace {

std::vector<Candidate> three() {
  std::vector<Candidate> c(3);
  for (int i = 0; i < 3; ++i) c[i].address = Endpoint{0x7f000001, static_cast<std::uint16_t>(1000 + i)};
  return c;
}

std::vector<int> distribution(Policy& p, std::vector<Candidate> c, int calls, std::string key = "") {
  std::vector<int> n(c.size());
  Rng rng(7);
  for (int i = 0; i < calls; ++i) {
    const std::string k = key.empty() ? "" : key + std::to_string(i);
    ++n[p.pick(c, PickContext{"svc", k, rng.next()})];
  }
  return n;
}

TEST(Policies, EveryBuiltInIsRegistered) {
  for (const char* name : {"round_robin", "random", "weighted", "least_outstanding", "p2c_ewma",
                           "consistent_hash", "local_first"}) {
    EXPECT_NE(make_policy(name), nullptr) << name;
  }
  EXPECT_EQ(make_policy("no_such_policy"), nullptr);
}

TEST(Policies, RoundRobinIsExactlyEven) {
  auto p = make_policy("round_robin");
  EXPECT_EQ(distribution(*p, three(), 3000), (std::vector<int>{1000, 1000, 1000}));
}

TEST(Policies, RandomIsRoughlyEven) {
  auto p = make_policy("random");
  for (int n : distribution(*p, three(), 3000)) EXPECT_NEAR(n, 1000, 120);
}

TEST(Policies, WeightedFollowsWeights) {
  auto c = three();
  c[0].weight = 100;
  c[1].weight = 200;
  c[2].weight = 0;  // drained
  auto p = make_policy("weighted");
  const auto n = distribution(*p, c, 3000);
  EXPECT_NEAR(n[0], 1000, 120);
  EXPECT_NEAR(n[1], 2000, 120);
  EXPECT_EQ(n[2], 0);
}

TEST(Policies, LeastOutstandingPrefersTheIdle) {
  auto c = three();
  c[0].outstanding = 5;
  c[1].outstanding = 0;
  c[2].outstanding = 0;
  auto p = make_policy("least_outstanding");
  const auto n = distribution(*p, c, 3000);
  EXPECT_EQ(n[0], 0);
  EXPECT_NEAR(n[1], 1500, 150);  // ties are shared
  EXPECT_NEAR(n[2], 1500, 150);
}

TEST(Policies, P2cEwmaAvoidsTheSlowProvider) {
  auto c = three();
  c[0].latency_ewma_us = 100;
  c[1].latency_ewma_us = 100;
  c[2].latency_ewma_us = 5000;
  auto p = make_policy("p2c_ewma");
  const auto n = distribution(*p, c, 3000);
  EXPECT_EQ(n[2], 0);  // it loses every pair it is drawn in
  EXPECT_NEAR(n[0], 1500, 150);
}

TEST(Policies, ConsistentHashIsStickyAndRemapsLittle) {
  auto p = make_policy("consistent_hash");
  auto c = three();
  std::map<std::string, std::uint16_t> before;
  for (int i = 0; i < 3000; ++i) {
    const std::string key = "user" + std::to_string(i);
    const auto a = c[p->pick(c, PickContext{"svc", key, 1})].address.port;
    EXPECT_EQ(a, c[p->pick(c, PickContext{"svc", key, 999})].address.port);  // same key, same provider
    before[key] = a;
  }
  const auto spread = distribution(*p, c, 3000, "user");
  for (int n : spread) EXPECT_NEAR(n, 1000, 250);
  // A fourth provider joins: only about a quarter of the keys move, all to it.
  auto c4 = c;
  Candidate fourth;
  fourth.address = Endpoint{0x7f000001, 1003};
  c4.push_back(fourth);
  int moved = 0;
  for (const auto& [key, port] : before) {
    const auto now = c4[p->pick(c4, PickContext{"svc", key, 1})].address.port;
    if (now != port) {
      ++moved;
      EXPECT_EQ(now, 1003);
    }
  }
  EXPECT_GT(moved, 450);
  EXPECT_LT(moved, 1050);
  // A provider leaves: only its keys move.
  std::vector<Candidate> c2{c[0], c[2]};
  for (const auto& [key, port] : before) {
    const auto now = c2[p->pick(c2, PickContext{"svc", key, 1})].address.port;
    if (port != 1001) {
      EXPECT_EQ(now, port) << key;
    }
  }
}

TEST(Policies, LocalFirstPicksSelfElseRoundRobin) {
  auto c = three();
  c[1].self = true;
  auto p = make_policy("local_first");
  EXPECT_EQ(distribution(*p, c, 300), (std::vector<int>{0, 300, 0}));
  c[1].self = false;
  EXPECT_EQ(distribution(*p, c, 300), (std::vector<int>{100, 100, 100}));
}

class AlwaysLast final : public Policy {
 public:
  std::size_t pick(std::span<const Candidate> c, const PickContext&) override { return c.size() - 1; }
};

TEST(Policies, UserDefinedPolicyCanBeRegisteredByName) {
  register_policy("always_last", [] { return std::make_unique<AlwaysLast>(); });
  auto p = make_policy("always_last");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(distribution(*p, three(), 30), (std::vector<int>{0, 0, 30}));
  const auto names = policy_names();
  EXPECT_NE(std::find(names.begin(), names.end(), "always_last"), names.end());
}

}  // namespace
}  // namespace broach::lb
