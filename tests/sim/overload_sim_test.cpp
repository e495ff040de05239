// A provider whose capacity halves under a steady stream of calls, as whole
// nodes on the simulated network (the production NodeCore, its Server and
// its concurrency limiter). The provider's work is a model: a service with
// `workers` places, each request taking 8-12 ms of virtual time, waiting in
// a queue for a place (the pool's queue, 1,000 places), dropped unrun when
// its caller's deadline has passed by the time a place frees (as the pool
// does). Seeded and replayable ($BROACH_SIM_SEEDS).
#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <random>

#include "support/sim_node.hpp"

namespace broach {
namespace {

using testing::SimNodes;

class WorkModel {
 public:
  WorkModel(Loop& loop, std::uint64_t seed) : loop_(loop), rng_(seed) {}

  /// The service: args [deadline_ns] (the caller's deadline, virtual time).
  RawAsyncHandler handler() {
    return [this](std::span<const std::byte> args, std::function<void(RawResult)> done) {
      const auto [deadline_ns] = detail::unpack_args<std::tuple<std::int64_t>>(args);
      if (static_cast<int>(queue_.size()) >= queue_max) {
        done(Error(Errc::kOverloaded, "queue full"));
        return;
      }
      queue_.push_back(Job{TimePoint{Duration(deadline_ns)}, std::move(done)});
      start();
    };
  }
  void set_workers(int w) {
    workers_ = w;
    start();
  }
  int queue_max = 1000;

 private:
  struct Job {
    TimePoint deadline;
    std::function<void(RawResult)> done;
  };
  void start() {
    while (busy_ < workers_ && !queue_.empty()) {
      Job j = std::move(queue_.front());
      queue_.pop_front();
      if (loop_.now() >= j.deadline) {
        j.done(Error(Errc::kDeadlineExpired, "expired in the queue"));
        continue;
      }
      ++busy_;
      std::uniform_int_distribution<int> us(8000, 12000);
      loop_.run_after(std::chrono::microseconds(us(rng_)), [this, done = std::move(j.done)] {
        --busy_;
        done(detail::pack_value(std::uint64_t{1}));
        start();
      });
    }
  }

  Loop& loop_;
  std::mt19937_64 rng_;
  int workers_ = 8;
  int busy_ = 0;
  std::deque<Job> queue_;
};

struct PhaseResult {
  std::vector<double> ok_ms;
  std::map<std::string, int> errors;
  double seconds = 0;
  double p99() const {
    if (ok_ms.empty()) return 0;
    auto v = ok_ms;
    std::sort(v.begin(), v.end());
    return v[static_cast<std::size_t>(0.99 * static_cast<double>(v.size() - 1))];
  }
  double goodput() const { return static_cast<double>(ok_ms.size()) / seconds; }
};

struct Phase {
  double seconds;
  double per_second;  ///< Poisson arrivals from the caller
  int workers;
};

// Node 0 calls "work" by name on node 1 (its only provider) in an open
// loop; each phase's calls are counted in that phase. Calls are not retried
// (one provider: the refusal is the answer).
std::vector<PhaseResult> run(std::uint64_t seed, bool limited, const std::vector<Phase>& phases) {
  Config cfg = default_config();
  cfg.rpc_timeout = 2;
  cfg.udp_timeout = 1;
  cfg.load_balance.slow_start_ms = 0;
  if (limited) cfg.max_concurrency["work"] = ConcurrencyLimitConfig{true, 0};
  SimNodes s(seed, 2, cfg);
  std::unique_ptr<WorkModel> model;
  s.start(0);
  s.start(1, [&](api::NodeCore& c) {
    model = std::make_unique<WorkModel>(*s.at(1).n.loop, seed * 31 + 7);
    c.provide_async("work", model->handler(), {});
  });
  EXPECT_TRUE(s.net.run_until([&] { return s.routes_to(0, "work", {1}); }, seconds(10)));

  std::vector<PhaseResult> out(phases.size());
  std::mt19937_64 rng(seed);
  int outstanding = 0;
  // Every call is a timer on the caller's loop at its Poisson arrival time.
  Loop& caller = *s.at(0).n.loop;
  TimePoint at = s.net.now();
  const TimePoint begin = at;
  for (std::size_t p = 0; p < phases.size(); ++p) {
    out[p].seconds = phases[p].seconds;
    const TimePoint end = at + seconds_f(phases[p].seconds);
    caller.run_after(at - begin, [&model, w = phases[p].workers] { model->set_workers(w); });
    std::exponential_distribution<double> gap(phases[p].per_second);
    while (true) {
      at += seconds_f(gap(rng));
      if (at >= end) break;
      caller.run_after(at - begin, [&, r = &out[p]] {
        const TimePoint started = s.net.now();
        const auto deadline = started + seconds(2);
        CallOptions opts;
        opts.timeout = std::chrono::milliseconds(2000);
        opts.retry = RetryMode::kNever;
        ++outstanding;
        s.core(0).call_by_name("work", detail::pack_args(std::int64_t(deadline.time_since_epoch().count())), opts,
                               [&, started, r](RawResult res) {
                                 --outstanding;
                                 if (res.ok()) {
                                   r->ok_ms.push_back(
                                       std::chrono::duration<double, std::milli>(s.net.now() - started).count());
                                 } else {
                                   ++r->errors[errc_name(res.error().code())];
                                 }
                               });
      });
    }
    at = end;
  }
  s.net.run_until([&] { return s.net.now() >= at; }, at - begin + seconds(1));
  EXPECT_TRUE(s.net.run_until([&] { return outstanding == 0; }, seconds(10)));
  return out;
}

// The proof, with whole nodes: capacity 800/s (8 places x 10 ms),
// a stream of 480 calls/s (60%), then capacity halves to 400/s (1.2x
// overload). With maxConcurrency "auto", the p99 of accepted calls stays
// within 2x of the unloaded p99 and goodput >= 80% of the new capacity;
// with the fixed queue, p99 grows towards the 2 s deadline.
TEST(OverloadSim, AdaptiveLimitKeepsLatencyWhenCapacityHalves) {
  for (auto seed : testing::sim_seeds(4)) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    const std::vector<Phase> phases = {{10, 80, 8}, {20, 480, 8}, {30, 480, 4}};
    auto with = run(seed, true, phases);
    const double unloaded = with[0].p99();
    EXPECT_GT(unloaded, 9.0);
    EXPECT_LT(unloaded, 14.0);
    EXPECT_LE(with[1].p99(), 2 * unloaded);
    EXPECT_LE(with[1].errors["overloaded"], static_cast<int>(0.005 * 480 * 20));
    EXPECT_LE(with[2].p99(), 2 * unloaded) << "unloaded p99 " << unloaded;
    EXPECT_GE(with[2].goodput(), 0.8 * 400);
    for (const auto& [kind, n] : with[2].errors) {
      EXPECT_EQ(kind, "overloaded") << n;  // refused at once, nothing timed out or expired
    }

    const auto fixed = run(seed, false, phases);
    EXPECT_GT(fixed[2].p99(), 1000.0) << "fixed-queue p99 of the overloaded phase";
    std::printf("seed %llu: unloaded p99 %.1f ms; overloaded: limit p99 %.1f ms goodput %.0f/s, "
                "fixed queue p99 %.1f ms goodput %.0f/s\n",
                static_cast<unsigned long long>(seed), unloaded, with[2].p99(), with[2].goodput(), fixed[2].p99(),
                fixed[2].goodput());
    for (const PhaseResult* r : {static_cast<const PhaseResult*>(&with[2]), &fixed[2]}) {
      std::printf("  ok %zu", r->ok_ms.size());
      for (const auto& [k, n] : r->errors) std::printf(" %s %d", k.c_str(), n);
      std::printf("\n");
    }
  }
}

}  // namespace
}  // namespace broach
