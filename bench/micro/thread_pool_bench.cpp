// ThreadPool micro benchmarks.
//   BM_SubmitThroughput/<core>: producers submit a batch of tiny tasks and wait
//     for all of them; items_per_second is submit-to-run throughput.
//   BM_SubmitLatency/<core>: one task at a time, from submit until it has run
//     on a worker and the submitter, blocked on a future, woke up (a round
//     trip through an idle pool: two thread wake-ups).
//   BM_SubmitLatencySpin/<core>: the same, the submitter spinning on an atomic
//     (one wake-up: the worker's).
// Run: build/bin/bench_thread_pool [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <future>
#include <memory>
#include <thread>
#include <vector>

#include "exec/thread_pool.hpp"

namespace broach {
namespace {

ThreadPoolConfig bench_config(int core, int queue_max) {
  ThreadPoolConfig c;
  c.core = core;
  c.thread_max = core;  // a fixed-size pool: measure the queue, not growth
  c.queue_max = queue_max;
  c.create_thread_threshold = queue_max;
  c.is_exc_info = false;  // never reject: a full queue makes the producer help
  c.keep_alive_time = 60;
  return c;
}

// Waits (spinning, then yielding) until `counter` reaches `target`.
void wait_for_count(const std::atomic<std::int64_t>& counter, std::int64_t target) {
  for (int spins = 0; counter.load(std::memory_order_acquire) < target; ++spins) {
    if (spins > 64) std::this_thread::yield();
  }
}

void BM_SubmitThroughput(benchmark::State& state) {
  constexpr int kBatch = 10000;
  const int core = static_cast<int>(state.range(0));
  ThreadPool pool(bench_config(core, kBatch));
  std::atomic<std::int64_t> done{0};
  std::int64_t target = 0;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) {
      pool.submit([&done] { done.fetch_add(1, std::memory_order_release); });
    }
    target += kBatch;
    wait_for_count(done, target);
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  const auto s = pool.stats();
  state.counters["caller_ran"] = static_cast<double>(s.caller_ran);
}
BENCHMARK(BM_SubmitThroughput)
    ->Arg(1)
    ->Arg(2)
    ->Arg(4)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void BM_SubmitThroughputManyProducers(benchmark::State& state) {
  constexpr int kPerProducer = 5000;
  const int producers = static_cast<int>(state.range(0));
  ThreadPool pool(bench_config(2, 1024));
  std::atomic<std::int64_t> done{0};
  std::int64_t target = 0;
  for (auto _ : state) {
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p) {
      threads.emplace_back([&] {
        for (int i = 0; i < kPerProducer; ++i) {
          pool.submit([&done] { done.fetch_add(1, std::memory_order_release); });
        }
      });
    }
    for (auto& t : threads) t.join();
    target += static_cast<std::int64_t>(producers) * kPerProducer;
    wait_for_count(done, target);
  }
  state.SetItemsProcessed(state.iterations() * producers * kPerProducer);
}
BENCHMARK(BM_SubmitThroughputManyProducers)
    ->Arg(1)
    ->Arg(4)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

void BM_SubmitLatency(benchmark::State& state) {
  const int core = static_cast<int>(state.range(0));
  ThreadPool pool(bench_config(core, 1024));
  for (auto _ : state) {
    // The task owns the promise: set_value may still be returning on the
    // worker when this iteration ends.
    auto ran = std::make_shared<std::promise<void>>();
    auto f = ran->get_future();
    pool.submit([ran] { ran->set_value(); });
    f.wait();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SubmitLatency)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond);

void BM_SubmitLatencySpin(benchmark::State& state) {
  const int core = static_cast<int>(state.range(0));
  ThreadPool pool(bench_config(core, 1024));
  std::atomic<std::int64_t> done{0};
  std::int64_t target = 0;
  for (auto _ : state) {
    pool.submit([&done] { done.fetch_add(1, std::memory_order_release); });
    wait_for_count(done, ++target);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SubmitLatencySpin)->Arg(1)->Arg(2)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace broach

BENCHMARK_MAIN();
