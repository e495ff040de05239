// A user-defined load-balancing policy, registered by name and selected from
// the configuration, with three nodes in one process.
//
// "sticky_lowest_latency": the provider with the lowest latency average,
// except that it only switches when another is at least 20% faster, so that
// calls do not flap between providers of nearly equal speed, and that every
// 8th call re-measures another provider.
#include <broach/broach.hpp>
#include <broach/lb.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <thread>

namespace {

class StickyLowestLatency final : public broach::lb::Policy {
 public:
  std::size_t pick(std::span<const broach::lb::Candidate> c, const broach::lb::PickContext&) override {
    // Every 8th call goes to the next provider in turn, so that a provider
    // whose one measurement was unlucky (a first call is slow) is measured
    // again instead of being avoided for ever.
    const auto n = picks_.fetch_add(1);
    if (n % 8 == 7) return (n / 8) % c.size();
    std::size_t best = 0;
    for (std::size_t i = 1; i < c.size(); ++i) {
      if (c[i].latency_ewma_us < c[best].latency_ewma_us) best = i;
    }
    const auto current = current_.load();
    for (std::size_t i = 0; i < c.size(); ++i) {
      // Stay with the current provider unless the best one is clearly faster.
      if (c[i].address.key() == current && c[best].latency_ewma_us * 1.2 >= c[i].latency_ewma_us) return i;
    }
    current_ = c[best].address.key();
    return best;
  }

 private:
  std::atomic<std::uint64_t> current_{0};
  std::atomic<std::uint64_t> picks_{0};
};

broach::Config local_config() {
  broach::Config c = broach::default_config();
  c.rpc_ip = "127.0.0.1";
  c.rpc_port = 0;
  c.log_level = "warn";
  return c;
}

}  // namespace

int main() {
  // Register before any node that uses the policy is created.
  broach::lb::register_policy("sticky_lowest_latency", [] { return std::make_unique<StickyLowestLatency>(); });

  broach::Node fast(local_config());
  fast.provide("whoami", [] { return std::string("fast"); });
  broach::Config slow_config = local_config();
  slow_config.cluster_address = {fast.address().to_string()};
  broach::Node slow(slow_config);
  slow.provide("whoami", [] {
    // Clearly slower than any first call, even in an instrumented build.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    return std::string("slow");
  });

  broach::Config caller_config = local_config();
  caller_config.cluster_address = {fast.address().to_string()};
  caller_config.load_balance.policy = "sticky_lowest_latency";  // as "policy" in the JSON file
  broach::Node caller(caller_config);
  for (int i = 0; i < 200; ++i) {
    bool both = false;
    for (const auto& r : caller.routes()) both |= r.service == "whoami" && r.providers.size() == 2;
    if (both) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::map<std::string, int> seen;
  for (int i = 0; i < 200; ++i) ++seen[caller.call<std::string>("whoami")];
  for (const auto& [who, n] : seen) std::printf("%s: %d calls\n", who.c_str(), n);
  // Unmeasured providers look fastest at first, so each is tried; then the
  // policy settles on the fast one.
  return seen["fast"] > seen["slow"] ? 0 : 1;
}
