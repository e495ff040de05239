#include "membership/broadcast_queue.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <span>
#include <vector>

namespace broach::membership {
namespace {

wire::Bytes bytes(std::size_t n, int v) { return wire::Bytes(n, static_cast<std::byte>(v)); }

TEST(BroadcastQueue, EachUpdateIsSentUpToTheLimitThenDropped) {
  BroadcastQueue q;
  q.push(Endpoint{1, 1}, bytes(10, 1));
  int sent = 0;
  for (int round = 0; round < 10; ++round) {
    q.pick(100, 3, [&](std::span<const std::byte>) {
      ++sent;
      return true;
    });
  }
  EXPECT_EQ(sent, 3);
  EXPECT_TRUE(q.empty());
}

TEST(BroadcastQueue, NewerNewsAboutAMemberReplacesOlder) {
  BroadcastQueue q;
  q.push(Endpoint{1, 1}, bytes(10, 1));
  q.push(Endpoint{1, 1}, bytes(10, 2));
  EXPECT_EQ(q.size(), 1u);
  q.pick(100, 5, [&](std::span<const std::byte> b) {
    EXPECT_EQ(b[0], std::byte{2});
    return true;
  });
}

TEST(BroadcastQueue, LeastSentFirstAndBudgetRespected) {
  BroadcastQueue q;
  q.push(Endpoint{1, 1}, bytes(40, 1));
  q.pick(100, 5, [](std::span<const std::byte>) { return true; });  // member 1 sent once
  q.push(Endpoint{2, 2}, bytes(40, 2));
  std::vector<int> order;
  q.pick(50, 5, [&](std::span<const std::byte> b) {
    order.push_back(static_cast<int>(b[0]));
    return true;
  });
  ASSERT_EQ(order.size(), 1u);  // only one fits in 50 bytes
  EXPECT_EQ(order[0], 2);       // the never-sent one goes first
}

TEST(BroadcastQueue, BoundedTheMostSentOldestUpdateIsDroppedFirst) {
  BroadcastQueue q;
  EXPECT_TRUE(q.push(Endpoint{1, 1}, bytes(10, 1), 3));
  EXPECT_TRUE(q.push(Endpoint{2, 2}, bytes(10, 2), 3));
  // Both sent once; member 2's news is the newer of the two.
  q.pick(100, 9, [](std::span<const std::byte>) { return true; });
  EXPECT_TRUE(q.push(Endpoint{3, 3}, bytes(10, 3), 3));
  // Full: member 1's (sent once, older than member 2's) makes room.
  EXPECT_FALSE(q.push(Endpoint{4, 4}, bytes(10, 4), 3));
  EXPECT_EQ(q.size(), 3u);
  // Newer news about a queued member replaces it: nothing dropped.
  EXPECT_TRUE(q.push(Endpoint{4, 4}, bytes(10, 5), 3));
  std::vector<int> left;
  q.pick(100, 9, [&](std::span<const std::byte> b) {
    left.push_back(static_cast<int>(b[0]));
    return true;
  });
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<int>{2, 3, 5}));
}

TEST(BroadcastQueue, TransmitLimitGrowsWithLogOfClusterSize) {
  EXPECT_EQ(BroadcastQueue::transmit_limit(4, 9), 4);
  EXPECT_EQ(BroadcastQueue::transmit_limit(4, 99), 8);
  EXPECT_EQ(BroadcastQueue::transmit_limit(4, 999), 12);
}

// Random pushes, replacements, drops and picks, against a plain model of
// the documented order (one list per transmit count, the latest to reach
// it first; a full queue drops the last of the highest): the same updates
// are sent in the same order, so the compact queue's links and moved
// entries stay right through every erase.
TEST(BroadcastQueue, RandomOperationsMatchAPlainModel) {
  struct Item {
    std::uint32_t who;
    std::uint32_t id;
    std::size_t size;
  };
  std::vector<std::deque<Item>> levels(1);
  auto model_size = [&] {
    std::size_t n = 0;
    for (auto& l : levels) n += l.size();
    return n;
  };
  auto model_remove = [&](std::uint32_t who) {
    for (auto& l : levels) {
      auto it = std::find_if(l.begin(), l.end(), [&](const Item& m) { return m.who == who; });
      if (it != l.end()) {
        l.erase(it);
        return;
      }
    }
  };
  std::uint64_t x = 88172645463325252ULL;
  auto next = [&] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  BroadcastQueue q;
  const int limit = 5;
  const std::size_t max = 40;
  std::uint32_t id = 0;
  std::size_t drops = 0, sends = 0;
  for (int step = 0; step < 30000; ++step) {
    if (next() % 3 != 0) {
      const auto who = static_cast<std::uint32_t>(next() % 64) + 1;
      const std::size_t size = 4 + next() % 40;
      wire::Bytes b(size);
      ++id;
      std::memcpy(b.data(), &id, 4);
      model_remove(who);
      bool model_ok = true;
      if (model_size() >= max) {
        for (std::size_t t = levels.size(); t-- > 0;) {
          if (!levels[t].empty()) {
            levels[t].pop_back();
            model_ok = false;
            break;
          }
        }
      }
      levels[0].push_front(Item{who, id, size});
      ASSERT_EQ(q.push(Endpoint{who, 1}, b, max), model_ok);
      drops += model_ok ? 0 : 1;
    } else {
      const std::size_t budget = 16 + next() % 200;
      // The model's pick.
      std::vector<std::uint32_t> want;
      std::vector<std::pair<std::size_t, std::size_t>> at;  // (level, position)
      std::size_t left = budget;
      int misses = 0;
      bool full = false;
      for (std::size_t t = 0; t < levels.size() && !full; ++t) {
        for (std::size_t k = 0; k < levels[t].size(); ++k) {
          if (levels[t][k].size > left) {
            if (++misses > 16) {
              full = true;
              break;
            }
            continue;
          }
          left -= levels[t][k].size;
          want.push_back(levels[t][k].id);
          at.emplace_back(t, k);
          if (left < 16) {
            full = true;
            break;
          }
        }
      }
      std::vector<std::pair<std::size_t, Item>> moved;
      for (auto [t, k] : at) moved.emplace_back(t, levels[t][k]);
      for (std::size_t m = at.size(); m-- > 0;) {
        auto& l = levels[at[m].first];
        l.erase(l.begin() + static_cast<std::ptrdiff_t>(at[m].second));
      }
      for (std::size_t m = moved.size(); m-- > 0;) {
        const std::size_t t = moved[m].first + 1;
        if (static_cast<int>(t) >= limit) continue;
        if (levels.size() <= t) levels.resize(t + 1);
        levels[t].push_front(moved[m].second);
      }
      std::vector<std::uint32_t> got;
      q.pick(budget, limit, [&](std::span<const std::byte> b) {
        std::uint32_t v = 0;
        std::memcpy(&v, b.data(), 4);
        got.push_back(v);
        return true;
      });
      ASSERT_EQ(got, want) << "step " << step;
      sends += got.size();
    }
    ASSERT_EQ(q.size(), model_size());
  }
  EXPECT_GT(drops, 100u);  // the bound was exercised
  EXPECT_GT(sends, 1000u);
}

}  // namespace
}  // namespace broach::membership
