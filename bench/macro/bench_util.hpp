// Bench support, not part of the library: the pieces both two-process
// benchmarks share: `--key value` flags, the clock, CPU pinning, the
// measurement window and the one-line JSON result.
// Thread contract: Flags and Report are plain values; now_ns() is thread-safe.
#pragma once

#include <sched.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "broach/histogram.hpp"

namespace broach::bench {

inline std::uint64_t now_ns() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::steady_clock::now().time_since_epoch())
                                        .count());
}

/// `MODE --key value ...`; unknown keys are an error so typos do not pass silently.
class Flags {
 public:
  Flags(int argc, char** argv, std::vector<std::string> known) : known_(std::move(known)) {
    if (argc >= 2) mode_ = argv[1];
    for (int i = 2; i < argc; ++i) {
      std::string key = argv[i];
      if (key.rfind("--", 0) != 0 || i + 1 >= argc || !is_known(key.substr(2))) {
        std::fprintf(stderr, "bad flag '%s'\n", key.c_str());
        ok_ = false;
        return;
      }
      values_[key.substr(2)] = argv[++i];
    }
  }
  bool ok() const { return ok_; }
  const std::string& mode() const { return mode_; }
  std::string str(const std::string& key, std::string def) const {
    auto it = values_.find(key);
    return it == values_.end() ? def : it->second;
  }
  double num(const std::string& key, double def) const {
    auto it = values_.find(key);
    return it == values_.end() ? def : std::strtod(it->second.c_str(), nullptr);
  }

 private:
  bool is_known(const std::string& k) const {
    for (const auto& n : known_) {
      if (n == k) return true;
    }
    return false;
  }
  std::vector<std::string> known_;
  std::string mode_;
  std::map<std::string, std::string> values_;
  bool ok_ = true;
};

/// Pins the calling thread (and the threads it creates later) to `cpu`;
/// a negative cpu leaves the affinity alone. run-all pins with taskset
/// instead, which covers the whole process from exec.
inline void pin_to_cpu(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (::sched_setaffinity(0, sizeof(set), &set) != 0) std::perror("sched_setaffinity");
}

/// CPU time (user + system, all threads) this process has used, in seconds.
inline double process_cpu_s() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

/// The measured interval: completions between `begin` and `end` count, those
/// of the warm-up before it (first contact, RTT estimate, page faults) do not.
struct Window {
  std::uint64_t begin = 0, end = 0;
  static Window starting_now(double seconds) {
    const double warmup = std::min(0.5, seconds / 10);
    Window w;
    w.begin = now_ns() + static_cast<std::uint64_t>(warmup * 1e9);
    w.end = w.begin + static_cast<std::uint64_t>(seconds * 1e9);
    return w;
  }
  bool contains(std::uint64_t t) const { return t >= begin && t < end; }
  double seconds() const { return static_cast<double>(end - begin) / 1e9; }
};

/// One workload's outcome, printed as one JSON line. `calls` are completed
/// round trips (floor) or successful calls (rpc) inside the window; `bytes`
/// are payload bytes that completed a round trip, counted once (not request
/// plus response), so mb_per_s is payload echoed per second, 1 MB = 10^6 B.
/// CPU cost is over the whole run, warm-up included: `calls_total` counts
/// every completion and `cpu_s` the client process's CPU time meanwhile, so
/// client_cpu_us_per_call is robust to a noisy machine where latency is not.
struct Report {
  Report(std::string bench_name, std::string workload_name, std::uint64_t payload_size, int depth)
      : bench(std::move(bench_name)), workload(std::move(workload_name)), size(payload_size),
        inflight(depth) {}

  std::string bench, workload;
  std::uint64_t size = 0;
  int inflight = 1;
  double seconds = 0;
  std::uint64_t calls = 0, errors = 0, bytes = 0;
  std::uint64_t calls_total = 0;
  double cpu_s = 0;
  LatencyHistogram latency;
  std::vector<std::pair<std::string, std::uint64_t>> extra;  // e.g. retransmits
  std::vector<std::pair<std::string, double>> extra_f;        // e.g. allocations per call

  /// One completed call or round trip that started at `start` and ended at
  /// `done`: always in calls_total; in the figures only when `counted` (the
  /// caller's window test), as a success (latency, payload bytes) or an error.
  void record(std::uint64_t start, std::uint64_t done, bool ok, bool counted) {
    ++calls_total;
    if (!counted) return;
    if (!ok) {
      ++errors;
      return;
    }
    ++calls;
    bytes += size;
    latency.record_ns(done - start);
  }

  void print() const {
    const double us = 1e-3;
    std::printf(
        "{\"bench\":\"%s\",\"workload\":\"%s\",\"size\":%llu,\"inflight\":%d,\"seconds\":%.3f,"
        "\"calls\":%llu,\"errors\":%llu,\"calls_per_s\":%.1f,\"p50_us\":%.2f,\"p90_us\":%.2f,"
        "\"p99_us\":%.2f,\"p999_us\":%.2f,\"max_us\":%.2f,\"mb_per_s\":%.2f,"
        "\"calls_total\":%llu,\"client_cpu_us_per_call\":%.2f",
        bench.c_str(), workload.c_str(), static_cast<unsigned long long>(size), inflight, seconds,
        static_cast<unsigned long long>(calls), static_cast<unsigned long long>(errors),
        static_cast<double>(calls) / seconds, latency.quantile_ns(0.50) * us,
        latency.quantile_ns(0.90) * us, latency.quantile_ns(0.99) * us,
        latency.quantile_ns(0.999) * us, static_cast<double>(latency.max_ns()) * us,
        static_cast<double>(bytes) / seconds / 1e6, static_cast<unsigned long long>(calls_total),
        calls_total ? cpu_s * 1e6 / static_cast<double>(calls_total) : 0.0);
    for (const auto& [k, v] : extra) {
      std::printf(",\"%s\":%llu", k.c_str(), static_cast<unsigned long long>(v));
    }
    for (const auto& [k, v] : extra_f) std::printf(",\"%s\":%.2f", k.c_str(), v);
    std::printf("}\n");
    std::fflush(stdout);
  }
};

/// "16" for small sizes, "1m" for 1 MiB, "64k" for 64 KiB: workload names.
inline std::string size_name(std::uint64_t size) {
  if (size >= (1u << 20) && size % (1u << 20) == 0) return std::to_string(size >> 20) + "m";
  if (size >= 1024 && size % 1024 == 0) return std::to_string(size >> 10) + "k";
  return std::to_string(size);
}

}  // namespace broach::bench
