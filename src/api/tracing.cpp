#include "api/tracing.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "api/interceptors.hpp"
#include "base/rng.hpp"

namespace broach::api {

namespace {

constexpr std::size_t kMaxMessage = 200;

std::uint64_t mix64(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

std::string outcome_of(const RawResult& r) { return r.ok() ? std::string("ok") : std::string(errc_name(r.error().code())); }

std::string message_of(const RawResult& r) {
  if (r.ok()) return {};
  std::string m = r.error().message();
  if (m.size() > kMaxMessage) m.resize(kMaxMessage);
  return m;
}

std::int64_t micros(std::chrono::nanoseconds d) { return std::chrono::duration_cast<std::chrono::microseconds>(d).count(); }

/// "<trace>-<span>" from metadata; false when absent or malformed.
bool read_context(const Metadata& m, std::uint64_t& trace, std::uint64_t& span) {
  auto it = m.find(kTraceMetadataKey);
  if (it == m.end()) return false;
  const std::string& v = it->second;
  const auto dash = v.find('-');
  if (dash == std::string::npos) return false;
  return parse_trace_id(v.substr(0, dash), trace) && parse_trace_id(v.substr(dash + 1), span) && trace != 0;
}

std::string context(std::uint64_t trace, std::uint64_t span) { return trace_id_hex(trace) + "-" + trace_id_hex(span); }

}  // namespace

const char* span_kind_name(Span::Kind k) {
  switch (k) {
    case Span::Kind::kCall: return "call";
    case Span::Kind::kAttempt: return "attempt";
    case Span::Kind::kServe: return "serve";
  }
  return "?";
}

std::string trace_id_hex(std::uint64_t id) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(id));
  return buf;
}

bool parse_trace_id(const std::string& s, std::uint64_t& out) {
  if (s.empty() || s.size() > 16) return false;
  std::uint64_t v = 0;
  for (const char c : s) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else {
      return false;
    }
    v = (v << 4) | static_cast<std::uint64_t>(d);
  }
  out = v;
  return true;
}

// ---------------------------------------------------------------------------
// TraceStore

void TraceStore::add(Span s) {
  MutexLock lock(mu_);
  auto it = by_id_.find(s.trace_id);
  Trace* t = nullptr;
  if (it != by_id_.end()) {
    t = it->second;
  } else {
    if (traces_.size() >= keep_) {
      by_id_.erase(traces_.front().id);
      traces_.pop_front();
      ++stats_.traces_evicted;
    }
    traces_.push_back(Trace{s.trace_id, {}});
    t = &traces_.back();
    by_id_.emplace(s.trace_id, t);
  }
  if (t->spans.size() >= kMaxSpansPerTrace) {
    ++stats_.spans_dropped;
    return;
  }
  t->spans.push_back(std::move(s));
  ++stats_.spans;
}

std::vector<TraceStore::Trace> TraceStore::query(const Filter& f) const {
  MutexLock lock(mu_);
  std::vector<Trace> out;
  const auto min_us = static_cast<std::int64_t>(f.min_ms * 1000.0);
  for (auto it = traces_.rbegin(); it != traces_.rend() && out.size() < f.limit; ++it) {
    const Trace& t = *it;
    if (!f.ids.empty() && std::find(f.ids.begin(), f.ids.end(), t.id) == f.ids.end()) continue;
    bool service = f.service.empty(), slow = min_us <= 0, error = !f.errors_only;
    for (const Span& s : t.spans) {
      service = service || s.service == f.service;
      slow = slow || s.duration_us >= min_us;
      error = error || s.outcome != "ok";
    }
    if (service && slow && error) out.push_back(t);
  }
  return out;
}

TraceStore::Stats TraceStore::stats() const {
  MutexLock lock(mu_);
  Stats s = stats_;
  s.traces = traces_.size();
  return s;
}

// ---------------------------------------------------------------------------
// Tracer

Tracer::Tracer(std::string node, double sample_rate, std::size_t keep, InterceptorChain& chain, const Clock& clock)
    : node_(std::move(node)),
      node_key_(mix64(std::hash<std::string>{}(node_))),
      sample_rate_(sample_rate),
      chain_(chain),
      clock_(clock),
      store_(keep) {}

void Tracer::ensure_installed() {
  bool expected = false;
  if (!installed_.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) return;
  auto self = shared_from_this();
  chain_.add(std::static_pointer_cast<ClientInterceptor>(self));
  chain_.add(std::static_pointer_cast<ServerInterceptor>(self));
}

std::uint64_t Tracer::serve_span_id(std::uint64_t attempt, std::uint64_t node_key) {
  const std::uint64_t id = mix64(attempt ^ node_key);
  return id == 0 ? 1 : id;
}

std::uint64_t Tracer::random_id() {
  thread_local Rng rng(std::random_device{}() ^ (static_cast<std::uint64_t>(std::random_device{}()) << 32));
  std::uint64_t id = 0;
  while (id == 0) id = rng.next();
  return id;
}

std::int64_t Tracer::wall_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::optional<Error> Tracer::before_call(ClientCall& call) {
  // The framework's own calls (push-pull, the CLI's queries, this very
  // store's) are never traced.
  if (call.service.starts_with("__broach.")) return std::nullopt;
  std::uint64_t trace = 0, parent = 0;
  if (const ServerCall* served = current_server_call(); served != nullptr && read_context(served->metadata, trace, parent)) {
    parent = serve_span_id(parent, node_key_);  // nested: a child of this node's serve span
  } else if (call.trace || (sample_rate_ > 0 && static_cast<double>(random_id() >> 11) * 0x1.0p-53 < sample_rate_)) {
    trace = random_id();
    parent = 0;
  } else {
    return std::nullopt;  // not traced
  }
  Pending p;
  p.call.kind = Span::Kind::kCall;
  p.call.trace_id = trace;
  p.call.span_id = random_id();
  p.call.parent_id = parent;
  p.call.service = call.service;
  p.call.node = node_;
  p.call.peer = call.to ? call.to->to_string() : std::string();
  p.call.start_us = wall_us();
  p.started = to_public(clock_.now());
  call.metadata[kTraceMetadataKey] = context(trace, p.call.span_id);
  call.trace = true;  // the call paths tell note_pick/note_sends only about traced calls
  MutexLock lock(mu_);
  pending_[&call] = std::move(p);
  return std::nullopt;
}

std::optional<Error> Tracer::before_attempt(ClientCall& call, const Endpoint& provider) {
  MutexLock lock(mu_);
  auto it = pending_.find(&call);
  if (it == pending_.end()) return std::nullopt;
  Pending& p = it->second;
  Attempt a;
  a.span.kind = Span::Kind::kAttempt;
  a.span.trace_id = p.call.trace_id;
  a.span.span_id = random_id();
  a.span.parent_id = p.call.span_id;
  a.span.service = call.service;
  a.span.node = node_;
  a.span.peer = provider.to_string();
  a.span.start_us = wall_us();
  a.span.hedge = std::any_of(p.attempts.begin(), p.attempts.end(), [](const Attempt& x) { return x.open; });
  a.span.policy = std::move(p.pick.policy);
  a.span.candidates = p.pick.candidates;
  a.span.fused = p.pick.fused;
  a.span.probe = p.pick.probe;
  p.pick = Span{};
  a.started = to_public(clock_.now());
  // The provider's serve span names this attempt as its parent.
  call.metadata[kTraceMetadataKey] = context(a.span.trace_id, a.span.span_id);
  p.attempts.push_back(std::move(a));
  return std::nullopt;
}

void Tracer::note_pick(const ClientCall& call, std::string_view policy, int candidates, int fused, bool probe) {
  MutexLock lock(mu_);
  auto it = pending_.find(&call);
  if (it == pending_.end()) return;
  Span& s = it->second.pick;
  s.policy.assign(policy);
  s.candidates = candidates;
  s.fused = fused;
  s.probe = probe;
}

void Tracer::note_sends(const ClientCall& call, const Endpoint& provider, std::uint32_t sends) {
  MutexLock lock(mu_);
  auto it = pending_.find(&call);
  if (it == pending_.end()) return;
  const std::string addr = provider.to_string();
  for (Attempt& a : it->second.attempts) {
    if (a.open && a.span.peer == addr) {
      a.span.sends = static_cast<int>(sends);
      return;
    }
  }
}

void Tracer::after_attempt(const ClientCall& call, const Endpoint& provider, const RawResult& result,
                           std::chrono::nanoseconds latency) {
  MutexLock lock(mu_);
  auto it = pending_.find(&call);
  if (it == pending_.end()) return;  // not traced, or the call has ended (a losing hedge)
  const std::string addr = provider.to_string();
  for (Attempt& a : it->second.attempts) {
    if (!a.open || a.span.peer != addr) continue;
    a.open = false;
    a.span.duration_us = micros(latency);
    a.span.outcome = outcome_of(result);
    a.span.message = message_of(result);
    return;
  }
}

void Tracer::after_call(const ClientCall& call, const RawResult& result, std::chrono::nanoseconds latency) {
  Pending p;
  {
    MutexLock lock(mu_);
    auto it = pending_.find(&call);
    if (it == pending_.end()) return;
    p = std::move(it->second);
    pending_.erase(it);
  }
  const auto now = to_public(clock_.now());
  for (Attempt& a : p.attempts) {
    if (a.open) {
      a.span.duration_us = micros(now - a.started);
      a.span.outcome = "abandoned";
    }
    store_.add(std::move(a.span));
  }
  p.call.duration_us = micros(latency);
  p.call.outcome = outcome_of(result);
  p.call.message = message_of(result);
  p.call.attempts = call.attempts;
  store_.add(std::move(p.call));
}

std::optional<Error> Tracer::before_handler(const ServerCall& call) {
  (void)call;  // after_handler has all it needs (the latency gives the start)
  return std::nullopt;
}

void Tracer::after_handler(const ServerCall& call, const RawResult& result, std::chrono::nanoseconds latency) {
  std::uint64_t trace = 0, parent = 0;
  if (!read_context(call.metadata, trace, parent)) return;
  Span s;
  s.kind = Span::Kind::kServe;
  s.trace_id = trace;
  s.parent_id = parent;
  s.span_id = serve_span_id(parent, node_key_);
  s.service = call.service;
  s.node = node_;
  s.peer = call.caller.to_string();
  s.duration_us = micros(latency);
  s.start_us = wall_us() - s.duration_us;
  const auto started = to_public(clock_.now()) - latency;
  if (call.received != std::chrono::steady_clock::time_point{} && started >= call.received) {
    s.queue_us = micros(started - call.received);
  }
  s.outcome = outcome_of(result);
  s.message = message_of(result);
  if (result.ok()) s.response_bytes = static_cast<std::int64_t>(result.value().size());
  store_.add(std::move(s));
}

// ---------------------------------------------------------------------------
// Queries

std::optional<std::string> read_filter(const std::map<std::string, std::string>& params, TraceStore::Filter& f) {
  for (const auto& [k, v] : params) {
    if (k == "service") {
      f.service = v;
    } else if (k == "min_ms") {
      char* end = nullptr;
      const double ms = std::strtod(v.c_str(), &end);
      if (v.empty() || end == nullptr || *end != '\0' || !(ms >= 0) || ms > 1e9) {
        return "min_ms: a number of milliseconds >= 0, got '" + v + "'";
      }
      f.min_ms = ms;
    } else if (k == "errors") {
      if (v != "1" && v != "true" && v != "0" && v != "false") return "errors: 1 or 0, got '" + v + "'";
      f.errors_only = v == "1" || v == "true";
    } else if (k == "trace") {
      std::size_t start = 0;
      while (start <= v.size()) {
        const std::size_t comma = std::min(v.find(',', start), v.size());
        std::uint64_t id = 0;
        if (!parse_trace_id(v.substr(start, comma - start), id)) {
          return "trace: trace ids of up to 16 hex digits, comma-separated, got '" + v + "'";
        }
        f.ids.push_back(id);
        if (f.ids.size() > 1000) return "trace: at most 1000 ids";
        start = comma + 1;
      }
    } else if (k == "limit") {
      if (v.empty() || v.size() > 6 || v.find_first_not_of("0123456789") != std::string::npos) {
        return "limit: a number of traces, 0-999999, got '" + v + "'";
      }
      f.limit = std::stoul(v);
    } else {
      return "unknown parameter '" + k + "' (service, min_ms, errors, trace, limit)";
    }
  }
  return std::nullopt;
}

nlohmann::json traces_json(const Tracer& tracer, const TraceStore::Filter& f) {
  const auto st = tracer.store().stats();
  nlohmann::json out;
  out["sample_rate"] = tracer.sample_rate();
  out["tracing"] = tracer.installed();
  out["traces_kept"] = st.traces;
  out["spans_recorded"] = st.spans;
  out["spans_dropped"] = st.spans_dropped;
  out["traces_evicted"] = st.traces_evicted;
  nlohmann::json list = nlohmann::json::array();
  for (const auto& t : tracer.store().query(f)) {
    nlohmann::json spans = nlohmann::json::array();
    for (const Span& s : t.spans) {
      nlohmann::json j;
      j["kind"] = span_kind_name(s.kind);
      j["span_id"] = trace_id_hex(s.span_id);
      j["parent_id"] = s.parent_id == 0 ? std::string() : trace_id_hex(s.parent_id);
      j["service"] = s.service;
      j["node"] = s.node;
      j["peer"] = s.peer;
      j["start_us"] = s.start_us;
      j["duration_us"] = s.duration_us;
      j["outcome"] = s.outcome;
      if (!s.message.empty()) j["message"] = s.message;
      if (s.kind == Span::Kind::kCall) j["attempts"] = s.attempts;
      if (s.kind == Span::Kind::kAttempt) {
        j["hedge"] = s.hedge;
        j["sends"] = s.sends;
        if (!s.policy.empty()) {
          j["policy"] = s.policy;
          j["candidates"] = s.candidates;
          j["fused"] = s.fused;
          j["probe"] = s.probe;
        }
      }
      if (s.kind == Span::Kind::kServe) {
        j["queue_us"] = s.queue_us;
        j["response_bytes"] = s.response_bytes;
      }
      spans.push_back(std::move(j));
    }
    list.push_back({{"trace_id", trace_id_hex(t.id)}, {"spans", std::move(spans)}});
  }
  out["traces"] = std::move(list);
  return out;
}

}  // namespace broach::api
