// Membership on the simulated network: join and convergence, crash
// detection, no false deaths under loss, partition and heal, refutation,
// restart as a new life, graceful leave, metadata updates.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdlib>

#include "support/sim_cluster.hpp"
#include "support/sim_seeds.hpp"
#include "support/sim_starvation.hpp"

namespace broach {
namespace {

using testing::SimCluster;

std::uint64_t seed_or(std::uint64_t fallback) {
  const char* s = std::getenv("BROACH_SIM_SEED");
  return s ? std::strtoull(s, nullptr, 10) : fallback;
}

// Advances virtual time in steps until `pred` holds or `limit` passes.
template <class Pred>
bool run_until(SimCluster& c, Pred pred, Duration limit, Duration step = milliseconds(100)) {
  const TimePoint end = c.net.now() + limit;
  while (c.net.now() < end) {
    if (pred()) return true;
    c.net.run_for(step);
  }
  return pred();
}

void start_all(SimCluster& c, Duration stagger = milliseconds(10)) {
  c.start(0, {});
  for (std::size_t i = 1; i < c.nodes.size(); ++i) {
    c.net.run_for(stagger);
    c.start(i, {SimCluster::address(0)});
  }
}

TEST(MembershipSim, TenNodesJoinThroughOneSeedAndConverge) {
  SimCluster c(seed_or(1), 10);
  start_all(c);
  ASSERT_TRUE(run_until(c, [&] { return c.converged(c.all()); }, seconds(10))) << c.net.trace_tail();
  for (auto& n : c.nodes) {
    EXPECT_TRUE(n->membership->joined());
    EXPECT_EQ(n->membership->alive_count(), 10u);
    // Metadata travelled too.
    const auto m = n->membership->find(SimCluster::address(3));
    ASSERT_TRUE(m.has_value());
    EXPECT_EQ(m->meta.name, "node3");
    EXPECT_EQ(m->meta.services, std::vector<std::string>{"svc"});
  }
}

TEST(MembershipSim, CrashedMemberIsDeclaredDeadEverywhereWithinSeconds) {
  SimCluster c(seed_or(2), 20);
  start_all(c);
  ASSERT_TRUE(run_until(c, [&] { return c.converged(c.all()); }, seconds(10)));
  const TimePoint t0 = c.net.now();
  c.crash(7);
  std::vector<std::size_t> alive;
  for (std::size_t i = 0; i < 20; ++i) if (i != 7) alive.push_back(i);
  ASSERT_TRUE(run_until(c, [&] { return c.converged(alive, {7}); }, seconds(30))) << c.net.trace_tail();
  EXPECT_LT(c.net.now() - t0, seconds(8)) << "detection took " << to_seconds(c.net.now() - t0) << " s";
  // The counts by state (the status page's) are what members() lists.
  for (std::size_t i : alive) {
    std::array<std::size_t, 4> listed{};
    for (const auto& m : c.nodes[i]->membership->members()) ++listed[static_cast<std::size_t>(m.state)];
    EXPECT_EQ(c.nodes[i]->membership->count_by_state(), listed);
    EXPECT_EQ(listed[static_cast<std::size_t>(MemberState::kAlive)], 19u);
    EXPECT_EQ(listed[static_cast<std::size_t>(MemberState::kDead)], 1u);
  }
}

TEST(MembershipSim, NoHealthyMemberDeclaredDeadUnderTenPercentLoss) {
  SimCluster c(seed_or(3), 30);
  sim::LinkPolicy lossy;
  lossy.loss = 0.10;
  c.net.set_default_policy(lossy);
  start_all(c);
  ASSERT_TRUE(run_until(c, [&] { return c.converged(c.all()); }, seconds(30)));
  std::uint64_t deaths = 0, suspicions = 0;
  c.net.run_for(seconds(300));
  for (auto& n : c.nodes) {
    deaths += n->membership->stats().deaths;
    suspicions += n->membership->stats().suspicions;
  }
  EXPECT_EQ(deaths, 0u) << "suspicions: " << suspicions;
  EXPECT_GT(suspicions, 0u);  // the loss was real: probes did fail
  // Everyone still routes to everyone (alive, or suspect awaiting refutation).
  for (std::size_t v = 0; v < 30; ++v) {
    for (std::size_t a = 0; a < 30; ++a) {
      const auto s = c.view(v, a);
      EXPECT_TRUE(s == MemberState::kAlive || s == MemberState::kSuspect) << v << " sees " << a;
    }
  }
}

// Lifeguard's case: a member starved of CPU (its loop stalls 2 s out of
// every 10, for 10 minutes) is at worst suspected, never declared dead,
// because it stalls for less than the suspicion timeout (2.6 s at 20
// members); and no healthy member is ever declared dead, although the
// starved one, waking up, finds all its probes timed out before it reads
// the acks. docs/membership.md has the counts with Lifeguard off.
TEST(MembershipSim, NoFalseDeathsWhenAMemberIsStarvedOfCpu) {
  for (auto seed : testing::sim_seeds(4)) {
    testing::StarvationScenario sc;
    sc.seed = seed;
    const auto r = testing::run_starvation(sc);
    ASSERT_TRUE(r.converged) << "seed " << seed;
    EXPECT_EQ(r.dead_healthy, 0u) << "seed " << seed;
    EXPECT_EQ(r.dead_starved, 0u) << "seed " << seed << ": suspected " << r.suspect_starved
                                  << " times, refuted " << r.refutes;
    // The stalls were real: the starved member was suspected and refuted.
    EXPECT_GT(r.suspect_starved, 0u) << "seed " << seed;
    EXPECT_GT(r.refutes, 0u) << "seed " << seed;
  }
}

TEST(MembershipSim, PartitionThenHealMergesBackIntoOneCluster) {
  SimCluster c(seed_or(4), 10);
  start_all(c);
  ASSERT_TRUE(run_until(c, [&] { return c.converged(c.all()); }, seconds(10)));
  std::vector<Endpoint> a, b;
  std::vector<std::size_t> ai, bi;
  for (std::size_t i = 0; i < 10; ++i) {
    (i < 4 ? a : b).push_back(SimCluster::address(i));
    (i < 4 ? ai : bi).push_back(i);
  }
  c.net.partition(a, b);
  // Each side declares the other dead.
  ASSERT_TRUE(run_until(c, [&] {
    for (auto x : ai) for (auto y : bi) {
      if (c.view(x, y) != MemberState::kDead || c.view(y, x) != MemberState::kDead) return false;
    }
    return true;
  }, seconds(30)));
  c.net.heal();
  EXPECT_TRUE(run_until(c, [&] { return c.converged(c.all()); }, seconds(30))) << c.net.trace_tail();
}

// Reconnect, not periodic push-pull, heals a partition here: among eight
// members that crashed for good, the one just cut off is pinged first
// (it has missed the fewest reconnect pings), so the heal takes about one
// reconnect interval. With one dead member drawn at random per interval,
// about half the seeds took longer than 5 s.
TEST(MembershipSim, ReconnectTriesTheFreshlyDeadBeforeTheLongGone) {
  membership::MembershipOptions opt;
  opt.push_pull_interval = std::chrono::hours(1);
  SimCluster c(seed_or(12), 12, opt);
  start_all(c);
  ASSERT_TRUE(run_until(c, [&] { return c.converged(c.all()); }, seconds(10)));
  const std::vector<std::size_t> crashed{4, 5, 6, 7, 8, 9, 10, 11};
  for (auto i : crashed) c.crash(i);
  const std::vector<std::size_t> live{0, 1, 2, 3};
  ASSERT_TRUE(run_until(c, [&] { return c.converged(live, crashed); }, seconds(60)));
  c.net.run_for(seconds(30));  // reconnect keeps missing the crashed ones
  // Member 0 is cut off until it and the others hold each other dead.
  c.net.partition({SimCluster::address(0)}, {SimCluster::address(1), SimCluster::address(2), SimCluster::address(3)});
  ASSERT_TRUE(run_until(c, [&] {
    for (std::size_t i = 1; i < 4; ++i) {
      if (c.view(0, i) != MemberState::kDead || c.view(i, 0) != MemberState::kDead) return false;
    }
    return true;
  }, seconds(60), milliseconds(100)));
  c.net.heal();
  const TimePoint t0 = c.net.now();
  ASSERT_TRUE(run_until(c, [&] { return c.converged(live, crashed); }, seconds(60), milliseconds(100)));
  EXPECT_LE(c.net.now() - t0, seconds(5));
}

TEST(MembershipSim, SuspectedButAliveMemberRefutes) {
  SimCluster c(seed_or(5), 8);
  start_all(c);
  ASSERT_TRUE(run_until(c, [&] { return c.converged(c.all()); }, seconds(10)));
  // Node 3 cannot be reached for a moment (its inbound traffic is cut), long
  // enough to be suspected, shorter than the suspicion timeout.
  const Endpoint victim = SimCluster::address(3);
  for (std::size_t i = 0; i < 8; ++i) if (i != 3) c.net.block(SimCluster::address(i), victim);
  ASSERT_TRUE(run_until(c, [&] {
    for (std::size_t i = 0; i < 8; ++i) if (i != 3 && c.view(i, 3) == MemberState::kSuspect) return true;
    return false;
  }, seconds(10), milliseconds(10)));
  c.net.heal();
  ASSERT_TRUE(run_until(c, [&] { return c.converged(c.all()); }, seconds(10)));
  EXPECT_GE(c.nodes[3]->membership->stats().refutes, 1u);
  // Nobody declared the victim dead. (The victim itself, deaf for a while,
  // may have given up on others; they refute that once it hears again.)
  std::uint64_t deaths = 0;
  for (std::size_t i = 0; i < 8; ++i) if (i != 3) deaths += c.nodes[i]->membership->stats().deaths;
  EXPECT_EQ(deaths, 0u);
}

TEST(MembershipSim, RestartedMemberIsAcceptedAsANewLife) {
  SimCluster c(seed_or(6), 6);
  start_all(c);
  ASSERT_TRUE(run_until(c, [&] { return c.converged(c.all()); }, seconds(10)));
  c.crash(2);
  std::vector<std::size_t> rest{0, 1, 3, 4, 5};
  ASSERT_TRUE(run_until(c, [&] { return c.converged(rest, {2}); }, seconds(30)));
  c.restart(2, {SimCluster::address(0)});
  ASSERT_TRUE(run_until(c, [&] { return c.converged(c.all()); }, seconds(10))) << c.net.trace_tail();
}

TEST(MembershipSim, GracefulLeaveIsNotAFailure) {
  SimCluster c(seed_or(7), 6);
  start_all(c);
  ASSERT_TRUE(run_until(c, [&] { return c.converged(c.all()); }, seconds(10)));
  c.nodes[4]->membership->leave();
  ASSERT_TRUE(run_until(c, [&] {
    for (std::size_t i = 0; i < 6; ++i) if (i != 4 && c.view(i, 4) != MemberState::kLeft) return false;
    return true;
  }, seconds(5)));
  for (auto& n : c.nodes) EXPECT_EQ(n->membership->stats().deaths, 0u);
}

TEST(MembershipSim, MetadataChangeReachesEveryMember) {
  SimCluster c(seed_or(8), 10);
  start_all(c);
  ASSERT_TRUE(run_until(c, [&] { return c.converged(c.all()); }, seconds(10)));
  MemberMeta m;
  m.name = "node5";
  m.version = "1.0.0";
  m.services = {"svc", "work09"};
  c.nodes[5]->membership->set_meta(m);
  auto have = [&] {
    std::size_t k = 0;
    for (auto& n : c.nodes) {
      const auto info = n->membership->find(SimCluster::address(5));
      k += info && info->meta.services.size() == 2 ? 1 : 0;
    }
    return k;
  };
  // Gossip carries it to nearly everyone within seconds; it is
  // probabilistic (each member sends an update 8 times here), and on about
  // one seed in a hundred one member is missed: anti-entropy (a push-pull
  // every 15 s, each wait drawn from 0.5 to 1.5 intervals) brings it there.
  EXPECT_TRUE(run_until(c, [&] { return have() >= 9; }, seconds(5)));
  EXPECT_TRUE(run_until(c, [&] { return have() == 10; }, seconds(25)));
}

// Periodic push-pull compares digests first: in a settled cluster no full
// state is sent at all; a member that missed a piece of news (cut off while
// it was gossiped) has a digest that differs, until it catches up.
TEST(MembershipSim, PeriodicExchangeSendsFullStateOnlyWhenViewsDiffer) {
  membership::MembershipOptions opt;
  opt.suspicion_mult = 20;  // 10 s at least: the cut below suspects, never kills
  SimCluster c(seed_or(10), 10, opt);
  start_all(c);
  ASSERT_TRUE(run_until(c, [&] { return c.converged(c.all()); }, seconds(10)));
  c.net.run_for(seconds(10));  // the join news dies down
  auto totals = [&] {
    std::array<std::uint64_t, 3> t{};  // full exchanges, digests, equal digests
    for (auto& n : c.nodes) {
      t[0] += n->membership->stats().push_pulls;
      t[1] += n->membership->stats().digests;
      t[2] += n->membership->stats().digests_equal;
    }
    return t;
  };
  const auto t0 = totals();
  c.net.run_for(seconds(120));  // push-pull every 7.5-22.5 s per member at this size
  const auto t1 = totals();
  EXPECT_GE(t1[1] - t0[1], 40u);
  EXPECT_EQ(t1[2] - t0[2], t1[1] - t0[1]) << "a settled cluster's digests differed";
  EXPECT_EQ(t1[0], t0[0]) << "a settled cluster sent full states";

  // Member 7 is cut off while member 5's new metadata is gossiped, until
  // the gossip is over (each holder sends it a few times within a second).
  std::vector<Endpoint> rest;
  for (std::size_t i = 0; i < c.nodes.size(); ++i) {
    if (i != 7) rest.push_back(SimCluster::address(i));
  }
  c.net.partition({SimCluster::address(7)}, rest);
  MemberMeta m;
  m.name = "node5";
  m.version = "1.0.0";
  m.services = {"svc", "work10"};
  c.nodes[5]->membership->set_meta(m);
  auto knows = [&](std::size_t viewer) {
    const auto info = c.nodes[viewer]->membership->find(SimCluster::address(5));
    return info && info->meta.services.size() == 2;
  };
  c.net.run_for(seconds(5));
  c.net.heal();
  ASSERT_FALSE(knows(7));
  for (std::size_t i = 0; i < c.nodes.size(); ++i) {
    if (i != 7) {
      ASSERT_TRUE(knows(i)) << i;
    }
  }
  // Member 7's digest now differs from everyone else's (5's incarnation);
  // theirs agree (suspicion of 7 counts as alive).
  const auto d0 = c.nodes[0]->membership->digest();
  EXPECT_EQ(d0.count, 10u);
  EXPECT_NE(c.nodes[7]->membership->digest(), d0);
  for (std::size_t i = 1; i < c.nodes.size(); ++i) {
    if (i != 7) {
      EXPECT_EQ(c.nodes[i]->membership->digest(), d0) << i;
    }
  }
  // The news reaches 7 (by a periodic exchange, which its differing digest
  // makes a full one, or by the repair of a suspicion 7 raised while cut
  // off), and the digests agree again.
  EXPECT_TRUE(run_until(c, [&] {
    if (!knows(7)) return false;
    for (auto& n : c.nodes) {
      if (n->membership->digest() != c.nodes[0]->membership->digest()) return false;
    }
    return true;
  }, seconds(60)));
  for (auto& n : c.nodes) EXPECT_EQ(n->membership->stats().deaths, 0u);
}

// A member that holds another dead and missed its refutation learns it
// is alive the first time that member talks to it, without a full
// exchange (periodic push-pull and reconnect are turned off here; without
// the correction it would wait until the dead record is reclaimed).
TEST(MembershipSim, MemberHeldDeadThatTalksIsRevivedInOneRoundTrip) {
  membership::MembershipOptions opt;
  opt.suspicion_mult = 20;  // 10-30 s: the short cut of member 5 below suspects, never kills
  opt.push_pull_interval = std::chrono::hours(1);
  opt.reconnect_interval = std::chrono::hours(1);
  opt.dead_reclaim = seconds(300);
  SimCluster c(seed_or(11), 10, opt);
  start_all(c);
  ASSERT_TRUE(run_until(c, [&] { return c.converged(c.all()); }, seconds(10)));
  // Member 3 stalls until everyone holds it dead.
  c.net.stall(SimCluster::address(3), seconds(40));
  ASSERT_TRUE(run_until(c, [&] {
    for (std::size_t i = 0; i < c.nodes.size(); ++i) {
      if (i != 3 && c.view(i, 3) != MemberState::kDead) return false;
    }
    return true;
  }, seconds(39), milliseconds(500)));
  c.net.run_until([&] { return !c.net.stalled(SimCluster::address(3)); }, seconds(40));
  // Member 5 hears nothing while 3 refutes and the others gossip it.
  for (std::size_t i = 0; i < c.nodes.size(); ++i) {
    if (i != 5) c.net.block(SimCluster::address(i), SimCluster::address(5));
  }
  std::uint64_t full0 = 0;
  for (auto& n : c.nodes) full0 += n->membership->stats().push_pulls;
  c.net.run_for(seconds(3));
  c.net.heal();
  ASSERT_EQ(c.view(5, 3), MemberState::kDead);
  std::size_t see_alive = 0;
  for (std::size_t i = 0; i < c.nodes.size(); ++i) see_alive += c.view(i, 3) == MemberState::kAlive ? 1 : 0;
  ASSERT_GE(see_alive, 8u);  // 3 itself and the others but 5
  // 3 probes every member once per round (9 x 500 ms here).
  const TimePoint t0 = c.net.now();
  EXPECT_TRUE(run_until(c, [&] { return c.view(5, 3) == MemberState::kAlive; }, seconds(20)));
  EXPECT_LT(c.net.now() - t0, seconds(10));
  std::uint64_t full1 = 0;
  for (auto& n : c.nodes) full1 += n->membership->stats().push_pulls;
  EXPECT_EQ(full1, full0) << "repaired by a full exchange";
}

TEST(MembershipSim, NodeWhoseSeedsAreDownStartsAloneAndJoinsLater) {
  SimCluster c(seed_or(9), 3);
  c.net.crash(SimCluster::address(0));  // the seed is not up yet
  c.start(1, {SimCluster::address(0)});
  c.start(2, {SimCluster::address(0)});
  c.net.run_for(seconds(5));
  EXPECT_FALSE(c.nodes[1]->membership->joined());
  EXPECT_EQ(c.nodes[1]->membership->alive_count(), 1u);
  c.net.restart(SimCluster::address(0));
  c.start(0, {});
  EXPECT_TRUE(run_until(c, [&] { return c.converged(c.all()); }, seconds(30)));
  EXPECT_TRUE(c.nodes[1]->membership->joined());
}

}  // namespace
}  // namespace broach
