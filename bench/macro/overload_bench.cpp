// bench_overload: a provider whose capacity halves under a steady stream of
// calls, with params.broach.maxConcurrency "auto" and with the fixed queue
// (the seed's pool: 1,000 places, full = refused), side by side in one run.
//
// One process, two real nodes on loopback. The provider's pool has
// `workers` threads; each request holds one of `capacity` permits for
// 8-12 ms (sleeping, so the 2 CPUs are not the bottleneck), and the
// permits halve in the third phase, as if half the machine were taken by
// something else. A driver thread sends calls at Poisson times (an open
// loop: the rate does not slow down when answers do), each with a 2 s
// deadline. Phases: unloaded (10% of capacity), loaded (--load of
// capacity), halved (the same rate, half the capacity).
//
// Prints one JSON line per mode and phase (p50/p99 of the calls that
// succeeded, goodput, errors by kind) and, on stderr, a summary: the
// overloaded p99 against the unloaded p99, and goodput against the halved
// capacity. Goodput counts successful calls that ended within the phase.
#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"
#include "broach/broach.hpp"

namespace {

using namespace broach;
using Clock = std::chrono::steady_clock;

/// `n` permits, changed at run time.
class Permits {
 public:
  explicit Permits(int n) : n_(n) {}
  void set(int n) {
    std::lock_guard lock(mu_);
    n_ = n;
    cv_.notify_all();
  }
  void acquire() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return used_ < n_; });
    ++used_;
  }
  void release() {
    std::lock_guard lock(mu_);
    --used_;
    cv_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int n_;
  int used_ = 0;
};

struct PhaseResult {
  std::vector<double> ok_ms;       ///< latency of the successful calls started in the phase
  std::vector<double> steady_ms;   ///< the same, started after the phase's first second
  int completed_ok = 0;            ///< successful calls that ended within the phase
  std::map<std::string, int> errors;
  int sent = 0;
  double seconds = 0;
  double quantile(double q) const { return quantile(ok_ms, q); }
  /// Successful calls per second that ended within the phase.
  double goodput() const { return completed_ok / seconds; }
  static double quantile(std::vector<double> v, double q) {
    if (v.empty()) return 0;
    std::sort(v.begin(), v.end());
    return v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1))];
  }
};

struct Phase {
  const char* name;
  double seconds;
  double rate;
  int permits;
};

std::vector<PhaseResult> run(bool limited, int workers, const std::vector<Phase>& phases, std::uint64_t seed) {
  Config sc = default_config();
  sc.rpc_port = 0;
  sc.cluster_address.clear();
  sc.log_level = "error";
  sc.thread_pool = ThreadPoolConfig{workers, workers, 9, 1000, true, 1000};
  if (limited) sc.max_concurrency["work"] = ConcurrencyLimitConfig{true, 0};
  Node server(sc);
  Permits permits(workers);
  server.provide("work", [&permits](std::uint64_t us) {
    permits.acquire();
    std::this_thread::sleep_for(std::chrono::microseconds(us));
    permits.release();
    return std::uint64_t{1};
  });
  Config cc = sc;
  cc.max_concurrency.clear();
  Node client(cc);

  std::vector<PhaseResult> out(phases.size());
  std::mutex mu;  // guards out (callbacks run on the client's loop thread)
  std::condition_variable cv;
  int outstanding = 0;
  std::mt19937_64 rng(seed);
  std::size_t phase = 0;  // guarded by mu: the phase now running (completions count there)
  std::uniform_int_distribution<std::uint64_t> service_us(8000, 12000);
  CallOptions opts;
  opts.timeout = std::chrono::milliseconds(2000);
  opts.retry = RetryMode::kNever;
  for (std::size_t p = 0; p < phases.size(); ++p) {
    permits.set(phases[p].permits);
    out[p].seconds = phases[p].seconds;
    {
      std::lock_guard lock(mu);
      phase = p;
    }
    const auto begin = Clock::now();
    std::exponential_distribution<double> gap(phases[p].rate);
    const auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(phases[p].seconds));
    auto next = Clock::now();
    while (true) {
      next += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(gap(rng)));
      if (next >= end) break;
      std::this_thread::sleep_until(next);
      const auto started = Clock::now();
      {
        std::lock_guard lock(mu);
        ++outstanding;
        ++out[p].sent;
      }
      const bool steady = started - begin >= std::chrono::seconds(1);
      client.call_raw_async(server.address(), "work", detail::pack_args(service_us(rng)), opts,
                            [&, started, steady, r = &out[p]](RawResult res) {
                              const double ms =
                                  std::chrono::duration<double, std::milli>(Clock::now() - started).count();
                              std::lock_guard lock(mu);
                              if (res.ok()) {
                                r->ok_ms.push_back(ms);
                                if (steady) r->steady_ms.push_back(ms);
                                if (phase < out.size()) ++out[phase].completed_ok;
                              } else {
                                ++r->errors[errc_name(res.error().code())];
                              }
                              if (--outstanding == 0) cv.notify_all();
                            });
    }
    std::this_thread::sleep_until(end);
  }
  {
    std::lock_guard lock(mu);
    phase = out.size();  // later completions count nowhere
  }
  std::unique_lock lock(mu);
  cv.wait_for(lock, std::chrono::seconds(10), [&] { return outstanding == 0; });
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  broach::bench::Flags f(argc, argv, {"seconds", "load", "workers", "seed"});
  if (!f.ok() || (f.mode() != "run")) {
    std::fprintf(stderr,
                 "usage: bench_overload run [--seconds S per loaded phase (10)] [--load L (0.6 of capacity)]\n"
                 "                          [--workers N (8)] [--seed N (1)]\n");
    return 2;
  }
  const double secs = f.num("seconds", 10);
  const int workers = static_cast<int>(f.num("workers", 8));
  const double capacity = workers / 0.010;  // per second, 10 ms mean service
  const double rate = f.num("load", 0.6) * capacity;
  const auto seed = static_cast<std::uint64_t>(f.num("seed", 1));
  const std::vector<Phase> phases = {{"unloaded", secs / 2, 0.1 * capacity, workers},
                                     {"loaded", secs, rate, workers},
                                     {"halved", secs * 1.5, rate, workers / 2}};
  double summary[2][4] = {};
  for (const bool limited : {true, false}) {
    const auto r = run(limited, workers, phases, seed);
    for (std::size_t p = 0; p < phases.size(); ++p) {
      std::string errors;
      for (const auto& [k, n] : r[p].errors) errors += (errors.empty() ? "" : ",") + ("\"" + k + "\":" + std::to_string(n));
      std::printf("{\"bench\":\"overload\",\"mode\":\"%s\",\"phase\":\"%s\",\"rate\":%.0f,\"capacity\":%.0f,"
                  "\"sent\":%d,\"ok\":%zu,\"goodput\":%.1f,\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"p99_after_1s_ms\":%.2f,\"errors\":{%s}}\n",
                  limited ? "auto" : "fixed_queue", phases[p].name, phases[p].rate,
                  capacity * phases[p].permits / workers, r[p].sent, r[p].ok_ms.size(), r[p].goodput(),
                  r[p].quantile(0.5), r[p].quantile(0.99), PhaseResult::quantile(r[p].steady_ms, 0.99),
                  errors.c_str());
    }
    summary[limited ? 0 : 1][0] = r[0].quantile(0.99);
    summary[limited ? 0 : 1][1] = r[2].quantile(0.99);
    summary[limited ? 0 : 1][2] = r[2].goodput() / (capacity / 2);
    summary[limited ? 0 : 1][3] = PhaseResult::quantile(r[2].steady_ms, 0.99);
    std::fflush(stdout);
  }
  // The summary goes to stderr: stdout stays one JSON object per line.
  std::fprintf(stderr, "-- capacity halved (%.0f -> %.0f calls/s) under %.0f calls/s:\n", capacity, capacity / 2,
               rate);
  for (int m = 0; m < 2; ++m) {
    std::fprintf(stderr, "   %-12s unloaded p99 %7.1f ms, overloaded p99 %7.1f ms (%.2fx; %.2fx after its first second), "
                "goodput %.0f%% of capacity\n",
                m == 0 ? "auto" : "fixed queue", summary[m][0], summary[m][1], summary[m][1] / summary[m][0],
                summary[m][3] / summary[m][0], 100 * summary[m][2]);
  }
  return 0;
}
