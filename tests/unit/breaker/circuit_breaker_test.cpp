#include "breaker/circuit_breaker.hpp"

#include <gtest/gtest.h>

namespace broach::breaker {
namespace {

TimePoint at(double s) { return TimePoint{seconds_f(100 + s)}; }

TEST(CircuitBreaker, TripsOnConsecutiveFailures) {
  CircuitBreaker b;
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(b.allow(at(0)));
    b.on_failure(at(0));
  }
  EXPECT_EQ(b.state(at(0)), BreakerState::kClosed);
  b.on_failure(at(0));
  EXPECT_EQ(b.state(at(0)), BreakerState::kOpen);
  EXPECT_FALSE(b.allow(at(0.5)));
  EXPECT_EQ(b.trips(), 1u);
}

// `overloaded` answers: shedding part of the load never trips (not in the
// error rate); refusing everything (20 in a row with the defaults) does, and
// a refused half-open probe opens it again.
TEST(CircuitBreaker, RefusalsTripOnlyWhenTheProviderRefusesEverything) {
  CircuitBreaker b;
  for (int i = 0; i < 1000; ++i) {  // half refused, half served
    b.on_refusal(at(0.001 * i));
    b.on_success(at(0.001 * i));
  }
  EXPECT_EQ(b.state(at(1)), BreakerState::kClosed);
  for (int i = 0; i < 19; ++i) b.on_refusal(at(1));
  EXPECT_EQ(b.state(at(1)), BreakerState::kClosed);
  b.on_refusal(at(1));
  EXPECT_EQ(b.state(at(1)), BreakerState::kOpen);
  ASSERT_TRUE(b.allow(at(2.1)));  // half-open probe
  b.on_refusal(at(2.1));
  EXPECT_EQ(b.state(at(2.2)), BreakerState::kOpen);
  EXPECT_EQ(b.trips(), 2u);
}

TEST(CircuitBreaker, SuccessResetsTheConsecutiveCount) {
  CircuitBreaker b;
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 4; ++i) b.on_failure(at(0));
    b.on_success(at(0));
  }
  EXPECT_EQ(b.state(at(0)), BreakerState::kClosed);  // never 5 in a row, < 20 calls
  for (int round = 0; round < 7; ++round) {
    for (int i = 0; i < 4; ++i) b.on_failure(at(0));
    b.on_success(at(0));  // late successes do not close an open breaker
  }
  // 40 failures and 10 successes: the rate rule (80% >= 50% over >= 20 calls) trips it.
  EXPECT_EQ(b.state(at(0)), BreakerState::kOpen);
}

TEST(CircuitBreaker, TripsOnErrorRateOnlyWithEnoughCalls) {
  BreakerOptions o;
  o.consecutive_failures = 1000;
  CircuitBreaker b(o);
  for (int i = 0; i < 9; ++i) {
    b.on_failure(at(0));
    b.on_success(at(0));
  }
  EXPECT_EQ(b.state(at(0)), BreakerState::kClosed);  // 18 calls < 20
  b.on_failure(at(0));
  b.on_failure(at(0));
  EXPECT_EQ(b.state(at(0)), BreakerState::kOpen);  // 11 of 20 failed
}

TEST(CircuitBreaker, OldFailuresLeaveTheWindow) {
  BreakerOptions o;
  o.consecutive_failures = 1000;
  CircuitBreaker b(o);
  for (int i = 0; i < 15; ++i) b.on_failure(at(0));
  for (int i = 0; i < 15; ++i) b.on_success(at(20));  // the failures are 20 s old
  b.on_failure(at(20));
  EXPECT_EQ(b.state(at(20)), BreakerState::kClosed);
}

TEST(CircuitBreaker, HalfOpenProbeClosesOnSuccess) {
  CircuitBreaker b;
  for (int i = 0; i < 5; ++i) b.on_failure(at(0));
  EXPECT_FALSE(b.allow(at(0.9)));
  EXPECT_EQ(b.state(at(1.0)), BreakerState::kHalfOpen);
  EXPECT_TRUE(b.allow(at(1.0)));   // the one probe
  EXPECT_FALSE(b.allow(at(1.0)));  // no second one meanwhile
  b.on_success(at(1.01));
  EXPECT_EQ(b.state(at(1.01)), BreakerState::kClosed);
  EXPECT_TRUE(b.allow(at(1.02)));
}

TEST(CircuitBreaker, FailedProbeReopensWithDoubledBackoff) {
  CircuitBreaker b;
  for (int i = 0; i < 5; ++i) b.on_failure(at(0));
  ASSERT_TRUE(b.allow(at(1.0)));
  b.on_failure(at(1.0));
  EXPECT_EQ(b.state(at(2.5)), BreakerState::kOpen);  // open for 2 s now
  EXPECT_EQ(b.state(at(3.0)), BreakerState::kHalfOpen);
  EXPECT_EQ(b.trips(), 2u);
}

TEST(RetryBudget, LimitsRetriesToAFractionOfCalls) {
  RetryBudget budget(0.1, 10);
  int retries = 0;
  for (int i = 0; i < 1000; ++i) {
    budget.on_call();
    if (budget.try_retry()) ++retries;  // every call fails and wants a retry
  }
  EXPECT_GE(retries, 100);
  EXPECT_LE(retries, 111);  // 10% of 1000 plus the reserve of 10
}

}  // namespace
}  // namespace broach::breaker
