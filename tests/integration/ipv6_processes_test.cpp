// A cluster on ::1: four `broach node` processes bound to IPv6 loopback and
// an in-process member join through one seed ("[::1]:port"), gossip their
// IPv6 addresses, serve calls by name, and detect a kill -9 exactly as an
// IPv4 cluster does. Skips (77) where the host has no ::1.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <memory>
#include <set>
#include <thread>

#include "broach/node.hpp"
#include "support/node_process.hpp"

namespace broach {
namespace {

using testing::eventually;
using testing::wait_listening;

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

bool have_ipv6_loopback() {
  const int fd = ::socket(AF_INET6, SOCK_DGRAM, 0);
  if (fd < 0) return false;
  sockaddr_in6 sa{};
  sa.sin6_family = AF_INET6;
  sa.sin6_addr = in6addr_loopback;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0;
  ::close(fd);
  return ok;
}

std::unique_ptr<testing::ChildProcess> spawn(const std::string& seed) {
  std::vector<std::string> argv{BROACH_CLI, "node", "--ip", "::1", "--port", "0", "--log-level", "warn"};
  if (!seed.empty()) {
    argv.push_back("--seed");
    argv.push_back(seed);
  }
  return std::make_unique<testing::ChildProcess>(argv);
}

TEST(Ipv6Processes, ClusterOnIpv6LoopbackJoinsCallsByNameAndDetectsAKill) {
  if (!have_ipv6_loopback()) GTEST_SKIP() << "no ::1 on this host";
  constexpr int kNodes = 4;
  std::vector<std::unique_ptr<testing::ChildProcess>> procs;
  std::vector<Endpoint> addrs;
  procs.push_back(spawn(""));
  addrs.push_back(wait_listening(*procs[0]));
  ASSERT_TRUE(addrs[0].v6) << addrs[0].to_string();
  const std::string seed = addrs[0].to_string();
  ASSERT_EQ(seed.rfind("[::1]:", 0), 0u) << seed;
  for (int i = 1; i < kNodes; ++i) {
    procs.push_back(spawn(seed));
    addrs.push_back(wait_listening(*procs[i]));
  }
  // An in-process member, also on ::1.
  Config c = default_config();
  c.rpc_ip = "::1";
  c.rpc_port = 0;
  c.cluster_address = {seed};
  c.log_level = "warn";
  c.rpc_timeout = 2;
  c.udp_timeout = 1;
  c.load_balance.slow_start_ms = 0;
  Node me(c);
  ASSERT_TRUE(me.address().v6);

  auto alive_in_view = [&](const std::set<Endpoint>& want_alive, const std::set<Endpoint>& want_dead) {
    std::set<Endpoint> alive, dead;
    for (const auto& m : me.members()) {
      if (m.state == MemberState::kAlive) alive.insert(m.address);
      if (m.state == MemberState::kDead) dead.insert(m.address);
    }
    for (const auto& a : want_alive) {
      if (!alive.count(a)) return false;
    }
    for (const auto& d : want_dead) {
      if (!dead.count(d)) return false;
    }
    return true;
  };
  const std::set<Endpoint> everyone(addrs.begin(), addrs.end());
  ASSERT_TRUE(eventually([&] { return alive_in_view(everyone, {}); }, std::chrono::seconds(30)))
      << "the IPv6 cluster did not converge";
  // Each process's own view lists every member by its IPv6 address.
  auto view_of = [&](const Endpoint& at) {
    std::set<std::string> seen;
    auto r = me.call_raw(at, "__broach.members", detail::pack_args());
    if (!r.ok()) return seen;
    const auto* p = reinterpret_cast<const std::uint8_t*>(r.value().data());
    for (const auto& x : Json::from_msgpack(p, p + r.value().size())) {
      if (x["state"] == "alive") seen.insert(x["address"].get<std::string>());
    }
    return seen;
  };
  for (const auto& at : addrs) {
    EXPECT_TRUE(eventually(
        [&] {
          const auto seen = view_of(at);
          for (const auto& a : addrs) {
            if (!seen.count(a.to_string())) return false;
          }
          return seen.count(me.address().to_string()) > 0;
        },
        std::chrono::seconds(30)))
        << at.to_string() << " does not list every member alive";
  }

  // Calls by name reach every provider (round robin over the four).
  ASSERT_TRUE(eventually(
      [&] {
        for (const auto& route : me.routes()) {
          if (route.service == "add") return route.providers.size() == kNodes;
        }
        return false;
      },
      std::chrono::seconds(30)));
  for (int i = 0; i < 40; ++i) EXPECT_EQ(me.call<std::int64_t>("add", i, 1), i + 1);

  // kill -9 one: everyone (this member included) sees it dead, and calls
  // by name go on on the other three.
  procs[2]->kill(SIGKILL);
  const auto t0 = Clock::now();
  std::set<Endpoint> rest = everyone;
  rest.erase(addrs[2]);
  ASSERT_TRUE(eventually([&] { return alive_in_view(rest, {addrs[2]}); }, std::chrono::seconds(30)))
      << "the killed IPv6 member was not declared dead";
  std::printf("IPv6: kill -9 seen dead after %.1f s\n", std::chrono::duration<double>(Clock::now() - t0).count());
  for (int i = 0; i < 20; ++i) EXPECT_EQ(me.call<std::int64_t>("add", i, 2), i + 2);
}

}  // namespace
}  // namespace broach
