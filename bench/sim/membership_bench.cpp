// bench_membership: membership at scale and under CPU starvation, on the
// simulated network (virtual time; the real Membership and Engine code).
//
//   bench_membership scale [N ...]        default: 100 1000 3000 10000
//   bench_membership starvation [HOURS]   default: 1 hour of virtual time per row
//
// scale: N members join through one seed (2 ms apart), then: convergence
// (every member sees every member alive, counted from the last join);
// steady-state bytes and datagrams per member per second; 1% crash, and
// when each survivor marks each crashed member dead (p50/p99 against the
// theory: one probe interval plus the minimum suspicion timeout); a 10%
// partition, held until both sides have declared the other dead, then
// healed, and the time until one cluster again; route-table entries and
// member records per member; the simulator's own wall time and peak RSS.
// One JSON line per size on stdout after the table (BENCH_JSON=0 turns them off).
//
// starvation: Lifeguard's case: members stall (a loop stopped 2 s of every
// 10), with and without the Lifeguard features; false "dead" verdicts and
// false suspicions of healthy members, per hour.
//
// BENCH_START=formed skips the mass join (members are handed the whole
// list, then settle), BENCH_QUEUE_MAX bounds the gossip queues, BENCH_SEED
// picks another trajectory: bench/README.md.
//
// Figures in docs/membership.md. Not a ctest: 10,000 members take hours.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "base/allocator.hpp"
#include "broach/codec.hpp"
#include "membership/messages.hpp"
#include "support/sim_cluster.hpp"
#include "support/sim_starvation.hpp"

namespace broach {
namespace {

using testing::SimCluster;

double peak_rss_mib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

// Index of the member at `a` (SimCluster::address is 10.0.x.y, 250 per /24).
std::size_t index_of(const Endpoint& a) {
  return ((a.ip >> 8) & 0xffff) * 250 + (a.ip & 0xff) - 1;
}

struct ScaleRow {
  std::size_t n = 0;
  double join_s = 0, converge_s = 0;
  double bytes_per_member_s = 0, datagrams_per_member_s = 0;
  double detect_p50 = 0, detect_p99 = 0, detect_max = 0, theory_s = 0;
  std::size_t undetected = 0;
  double partition_major_s = 0, partition_minor_s = 0, minor_fraction = 0, heal_s = 0;
  double one_join_s = 0;
  bool healed = false;
  bool partitioned = true;  // false: BENCH_PARTITION=0 skipped partition and heal
  std::uint64_t false_deaths = 0;
  double records_per_member = 0;
  double wall_s = 0, rss_mib = 0;
};

ScaleRow run_scale(std::size_t n, std::uint64_t seed) {
  const auto wall0 = std::chrono::steady_clock::now();
  ScaleRow row;
  row.n = n;
  membership::MembershipOptions opt;
  // BENCH_QUEUE_MAX: a fixed gossip-queue bound (the default grows with the
  // cluster: N^2 queued updates across a simulation of N members).
  if (const char* q = std::getenv("BENCH_QUEUE_MAX")) opt.max_queued_updates = std::strtoull(q, nullptr, 10);
  SimCluster c(seed, n + 1, opt);  // the last one joins alone, later
  c.net.set_tracing(false);
  // Progress on stderr: what each phase cost in virtual and wall time.
  auto phase_wall = wall0;
  auto phase_virtual = c.net.now();
  // Each line carries the phase's figures, so a run stopped part way (10,000
  // members take hours) still reports what it measured.
  // Push-pulls (full-state exchanges) are the costly part of a mass event:
  // how many each phase started, and how many failed (crashed members' counts kept).
  std::pair<std::uint64_t, std::uint64_t> crashed_pp{0, 0};  // counted by members before they crashed
  auto push_pulls = [&] {
    std::pair<std::uint64_t, std::uint64_t> t = crashed_pp;
    for (const auto& node : c.nodes) {
      if (!node->membership) continue;
      t.first += node->membership->stats().push_pulls;
      t.second += node->membership->stats().push_pull_failures;
    }
    return t;
  };
  auto phase_pp = push_pulls();
  auto phase = [&](const char* name, const std::string& figures) {
    const auto w = std::chrono::steady_clock::now();
    const auto pp = push_pulls();
    std::fprintf(stderr, "[%zu] %-10s virtual %7.1f s  wall %7.1f s  rss %6.0f MiB  push-pulls %lld (%lld failed)  %s\n",
                 n, name, to_seconds(c.net.now() - phase_virtual), std::chrono::duration<double>(w - phase_wall).count(),
                 peak_rss_mib(), static_cast<long long>(pp.first - phase_pp.first),
                 static_cast<long long>(pp.second - phase_pp.second), figures.c_str());
    phase_wall = w;
    phase_virtual = c.net.now();
    phase_pp = pp;
  };

  // Per viewer: when it first marked each member dead (virtual seconds).
  struct DeathLog : membership::Listener {
    std::vector<std::pair<std::size_t, TimePoint>> dead;
    sim::SimNetwork* net = nullptr;
    void on_member_event(membership::EventKind kind, const MemberInfo& m) override {
      if (kind == membership::EventKind::kDead) dead.emplace_back(index_of(m.address), net->now());
    }
  };
  std::vector<std::unique_ptr<DeathLog>> logs(n + 1);
  c.listener_factory = [&](std::size_t i) -> membership::Listener* {
    logs[i] = std::make_unique<DeathLog>();
    logs[i]->net = &c.net;
    return logs[i].get();
  };

  // What the members' membership state holds, summed over the simulation
  // (MiB): records and index, lists, gossip queues, the rest.
  auto membership_memory = [&] {
    membership::Membership::MemoryUse sum;
    for (const auto& node : c.nodes) {
      if (!node->membership) continue;
      const auto u = node->membership->memory_use();
      sum.table += u.table;
      sum.lists += u.lists;
      sum.queue += u.queue;
      sum.other += u.other;
    }
    char buf[160];
    std::snprintf(buf, sizeof buf, "table %.0f lists %.0f queues %.0f other %.0f", sum.table / 1048576.0,
                  sum.lists / 1048576.0, sum.queue / 1048576.0, sum.other / 1048576.0);
    return std::string(buf);
  };
  // A progress line every 10 s of virtual time while forming (10,000
  // members take a long time): joins so far, members that see everyone,
  // push-pulls so far, wall time, RSS.
  auto progress = [&](std::size_t started, std::size_t full) {
    const auto pp = push_pulls();
    double cached = 0, partial = 0;  // MiB held by the engines: responses kept, messages half reassembled
    for (const auto& node : c.nodes) {
      if (!node->engine) continue;
      cached += static_cast<double>(node->engine->stats().dedup_bytes) / 1048576.0;
      partial += static_cast<double>(node->engine->stats().reassembly_bytes) / 1048576.0;
    }
    const auto mem = membership_memory();
    std::fprintf(stderr,
                 "[%zu]   ... virtual %7.1f s  wall %7.1f s  rss %6.0f MiB  joined %zu  seeing all %zu  push-pulls %lld"
                 "  (events %zu, responses kept %.0f MiB, reassembly %.0f MiB; membership MiB: %s)\n",
                 n, to_seconds(c.net.now() - phase_virtual),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - phase_wall).count(), peak_rss_mib(),
                 started, full, static_cast<long long>(pp.first - phase_pp.first), c.net.pending_events(), cached,
                 partial, mem.c_str());
  };
  // BENCH_START=formed: skip the mass join. Every member starts alone and
  // is handed one full state listing all N (through its own push-pull
  // handler, as if one exchange with a member that knew everyone), then
  // the cluster settles for 90 s. What follows (steady state, crash,
  // partition, one join) starts from a cluster that has already formed,
  // which at 10,000 members saves hours of simulated joining. No member
  // has proven any other's address yet (in a cluster that formed by
  // joining, probes prove them over time): until a probe does, periodic
  // exchanges skip that member.
  const char* start_mode = std::getenv("BENCH_START");
  const bool formed = start_mode != nullptr && std::strcmp(start_mode, "formed") == 0;
  if (formed) {
    for (std::size_t i = 0; i < n; ++i) c.start(i, {});
    std::vector<membership::Update> everyone;
    everyone.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      const auto self = c.nodes[i]->membership->find(SimCluster::address(i));
      membership::Update u;
      u.addr = self->address;
      u.life = self->life;
      u.incarnation = self->incarnation;
      u.meta = std::make_shared<const MemberMeta>(self->meta);
      everyone.push_back(std::move(u));
    }
    const wire::Bytes state = membership::encode_push_pull(false, everyone);
    const wire::Bytes args = detail::pack_args(std::vector<char>(reinterpret_cast<const char*>(state.data()),
                                                                 reinterpret_cast<const char*>(state.data()) + state.size()));
    everyone.clear();
    for (std::size_t i = 0; i < n; ++i) {
      c.nodes[i]->membership->handle_push_pull(args);
      if ((i + 1) % 1000 == 0) progress(i + 1, i + 1);
    }
    phase("handed", "every member handed the full list");
    c.net.run_for(seconds(90));
  } else {
    c.start(0, {});
    for (std::size_t i = 1; i < n; ++i) {
      c.net.run_for(milliseconds(2));
      c.start(i, {SimCluster::address(0)});
      if (i % 1000 == 0) progress(i + 1, 0);
    }
  }
  const TimePoint joined = c.net.now();
  row.join_s = to_seconds(joined.time_since_epoch());
  auto counts_full = [&](std::size_t want, const std::vector<bool>* skip) {
    for (std::size_t i = 0; i < n; ++i) {
      if (skip && (*skip)[i]) continue;
      if (c.nodes[i]->membership->alive_count() != want) return false;
    }
    return true;
  };
  // alive_count counts suspects too: a full count is then confirmed by
  // looking at every record (O(N^2), so only when the counts agree).
  std::vector<std::size_t> first_n(n);
  for (std::size_t i = 0; i < n; ++i) first_n[i] = i;
  auto all_see_all = [&] { return counts_full(n, nullptr) && c.converged(first_n); };
  const TimePoint limit = joined + seconds(600);
  std::size_t ticks = 0;
  while (!all_see_all() && c.net.now() < limit) {
    c.net.run_for(milliseconds(100));
    if (++ticks % 100 == 0) {
      std::size_t full = 0;
      for (std::size_t i = 0; i < n; ++i) full += c.nodes[i]->membership->alive_count() == n ? 1 : 0;
      progress(n, full);
    }
  }
  row.converge_s = to_seconds(c.net.now() - joined);
  if (!all_see_all()) row.converge_s = -1;
  // Per-peer state besides member records, per member: the reliable
  // engine's RTT estimates and at-most-once records, the address guard's
  // credit and proven pairs (N^2 of each across the simulation).
  auto engine_state = [&] {
    double rtt = 0, dedup = 0, credit = 0, proven = 0, live = 0;
    for (const auto& node : c.nodes) {
      if (!node->engine) continue;
      live += 1;
      rtt += static_cast<double>(node->engine->stats().peers_tracked);
      dedup += static_cast<double>(node->engine->stats().dedup_entries);
      credit += static_cast<double>(node->engine->path().guard().credit_entries());
      proven += static_cast<double>(node->engine->path().guard().proven_entries());
    }
    char buf[160];
    std::snprintf(buf, sizeof buf, " per member: rtt %.0f dedup %.0f credit %.0f proven %.0f", rtt / live,
                  dedup / live, credit / live, proven / live);
    return std::string(buf);
  };
  if (formed) row.converge_s = 0;  // not measured: the members were handed the whole list
  phase(formed ? "settled" : "form",
        (formed ? std::string("formed start, 90 s to settle") : "converged_s=" + std::to_string(row.converge_s) +
                                                                    " (from the last join)") +
            engine_state() + "; membership MiB: " + membership_memory());

  // Steady state: after the join news has died down, over one push-pull
  // interval at this size (15 s x (log2(N) - 4) beyond 32 members): every
  // member makes one periodic exchange in it on average (each wait is
  // jittered), so their cost is in the figure.
  c.net.run_for(seconds(20));
  const double pp_scale = n > 32 ? std::ceil(std::log2(static_cast<double>(n)) - 5.0) + 1 : 1;
  const double window_s = std::max(30.0, to_seconds(opt.push_pull_interval) * pp_scale);
  const auto s0 = c.net.stats();
  c.net.run_for(seconds_f(window_s));
  const auto s1 = c.net.stats();
  row.bytes_per_member_s = static_cast<double>(s1.bytes_sent - s0.bytes_sent) / static_cast<double>(n) / window_s;
  row.datagrams_per_member_s = static_cast<double>(s1.sent - s0.sent) / static_cast<double>(n) / window_s;
  {
    std::size_t records = 0;
    for (std::size_t i = 0; i < n; ++i) records += c.nodes[i]->membership->record_count() + 1;
    row.records_per_member = static_cast<double>(records) / static_cast<double>(n);
  }
  phase("steady", "bytes_per_member_s=" + std::to_string(row.bytes_per_member_s) +
                      " datagrams_per_member_s=" + std::to_string(row.datagrams_per_member_s) +
                      " records_per_member=" + std::to_string(row.records_per_member));

  // 1% crash (at least one).
  for (auto& l : logs) {
    if (l) l->dead.clear();
  }
  const std::size_t k = std::max<std::size_t>(1, n / 100);
  std::vector<bool> crashed(n, false);
  for (std::size_t j = 0; j < k; ++j) crashed[1 + j * (n - 1) / k] = true;
  const TimePoint t0 = c.net.now();
  for (std::size_t i = 0; i < n; ++i) {
    if (!crashed[i]) continue;
    crashed_pp.first += c.nodes[i]->membership->stats().push_pulls;
    crashed_pp.second += c.nodes[i]->membership->stats().push_pull_failures;
    c.crash(i);
  }
  {
    const double log_n = std::max(1.0, std::log10(static_cast<double>(n)));
    const double min_s = opt.suspicion_mult * log_n * to_seconds(opt.probe_interval);
    row.theory_s = to_seconds(opt.probe_interval) + min_s;
  }
  auto detected_all = [&] {
    for (std::size_t v = 0; v < n; ++v) {
      if (crashed[v]) continue;
      std::size_t got = 0;
      for (auto& [who, when] : logs[v]->dead) got += crashed[who] ? 1 : 0;
      if (got < k) return false;
    }
    return true;
  };
  const TimePoint dlimit = t0 + seconds(120);
  while (!detected_all() && c.net.now() < dlimit) c.net.run_for(milliseconds(500));
  std::vector<double> detect;
  for (std::size_t v = 0; v < n; ++v) {
    if (crashed[v]) continue;
    std::size_t got = 0;
    for (auto& [who, when] : logs[v]->dead) {
      if (crashed[who]) {
        detect.push_back(to_seconds(when - t0));
        ++got;
      } else {
        ++row.false_deaths;
      }
    }
    row.undetected += k - std::min(k, got);
  }
  row.detect_p50 = pct(detect, 0.5);
  row.detect_p99 = pct(detect, 0.99);
  row.detect_max = detect.empty() ? 0 : *std::max_element(detect.begin(), detect.end());
  phase("crash 1%", "theory_s=" + std::to_string(row.theory_s) + " detect_p50_s=" + std::to_string(row.detect_p50) +
                        " detect_p99_s=" + std::to_string(row.detect_p99) + " undetected=" +
                        std::to_string(row.undetected) + " false_deaths=" + std::to_string(row.false_deaths));

  std::vector<std::size_t> survivors;
  for (std::size_t i = 0; i < n; ++i) if (!crashed[i]) survivors.push_back(i);
  // BENCH_PARTITION=0 skips the partition and heal (at 10,000 members the
  // heal alone takes hours of wall time), so that the one-join figure can
  // be had.
  const char* partition_env = std::getenv("BENCH_PARTITION");
  row.partitioned = partition_env == nullptr || std::strcmp(partition_env, "0") != 0;
  if (row.partitioned) {
  // 10% partition (of the survivors), held until both sides see the other
  // dead (bounded), then healed.
  std::vector<Endpoint> side_a, side_b;
  std::vector<std::size_t> a_idx, b_idx;
  for (std::size_t i = 0; i < n; ++i) {
    if (crashed[i]) continue;
    if (i % 10 == 5) {
      side_a.push_back(SimCluster::address(i));
      a_idx.push_back(i);
    } else {
      side_b.push_back(SimCluster::address(i));
      b_idx.push_back(i);
    }
  }
  const TimePoint p0 = c.net.now();
  c.net.partition(side_a, side_b);
  const std::size_t alive_total = n - k;
  auto side_done = [&](const std::vector<std::size_t>& side) {
    for (auto i : side) if (c.nodes[i]->membership->alive_count() != side.size()) return false;
    return true;
  };
  // Held until the 90% side has declared the 10% side dead (180 s at most:
  // at 10,000 members that is 1,000 deaths to gossip through every queue),
  // then healed. The small side is slower: most members it gossips to are
  // on the other side (and it raises its own awareness, probing less);
  // how far it got is recorded.
  const TimePoint plimit = p0 + seconds(180);
  row.partition_major_s = row.partition_minor_s = -1;
  while (c.net.now() < plimit) {
    if (row.partition_minor_s < 0 && side_done(a_idx)) row.partition_minor_s = to_seconds(c.net.now() - p0);
    if (side_done(b_idx)) {
      row.partition_major_s = to_seconds(c.net.now() - p0);
      break;
    }
    c.net.run_for(milliseconds(500));
  }
  {
    double seen_dead = 0;
    for (auto i : a_idx) {
      seen_dead += static_cast<double>(alive_total - c.nodes[i]->membership->alive_count()) /
                   static_cast<double>(b_idx.size());
    }
    row.minor_fraction = seen_dead / static_cast<double>(a_idx.size());
  }
  phase("partition", "major_side_s=" + std::to_string(row.partition_major_s) + " minor_side_s=" +
                         std::to_string(row.partition_minor_s) + " minor_done=" + std::to_string(row.minor_fraction));
  const TimePoint h0 = c.net.now();
  c.net.heal();
  auto one_cluster = [&] { return counts_full(alive_total, &crashed) && c.converged(survivors); };
  const TimePoint hlimit = h0 + seconds(300);
  std::size_t heal_ticks = 0;
  while (!one_cluster() && c.net.now() < hlimit) {
    c.net.run_for(milliseconds(500));
    if (++heal_ticks % 20 == 0) {  // every 10 s of virtual time: members whose count is whole again
      std::size_t whole = 0;
      for (auto i : survivors) whole += c.nodes[i]->membership->alive_count() == alive_total ? 1 : 0;
      progress(alive_total, whole);
    }
  }
  row.healed = one_cluster();
  row.heal_s = to_seconds(c.net.now() - h0);
  phase("heal", "heal_s=" + std::to_string(row.heal_s) + (row.healed ? "" : " (not healed)"));

  } else {
    row.partition_major_s = row.partition_minor_s = row.heal_s = -1;
    phase("partition", "skipped (BENCH_PARTITION=0)");
  }

  // One more member joins the settled cluster: how long until every
  // member knows it (the dissemination time of one piece of news, what
  // Serf's convergence formula predicts).
  c.net.run_for(seconds(10));
  const TimePoint j0 = c.net.now();
  c.start(n, {SimCluster::address(0)});
  auto all_know = [&] {
    for (auto v : survivors) {
      if (c.view(v, n) != MemberState::kAlive) return false;
    }
    return true;
  };
  c.net.run_until(all_know, seconds(60));
  row.one_join_s = all_know() ? to_seconds(c.net.now() - j0) : -1;
  phase("one join", "one_join_s=" + std::to_string(row.one_join_s));

  row.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  row.rss_mib = peak_rss_mib();
  return row;
}

int scale(const std::vector<std::size_t>& sizes) {
  const membership::MembershipOptions opt;
  std::printf("membership scale on the simulator (virtual time): probe %.0f ms, gossip %.0f ms, push-pull %.0f s\n",
              to_seconds(opt.probe_interval) * 1e3, to_seconds(opt.gossip_interval) * 1e3,
              to_seconds(opt.push_pull_interval));
  std::printf("%7s %8s %8s %9s %9s %8s %8s %8s %8s %7s %7s %8s %8s %7s %7s %8s %8s %8s\n", "members",
              "form_s", "1join_s", "B/memb/s", "dg/memb/s", "theory", "det_p50", "det_p99", "det_max", "missed",
              "false_d", "part90_s", "part10_s", "10%done", "heal_s", "records", "wall_s", "rss_MiB");
  std::vector<ScaleRow> rows;
  for (auto n : sizes) {
    // BENCH_SEED: another trajectory (default 4242 + N).
    const char* seed_env = std::getenv("BENCH_SEED");
    const auto r = run_scale(n, seed_env ? std::strtoull(seed_env, nullptr, 10) + n : 4242 + n);
    rows.push_back(r);
    std::printf("%7zu %8.2f %8.2f %9.0f %9.1f %8.2f %8.2f %8.2f %8.2f %7zu %7llu %8.1f %8.1f %6.0f%% %6.1f%s %8.0f %8.1f %8.0f\n",
                r.n, r.converge_s, r.one_join_s, r.bytes_per_member_s, r.datagrams_per_member_s, r.theory_s,
                r.detect_p50, r.detect_p99, r.detect_max, r.undetected,
                static_cast<unsigned long long>(r.false_deaths), r.partition_major_s, r.partition_minor_s,
                r.minor_fraction * 100, r.heal_s, r.healed ? " " : "!", r.records_per_member, r.wall_s, r.rss_mib);
    std::fflush(stdout);
  }
  std::printf("form_s: all members join 2 ms apart, until every member sees every member alive; 1join_s: one\n"
              "more member joins the settled cluster, until everyone knows it; theory: probe interval + minimum\n"
              "suspicion timeout; part90_s/part10_s: until each side of a 90/10 partition sees the other dead\n"
              "(-1: the 10%% side had not finished when the partition healed; 10%%done: how far it got).\n");
  const char* json = std::getenv("BENCH_JSON");
  if (json == nullptr || std::strcmp(json, "0") != 0) {
    for (auto& r : rows) {
      std::printf(
          "{\"bench\":\"membership_scale\",\"members\":%zu,\"form_s\":%.3f,\"one_join_s\":%.3f,"
          "\"bytes_per_member_s\":%.1f,\"datagrams_per_member_s\":%.2f,\"detect_theory_s\":%.3f,"
          "\"detect_p50_s\":%.3f,\"detect_p99_s\":%.3f,\"detect_max_s\":%.3f,\"undetected\":%zu,"
          "\"false_deaths\":%llu,\"partition_major_s\":%.2f,\"partition_minor_s\":%.2f,"
          "\"partition_minor_done\":%.3f,\"heal_s\":%.2f,\"healed\":%s,\"records_per_member\":%.0f,"
          "\"wall_s\":%.1f,\"peak_rss_mib\":%.0f}\n",
          r.n, r.converge_s, r.one_join_s, r.bytes_per_member_s, r.datagrams_per_member_s, r.theory_s,
          r.detect_p50, r.detect_p99, r.detect_max, r.undetected, static_cast<unsigned long long>(r.false_deaths),
          r.partition_major_s, r.partition_minor_s, r.minor_fraction, r.heal_s, r.healed ? "true" : "false",
          r.records_per_member, r.wall_s, r.rss_mib);
    }
  }
  bool ok = true;
  for (auto& r : rows) {
    ok = ok && r.converge_s >= 0 && r.one_join_s >= 0 && r.undetected == 0 && r.false_deaths == 0 &&
         (!r.partitioned || (r.healed && r.partition_major_s >= 0));
  }
  return ok ? 0 : 1;
}

int starvation(double hours) {
  std::printf("Lifeguard's case on the simulator: members stall 2 s of every 10 s; %.1f h of virtual time per row\n",
              hours);
  std::printf("%8s %8s %10s %16s %16s %18s %18s %10s\n", "members", "starved", "features",
              "dead(healthy)/h", "dead(starved)/h", "suspect(healthy)/h", "suspect(starved)/h", "refutes/h");
  static const char* const kMode[] = {"SWIM", "Lifeguard", "LG+read"};
  struct Case {
    std::size_t members, starved;
  };
  for (Case cs : {Case{20, 1}, Case{20, 4}, Case{100, 10}}) {
    for (int mode : {0, 1, 2}) {  // SWIM, Lifeguard, Lifeguard + read before judging
      const bool lg = mode > 0;
      testing::StarvationScenario sc;
      sc.members = cs.members;
      sc.starved = cs.starved;
      sc.lifeguard = lg;
      sc.read_before_judging = mode == 2;
      sc.duration = seconds_f(hours * 3600.0);
      sc.seed = 77 + cs.members + cs.starved;
      const auto r = testing::run_starvation(sc);
      if (!r.converged) {
        std::printf("%8zu %8zu %10s did not converge\n", cs.members, cs.starved, kMode[mode]);
        continue;
      }
      const double h = r.hours;
      std::printf("%8zu %8zu %10s %16.1f %16.1f %18.1f %18.1f %10.1f\n", cs.members, cs.starved, kMode[mode],
                  static_cast<double>(r.dead_healthy) / h, static_cast<double>(r.dead_starved) / h,
                  static_cast<double>(r.suspect_healthy) / h, static_cast<double>(r.suspect_starved) / h,
                  static_cast<double>(r.refutes) / h);
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace
}  // namespace broach

int main(int argc, char** argv) {
  // As a node does by default (params.broach.transport.tuneAllocator): the
  // push-pull bodies of thousands of members are large buffers that glibc
  // would otherwise hand back to the kernel and fault in again each time.
  broach::tune_allocator();
  const std::string mode = argc > 1 ? argv[1] : "scale";
  if (mode == "scale") {
    std::vector<std::size_t> sizes;
    for (int i = 2; i < argc; ++i) sizes.push_back(std::strtoull(argv[i], nullptr, 10));
    if (sizes.empty()) sizes = {100, 1000, 3000, 10000};
    return broach::scale(sizes);
  }
  if (mode == "starvation") {
    const double hours = argc > 2 ? std::strtod(argv[2], nullptr) : 1.0;
    return broach::starvation(hours);
  }
  std::fprintf(stderr, "usage: bench_membership scale [N ...] | starvation [HOURS]\n");
  return 2;
}
