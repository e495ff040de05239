// Twenty `broach node` processes on loopback, one seed: everyone sees
// twenty alive; kill -9 three, and everyone sees them dead and drops their
// services from the route table within the bound; restart one at the same
// address, and it rejoins as a new life.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <memory>
#include <thread>

#include "broach/node.hpp"
#include "support/node_process.hpp"

namespace broach {
namespace {

using testing::eventually;
using testing::wait_listening;

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

struct Member {
  std::unique_ptr<testing::ChildProcess> proc;
  Endpoint addr;
};

std::unique_ptr<testing::ChildProcess> spawn(int port, const std::string& seed) {
  std::vector<std::string> argv{BROACH_CLI, "node", "--ip", "127.0.0.1", "--port",
                                std::to_string(port), "--log-level", "warn"};
  if (!seed.empty()) {
    argv.push_back("--seed");
    argv.push_back(seed);
  }
  return std::make_unique<testing::ChildProcess>(argv);
}

class Observer {
 public:
  Observer() {
    Config c = default_config();
    c.rpc_ip = "127.0.0.1";
    c.rpc_port = 0;
    c.log_level = "warn";
    c.rpc_timeout = 2;
    c.udp_timeout = 1;
    node_ = std::make_unique<Node>(c);
  }
  // The view of `m` (address -> state), empty when it does not answer.
  std::map<std::string, std::string> members_of(const Endpoint& m) {
    std::map<std::string, std::string> out;
    auto r = node_->call_raw(m, "__broach.members", detail::pack_args());
    if (!r.ok()) return out;
    const auto* p = reinterpret_cast<const std::uint8_t*>(r.value().data());
    for (const auto& x : Json::from_msgpack(p, p + r.value().size())) {
      out[x["address"].get<std::string>()] = x["state"].get<std::string>();
    }
    return out;
  }
  std::set<std::string> providers_of(const Endpoint& m, const std::string& service) {
    std::set<std::string> out;
    auto r = node_->call_raw(m, "__broach.routes", detail::pack_args());
    if (!r.ok()) return out;
    const auto* p = reinterpret_cast<const std::uint8_t*>(r.value().data());
    const auto routes = Json::from_msgpack(p, p + r.value().size());
    if (routes.contains(service)) {
      for (const auto& x : routes[service]) out.insert(x["address"].get<std::string>());
    }
    return out;
  }

 private:
  std::unique_ptr<Node> node_;
};

TEST(ClusterProcesses, TwentyNodesConvergeDetectKillsAndReadmitARestart) {
  constexpr int kNodes = 20;
  std::vector<Member> members(kNodes);
  members[0].proc = spawn(0, "");
  members[0].addr = wait_listening(*members[0].proc);
  const std::string seed = members[0].addr.to_string();
  for (int i = 1; i < kNodes; ++i) {
    members[i].proc = spawn(0, seed);
    members[i].addr = wait_listening(*members[i].proc);
  }
  Observer obs;
  auto all_see = [&](const std::vector<int>& viewers, const std::vector<int>& alive,
                     const std::vector<int>& dead) {
    for (int v : viewers) {
      const auto view = obs.members_of(members[v].addr);
      if (view.empty()) return false;
      for (int a : alive) {
        auto it = view.find(members[a].addr.to_string());
        if (it == view.end() || it->second != "alive") return false;
      }
      for (int d : dead) {
        auto it = view.find(members[d].addr.to_string());
        if (it != view.end() && it->second != "dead") return false;
      }
    }
    return true;
  };
  std::vector<int> everyone(kNodes);
  for (int i = 0; i < kNodes; ++i) everyone[i] = i;
  ASSERT_TRUE(eventually([&] { return all_see(everyone, everyone, {}); }, std::chrono::seconds(60)))
      << "20 nodes did not converge";

  // kill -9 three members.
  const std::vector<int> killed{5, 11, 17};
  std::vector<int> survivors;
  for (int i = 0; i < kNodes; ++i) {
    if (std::find(killed.begin(), killed.end(), i) == killed.end()) survivors.push_back(i);
  }
  const auto t0 = Clock::now();
  for (int k : killed) {
    members[k].proc->kill(SIGKILL);
    members[k].proc->wait();
  }
  // Bound: suspicion (at most suspicionMaxMult x 4 x log10(20) x 0.5 s ~ 8 s)
  // plus probe and gossip time; 30 s leaves room for a loaded machine.
  ASSERT_TRUE(eventually([&] { return all_see(survivors, survivors, killed); }, std::chrono::seconds(30)))
      << "survivors did not all mark the killed members dead";
  const double detect_s = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("kill -9 of 3 of 20: all survivors saw them dead after %.1f s\n", detect_s);
  // Route tables are snapshots rebuilt after member events: poll them too.
  for (int v : survivors) {
    auto routes_right = [&] {
      const auto providers = obs.providers_of(members[v].addr, "echo");
      for (int k : killed) {
        if (providers.count(members[k].addr.to_string()) != 0) return false;
      }
      return providers.size() == survivors.size();
    };
    // 30 s: a member starved of CPU on a loaded machine may have declared a
    // survivor dead meanwhile, which then refutes.
    if (!eventually(routes_right, std::chrono::seconds(30))) {
      std::string got, view;
      for (const auto& p : obs.providers_of(members[v].addr, "echo")) got += " " + p;
      for (const auto& [a, st] : obs.members_of(members[v].addr)) view += " " + a + "=" + st;
      ADD_FAILURE() << "routes of member " << v << ":" << got << "; its view:" << view;
    }
  }

  // Restart one at the same address: a new life, readmitted.
  const int back = killed[0];
  members[back].proc = spawn(members[back].addr.port, seed);
  wait_listening(*members[back].proc);
  std::vector<int> alive = survivors;
  alive.push_back(back);
  EXPECT_TRUE(eventually([&] { return all_see(alive, alive, {}); }, std::chrono::seconds(30)))
      << "restarted member was not readmitted";
}

}  // namespace
}  // namespace broach
