#include "membership/broadcast_queue.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace broach::membership {
namespace {

wire::Bytes bytes(std::size_t n, int v) { return wire::Bytes(n, static_cast<std::byte>(v)); }

TEST(BroadcastQueue, EachUpdateIsSentUpToTheLimitThenDropped) {
  BroadcastQueue q;
  q.push(Endpoint{1, 1}, bytes(10, 1));
  int sent = 0;
  for (int round = 0; round < 10; ++round) {
    q.pick(100, 3, [&](const wire::Bytes&) {
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
  q.pick(100, 5, [&](const wire::Bytes& b) {
    EXPECT_EQ(b[0], std::byte{2});
    return true;
  });
}

TEST(BroadcastQueue, LeastSentFirstAndBudgetRespected) {
  BroadcastQueue q;
  q.push(Endpoint{1, 1}, bytes(40, 1));
  q.pick(100, 5, [](const wire::Bytes&) { return true; });  // member 1 sent once
  q.push(Endpoint{2, 2}, bytes(40, 2));
  std::vector<int> order;
  q.pick(50, 5, [&](const wire::Bytes& b) {
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
  q.pick(100, 9, [](const wire::Bytes&) { return true; });
  EXPECT_TRUE(q.push(Endpoint{3, 3}, bytes(10, 3), 3));
  // Full: member 1's (sent once, older than member 2's) makes room.
  EXPECT_FALSE(q.push(Endpoint{4, 4}, bytes(10, 4), 3));
  EXPECT_EQ(q.size(), 3u);
  // Newer news about a queued member replaces it: nothing dropped.
  EXPECT_TRUE(q.push(Endpoint{4, 4}, bytes(10, 5), 3));
  std::vector<int> left;
  q.pick(100, 9, [&](const wire::Bytes& b) {
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

}  // namespace
}  // namespace broach::membership
