// The seed's caller, in C++. Python:
//   @BroachApply.rpcCall(name="work01")
//   def t1(*args, **kwargs): pass
//   t1(1, 2)
#include <broach/broach.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: seed_caller CONFIG.json\n");
    return 1;
  }
  auto node = broach::run(argv[1]);
  auto t0 = node->stub<std::string()>("work00");
  auto t1 = node->stub<int(int, int)>("work01");
  auto t2 = node->stub<int(int, int)>("work02");

  // Wait until gossip has brought both providers into the route table (the
  // seed sleeps 6 s here; this takes milliseconds).
  const auto start = Clock::now();
  std::size_t providers = 0;
  while (Clock::now() - start < std::chrono::seconds(10)) {
    for (const auto& r : node->routes()) {
      if (r.service == "work00") providers = r.providers.size();
    }
    if (providers >= 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::printf("route table after %.0f ms:\n",
              std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  for (const auto& r : node->routes()) {
    std::printf("  %-8s", r.service.c_str());
    for (const auto& p : r.providers) std::printf(" %s", p.address.to_string().c_str());
    std::printf("\n");
  }

  std::map<std::string, int> spread;
  for (int i = 0; i < 10; ++i) {
    const std::string who = t0();
    std::printf("work00() -> %s\n", who.c_str());
    ++spread[who];
  }
  std::printf("work00 spread over %zu providers:", spread.size());
  for (const auto& [who, n] : spread) std::printf(" %s x%d", who.c_str(), n);
  std::printf("\n");
  std::printf("work01(1, 2) -> %d\n", t1(1, 2));
  try {
    t2(1, 2);
  } catch (const broach::Error& e) {
    std::printf("work02(1, 2) -> error %s (code %d)\n", e.what(), static_cast<int>(e.code()));
  }

  // Circuit breaking ("fusing"): work07 sleeps 10 s; with a 1 s deadline
  // every call times out, and after three in a row at a provider
  // (params.broach.breaker.consecutiveFailures in application3.json) that
  // provider's work07 circuit opens; with both open, the next call fails at
  // once instead of tying up a thread.
  broach::CallOptions quick;
  quick.timeout = std::chrono::milliseconds(1000);
  quick.retry = broach::RetryMode::kNever;
  auto t7 = node->stub<std::string()>("work07", quick);
  for (int i = 0; i < 8; ++i) {
    const auto c0 = Clock::now();
    try {
      t7();
    } catch (const broach::Error& e) {
      std::printf("work07() with a 1 s deadline -> %s after %.0f ms\n", broach::errc_name(e.code()),
                  std::chrono::duration<double, std::milli>(Clock::now() - c0).count());
    }
  }

  // The flood: 500 calls of work05 (3 s each) from 50 threads, as the seed's
  // 50-thread test pool does. Two providers with 15 threads each cannot run
  // them all within rpcTimeOut (6 s): the seed's callers time out while the
  // queued work still runs afterwards. Here the second provider refuses at
  // once when full (isExcInfo true: "overloaded", tried elsewhere when the
  // retry budget allows), and queued work whose caller gave up is dropped
  // unrun.
  // A second node for the flood, whose breaker never opens, so that what
  // the providers do with the excess shows.
  broach::Config flood_config = broach::load_config_file(argv[1]);
  flood_config.rpc_port = 0;
  flood_config.breaker.consecutive_failures = 10000;
  flood_config.breaker.min_calls = 10000;
  broach::Node flood_node(flood_config);
  while (flood_node.routes().size() < 5 && Clock::now() - start < std::chrono::seconds(20)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  auto t5 = flood_node.stub<std::string()>("work05");
  std::printf("flooding work05 with 500 calls from 50 threads...\n");
  std::mutex mu;
  std::map<std::string, int> outcomes;
  std::atomic<int> next{0};
  double slowest = 0;
  const auto flood_start = Clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < 50; ++t) {
    pool.emplace_back([&] {
      while (next.fetch_add(1) < 500) {
        const auto c0 = Clock::now();
        std::string outcome;
        try {
          outcome = t5();
        } catch (const broach::Error& e) {
          outcome = broach::errc_name(e.code());
        }
        const double s = std::chrono::duration<double>(Clock::now() - c0).count();
        std::lock_guard lock(mu);
        ++outcomes[outcome];
        slowest = std::max(slowest, s);
      }
    });
  }
  for (auto& th : pool) th.join();
  std::printf("flood done in %.1f s; slowest call %.2f s (rpcTimeOut 6 s):\n",
              std::chrono::duration<double>(Clock::now() - flood_start).count(), slowest);
  for (const auto& [o, n] : outcomes) std::printf("  %-18s %d\n", o.c_str(), n);
  std::printf("(call_timeout: the call waited in a provider's queue, then ran past its 6 s;\n"
              " requests still queued when their caller's deadline passed are dropped unrun,\n"
              " see the providers' counts below)\n");
  const auto s = flood_node.stats();
  std::printf("caller: %llu of them retried on the other provider (overloaded = provably not run)\n",
              static_cast<unsigned long long>(s.retries));
  return providers >= 2 ? 0 : 1;
}
