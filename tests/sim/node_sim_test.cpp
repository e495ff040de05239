// Whole nodes on the simulated network: the production NodeCore (gossip,
// route table, calls by name with the CallRouter's policies, breakers,
// retries and hedges, serving on a simulated pool) in virtual time, each
// scenario over many seeds (20, or $BROACH_SIM_SEEDS). A failure names its
// seed; rerun one with BROACH_SIM_SEEDS and BROACH_LOG_LEVEL=debug.
#include <cmath>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "support/sim_node.hpp"

namespace broach {
namespace {

using testing::SimNodes;

// Each provider records which call ids it ran; "work" returns [id, node].
struct Runs {
  std::map<std::uint64_t, int> by_id;  // executions of each call id, every provider together
  std::map<std::string, int> by_node;
};

void provide_work(api::NodeCore& core, Runs& runs, const std::string& service = "work") {
  const std::string me = core.config().name;
  core.provide(service, detail::make_raw_handler([&runs, me](std::uint64_t id) {
                 ++runs.by_id[id];
                 ++runs.by_node[me];
                 return std::make_tuple(id, me);
               }),
               {});
}

std::tuple<std::uint64_t, std::string> work_result(RawResult r) {
  return detail::unpack_value<std::tuple<std::uint64_t, std::string>>(r.value());
}

Config fast_config() {
  Config c = default_config();
  c.rpc_timeout = 1.0;
  c.udp_timeout = 0.3;
  c.membership.push_pull_interval_ms = 2000;
  // These scenarios count how calls spread over providers that have just
  // joined: no slow start (JoiningProviderShareFollowsTheSlowStartRamp
  // turns it on).
  c.load_balance.slow_start_ms = 0;
  return c;
}

// Joins n nodes (node 0 first) and waits until all see all and node 0 routes
// "work" to every provider in `providers`.
void join_all(SimNodes& s, std::size_t n, const std::function<void(std::size_t, api::NodeCore&)>& setup) {
  for (std::size_t i = 0; i < n; ++i) s.start(i, [&](api::NodeCore& c) { setup(i, c); });
  std::vector<std::size_t> all(n);
  for (std::size_t i = 0; i < n; ++i) all[i] = i;
  ASSERT_TRUE(s.net.run_until([&] { return s.all_see_alive(all); }, seconds(30)))
      << "cluster did not converge; " << s.net.trace_tail();
}

// Starts n nodes of which `providers` offer "work", and waits until node 0
// routes "work" to every one of them.
void start_with_providers(SimNodes& s, std::size_t n, const std::vector<std::size_t>& providers, Runs& runs) {
  join_all(s, n, [&](std::size_t i, api::NodeCore& c) {
    if (std::find(providers.begin(), providers.end(), i) != providers.end()) provide_work(c, runs);
  });
  ASSERT_TRUE(s.net.run_until([&] { return s.routes_to(0, "work", providers); }, seconds(10)));
}

TEST(NodeSim, ClusterJoinsByGossipAndServesCallsByName) {
  const std::size_t sizes[] = {5, 12, 25, 50};
  for (auto seed : testing::sim_seeds()) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    const std::size_t n = sizes[seed % 4];
    SimNodes s(seed, n, fast_config());
    Runs runs;
    join_all(s, n, [&](std::size_t i, api::NodeCore& c) {
      if (i % 2 == 1) provide_work(c, runs);
    });
    std::vector<std::size_t> providers;
    for (std::size_t i = 1; i < n; i += 2) providers.push_back(i);
    const bool routed = s.net.run_until([&] {
      for (std::size_t i = 0; i < n; ++i) if (!s.routes_to(i, "work", providers)) return false;
      return true;
    }, seconds(10));
    if (!routed) {
      for (std::size_t i = 0; i < n; ++i) {
        for (auto p : providers) {
          if (s.routes_to(i, "work", {p})) continue;
          std::string have;
          for (const auto& mi : s.core(i).members()) {
            if (mi.address == s.address(p)) {
              have = std::string(member_state_name(mi.state)) + " inc " + std::to_string(mi.incarnation) +
                     " life " + std::to_string(mi.life) + " services " + std::to_string(mi.meta.services.size());
            }
          }
          std::string self;
          for (const auto& mi : s.core(p).members()) {
            if (mi.self) self = "inc " + std::to_string(mi.incarnation) + " life " + std::to_string(mi.life) +
                                " services " + std::to_string(mi.meta.services.size());
          }
          ADD_FAILURE() << "node " << i << " lacks provider " << p << ": holds [" << have << "], provider says [" << self << "]";
        }
      }
    }
    ASSERT_TRUE(routed);
    // Every node calls by name; then node 0 alone makes two rounds, which
    // round robin spreads over every provider.
    std::vector<std::shared_ptr<SimNodes::Outcome>> calls;
    for (std::uint64_t k = 0; k < 200; ++k) calls.push_back(s.call_async(k % n, "work", detail::pack_args(k)));
    for (std::uint64_t k = 200; k < 200 + 2 * providers.size(); ++k) {
      calls.push_back(s.call_async(0, "work", detail::pack_args(k)));
    }
    ASSERT_TRUE(s.net.run_until([&] { for (auto& c : calls) if (!c->finished) return false; return true; }, seconds(5)));
    for (std::uint64_t k = 0; k < calls.size(); ++k) {
      ASSERT_TRUE(calls[k]->result.ok()) << calls[k]->result.error().message();
      EXPECT_EQ(std::get<0>(work_result(calls[k]->result)), k);
      EXPECT_EQ(runs.by_id[k], 1);
    }
    EXPECT_EQ(runs.by_node.size(), providers.size());  // every provider served
    EXPECT_EQ(s.double_completions, 0);
  }
}

// Node 0 calls; nodes 1-4 each provide "work" and "read"; waits until node 0
// routes both to all four.
void start_work_and_read(SimNodes& s, Runs& work_runs, Runs& read_runs) {
  join_all(s, 5, [&](std::size_t i, api::NodeCore& c) {
    if (i == 0) return;
    provide_work(c, work_runs, "work");
    provide_work(c, read_runs, "read");
  });
  ASSERT_TRUE(s.net.run_until(
      [&] { return s.routes_to(0, "read", {1, 2, 3, 4}) && s.routes_to(0, "work", {1, 2, 3, 4}); }, seconds(10)));
}

// A provider is cut off from everyone mid-stream. Every call ends with the
// right result or a typed error within its deadline; a non-idempotent call
// is never run twice; idempotent ones are retried on another provider.
TEST(NodeSim, PartitionedProviderMidStream) {
  for (auto seed : testing::sim_seeds()) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Config cfg = fast_config();
    cfg.retry.idempotent = {"read"};
    SimNodes s(seed, 5, cfg);
    Runs work_runs, read_runs;
    ASSERT_NO_FATAL_FAILURE(start_work_and_read(s, work_runs, read_runs));
    std::vector<std::pair<std::string, std::shared_ptr<SimNodes::Outcome>>> calls;
    const TimePoint t0 = s.net.now();
    std::uint64_t k = 0;
    bool cut = false;
    while (s.net.now() - t0 < seconds(3)) {
      if (!cut && s.net.now() - t0 > seconds(1)) {
        s.net.partition({SimNodes::address(1)}, {SimNodes::address(0), SimNodes::address(2),
                                                 SimNodes::address(3), SimNodes::address(4)});
        cut = true;
      }
      const std::string svc = k % 2 ? "read" : "work";
      calls.emplace_back(svc, s.call_async(0, svc, detail::pack_args(k)));
      ++k;
      s.net.run_for(milliseconds(5));
    }
    ASSERT_TRUE(s.net.run_until([&] { for (auto& c : calls) if (!c.second->finished) return false; return true; }, seconds(5)));
    int ok = 0, failed_reads = 0, failed_work = 0;
    for (std::uint64_t i = 0; i < calls.size(); ++i) {
      const auto& [svc, o] = calls[i];
      EXPECT_LE(o->ended - o->started, milliseconds(1000) + milliseconds(30)) << svc << " call " << i;
      if (o->result.ok()) {
        ++ok;
        EXPECT_EQ(std::get<0>(work_result(o->result)), i);
      } else {
        const Errc e = o->result.error().code();
        EXPECT_TRUE(e == Errc::kDeliveryTimeout || e == Errc::kCallTimeout || e == Errc::kCircuitOpen)
            << errc_name(e) << ": " << o->result.error().message();
        failed_reads += svc == "read";
        failed_work += svc == "work";
      }
      if (svc == "work") {
        EXPECT_LE(work_runs.by_id[i], 1) << "non-idempotent call " << i << " ran twice";
      }
    }
    EXPECT_EQ(failed_reads, 0);  // idempotent calls to the lost provider were retried elsewhere
    // Non-idempotent calls that reached the lost provider before its breaker
    // opened may have run there: they end with an error, never a retry.
    EXPECT_GT(failed_work, 0);
    EXPECT_GE(ok, static_cast<int>(calls.size()) * 9 / 10);
    EXPECT_EQ(s.double_completions, 0);
  }
}

// A provider's process dies on a live host (the host answers ICMP port
// unreachable): calls waiting on it end at once with peer_gone instead of
// after udpTimeOut, idempotent ones are retried elsewhere, no
// non-idempotent call runs twice, and its breaker opens on the first report
// so that new calls go elsewhere before gossip declares it dead.
TEST(NodeSim, ProviderProcessGoneFailsOverAtOnce) {
  for (auto seed : testing::sim_seeds()) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Config cfg = fast_config();
    cfg.retry.idempotent = {"read"};
    SimNodes s(seed, 5, cfg);
    s.net.set_port_unreachable(true);
    Runs work_runs, read_runs;
    ASSERT_NO_FATAL_FAILURE(start_work_and_read(s, work_runs, read_runs));
    std::vector<std::pair<std::string, std::shared_ptr<SimNodes::Outcome>>> calls;
    const TimePoint t0 = s.net.now();
    std::uint64_t k = 0;
    bool crashed = false;
    while (s.net.now() - t0 < seconds(2)) {
      if (!crashed && s.net.now() - t0 > milliseconds(500)) {
        s.crash(1);
        crashed = true;
      }
      for (int j = 0; j < 4; ++j) {  // four calls in flight at a time, as four client threads keep
        const std::string svc = k % 2 ? "read" : "work";
        calls.emplace_back(svc, s.call_async(0, svc, detail::pack_args(k)));
        ++k;
      }
      s.net.run_for(milliseconds(2));
    }
    ASSERT_TRUE(s.net.run_until([&] { for (auto& c : calls) if (!c.second->finished) return false; return true; }, seconds(5)));
    int failed_reads = 0, failed_work = 0;
    Duration slowest{};
    for (std::uint64_t i = 0; i < calls.size(); ++i) {
      const auto& [svc, o] = calls[i];
      slowest = std::max(slowest, o->ended - o->started);
      if (!o->result.ok()) {
        EXPECT_EQ(o->result.error().code(), Errc::kPeerGone) << svc << " call " << i << ": " << o->result.error().message();
        failed_reads += svc == "read";
        failed_work += svc == "work";
      }
      if (svc == "work") {
        EXPECT_LE(work_runs.by_id[i], 1) << "non-idempotent call " << i << " ran twice";
      }
    }
    // Without the report, a call waiting on the dead provider lasts udpTimeOut (300 ms).
    EXPECT_LT(slowest, milliseconds(150)) << "a call waited for the dead provider";
    EXPECT_EQ(failed_reads, 0);  // retried elsewhere
    const auto& st = s.core(0).engine().stats();
    EXPECT_GT(st.port_unreachable, 0u);
    EXPECT_EQ(st.port_unreachable_foreign, 0u);
    // The breaker opened on the first report: a handful of calls hit the
    // dead provider, not a quarter of everything sent until gossip caught up.
    EXPECT_GE(st.calls_peer_gone, 1u);
    EXPECT_LE(st.calls_peer_gone, 8u);
    EXPECT_EQ(s.double_completions, 0);
  }
}

// ICMP is not authenticated: a port-unreachable report ends a call only
// when it quotes that call's own datagram (this node's id and the call's
// id) sent to that address. Reports with another node id, another call
// id, or about another address end nothing, and every call completes.
TEST(NodeSim, ForgedPortUnreachableEndsNothing) {
  for (auto seed : testing::sim_seeds()) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    SimNodes s(seed, 3, fast_config());
    Runs runs;
    join_all(s, 3, [&](std::size_t i, api::NodeCore& c) {
      if (i > 0) provide_work(c, runs);
    });
    ASSERT_TRUE(s.net.run_until([&] { return s.routes_to(0, "work", {1, 2}); }, seconds(10)));
    auto& engine = s.core(0).engine();
    std::vector<std::shared_ptr<SimNodes::Outcome>> calls;
    for (std::uint64_t k = 0; k < 8; ++k) calls.push_back(s.call_async(0, "work", detail::pack_args(k)));
    auto forge = [&](std::uint64_t node_id, std::uint64_t message_id, const Endpoint& about) {
      wire::Header h;
      h.type = wire::MsgType::kRequest;
      h.node_id = node_id;
      h.message_id = message_id;
      std::byte quote[wire::kHeaderSize];
      wire::encode_header(h, quote);
      s.net.inject_unreachable(SimNodes::address(0), about, quote);
    };
    const std::uint64_t me = engine.node_id();
    for (std::uint64_t id = 0; id < 64; ++id) {
      forge(me + 1, id, SimNodes::address(1));             // another node's datagram
      forge(me, id + (1u << 30), SimNodes::address(1));    // no such call
      forge(me, id, SimNodes::address(3));                 // an address nobody was called at
    }
    const std::byte junk[10] = {};
    s.net.inject_unreachable(SimNodes::address(0), SimNodes::address(1), junk);  // no header at all
    ASSERT_TRUE(s.net.run_until([&] { for (auto& c : calls) if (!c->finished) return false; return true; }, seconds(5)));
    for (auto& c : calls) EXPECT_TRUE(c->result.ok()) << c->result.error().message();
    EXPECT_EQ(engine.stats().calls_peer_gone, 0u);
    EXPECT_EQ(engine.stats().port_unreachable_foreign, 64u);
    EXPECT_EQ(engine.path().stats().unreachable_bad, 1u);
  }
}

Config breaker_config() {
  Config c = fast_config();
  c.breaker.consecutive_failures = 3;
  c.breaker.open_ms = 2000;
  c.retry.idempotent = {"work"};
  return c;
}

std::size_t engine_failures(SimNodes& s, std::size_t i, Errc code) {
  return s.core(i).engine().stats().failures[static_cast<int>(code)];
}

// The caller loses its link to P1 only (others still reach it, so gossip
// keeps it alive): P1 is fused after three delivery timeouts, skipped, and
// re-admitted by a probe once the link heals and the open period ends.
TEST(NodeSim, BreakerOpensSkipsAndReadmits) {
  for (auto seed : testing::sim_seeds()) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    SimNodes s(seed, 5, breaker_config());
    Runs runs;
    start_with_providers(s, 5, {1, 2}, runs);
    s.net.partition({SimNodes::address(0)}, {SimNodes::address(1)});
    for (std::uint64_t k = 0; k < 12; ++k) {
      auto o = s.call(0, "work", detail::pack_args(k));
      ASSERT_TRUE(o->result.ok()) << o->result.error().message();
      EXPECT_EQ(std::get<1>(work_result(o->result)), "node2");
    }
    EXPECT_EQ(engine_failures(s, 0, Errc::kDeliveryTimeout), 3u);  // only until the breaker opened
    bool fused = false;
    for (const auto& b : s.core(0).router().breakers(s.net.now())) {
      fused = fused || (b.provider == SimNodes::address(1) && b.service.empty() && b.state == breaker::BreakerState::kOpen);
    }
    EXPECT_TRUE(fused);
    s.net.heal();
    s.net.run_for(milliseconds(2100));
    int p1 = 0;
    for (std::uint64_t k = 100; k < 110; ++k) {
      auto o = s.call(0, "work", detail::pack_args(k));
      ASSERT_TRUE(o->result.ok()) << o->result.error().message();
      p1 += std::get<1>(work_result(o->result)) == "node1";
    }
    EXPECT_GE(p1, 4);  // round robin over both again
  }
}

TEST(NodeSim, EveryProviderFusedFailsAtOnce) {
  for (auto seed : testing::sim_seeds()) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    SimNodes s(seed, 5, breaker_config());
    Runs runs;
    start_with_providers(s, 5, {1, 2}, runs);
    s.net.partition({SimNodes::address(0)}, {SimNodes::address(1), SimNodes::address(2)});
    CallOptions never;
    never.retry = RetryMode::kNever;
    for (std::uint64_t k = 0; k < 6; ++k) {
      auto o = s.call(0, "work", detail::pack_args(k), never);
      ASSERT_FALSE(o->result.ok());
      EXPECT_EQ(o->result.error().code(), Errc::kDeliveryTimeout);
    }
    auto o = s.call(0, "work", detail::pack_args(std::uint64_t{99}), never);
    ASSERT_FALSE(o->result.ok());
    EXPECT_EQ(o->result.error().code(), Errc::kCircuitOpen);
    EXPECT_EQ(o->ended, o->started);  // no network wait at all
    EXPECT_EQ(s.core(0).counters().circuit_open_rejections.load(), 1u);
  }
}

// Every provider refuses (pool full): each failed call wants one retry; the
// budget allows 10% of calls plus a reserve of 10.
TEST(NodeSim, RetryBudgetCapsAttempts) {
  for (auto seed : testing::sim_seeds()) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Config cfg = fast_config();
    cfg.breaker.consecutive_failures = 100000;  // keep both providers in play
    cfg.breaker.min_calls = 100000;
    cfg.retry.max_retries = 1;
    cfg.retry.budget_ratio = 0.1;
    SimNodes s(seed, 3, cfg);
    Runs runs;
    start_with_providers(s, 3, {1, 2}, runs);
    s.at(1).executor->capacity = 0;
    s.at(2).executor->capacity = 0;
    const int calls = 200;
    for (int k = 0; k < calls; ++k) {
      auto o = s.call(0, "work", detail::pack_args(std::uint64_t(k)));
      ASSERT_FALSE(o->result.ok());
      EXPECT_EQ(o->result.error().code(), Errc::kOverloaded);
    }
    const auto attempts = s.core(0).engine().stats().calls_started;
    EXPECT_LE(attempts, static_cast<std::uint64_t>(calls + calls / 10 + 11));
    EXPECT_GE(attempts, static_cast<std::uint64_t>(calls + calls / 10 - 1));
    EXPECT_EQ(s.core(0).counters().retries.load(), attempts - calls);
    EXPECT_TRUE(runs.by_id.empty());  // nothing ran
  }
}

// An idempotent call to a slow provider gets a backup attempt after
// hedgeDelayMs on the other provider, whose answer wins.
TEST(NodeSim, HedgeSendsBackupAfterDelayAndFirstAnswerWins) {
  for (auto seed : testing::sim_seeds()) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Config cfg = fast_config();
    cfg.retry.idempotent = {"work"};
    cfg.retry.hedge_delay_ms = 20;
    SimNodes s(seed, 3, cfg);
    Runs runs;
    start_with_providers(s, 3, {1, 2}, runs);
    s.at(1).executor->delay = milliseconds(200);  // node1 is slow
    int hedged = 0;
    for (std::uint64_t k = 0; k < 20; ++k) {
      auto o = s.call(0, "work", detail::pack_args(k));
      ASSERT_TRUE(o->result.ok()) << o->result.error().message();
      EXPECT_EQ(std::get<1>(work_result(o->result)), "node2");  // the fast one always answers first
      const Duration took = o->ended - o->started;
      EXPECT_LT(took, milliseconds(60));
      if (took >= milliseconds(20)) ++hedged;  // the backup left only after the hedge delay
    }
    EXPECT_GE(hedged, 5);  // round robin sent about half the first attempts to node1
    EXPECT_EQ(s.core(0).counters().hedges.load(), static_cast<std::uint64_t>(hedged));
    s.net.run_for(milliseconds(500));
    EXPECT_EQ(s.double_completions, 0);  // the slow answers arrived and were ignored
  }
}

// A provider crashes and comes back as a new process life at the same
// address: once gossip has it, calls by name reach it again.
TEST(NodeSim, RestartedNodeIsRoutedTo) {
  for (auto seed : testing::sim_seeds()) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    SimNodes s(seed, 4, fast_config());
    Runs runs;
    auto setup = [&](std::size_t i, api::NodeCore& c) {
      if (i > 0) provide_work(c, runs);
    };
    join_all(s, 4, setup);
    ASSERT_TRUE(s.net.run_until([&] { return s.routes_to(0, "work", {1, 2, 3}); }, seconds(10)));
    s.crash(2);
    ASSERT_TRUE(s.net.run_until([&] { return !s.routes_to(0, "work", {2}); }, seconds(30)))
        << "the crashed provider never left the route table";
    s.restart(2, [&](api::NodeCore& c) { setup(2, c); });
    ASSERT_TRUE(s.net.run_until([&] { return s.routes_to(0, "work", {1, 2, 3}); }, seconds(30)))
        << "the restarted provider was never routed to";
    runs.by_node.clear();
    for (std::uint64_t k = 0; k < 30; ++k) ASSERT_TRUE(s.call(0, "work", detail::pack_args(k))->result.ok());
    EXPECT_GE(runs.by_node["node2"], 5);
  }
}

// An interceptor that refuses an attempt after the provider was picked must
// give the pick back: a half-open breaker's one probe slot, above all, or
// the provider would never be picked again.
TEST(NodeSim, AttemptRefusedByAnInterceptorGivesItsPickBack) {
  struct Refuser final : ClientInterceptor {
    bool refuse = false;
    std::optional<Error> before_attempt(ClientCall&, const Endpoint&) override {
      if (refuse) return Error(Errc::kPermissionDenied, "not now");
      return std::nullopt;
    }
  };
  for (auto seed : testing::sim_seeds()) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Config cfg = breaker_config();
    cfg.retry.max_retries = 0;
    SimNodes s(seed, 3, cfg);
    Runs runs;
    start_with_providers(s, 3, {1}, runs);
    auto refuser = std::make_shared<Refuser>();
    s.core(0).add_interceptor(refuser);
    // Open the breaker: the provider is cut off.
    s.net.partition({SimNodes::address(0)}, {SimNodes::address(1)});
    for (std::uint64_t k = 0; k < 3; ++k) EXPECT_FALSE(s.call(0, "work", detail::pack_args(k))->result.ok());
    s.net.heal();
    s.net.run_for(milliseconds(2100));  // past openMs: half-open, one probe allowed
    refuser->refuse = true;
    auto o = s.call(0, "work", detail::pack_args(std::uint64_t{10}));
    ASSERT_FALSE(o->result.ok());
    EXPECT_EQ(o->result.error().code(), Errc::kPermissionDenied);
    refuser->refuse = false;
    o = s.call(0, "work", detail::pack_args(std::uint64_t{11}));
    ASSERT_TRUE(o->result.ok()) << o->result.error().message();
  }
}

// Slow start: a provider that joins a running cluster gets a share of the
// calls that follows the ramp (slowStartMinPercent 10 -> 100% of a full
// share over slowStartMs 10 s), in every policy where weights apply; after
// a crash and restart (a new life) it ramps again.
TEST(NodeSim, JoiningProviderShareFollowsTheSlowStartRamp) {
  const std::vector<std::string> policies = {"random", "round_robin", "weighted", "least_outstanding", "p2c_ewma"};
  const auto seeds = testing::sim_seeds();
  for (std::size_t k = 0; k < policies.size(); ++k) {
    const auto seed = seeds[k % seeds.size()];
    SCOPED_TRACE("policy " + policies[k] + ", seed " + std::to_string(seed));
    Config cfg = fast_config();
    cfg.load_balance.slow_start_ms = 10000;
    cfg.load_balance.slow_start_min_percent = 10;
    cfg.load_balance.policy = policies[k];
    cfg.load_balance.local_in_process = false;
    SimNodes s(seed, 5, cfg);
    Runs runs;
    // Node 0 calls; nodes 1-3 provide from the start; node 4 joins later.
    start_with_providers(s, 4, {1, 2, 3}, runs);
    s.net.run_for(seconds(12));  // past any ramp of the first members
    s.start(4, [&](api::NodeCore& c) { provide_work(c, runs); });
    // The ramp starts when node 0 first sees node 4 offer a service.
    ASSERT_TRUE(s.net.run_until([&] { return s.routes_to(0, "work", {1, 2, 3, 4}); }, seconds(10)));
    // The expected share of a call started t seconds after the ramp began:
    // f / (f + 3), f = 0.1 + 0.9 t / 10 s (every provider has the same
    // weight, so "weighted" is the same).
    const TimePoint t0 = s.net.now();
    auto expected = [&](TimePoint at) {
      const double t = to_seconds(at - t0);
      const double f = t >= 10 ? 1.0 : 0.1 + 0.9 * t / 10;
      return f / (f + 3);
    };
    // 10 calls per loop step of 1 ms, for 6 x 2,000 steps (about 14 s of
    // virtual time); each bucket's share against the mean of its calls'
    // expected shares.
    constexpr int kBucketSteps = 2000, kBuckets = 6, kPerStep = 10;
    std::uint64_t id = 1;
    for (int b = 0; b < kBuckets; ++b) {
      const int before = runs.by_node["node4"];
      int total_before = 0;
      for (auto& [n, c] : runs.by_node) total_before += c;
      double want = 0;
      int issued = 0;
      const double from_s = to_seconds(s.net.now() - t0);
      for (int step = 0; step < kBucketSteps; ++step) {
        for (int i = 0; i < kPerStep; ++i) {
          want += expected(s.net.now());
          ++issued;
          s.call_async(0, "work", detail::pack_args(id++));
        }
        s.net.run_for(milliseconds(1));
      }
      const double to_s = to_seconds(s.net.now() - t0);
      want /= issued;
      s.net.run_for(milliseconds(50));  // the bucket's last calls end
      int total = 0;
      for (auto& [n, c] : runs.by_node) total += c;
      const double calls = total - total_before;
      ASSERT_EQ(calls, issued);
      const double share = (runs.by_node["node4"] - before) / calls;
      // Within 10% of the ramp, or 4 standard deviations of the sampling
      // noise where 10% is finer than the sample can show.
      const double sd = std::sqrt(want * (1 - want) / calls);
      EXPECT_NEAR(share, want, std::max(0.1 * want, 4 * sd))
          << "bucket " << b << " (" << from_s << "-" << to_s << " s after the ramp began), " << calls << " calls";
    }
    constexpr int kPerMs = kPerStep;
    if (k == 0) {
      // A crash and a restart (a new life): it ramps again.
      s.crash(4);
      ASSERT_TRUE(s.net.run_until([&] { return !s.routes_to(0, "work", {4}); }, seconds(30)));
      s.restart(4, [&](api::NodeCore& c) { provide_work(c, runs); });
      ASSERT_TRUE(s.net.run_until([&] { return s.routes_to(0, "work", {4}); }, seconds(10)));
      const int before = runs.by_node["node4"];
      int total_before = 0;
      for (auto& [n, c] : runs.by_node) total_before += c;
      for (int ms = 0; ms < 1000; ++ms) {
        for (int i = 0; i < kPerMs; ++i) s.call_async(0, "work", detail::pack_args(id++));
        s.net.run_for(milliseconds(1));
      }
      s.net.run_for(milliseconds(50));
      int total = 0;
      for (auto& [n, c] : runs.by_node) total += c;
      const double share = (runs.by_node["node4"] - before) / static_cast<double>(total - total_before);
      EXPECT_LT(share, 0.08) << "a restarted provider got " << share << " of the calls in its first second";
      EXPECT_GT(share, 0.01);
    }
  }
}

}  // namespace
}  // namespace broach
