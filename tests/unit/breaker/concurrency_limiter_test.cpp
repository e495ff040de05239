// The concurrency limiter in front of a queueing model of a provider: c
// workers taking requests in order from an unbounded queue (the pool), an
// open-loop Poisson stream of requests, service times drawn around a mean.
// Seeded and replayable; many seeds per test.
#include "breaker/concurrency_limiter.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <optional>
#include <queue>
#include <random>
#include <vector>

namespace broach::breaker {
namespace {

using Ms = std::chrono::duration<double, std::milli>;
TimePoint t0() { return TimePoint{std::chrono::seconds(1000)}; }
Duration ms(double v) { return std::chrono::duration_cast<Duration>(Ms(v)); }

class Provider {
 public:
  struct Phase {
    double seconds;
    double offered_per_s;  ///< Poisson arrival rate
    int workers;
    double service_ms;      ///< mean; each draw is uniform in [0.8, 1.2] * mean
  };
  struct Result {
    std::vector<double> latency_ms;  ///< of requests that ran and met their deadline
    std::int64_t offered = 0, refused = 0, expired = 0;
    double seconds = 0;
    double p99() const {
      if (latency_ms.empty()) return 0;
      auto v = latency_ms;
      std::sort(v.begin(), v.end());
      return v[static_cast<std::size_t>(0.99 * static_cast<double>(v.size() - 1))];
    }
    double goodput() const { return static_cast<double>(latency_ms.size()) / seconds; }
  };

  /// `limiter`: nullopt is the fixed queue (everything admitted, up to
  /// queue_max waiting); requests whose deadline passed while they waited
  /// are dropped unrun when a worker takes them, as the pool does.
  Provider(std::uint64_t seed, std::optional<ConcurrencyLimitOptions> limiter, int queue_max = 1000,
           Duration deadline = std::chrono::seconds(2))
      : rng_(seed), queue_max_(queue_max), deadline_(deadline) {
    if (limiter) limiter_.emplace(*limiter, t0());
  }

  /// Runs the phases in order; the result of each.
  std::vector<Result> run(const std::vector<Phase>& phases) {
    std::vector<Result> out;
    out.reserve(phases.size());  // jobs keep pointers to their phase's Result
    TimePoint now = t0();
    for (const auto& ph : phases) {
      out.push_back(Result{});
      Result& r = out.back();
      r.seconds = ph.seconds;
      workers_ = ph.workers;
      service_ms_ = ph.service_ms;
      start_idle_workers(now);
      const TimePoint end = now + std::chrono::duration_cast<Duration>(std::chrono::duration<double>(ph.seconds));
      std::exponential_distribution<double> gap(ph.offered_per_s);
      TimePoint next_arrival = now + ms(gap(rng_) * 1000);
      while (true) {
        const TimePoint next_done = done_.empty() ? TimePoint::max() : done_.top().at;
        const TimePoint t = std::min(next_arrival, next_done);
        if (t >= end) break;
        now = t;
        if (next_done <= next_arrival) {
          const Job j = done_.top().job;
          done_.pop();
          --busy_;
          finish(j, now, r);
          start_idle_workers(now);
        } else {
          ++r.offered;
          arrive(now, r);
          next_arrival = now + ms(gap(rng_) * 1000);
        }
      }
      now = end;
    }
    return out;
  }
  const ConcurrencyLimiter& limiter() const { return *limiter_; }


 private:
  struct Job {
    TimePoint admitted;
    Result* result;
  };
  struct Done {
    TimePoint at;
    Job job;
    bool operator>(const Done& o) const { return at > o.at; }
  };

  void arrive(TimePoint now, Result& r) {
    if (limiter_ && !limiter_->try_admit()) {
      ++r.refused;
      return;
    }
    if (!limiter_ && static_cast<int>(queue_.size()) >= queue_max_) {
      ++r.refused;
      return;
    }
    queue_.push_back(Job{now, &r});
    start_idle_workers(now);
  }
  void start_idle_workers(TimePoint now) {
    while (busy_ < workers_ && !queue_.empty()) {
      Job j = queue_.front();
      queue_.pop_front();
      if (now - j.admitted >= deadline_) {  // the caller gave up: dropped unrun
        ++j.result->expired;
        if (limiter_) limiter_->finish(j.admitted, now);
        continue;
      }
      ++busy_;
      std::uniform_real_distribution<double> svc(0.8 * service_ms_, 1.2 * service_ms_);
      done_.push(Done{now + ms(svc(rng_)), j});
    }
  }
  void finish(const Job& j, TimePoint now, Result& current) {
    if (limiter_) limiter_->finish(j.admitted, now);
    if (now - j.admitted > deadline_) {
      ++current.expired;
      return;
    }
    current.latency_ms.push_back(Ms(now - j.admitted).count());
  }

  std::mt19937_64 rng_;
  std::optional<ConcurrencyLimiter> limiter_;
  int queue_max_;
  Duration deadline_;
  int workers_ = 0, busy_ = 0;
  double service_ms_ = 0;
  std::deque<Job> queue_;
  std::priority_queue<Done, std::vector<Done>, std::greater<>> done_;
};

constexpr ConcurrencyLimitOptions kAuto{true, 0};

TEST(ConcurrencyLimiter, FixedLimitRefusesBeyondIt) {
  ConcurrencyLimiter l(ConcurrencyLimitOptions{false, 3}, t0());
  EXPECT_TRUE(l.try_admit());
  EXPECT_TRUE(l.try_admit());
  EXPECT_TRUE(l.try_admit());
  EXPECT_FALSE(l.try_admit());
  EXPECT_EQ(l.in_flight(), 3);
  EXPECT_EQ(l.refused(), 1u);
  for (int i = 0; i < 1000; ++i) {  // a fixed limit never moves, whatever the latency
    l.finish(t0(), t0() + ms(i));
    ASSERT_TRUE(l.try_admit());
  }
  EXPECT_EQ(l.limit(), 3);
  EXPECT_EQ(l.in_flight(), 3);
  EXPECT_FALSE(l.try_admit());
  l.finish(t0(), t0());
  EXPECT_EQ(l.in_flight(), 2);
  EXPECT_TRUE(l.try_admit());
}

// The proof: a provider at 60% of its capacity whose capacity then
// halves (half its workers gone), at 1.2x and at 1.6x overload. With the
// adaptive limit, accepted calls keep a p99 within 2x of the unloaded p99
// and goodput stays >= 80% of the new capacity; the fixed queue (the
// seed's pool, 1,000 places) lets p99 grow to the deadline.
TEST(ConcurrencyLimiter, CapacityHalvingKeepsLatencyAndGoodput) {
  for (double offered : {480.0, 640.0}) {
    for (std::uint64_t seed = 1; seed <= 40; ++seed) {
      SCOPED_TRACE("seed " + std::to_string(seed) + ", offered " + std::to_string(offered));
      const std::vector<Provider::Phase> phases = {
          {10, 80, 8, 10},       // unloaded: 10% of 800/s
          {20, offered, 8, 10},  // 60% or 80% of capacity
          {30, offered, 4, 10},  // capacity halves to 400/s
      };
      Provider with(seed, kAuto);
      const auto r = with.run(phases);
      const double unloaded_p99 = r[0].p99();
      EXPECT_GT(unloaded_p99, 9.0);
      // Under capacity the limit refuses little: nothing at 60% (it sheds a
      // few percent from ~75% on, to keep the queue short).
      EXPECT_LE(static_cast<double>(r[1].refused),
                (offered < 500 ? 0.005 : 0.06) * static_cast<double>(r[1].offered));
      EXPECT_LE(r[1].p99(), 2 * unloaded_p99);
      // Overloaded: bounded latency, goodput near capacity.
      EXPECT_LE(r[2].p99(), 2 * unloaded_p99) << "unloaded p99 " << unloaded_p99;
      EXPECT_GE(r[2].goodput(), 0.8 * 400) << "limit " << with.limiter().limit();
      EXPECT_EQ(r[2].expired, 0);

      Provider fixed(seed, std::nullopt);
      const auto f = fixed.run(phases);
      EXPECT_GT(f[2].p99(), 1000.0);  // the queue fills: latency heads for the 2 s deadline
    }
  }
}

// A handler that really becomes twice as slow (every request, no queueing
// involved): noload follows it, and goodput recovers to >= 80% of the new
// capacity instead of the limit shrinking to nothing.
TEST(ConcurrencyLimiter, FollowsAHandlerThatBecomesSlower) {
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Provider p(seed, kAuto);
    const auto r = p.run({
        {10, 640, 8, 10},
        {30, 640, 8, 20},  // capacity 400/s, by service time
    });
    EXPECT_GE(r[1].goodput(), 0.8 * 400);
    EXPECT_GT(p.limiter().noload(), ms(18));
    EXPECT_LT(p.limiter().noload(), ms(26));
  }
}

// From an idle start at high load the limit finds the workers' capacity
// quickly (the initial limit of 40 would queue 32 behind 8 workers).
TEST(ConcurrencyLimiter, ConvergesFromTheInitialLimit) {
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Provider p(seed, kAuto);
    const auto r = p.run({{3, 1200, 8, 10}, {20, 1200, 8, 10}});  // 1.5x overload from the start
    EXPECT_LE(r[1].p99(), 20.0);
    EXPECT_GE(r[1].goodput(), 0.8 * 800);
    EXPECT_GE(p.limiter().limit(), 6);
    EXPECT_LE(p.limiter().limit(), 20);
  }
}

// A slow handler (100 ms, 8 places) stalls for 3 s (every request takes
// 3 s: the limit is cut to its floor), then recovers: the limit must grow
// back to the capacity's fit although at a limit of 1 only ~10 requests
// finish per second (fewer than a full window's samples).
TEST(ConcurrencyLimiter, RecoversFromTheFloorAfterAStall) {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Provider p(seed, kAuto);
    const auto r = p.run({{20, 60, 8, 100},     // 75% of 80/s
                          {3, 60, 8, 3000},     // stalled
                          {30, 60, 8, 100},     // back
                          {20, 60, 8, 100}});
    // Stuck at the floor, goodput would be ~10/s. (At 75% load behind a
    // 100 ms handler the limit sheds up to ~12%: few samples per window.)
    EXPECT_GE(r[2].goodput(), 0.6 * 60);
    EXPECT_GE(r[3].goodput(), 0.85 * 60) << "limit " << p.limiter().limit();
    EXPECT_GE(p.limiter().limit(), 3);  // (a re-measurement halves it for a window)
  }
}

// Load that grows past the initial limit (a handler that waits on I/O: 200
// workers) raises the limit instead of refusing what the provider can do.
TEST(ConcurrencyLimiter, GrowsWhenThereIsCapacity) {
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    Provider p(seed, kAuto);
    const auto r = p.run({{5, 2000, 200, 50}, {20, 3000, 200, 50}});  // 100 then 150 in flight
    EXPECT_LT(static_cast<double>(r[1].refused), 0.03 * static_cast<double>(r[1].offered));
    EXPECT_GT(p.limiter().limit(), 150);
  }
}

}  // namespace
}  // namespace broach::breaker
