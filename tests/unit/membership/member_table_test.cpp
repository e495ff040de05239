#include "membership/member_table.hpp"

#include <gtest/gtest.h>

#include <map>
#include <random>

namespace broach::membership {
namespace {

struct Rec {
  Endpoint addr;
  int value = 0;
  std::uint32_t back = 0;  // where the owner last put it (checked against on_move)
  const Endpoint& key() const { return addr; }
};

Endpoint v4(std::uint32_t ip, std::uint16_t port) { return Endpoint{ip, port}; }

TEST(MemberTable, FindsWhatWasInsertedAndNothingElse) {
  MemberTable<Rec> t;
  EXPECT_EQ(t.find(v4(1, 1)), nullptr);
  for (std::uint32_t i = 0; i < 1000; ++i) {
    EXPECT_EQ(t.insert(Rec{v4(0x0a000000 + i, 7946), static_cast<int>(i)}), i);
  }
  EXPECT_EQ(t.size(), 1000u);
  for (std::uint32_t i = 0; i < 1000; ++i) {
    const Rec* r = t.find(v4(0x0a000000 + i, 7946));
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->value, static_cast<int>(i));
  }
  EXPECT_EQ(t.find(v4(0x0a000000, 7947)), nullptr);  // same host, other port
  EXPECT_EQ(t.index_of(v4(0x0b000000, 7946)), t.kNone);
}

TEST(MemberTable, IPv6KeysAreTheirOwn) {
  MemberTable<Rec> t;
  Endpoint a;
  a.v6 = true;
  a.ip6[15] = 1;
  a.port = 9;
  Endpoint b = a;
  b.ip6[15] = 2;
  t.insert(Rec{a, 1});
  t.insert(Rec{v4(1, 9), 2});
  EXPECT_EQ(t.find(a)->value, 1);
  EXPECT_EQ(t.find(b), nullptr);
  EXPECT_EQ(t.find(v4(1, 9))->value, 2);
}

// Random inserts and erases against std::map: every key stays findable at
// the right record, erased keys are gone, and on_move reports each record
// that changed index (backward-shift deletion keeps probe runs unbroken).
TEST(MemberTable, MatchesAMapUnderRandomInsertsAndErases) {
  for (std::uint64_t seed = 1; seed <= 20; ++seed) {
    std::mt19937_64 rng(seed);
    MemberTable<Rec> t;
    std::map<Endpoint, int> model;
    // Few distinct keys (with clustering: consecutive addresses) so that
    // erases hit long probe runs.
    auto key = [&] { return v4(0x0a000000 + static_cast<std::uint32_t>(rng() % 600), 7946); };
    for (int step = 0; step < 20000; ++step) {
      const Endpoint k = key();
      const std::uint32_t i = t.index_of(k);
      ASSERT_EQ(i != t.kNone, model.count(k) == 1) << "seed " << seed << " step " << step;
      if (i == t.kNone) {
        const int v = step;
        const std::uint32_t at = t.insert(Rec{k, v});
        t[at].back = at;
        model[k] = v;
      } else if (rng() % 2 == 0) {
        ASSERT_EQ(t[i].value, model[k]);
        ASSERT_EQ(t[i].back, i);
        bool moved = false;
        t.erase(i, [&](Rec& r, std::uint32_t now_at) {
          EXPECT_EQ(now_at, i);
          r.back = now_at;
          moved = true;
        });
        EXPECT_EQ(moved, i != t.size()) << "only the last record stays put";
        model.erase(k);
      }
    }
    ASSERT_EQ(t.size(), model.size());
    for (const auto& [k, v] : model) {
      const Rec* r = t.find(k);
      ASSERT_NE(r, nullptr);
      EXPECT_EQ(r->value, v);
    }
    std::size_t n = 0;
    for (const Rec& r : t) {
      EXPECT_EQ(model.at(r.addr), r.value);
      ++n;
    }
    EXPECT_EQ(n, model.size());
  }
}

TEST(MemberTable, CostsAboutTheRecordPlusAFewBytes) {
  MemberTable<Rec> t;
  for (std::uint32_t i = 0; i < 10000; ++i) t.insert(Rec{v4(i + 1, 1)});
  // Records grow by half, the index keeps load <= 3/4 in a power of two.
  const double per = static_cast<double>(t.memory_bytes()) / 10000.0;
  EXPECT_LT(per, sizeof(Rec) * 1.5 + 4 * 2.7);
}

}  // namespace
}  // namespace broach::membership
