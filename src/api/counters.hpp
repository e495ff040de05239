// Internal header (api layer). The node's counters, each declared once.
//
// Every counter the node exports is one line in a list below (or in
// BROACH_ENGINE_COUNTERS / BROACH_MEMBERSHIP_COUNTERS of the layer that owns
// it) with its description. Status reads them all into one vector of
// Samples, and stats(), `broach stats` (/status.json and the __broach.stats
// service), the status page and /metrics are all made from that vector.
// Adding a counter is one line here plus the place that bumps it.
// Thread contract: NodeCounters are atomics, bumped from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace broach::api {

// X(field, json key under "calls", Prometheus name, description)
#define BROACH_CALL_COUNTERS(X)                                                                    \
  X(calls_by_name, "by_name", "broach_calls_by_name_total", "Calls by name this node started.")    \
  X(retries, "retries", "broach_retries_total",                                                    \
    "Attempts retried on another provider after a failure that allowed it.")                      \
  X(hedges, "hedges", "broach_hedges_total", "Backup attempts sent after hedgeDelayMs.")           \
  X(local_calls, "local", "broach_local_calls_total",                                              \
    "Calls by name served in-process by this node's own services.")                               \
  X(circuit_open_rejections, "circuit_open_rejections", "broach_circuit_open_rejections_total",    \
    "Calls failed at once because every provider was fused.")                                     \
  X(requests_received, "requests_received", "broach_requests_received_total",                      \
    "Requests for this node's services (internal services excluded).")                            \
  X(handlers_run, "handlers_run", "broach_handlers_run_total", "Service handlers run.")             \
  X(handler_errors, "handler_errors", "broach_handler_errors_total",                               \
    "Service handlers that failed (threw).")                                                       \
  X(expired_in_queue, "expired_in_queue", "broach_expired_in_queue_total",                         \
    "Requests dropped unrun: the caller's deadline passed while they were queued.")               \
  X(rejected_overloaded, "rejected_overloaded", "broach_rejected_overloaded_total",                \
    "Requests refused with overloaded: the worker queue and threads were full.")                  \
  X(rejected_concurrency_limit, "rejected_concurrency_limit", "broach_rejected_concurrency_limit_total", \
    "Requests refused with overloaded: their service was at its concurrency limit (maxConcurrency).")

struct NodeCounters {
#define BROACH_X(field, key, prom, help) std::atomic<std::uint64_t> field{0};
  BROACH_CALL_COUNTERS(BROACH_X)
#undef BROACH_X
};

/// One exported value. JSON: j[group][key] (or j[group][key][label_value]
/// when labelled); Prometheus: prom{label_key="label_value"} value.
struct Sample {
  const char* group;
  std::string key;
  std::string prom;
  const char* help;
  double value;
  bool gauge = false;
  const char* label_key = nullptr;  ///< Prometheus label, if any
  std::string label_value{};
  bool nested = false;  ///< JSON: j[group][key][label_value] instead of j[group][key]
};

/// Appends every counter of `c` to `out`.
inline void collect(const NodeCounters& c, std::vector<Sample>& out) {
#define BROACH_X(field, key, prom, help) \
  out.push_back(Sample{"calls", key, prom, help, static_cast<double>(c.field.load(std::memory_order_relaxed))});
  BROACH_CALL_COUNTERS(BROACH_X)
#undef BROACH_X
}

}  // namespace broach::api
