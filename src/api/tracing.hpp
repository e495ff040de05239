// Internal header (api layer). Per-call traces (docs/observability.md,
// "Traces"): a sampled call records spans on every node it passes through,
// and a trace id carried in its metadata ties the spans of a call chain
// across members together.
//
// The Tracer is a client and a server interceptor. It is installed on a
// node whose params.broach.trace.sampleRate is above 0, and otherwise the
// first time a call asks for a trace (CallOptions::trace) or a request that
// carries one arrives: until then a node pays nothing for tracing (no
// interceptor, no metadata). Spans:
//   call     the caller's whole call (by name or to an address): attempts
//            made, outcome, latency;
//   attempt  one attempt at one provider (retries and hedges are attempts;
//            a hedge is flagged), outcome, latency; an attempt still
//            running when its call ended (the losing hedge) is recorded as
//            "abandoned";
//   serve    the provider's side: the time the request waited for a worker,
//            the handler's time, the response size, outcome.
// Calls to the framework's internal services ("__broach.*") are never
// traced. A nested call made by a handler joins its parent's trace (whatever the
// sample rate of the node it runs on), its parent being the serve span.
//
// Metadata "broach-trace" = "<trace id>-<span id>", both 16 hex digits: the
// caller's attempt span. A serve span's id is derived from that span id and
// the serving node's address, so the handler's nested calls name it as
// their parent without any state shared between the hooks.
//
// Bounded: the store keeps the last `keep` traces (params.broach.trace.keep)
// with at most kMaxSpansPerTrace spans each; spans beyond are counted and
// dropped. Times are wall-clock (system_clock, microseconds since the Unix
// epoch) so that spans from different members line up; durations come from
// the steady clock.
// Thread contract: every method is safe from any thread (one mutex; held
// only for sampled calls and queries).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include <map>
#include <optional>

#include "base/clock.hpp"
#include "base/thread_annotations.hpp"
#include "broach/interceptor.hpp"

namespace broach::api {

class InterceptorChain;

inline constexpr const char* kTraceMetadataKey = "broach-trace";

struct Span {
  enum class Kind : std::uint8_t { kCall, kAttempt, kServe };
  Kind kind = Kind::kCall;
  std::uint64_t trace_id = 0, span_id = 0, parent_id = 0;  ///< parent 0: the root
  std::string service;
  std::string node;     ///< the member that recorded it (IP:PORT)
  std::string peer;     ///< attempt: the provider; serve: the caller; call: the address called ("" by name)
  std::int64_t start_us = 0;     ///< wall clock, microseconds since the Unix epoch
  std::int64_t duration_us = 0;
  std::string outcome;  ///< "ok", an error kind (errc_name), or "abandoned"
  std::string message;  ///< the error's message (at most 200 bytes)
  int attempts = 0;     ///< call: attempts started
  bool hedge = false;   ///< attempt: a backup started while another attempt ran
  // attempt, by name: how the provider was picked ("" / -1: not by name)
  std::string policy;   ///< the load-balancing policy
  int candidates = -1;  ///< providers it chose among
  int fused = -1;       ///< providers skipped because a breaker was open
  bool probe = false;   ///< the provider's breaker was half-open: this attempt was its probe
  int sends = -1;       ///< attempt: times the request was sent (1 + retransmissions; -1 in process)
  std::int64_t queue_us = -1;        ///< serve: waited for a worker (-1: unknown)
  std::int64_t response_bytes = -1;  ///< serve: packed result size (-1: an error)
};

const char* span_kind_name(Span::Kind k);
std::string trace_id_hex(std::uint64_t id);
/// Parses 16 hex digits (or fewer); false on anything else.
bool parse_trace_id(const std::string& s, std::uint64_t& out);

class TraceStore {
 public:
  static constexpr std::size_t kMaxSpansPerTrace = 64;
  explicit TraceStore(std::size_t keep) : keep_(keep == 0 ? 1 : keep) {}

  void add(Span s);

  struct Filter {
    std::string service;           ///< some span of the trace is for this service ("" any)
    double min_ms = 0;             ///< some span took at least this long
    bool errors_only = false;      ///< some span did not end "ok"
    std::vector<std::uint64_t> ids;  ///< only these traces (empty: any)
    std::size_t limit = 100;       ///< at most this many traces, newest first
  };
  struct Trace {
    std::uint64_t id = 0;
    std::vector<Span> spans;  ///< in the order recorded
  };
  std::vector<Trace> query(const Filter& f) const;

  struct Stats {
    std::uint64_t spans = 0, spans_dropped = 0, traces_evicted = 0;
    std::size_t traces = 0;
  };
  Stats stats() const;

 private:
  mutable Mutex mu_;
  const std::size_t keep_;
  std::deque<Trace> traces_ BROACH_GUARDED_BY(mu_);  // oldest first
  std::unordered_map<std::uint64_t, Trace*> by_id_ BROACH_GUARDED_BY(mu_);  // deque ends keep references
  Stats stats_ BROACH_GUARDED_BY(mu_);
};

class Tracer final : public ClientInterceptor, public ServerInterceptor, public std::enable_shared_from_this<Tracer> {
 public:
  /// `node`: this member's address, as spans name it; `clock`: the node's
  /// (durations and queue waits are measured on it).
  Tracer(std::string node, double sample_rate, std::size_t keep, InterceptorChain& chain, const Clock& clock);

  /// Installs this tracer in the node's interceptor chain, once.
  void ensure_installed();
  bool installed() const { return installed_.load(std::memory_order_acquire); }
  const TraceStore& store() const { return store_; }
  double sample_rate() const { return sample_rate_; }

  std::optional<Error> before_call(ClientCall& call) override;
  std::optional<Error> before_attempt(ClientCall& call, const Endpoint& provider) override;
  void after_attempt(const ClientCall& call, const Endpoint& provider, const RawResult& result,
                     std::chrono::nanoseconds latency) override;
  void after_call(const ClientCall& call, const RawResult& result, std::chrono::nanoseconds latency) override;
  std::optional<Error> before_handler(const ServerCall& call) override;
  void after_handler(const ServerCall& call, const RawResult& result, std::chrono::nanoseconds latency) override;

  /// Internal (the call paths; no-ops for a call that is not traced): how
  /// the next attempt of `call` was picked, and how many times an attempt
  /// at `provider` sent its request.
  void note_pick(const ClientCall& call, std::string_view policy, int candidates, int fused, bool probe);
  void note_sends(const ClientCall& call, const Endpoint& provider, std::uint32_t sends);

  /// The serve span id on node `node_key` for a request whose caller's
  /// attempt span is `attempt`.
  static std::uint64_t serve_span_id(std::uint64_t attempt, std::uint64_t node_key);

 private:
  struct Attempt {
    Span span;
    std::chrono::steady_clock::time_point started;
    bool open = true;
  };
  struct Pending {
    Span call;
    std::chrono::steady_clock::time_point started;
    std::vector<Attempt> attempts;
    Span pick;  ///< note_pick's, for the next attempt
  };
  std::uint64_t random_id();
  static std::int64_t wall_us();

  const std::string node_;
  const std::uint64_t node_key_;
  const double sample_rate_;
  InterceptorChain& chain_;
  const Clock& clock_;
  std::atomic<bool> installed_{false};
  TraceStore store_;
  Mutex mu_;
  // Keyed by the ClientCall, which lives (at one address) from before_call
  // to after_call.
  std::unordered_map<const ClientCall*, Pending> pending_ BROACH_GUARDED_BY(mu_);
};

/// Reads a filter from query parameters: service, min_ms, errors (1/true),
/// trace (ids, comma-separated), limit. Returns what is wrong, if anything.
std::optional<std::string> read_filter(const std::map<std::string, std::string>& params, TraceStore::Filter& f);

/// What /rpcz.json and __broach.rpcz answer: this node, its sampling, the
/// store's counters, and the matching traces with their spans.
nlohmann::json traces_json(const Tracer& tracer, const TraceStore::Filter& f);

}  // namespace broach::api
