#include "base/rng.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace broach {
namespace {

TEST(Rng, SameSeedSameSequence) {
  Rng a(42), b(42), c(43);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    auto x = a.next();
    EXPECT_EQ(x, b.next());
    differs |= x != c.next();
  }
  EXPECT_TRUE(differs);
}

TEST(Rng, BelowIsInRangeAndRoughlyUniform) {
  Rng r(7);
  std::vector<int> counts(10);
  for (int i = 0; i < 100000; ++i) {
    auto v = r.below(10);
    ASSERT_LT(v, 10u);
    ++counts[v];
  }
  for (int c : counts) {
    EXPECT_GT(c, 9000);
    EXPECT_LT(c, 11000);
  }
}

TEST(Rng, ChanceMatchesProbability) {
  Rng r(9);
  int hits = 0;
  for (int i = 0; i < 100000; ++i) hits += r.chance(0.3);
  EXPECT_NEAR(hits / 100000.0, 0.3, 0.01);
  EXPECT_FALSE(r.chance(0.0));
}

}  // namespace
}  // namespace broach
