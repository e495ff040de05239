#include "routing/route_table.hpp"

#include <gtest/gtest.h>

namespace broach::routing {
namespace {

MemberInfo member(std::uint16_t port, MemberState state, std::vector<std::string> services) {
  MemberInfo m;
  m.address = Endpoint{0x7f000001, port};
  m.state = state;
  m.meta.name = "n" + std::to_string(port);
  m.meta.services = std::move(services);
  return m;
}

TEST(RouteTable, MapsServicesToAliveAndSuspectProvidersOnly) {
  auto t = RouteTable::build({member(1, MemberState::kAlive, {"add", "echo"}),
                              member(2, MemberState::kSuspect, {"add"}),
                              member(3, MemberState::kDead, {"add"}),
                              member(4, MemberState::kLeft, {"add"})});
  ASSERT_NE(t->find("add"), nullptr);
  EXPECT_EQ(t->find("add")->providers.size(), 2u);
  EXPECT_EQ(t->find("echo")->providers.size(), 1u);
  EXPECT_EQ(t->find("work02"), nullptr);
}

TEST(RouteTable, InternalServicesAreNotRouted) {
  auto t = RouteTable::build({member(1, MemberState::kAlive, {"__broach.members", "x"})});
  EXPECT_EQ(t->find("__broach.members"), nullptr);
  EXPECT_TRUE(is_internal_service("__setRpcRoute"));
  EXPECT_FALSE(is_internal_service("_single"));
}

TEST(RouteTable, RoundRobinCyclesAndSurvivesRebuilds) {
  std::vector<MemberInfo> ms{member(1, MemberState::kAlive, {"s"}), member(2, MemberState::kAlive, {"s"}),
                             member(3, MemberState::kAlive, {"s"})};
  auto t = RouteTable::build(ms);
  std::vector<int> got;
  for (int i = 0; i < 4; ++i) got.push_back(t->pick_round_robin("s")->address.port);
  EXPECT_EQ(got, (std::vector<int>{1, 2, 3, 1}));
  auto t2 = RouteTable::build(ms, t.get());
  EXPECT_EQ(t2->pick_round_robin("s")->address.port, 2);  // continues, not restarted
  EXPECT_EQ(t2->pick_round_robin("none"), nullptr);
}

}  // namespace
}  // namespace broach::routing
