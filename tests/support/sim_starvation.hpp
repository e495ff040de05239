// Test support: Lifeguard's case on the simulated network. Some members are
// starved of CPU (their loop stalls `stall` out of every `period`); nothing
// crashes, so every "dead" verdict is a false one. Used by
// membership_sim_test (asserts) and bench/sim (false positives per hour with
// and without the Lifeguard features).
#pragma once

#include <memory>
#include <vector>

#include "support/sim_cluster.hpp"

namespace broach::testing {

struct StarvationScenario {
  std::size_t members = 20;
  std::size_t starved = 1;                ///< members 1..starved stall
  Duration stall = seconds(2);
  Duration period = seconds(10);
  Duration duration = seconds(600);       ///< of virtual time, after convergence
  bool lifeguard = true;
  bool read_before_judging = true;
  std::uint64_t seed = 1;
};

struct StarvationResult {
  bool converged = false;
  std::uint64_t dead_healthy = 0;      ///< "dead" verdicts about never-stalled members
  std::uint64_t dead_starved = 0;      ///< "dead" verdicts about stalled members
  std::uint64_t suspect_healthy = 0;   ///< suspicions raised of never-stalled members
  std::uint64_t suspect_starved = 0;
  std::uint64_t refutes = 0;
  double hours = 0;                    ///< virtual time measured
};

inline StarvationResult run_starvation(const StarvationScenario& sc) {
  struct Counter : membership::Listener {
    StarvationResult* res;
    std::size_t starved;
    void on_member_event(membership::EventKind kind, const MemberInfo& m) override {
      // Member i has address SimCluster::address(i): 10.0.0.(i+1) for i < 250.
      const std::uint32_t host = m.address.ip & 0xff;
      const std::size_t i = (m.address.ip >> 8 & 0xff) * 250 + host - 1;
      const bool starved_member = i >= 1 && i <= starved;
      if (kind == membership::EventKind::kDead) ++(starved_member ? res->dead_starved : res->dead_healthy);
      if (kind == membership::EventKind::kSuspect) {
        ++(starved_member ? res->suspect_starved : res->suspect_healthy);
      }
    }
  };
  StarvationResult res;
  membership::MembershipOptions opt;
  opt.lifeguard = sc.lifeguard;
  opt.read_before_judging = sc.read_before_judging;
  SimCluster c(sc.seed, sc.members, opt);
  c.net.set_tracing(false);
  std::vector<std::unique_ptr<Counter>> counters;
  c.listener_factory = [&](std::size_t) -> membership::Listener* {
    auto l = std::make_unique<Counter>();
    l->res = &res;
    l->starved = sc.starved;
    counters.push_back(std::move(l));
    return counters.back().get();
  };
  c.start(0, {});
  for (std::size_t i = 1; i < sc.members; ++i) {
    c.net.run_for(milliseconds(10));
    c.start(i, {SimCluster::address(0)});
  }
  const TimePoint limit = c.net.now() + seconds(60);
  while (!c.converged(c.all()) && c.net.now() < limit) c.net.run_for(milliseconds(100));
  res.converged = c.converged(c.all());
  if (!res.converged) return res;
  // Count only from here: the events of the join are not false positives.
  res = StarvationResult{};
  res.converged = true;
  std::uint64_t refutes0 = 0;
  for (auto& n : c.nodes) refutes0 += n->membership->stats().refutes;
  const TimePoint t0 = c.net.now();
  // Each starved member stalls at its own phase in the period.
  for (TimePoint t = t0; t < t0 + sc.duration; t += sc.period) {
    for (std::size_t s = 1; s <= sc.starved; ++s) {
      const auto phase = sc.period * static_cast<std::int64_t>(s) / static_cast<std::int64_t>(sc.starved + 1);
      const TimePoint at = t + phase;
      if (at > c.net.now()) c.net.run_for(at - c.net.now());
      c.net.stall(SimCluster::address(s), sc.stall);
    }
  }
  if (t0 + sc.duration > c.net.now()) c.net.run_for(t0 + sc.duration - c.net.now());
  // Let the last stall's suspicions run out before counting.
  c.net.run_for(seconds(30));
  for (auto& n : c.nodes) res.refutes += n->membership->stats().refutes;
  res.refutes -= refutes0;
  res.hours = to_seconds(c.net.now() - t0) / 3600.0;
  return res;
}

}  // namespace broach::testing
