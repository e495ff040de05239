// Load balancing, circuit breaking and retries with real processes on
// loopback: three `broach node` providers of "whoami", and this test's own
// node calling by name.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <thread>

#include "broach/node.hpp"
#include "support/process.hpp"

namespace broach {
namespace {

using Clock = std::chrono::steady_clock;

struct Provider {
  std::unique_ptr<testing::ChildProcess> proc;
  Endpoint addr;
};

std::string write_config(const std::string& name, int weight) {
  const std::string path = ::testing::TempDir() + "/broach_" + name + "_" + std::to_string(::getpid()) + ".json";
  std::ofstream(path) << R"({"name": ")" << name << R"(", "logLevel": "warn",
    "params": {"rpcIp": "127.0.0.1", "rpcPort": 0, "udpTimeOut": 1,
      "broach": {"membership": {"weight": )" << weight << "}}}}";
  return path;
}

Provider spawn(const std::string& name, int weight, const std::string& seed) {
  Provider p;
  const std::string config = write_config(name, weight);
  std::vector<std::string> argv{BROACH_CLI, "node", "--config", config};
  if (!seed.empty()) {
    argv.push_back("--seed");
    argv.push_back(seed);
  }
  p.proc = std::make_unique<testing::ChildProcess>(argv);
  const std::string line = p.proc->wait_for_line("listening on", std::chrono::seconds(30));
  std::remove(config.c_str());  // read at start-up
  EXPECT_TRUE(Endpoint::parse(line.substr(line.rfind(' ') + 1), p.addr, nullptr,
                              /*allow_port_zero=*/false))
      << line;
  return p;
}

class Balancing : public ::testing::Test {
 protected:
  void SetUp() override {
    providers_.push_back(spawn("p1", 100, ""));
    seed_ = providers_[0].addr.to_string();
    providers_.push_back(spawn("p2", 200, seed_));
    providers_.push_back(spawn("p3", 100, seed_));
  }

  // A caller node that joined the cluster and sees the three providers.
  std::unique_ptr<Node> caller(const std::string& policy, std::vector<std::string> idempotent = {}) {
    Config c = default_config();
    c.rpc_ip = "127.0.0.1";
    c.rpc_port = 0;
    c.log_level = "warn";
    c.rpc_timeout = 2;
    c.udp_timeout = 1;
    c.cluster_address = {seed_};
    c.load_balance.policy = policy;
    c.retry.idempotent = std::move(idempotent);
    auto n = std::make_unique<Node>(c);
    const auto end = Clock::now() + std::chrono::seconds(20);
    while (Clock::now() < end) {
      for (const auto& r : n->routes()) {
        if (r.service == "whoami" && r.providers.size() == 3) return n;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ADD_FAILURE() << "caller did not see three providers";
    return n;
  }

  std::map<std::string, int> spread(Node& n, int calls, const std::string& key_prefix = "") {
    std::map<std::string, int> seen;
    for (int i = 0; i < calls; ++i) {
      CallOptions o;
      if (!key_prefix.empty()) o.routing_key = key_prefix + std::to_string(i % 300);
      ++seen[n.call_with<std::string>("whoami", o)];
    }
    return seen;
  }

  int weight_of(const std::string& addr) const { return addr == providers_[1].addr.to_string() ? 200 : 100; }

  std::vector<Provider> providers_;
  std::string seed_;
};

TEST_F(Balancing, EachPolicyDistributesAsItClaims) {
  {
    auto n = caller("round_robin");
    const auto s = spread(*n, 3000);
    ASSERT_EQ(s.size(), 3u);
    for (const auto& [addr, count] : s) EXPECT_EQ(count, 1000) << addr;
  }
  {
    auto n = caller("random");
    for (const auto& [addr, count] : spread(*n, 3000)) EXPECT_NEAR(count, 1000, 150) << addr;
  }
  {
    auto n = caller("weighted");
    for (const auto& [addr, count] : spread(*n, 3000)) {
      EXPECT_NEAR(count, 3000 * weight_of(addr) / 400, 150) << addr;  // 750 / 1500 / 750
    }
  }
  {
    auto n = caller("least_outstanding");  // one call at a time: all tie, shared evenly
    for (const auto& [addr, count] : spread(*n, 3000)) EXPECT_NEAR(count, 1000, 150) << addr;
  }
  {
    auto n = caller("p2c_ewma");
    const auto s = spread(*n, 3000);
    EXPECT_EQ(s.size(), 3u);  // all used; the faster ones more
    int total = 0;
    for (const auto& [addr, count] : s) total += count;
    EXPECT_EQ(total, 3000);
  }
  {
    auto n = caller("consistent_hash");
    std::map<std::string, std::string> owner;
    for (int i = 0; i < 3000; ++i) {
      CallOptions o;
      o.routing_key = "user" + std::to_string(i % 300);
      const auto who = n->call_with<std::string>("whoami", o);
      auto [it, fresh] = owner.emplace(o.routing_key, who);
      EXPECT_EQ(it->second, who) << "key " << o.routing_key << " moved";  // sticky
    }
    std::map<std::string, int> per;
    for (const auto& [k, who] : owner) ++per[who];
    EXPECT_EQ(per.size(), 3u);
  }
  {
    auto n = caller("local_first");
    n->provide("whoami", [] { return std::string("local"); });
    const auto end = Clock::now() + std::chrono::seconds(10);
    std::map<std::string, int> s;
    while (Clock::now() < end) {
      s = spread(*n, 300);
      if (s.count("local") && s["local"] == 300) break;  // our own service reached the route table
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_EQ(s["local"], 300);
    EXPECT_GE(n->stats().local_calls, 300u);
  }
}

TEST_F(Balancing, KillingAProviderUnderLoadCostsFewCallsAndNoneWaitsPastTheTimeout) {
  auto n = caller("round_robin", {"whoami"});  // whoami is idempotent: timeouts are retried
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::atomic<long> worst_us{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t) {
    workers.emplace_back([&] {
      while (!stop.load()) {
        const auto t0 = Clock::now();
        try {
          n->call<std::string>("whoami");
          ++ok;
        } catch (const Error&) {
          ++failed;
        }
        const long us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
        long prev = worst_us.load();
        while (us > prev && !worst_us.compare_exchange_weak(prev, us)) {
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const int before = ok.load();
  providers_[2].proc->kill(SIGKILL);
  providers_[2].proc->wait();
  std::this_thread::sleep_for(std::chrono::seconds(8));
  stop = true;
  for (auto& w : workers) w.join();
  const int after = ok.load() - before;
  std::printf("after kill -9: %d calls ok, %d failed, slowest %.1f ms\n", after, failed.load(),
              worst_us.load() / 1000.0);
  EXPECT_GT(after, 1000);          // the stream went on with the other two
  EXPECT_LE(failed.load(), 8);     // bounded: only calls caught in flight with no time left
  EXPECT_LE(worst_us.load(), 2'100'000);  // never past rpcTimeOut (2 s) plus scheduling
  // The dead provider left the route table.
  bool gone = false;
  for (const auto& r : n->routes()) {
    if (r.service == "whoami") gone = r.providers.size() == 2;
  }
  EXPECT_TRUE(gone);
}

TEST(Breaker, FailingProviderIsFusedThenRecovers) {
  Config pc = default_config();
  pc.rpc_ip = "127.0.0.1";
  pc.rpc_port = 0;
  pc.log_level = "warn";
  Node provider(pc);
  std::atomic<bool> broken{true};
  std::atomic<int> runs{0};
  provider.provide("flaky", [&] {
    ++runs;
    if (broken.load()) throw std::runtime_error("down for maintenance");
    return 1;
  });
  Config cc = pc;
  cc.cluster_address = {provider.address().to_string()};
  cc.breaker.open_ms = 300;
  Node caller(cc);
  const auto end = Clock::now() + std::chrono::seconds(20);
  while (Clock::now() < end && caller.routes().empty()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  // Five remote errors in a row open the provider+service circuit...
  for (int i = 0; i < 5; ++i) {
    try {
      caller.call<int>("flaky");
      FAIL();
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::kRemoteError);
    }
  }
  EXPECT_EQ(runs.load(), 5);
  // ...after which calls fail at once with the fusing error, without reaching it.
  try {
    caller.call<int>("flaky");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kCircuitOpen);
  }
  EXPECT_EQ(runs.load(), 5);
  EXPECT_GE(caller.stats().circuit_open_rejections, 1u);
  // The provider recovers; after the open period a probe closes the circuit.
  broken = false;
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  int value = 0;
  while (Clock::now() < deadline) {
    try {
      value = caller.call<int>("flaky");
      break;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::kCircuitOpen);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  EXPECT_EQ(value, 1);
  EXPECT_EQ(caller.call<int>("flaky"), 1);  // closed again
}

TEST(Retry, NotFoundAtOneProviderIsRetriedOnAnother) {
  Config pc = default_config();
  pc.rpc_ip = "127.0.0.1";
  pc.rpc_port = 0;
  pc.log_level = "warn";
  Node a(pc);
  a.provide("svc", [] { return std::string("a"); });
  Config bc = pc;
  bc.cluster_address = {a.address().to_string()};
  Node b(bc);
  b.provide("svc", [] { return std::string("b"); });
  Node caller(bc);
  const auto end = Clock::now() + std::chrono::seconds(20);
  auto providers = [&] {
    for (const auto& r : caller.routes()) if (r.service == "svc") return r.providers.size();
    return std::size_t{0};
  };
  while (Clock::now() < end && providers() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(providers(), 2u);
  // b withdraws the service; until gossip says so, calls that land on b get
  // not_found there, which provably did not run: retried on a.
  b.withdraw("svc");
  for (int i = 0; i < 20; ++i) {
    try {
      EXPECT_EQ(caller.call<std::string>("svc"), "a");
    } catch (const Error& e) {
      ADD_FAILURE() << i << ": " << e.what() << " retries=" << caller.stats().retries;
    }
  }
  EXPECT_TRUE(caller.stats().retries <= 20);
}

}  // namespace
}  // namespace broach
