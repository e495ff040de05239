#include "membership/suspicion.hpp"

#include <gtest/gtest.h>

namespace broach::membership {
namespace {

const TimePoint kStart{seconds(100)};
const Endpoint kA{1, 1}, kB{2, 2}, kC{3, 3}, kD{4, 4};

TEST(Suspicion, StartsAtTheMaximum) {
  Suspicion s(kStart, seconds(2), seconds(6), 2, kA);
  EXPECT_EQ(s.deadline(), kStart + seconds(6));
}

TEST(Suspicion, ConfirmationsShortenTimeoutToTheMinimum) {
  Suspicion s(kStart, seconds(2), seconds(6), 2, kA);
  EXPECT_TRUE(s.confirm(kB));
  const auto one = s.deadline();
  EXPECT_LT(one, kStart + seconds(6));
  EXPECT_GT(one, kStart + seconds(2));
  EXPECT_TRUE(s.confirm(kC));
  EXPECT_EQ(s.deadline(), kStart + seconds(2));
  EXPECT_FALSE(s.confirm(kD));  // beyond k: no further effect
}

TEST(Suspicion, RepeatedConfirmerCountsOnce) {
  Suspicion s(kStart, seconds(2), seconds(6), 2, kA);
  EXPECT_FALSE(s.confirm(kA));
  EXPECT_TRUE(s.confirm(kB));
  EXPECT_FALSE(s.confirm(kB));
  EXPECT_EQ(s.confirmations(), 1);
}

TEST(Suspicion, NoExpectedConfirmationsMeansMinimum) {
  Suspicion s(kStart, seconds(2), seconds(6), 0, kA);
  EXPECT_EQ(s.deadline(), kStart + seconds(2));
}

TEST(Suspicion, ExpectedConfirmationsAreCappedAtSeven) {
  // suspicionMult 20 would expect 18: the minimum is reached after 7.
  Suspicion s(kStart, seconds(2), seconds(6), 18, kA);
  for (std::uint32_t i = 0; i < 6; ++i) EXPECT_TRUE(s.confirm(Endpoint{100 + i, 1}));
  EXPECT_GT(s.deadline(), kStart + seconds(2));
  EXPECT_TRUE(s.confirm(Endpoint{200, 1}));
  EXPECT_EQ(s.confirmations(), Suspicion::kMaxConfirmations);
  EXPECT_EQ(s.deadline(), kStart + seconds(2));
  EXPECT_FALSE(s.confirm(Endpoint{201, 1}));
}

}  // namespace
}  // namespace broach::membership
