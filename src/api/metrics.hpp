// Internal header (api layer). Per-service call counters and latency
// histograms, updated from any thread without locks on the hot path.
//
// Latencies go into the library's one histogram type (broach/histogram.hpp).
// Thread contract: record() and the readers are thread-safe (atomics);
// Metrics::service() takes a shared lock only to find the entry.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/thread_annotations.hpp"
#include "broach/error.hpp"
#include "broach/histogram.hpp"

namespace broach::api {

struct CodeCounters {
  std::array<std::atomic<std::uint64_t>, 32> by_code{};
  void add(Errc c) {
    const auto i = static_cast<std::size_t>(c);
    if (i < by_code.size()) by_code[i].fetch_add(1, std::memory_order_relaxed);
  }
};

struct ServiceMetrics {
  std::atomic<std::uint64_t> served{0}, made{0};
  CodeCounters served_errors, made_errors;
  LatencyHistogram served_latency;  ///< handler run time at the provider
  LatencyHistogram made_latency;    ///< round trip seen by the caller
};

/// One failed call, as the status page lists it.
struct CallError {
  std::int64_t unix_ms = 0;
  std::string service;
  std::string provider;  ///< "ip:port"
  Errc code = Errc::kOk;
  std::string message;
};

/// One membership event this node saw, as the status page lists it.
struct MemberEvent {
  std::int64_t unix_ms = 0;
  std::string kind;  ///< joined, suspect, alive (refuted), dead, left, updated
  std::string address;
  std::string name;
};

/// Wall-clock milliseconds since the epoch (for the times the page shows).
std::int64_t unix_now_ms();

class Metrics {
 public:
  static constexpr std::size_t kRecentErrors = 50;
  static constexpr std::size_t kRecentEvents = 100;

  ServiceMetrics& service(const std::string& name);
  /// A stable snapshot of the service names (entries are never removed).
  std::vector<std::pair<std::string, const ServiceMetrics*>> all() const;

  /// Keeps the last kRecentErrors failed calls made by this node (any
  /// thread; a short mutex, only on failures).
  void record_error(CallError e);
  std::vector<CallError> recent_errors() const;  ///< oldest first
  /// Keeps the last kRecentEvents membership events (loop thread).
  void record_event(MemberEvent e);
  std::vector<MemberEvent> recent_events() const;  ///< oldest first

 private:
  static constexpr std::size_t kMaxServices = 4096;  // bound: names come from the network
  mutable SharedMutex mu_;
  std::map<std::string, std::unique_ptr<ServiceMetrics>> services_ BROACH_GUARDED_BY(mu_);
  ServiceMetrics overflow_;  // everything past kMaxServices names
  mutable Mutex recent_mu_;
  std::deque<CallError> errors_ BROACH_GUARDED_BY(recent_mu_);
  std::deque<MemberEvent> events_ BROACH_GUARDED_BY(recent_mu_);
};

}  // namespace broach::api
