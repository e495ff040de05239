// Config loader: reads the seed's JSON configuration file (key for key) plus
// BroachRpc's own settings under "params.broach", checks every value and
// reports each problem as Error{kBadConfig} naming the file and the key path.
// Layer: config (depends on base only; addresses are checked with the
// header-only Endpoint::parse/parse_ip of broach/endpoint.hpp, the same rules
// as everywhere else). Thread contract: no shared mutable state; every
// function may be called from any thread.
//
// How a file is read: each JSON object of the file has a table of its known
// keys (kTopKeys, kParamsKeys, ...). The Walker visits the object's members in
// file order, looks each one up in the table and converts it into the field
// the table names; a member that is not in the table becomes a warning. A new
// section under params.broach (membership, loadBalance, http, security) is one
// more table plus one row in kBroachKeys, and its checks in validate_config.
#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "base/log.hpp"
#include "broach/config.hpp"
#include "broach/endpoint.hpp"
#include "broach/error.hpp"
#include "config/default_json.hpp"

namespace broach {
namespace {

// ordered_json keeps the file's member order, so warnings and the first error
// follow the order the user wrote. Duplicate keys: the last one wins.
using Json = nlohmann::ordered_json;

// ---------------------------------------------------------------------------
// Valid ranges. Each is used twice: when a file is read (tables below) and by
// validate_config (for overrides and configs built in code). docs/config.md
// lists the same numbers; keep them in step.

/// An inclusive range of a numeric key; lo_open makes the lower bound
/// exclusive (timeouts must be > 0).
struct Range {
  double lo = 0;
  double hi = 0;
  bool lo_open = false;
};

constexpr double kDay = 86400;                 // longest timeout we accept, seconds
constexpr double kGiB = 1024.0 * 1024 * 1024;  // exact in a double
constexpr double kTiB = kGiB * 1024;

constexpr Range kPortRange{0, 65535};  // 0 = any free port (bind picks one)
constexpr Range kTimeoutRange{0, kDay, true};
constexpr Range kCoreRange{1, 10000};
constexpr Range kThreadMaxRange{1, 10000};
constexpr Range kKeepAliveRange{0, kDay};
constexpr Range kQueueMaxRange{1, 10000000};
constexpr Range kThresholdRange{0, 10000000};  // also <= queueMax (validate_config)
constexpr Range kDatagramRange{512, 65000};
constexpr Range kMessageRange{1024, 4 * kGiB};
constexpr Range kWindowRange{1, 4096};
constexpr Range kRtoRange{0, 60000, true};  // milliseconds
constexpr Range kDedupEntriesRange{1, 100000000};
constexpr Range kBudgetRange{1024, kTiB};  // memory budgets, bytes
constexpr Range kSocketBufferRange{4096, kGiB};
constexpr Range kBusyPollRange{0, 1000000};  // microseconds; 0 = off
constexpr Range kIntervalMsRange{0, 3600000, true};  // milliseconds, > 0
constexpr Range kDrainMsRange{0, 600000};             // milliseconds, 0 = no drain
constexpr Range kSmallCountRange{1, 64};
constexpr Range kWeightRange{0, 1000000};
constexpr Range kSlowStartMsRange{0, 3600000};     // milliseconds, 0 = off
constexpr Range kPercentRange{1, 100};
constexpr std::size_t kMaxNameBytes = 255;  // name and version travel in membership messages

// ---------------------------------------------------------------------------
// Formatting helpers.

std::string join_path(std::string_view parent, std::string_view key) {
  if (parent.empty()) return std::string(key);
  return fmt::format("{}.{}", parent, key);
}

/// A short rendering of a JSON value for "got ..." in messages.
std::string describe(const Json& v) {
  if (v.is_object()) return "an object";
  if (v.is_array()) return "an array";
  std::string s = v.dump(-1, ' ', false, Json::error_handler_t::replace);  // strings keep quotes
  if (s.size() > 64) s = s.substr(0, 61) + "...";
  return s;
}

std::string json_quoted(std::string_view s) {
  Json j = std::string(s);
  return describe(j);
}

std::string range_text(const Range& r, bool integer) {
  if (integer) {
    return fmt::format("must be an integer in {}..{}", static_cast<std::int64_t>(r.lo),
                       static_cast<std::int64_t>(r.hi));
  }
  if (r.lo_open) return fmt::format("must be a number > {} and <= {}", r.lo, r.hi);
  return fmt::format("must be a number in {}..{}", r.lo, r.hi);
}

bool in_range(double v, const Range& r) { return (r.lo_open ? v > r.lo : v >= r.lo) && v <= r.hi; }

// ---------------------------------------------------------------------------
// Checker: turns a failed check into Error{kBadConfig} "<source>: <key>: <what>".
// `source` is the file (or "<default>"); empty for command-line flags, whose
// label already names the flag.

class Checker {
 public:
  explicit Checker(std::string_view source) : source_(source) {}

  [[noreturn]] void fail(std::string_view key, std::string_view what) const {
    std::string msg;
    if (!source_.empty()) msg = fmt::format("{}: ", source_);
    if (!key.empty()) msg += fmt::format("{}: ", key);
    msg += what;
    throw Error(Errc::kBadConfig, std::move(msg));
  }

  template <class I>
  void integer(std::string_view key, I v, const Range& r) const {
    static_assert(std::is_integral_v<I>);
    if (!in_range(static_cast<double>(v), r)) {
      fail(key, fmt::format("{}, got {}", range_text(r, true), v));
    }
  }
  void number(std::string_view key, double v, const Range& r) const {
    if (!std::isfinite(v) || !in_range(v, r)) {
      fail(key, fmt::format("{}, got {}", range_text(r, false), v));
    }
  }
  void name(std::string_view key, const std::string& v, bool may_be_empty) const {
    if ((v.empty() && !may_be_empty) || v.size() > kMaxNameBytes) {
      fail(key, fmt::format("must be a string of {}..{} bytes, got {}", may_be_empty ? 0 : 1,
                            kMaxNameBytes, json_quoted(v)));
    }
  }
  /// An address alone: dotted IPv4, or IPv6 without brackets.
  void ip_address(std::string_view key, const std::string& v) const {
    Endpoint e;
    if (!Endpoint::parse_host(v, e)) {
      fail(key, fmt::format("must be an IPv4 address (a.b.c.d) or an IPv6 address (no brackets, no zone), got {}",
                            json_quoted(v)));
    }
  }
  /// An address one sends to (a seed): port 1..65535.
  void member(std::string_view key, const std::string& v) const {
    Endpoint e;
    std::string why;
    if (!Endpoint::parse(v, e, &why, /*allow_port_zero=*/false)) {
      fail(key, fmt::format("must be \"IPv4:port\" or \"[IPv6]:port\" with port 1..65535, got {} ({})",
                            json_quoted(v), why));
    }
  }
  /// An address to bind: port 0 means any free port.
  void bind_address(std::string_view key, const std::string& v) const {
    Endpoint e;
    std::string why;
    if (!Endpoint::parse(v, e, &why, /*allow_port_zero=*/true)) {
      fail(key, fmt::format("must be \"IPv4:port\" or \"[IPv6]:port\" (port 0 = any free port), got {} ({})",
                            json_quoted(v), why));
    }
  }
  void log_level(std::string_view key, const std::string& v) const {
    if (canonical_log_level(v).empty()) {
      fail(key,
           fmt::format("must be one of debug|info|warn|warning|error|off, got {}", json_quoted(v)));
    }
  }

 private:
  std::string_view source_;
};

// ---------------------------------------------------------------------------
// Key tables and the walker.

class Walker;

/// A key whose reading needs code: a nested object or a special form.
template <class T>
using Custom = void (*)(Walker& w, const Json& value, const std::string& path, T& out);

/// Where a key's value goes in the struct T that its object maps to.
template <class T>
using Target = std::variant<std::string T::*, int T::*, std::uint64_t T::*, double T::*, bool T::*,
                            std::vector<std::string> T::*, Custom<T>>;

/// One known key of a JSON object: its name, its field and (numbers) its range.
template <class T>
struct Key {
  std::string_view name;
  Target<T> target;
  Range range{};
};

class Walker {
 public:
  Walker(std::string_view source, std::vector<std::string>& warnings)
      : check_(source), source_(source), warnings_(warnings) {}

  const Checker& check() const { return check_; }

  /// Reads the JSON object `v` (at key path `path`) into `out` by `keys`.
  template <class T>
  void section(const Json& v, const std::string& path, std::span<const Key<T>> keys, T& out) {
    if (!v.is_object()) {
      check_.fail(path.empty() ? "top level" : path, "must be an object, got " + describe(v));
    }
    for (auto member = v.begin(); member != v.end(); ++member) {
      const std::string& name = member.key();  // no structured binding: clang 14 cannot capture one
      const Json& value = member.value();
      std::string key_path = join_path(path, name);
      auto it =
          std::find_if(keys.begin(), keys.end(), [&](const Key<T>& k) { return k.name == name; });
      if (it == keys.end()) {
        unknown(key_path);
        continue;
      }
      std::visit([&](auto target) { read(value, key_path, *it, target, out); }, it->target);
    }
  }

 private:
  void unknown(const std::string& key_path) {
    std::string w = fmt::format("{}: unknown key {} (ignored)", source_, key_path);
    BROACH_LOG_WARN("{}", w);
    warnings_.push_back(std::move(w));
  }

  template <class T>
  void read(const Json& v, const std::string& p, const Key<T>& k, int T::*m, T& out) {
    out.*m = static_cast<int>(integer(v, p, k.range));
  }
  template <class T>
  void read(const Json& v, const std::string& p, const Key<T>& k, std::uint64_t T::*m, T& out) {
    out.*m = static_cast<std::uint64_t>(integer(v, p, k.range));
  }
  template <class T>
  void read(const Json& v, const std::string& p, const Key<T>& k, double T::*m, T& out) {
    if (!v.is_number()) {
      check_.fail(p, fmt::format("{}, got {}", range_text(k.range, false), describe(v)));
    }
    out.*m = v.get<double>();
    check_.number(p, out.*m, k.range);
  }
  template <class T>
  void read(const Json& v, const std::string& p, const Key<T>&, std::string T::*m, T& out) {
    if (!v.is_string()) check_.fail(p, "must be a string, got " + describe(v));
    out.*m = v.get<std::string>();
  }
  template <class T>
  void read(const Json& v, const std::string& p, const Key<T>&, bool T::*m, T& out) {
    out.*m = flag(v, p);
  }
  template <class T>
  void read(const Json& v, const std::string& p, const Key<T>&, std::vector<std::string> T::*m,
            T& out) {
    if (!v.is_array()) check_.fail(p, "must be an array of strings, got " + describe(v));
    std::vector<std::string> list;
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (!v[i].is_string()) {
        check_.fail(fmt::format("{}[{}]", p, i), "must be a string, got " + describe(v[i]));
      }
      list.push_back(v[i].get<std::string>());
    }
    out.*m = std::move(list);
  }
  template <class T>
  void read(const Json& v, const std::string& p, const Key<T>&, Custom<T> f, T& out) {
    f(*this, v, p, out);
  }

  /// A JSON integer inside `r`. Fractions are rejected, 2.0 as well as 1.5: an
  /// integer key is a count or a port. The double is exact: every range ends
  /// below 2^53.
  double integer(const Json& v, const std::string& p, const Range& r) const {
    double d = 0;
    if (v.is_number_unsigned()) {
      d = static_cast<double>(v.get<std::uint64_t>());
    } else if (v.is_number_integer()) {
      d = static_cast<double>(v.get<std::int64_t>());
    } else {
      check_.fail(p, fmt::format("{}, got {}", range_text(r, true), describe(v)));
    }
    if (!in_range(d, r)) {
      check_.fail(p, fmt::format("{}, got {}", range_text(r, true), describe(v)));
    }
    return d;
  }

  /// The seed's flag forms: JSON true/false, or "True"/"False"/"true"/"false".
  bool flag(const Json& v, const std::string& p) const {
    if (v.is_boolean()) return v.get<bool>();
    if (v.is_string()) {
      const auto& s = v.get_ref<const std::string&>();
      if (s == "True" || s == "true") return true;
      if (s == "False" || s == "false") return false;
    }
    check_.fail(
        p, "must be true, false, \"True\", \"False\", \"true\" or \"false\", got " + describe(v));
  }

  Checker check_;
  std::string_view source_;
  std::vector<std::string>& warnings_;
};

// The tables, innermost first. A row's range applies to numeric fields only.

const Key<TransportConfig> kTransportKeys[] = {
    {"maxDatagramBytes", &TransportConfig::max_datagram_bytes, kDatagramRange},
    {"maxMessageBytes", &TransportConfig::max_message_bytes, kMessageRange},
    {"sendWindow", &TransportConfig::send_window, kWindowRange},
    {"rtoInitialMs", &TransportConfig::rto_initial_ms, kRtoRange},
    {"rtoMinMs", &TransportConfig::rto_min_ms, kRtoRange},
    {"rtoMaxMs", &TransportConfig::rto_max_ms, kRtoRange},
    {"dedupMaxEntries", &TransportConfig::dedup_max_entries, kDedupEntriesRange},
    {"dedupMaxBytes", &TransportConfig::dedup_max_bytes, kBudgetRange},
    {"reassemblyMaxBytesPerPeer", &TransportConfig::reassembly_max_bytes_per_peer, kBudgetRange},
    {"reassemblyMaxBytesTotal", &TransportConfig::reassembly_max_bytes_total, kBudgetRange},
    {"socketBufferBytes", &TransportConfig::socket_buffer_bytes, kSocketBufferRange},
    {"coalesce", &TransportConfig::coalesce},
    {"busyPollMicros", &TransportConfig::busy_poll_micros, kBusyPollRange},
    {"loopbackLargeDatagrams", &TransportConfig::loopback_large_datagrams},
    {"gso", &TransportConfig::gso},
    {"tuneAllocator", &TransportConfig::tune_allocator},
};

const Key<MembershipConfig> kMembershipKeys[] = {
    {"probeIntervalMs", &MembershipConfig::probe_interval_ms, kIntervalMsRange},
    {"probeTimeoutMs", &MembershipConfig::probe_timeout_ms, kIntervalMsRange},
    {"indirectChecks", &MembershipConfig::indirect_checks, kSmallCountRange},
    {"suspicionMult", &MembershipConfig::suspicion_mult, kSmallCountRange},
    {"suspicionMaxMult", &MembershipConfig::suspicion_max_mult, kSmallCountRange},
    {"gossipIntervalMs", &MembershipConfig::gossip_interval_ms, kIntervalMsRange},
    {"gossipNodes", &MembershipConfig::gossip_nodes, kSmallCountRange},
    {"retransmitMult", &MembershipConfig::retransmit_mult, kSmallCountRange},
    {"pushPullIntervalMs", &MembershipConfig::push_pull_interval_ms, kIntervalMsRange},
    {"reconnectIntervalMs", &MembershipConfig::reconnect_interval_ms, kIntervalMsRange},
    {"deadReclaimMs", &MembershipConfig::dead_reclaim_ms, kIntervalMsRange},
    {"weight", &MembershipConfig::weight, kWeightRange},
};

constexpr Range kRatioRange{0, 1};
constexpr Range kRetriesRange{0, 10};

void read_policy_map(Walker& w, const Json& v, const std::string& p, LoadBalanceConfig& out) {
  if (!v.is_object()) w.check().fail(p, "must be an object of service -> policy name, got " + describe(v));
  for (auto it = v.begin(); it != v.end(); ++it) {
    if (!it.value().is_string()) {
      w.check().fail(join_path(p, it.key()), "must be a policy name (string), got " + describe(it.value()));
    }
    out.services[it.key()] = it.value().get<std::string>();
  }
}

constexpr Range kConcurrencyRange{1, 100000};
constexpr Range kTraceKeepRange{1, 100000};

void read_concurrency_map(Walker& w, const Json& v, const std::string& p, Config& out) {
  if (!v.is_object()) {
    w.check().fail(p, "must be an object of service -> \"auto\" or a number, got " + describe(v));
  }
  out.max_concurrency.clear();
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string key = join_path(p, it.key());
    const Json& e = it.value();
    ConcurrencyLimitConfig c;
    if (e.is_string() && e.get<std::string>() == "auto") {
      c.adaptive = true;
    } else if (e.is_number_integer() || e.is_number_unsigned()) {
      const double d = e.is_number_unsigned() ? static_cast<double>(e.get<std::uint64_t>())
                                              : static_cast<double>(e.get<std::int64_t>());
      if (!in_range(d, kConcurrencyRange)) {
        w.check().fail(key, fmt::format("must be \"auto\" or an integer in 1..100000, got {}", describe(e)));
      }
      c.limit = static_cast<int>(d);
    } else {
      w.check().fail(key, fmt::format("must be \"auto\" or an integer in 1..100000, got {}", describe(e)));
    }
    if (it.key().empty()) w.check().fail(key, "a service name must not be empty");
    out.max_concurrency[it.key()] = c;
  }
}

const Key<LoadBalanceConfig> kLoadBalanceKeys[] = {
    {"policy", &LoadBalanceConfig::policy},
    {"services", Custom<LoadBalanceConfig>{read_policy_map}},
    {"localInProcess", &LoadBalanceConfig::local_in_process},
    {"slowStartMs", &LoadBalanceConfig::slow_start_ms, kSlowStartMsRange},
    {"slowStartMinPercent", &LoadBalanceConfig::slow_start_min_percent, kPercentRange},
};

const Key<BreakerConfig> kBreakerKeys[] = {
    {"consecutiveFailures", &BreakerConfig::consecutive_failures, kThreadMaxRange},
    {"errorRate", &BreakerConfig::error_rate, kRatioRange},
    {"minCalls", &BreakerConfig::min_calls, kThreadMaxRange},
    {"windowMs", &BreakerConfig::window_ms, kIntervalMsRange},
    {"openMs", &BreakerConfig::open_ms, kIntervalMsRange},
    {"openMaxMs", &BreakerConfig::open_max_ms, kIntervalMsRange},
};

const Key<RetryConfig> kRetryKeys[] = {
    {"maxRetries", &RetryConfig::max_retries, kRetriesRange},
    {"budgetRatio", &RetryConfig::budget_ratio, kRatioRange},
    {"idempotent", &RetryConfig::idempotent},
    {"hedgeDelayMs", &RetryConfig::hedge_delay_ms, kKeepAliveRange},
};

const Key<ThreadPoolConfig> kThreadPoolKeys[] = {
    {"core", &ThreadPoolConfig::core, kCoreRange},
    {"threadMax", &ThreadPoolConfig::thread_max, kThreadMaxRange},
    {"keepAliveTime", &ThreadPoolConfig::keep_alive_time, kKeepAliveRange},
    {"queueMax", &ThreadPoolConfig::queue_max, kQueueMaxRange},
    {"isExcInfo", &ThreadPoolConfig::is_exc_info},
    {"createThreadThreshold", &ThreadPoolConfig::create_thread_threshold, kThresholdRange},
};

const Key<SecurityConfig> kSecurityKeys[] = {
    {"keyring", &SecurityConfig::keyring},
    {"keys", &SecurityConfig::keys},
    {"verifyIncoming", &SecurityConfig::verify_incoming},
    {"sealOutgoing", &SecurityConfig::seal_outgoing},
    {"adminNetworks", &SecurityConfig::admin_networks},
};

const Key<InterceptorConfig> kInterceptorKeys[] = {
    {"requestId", &InterceptorConfig::request_id},
    {"propagateDeadline", &InterceptorConfig::propagate_deadline},
    {"accessLog", &InterceptorConfig::access_log},
};

const Key<TraceConfig> kTraceKeys[] = {
    {"sampleRate", &TraceConfig::sample_rate, kRatioRange},
    {"keep", &TraceConfig::keep, kTraceKeepRange},
};

// params.broach: one row per section. Reserved for later features:
// membership, loadBalance, http, security (see docs/config.md).
const Key<Config> kBroachKeys[] = {
    {"transport", Custom<Config>{[](Walker& w, const Json& v, const std::string& p, Config& c) {
       w.section<TransportConfig>(v, p, kTransportKeys, c.transport);
     }}},
    {"membership", Custom<Config>{[](Walker& w, const Json& v, const std::string& p, Config& c) {
       w.section<MembershipConfig>(v, p, kMembershipKeys, c.membership);
     }}},
    {"loadBalance", Custom<Config>{[](Walker& w, const Json& v, const std::string& p, Config& c) {
       w.section<LoadBalanceConfig>(v, p, kLoadBalanceKeys, c.load_balance);
     }}},
    {"breaker", Custom<Config>{[](Walker& w, const Json& v, const std::string& p, Config& c) {
       w.section<BreakerConfig>(v, p, kBreakerKeys, c.breaker);
     }}},
    {"retry", Custom<Config>{[](Walker& w, const Json& v, const std::string& p, Config& c) {
       w.section<RetryConfig>(v, p, kRetryKeys, c.retry);
     }}},
    {"http", &Config::http},
    {"drainMs", &Config::drain_ms, kDrainMsRange},
    {"security", Custom<Config>{[](Walker& w, const Json& v, const std::string& p, Config& c) {
       w.section<SecurityConfig>(v, p, kSecurityKeys, c.security);
     }}},
    {"interceptors", Custom<Config>{[](Walker& w, const Json& v, const std::string& p, Config& c) {
       w.section<InterceptorConfig>(v, p, kInterceptorKeys, c.interceptors);
     }}},
    {"trace", Custom<Config>{[](Walker& w, const Json& v, const std::string& p, Config& c) {
       w.section<TraceConfig>(v, p, kTraceKeys, c.trace);
     }}},
    {"maxConcurrency", Custom<Config>{read_concurrency_map}},
};

const Key<Config> kParamsKeys[] = {
    {"rpcPort", &Config::rpc_port, kPortRange},
    {"rpcIp", &Config::rpc_ip},
    {"clusterAddress", &Config::cluster_address},
    {"rpcTimeOut", &Config::rpc_timeout, kTimeoutRange},
    {"udpTimeOut", &Config::udp_timeout, kTimeoutRange},
    {"threadPool", Custom<Config>{[](Walker& w, const Json& v, const std::string& p, Config& c) {
       w.section<ThreadPoolConfig>(v, p, kThreadPoolKeys, c.thread_pool);
     }}},
    {"broach", Custom<Config>{[](Walker& w, const Json& v, const std::string& p, Config& c) {
       w.section<Config>(v, p, kBroachKeys, c);
     }}},
};

const Key<Config> kTopKeys[] = {
    {"name", &Config::name},
    {"version", &Config::version},
    {"logLevel", Custom<Config>{[](Walker& w, const Json& v, const std::string& p, Config& c) {
       if (!v.is_string()) w.check().fail(p, "must be a string, got " + describe(v));
       c.log_level = v.get<std::string>();
       w.check().log_level(p, c.log_level);
       c.log_level = canonical_log_level(c.log_level);
     }}},
    {"params", Custom<Config>{[](Walker& w, const Json& v, const std::string& p, Config& c) {
       w.section<Config>(v, p, kParamsKeys, c);
     }}},
};

// ---------------------------------------------------------------------------
// JSON text.

/// "line L, column C" of 1-based byte offset `byte` (nlohmann's parse_error::byte,
/// the last character read; text.size() + 1 means end of input).
std::string line_column(std::string_view text, std::size_t byte) {
  std::size_t end = std::min(byte == 0 ? 0 : byte - 1, text.size());
  std::size_t line = 1;
  std::size_t line_start = 0;
  for (std::size_t i = 0; i < end; ++i) {
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  return fmt::format("line {}, column {}", line, end - line_start + 1);
}

/// nlohmann's reason without its "[json.exception...] parse error at ...: " prefix.
std::string parse_reason(const char* what) {
  std::string_view s = what;
  if (s.starts_with("[json.exception")) {
    auto close = s.find("] ");
    if (close != std::string_view::npos) s.remove_prefix(close + 2);
  }
  if (s.starts_with("parse error")) {
    auto colon = s.find(": ");
    if (colon != std::string_view::npos) s.remove_prefix(colon + 2);
  }
  return std::string(s);
}

Json parse_json(std::string_view text, std::string_view source) {
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const Json::parse_error& e) {
    throw Error(Errc::kBadConfig, fmt::format("{}: invalid JSON at {}: {}", source,
                                              line_column(text, e.byte), parse_reason(e.what())));
  } catch (const Json::exception& e) {
    // e.g. out_of_range 406: a number literal beyond the range of a double.
    // nlohmann gives no position for these.
    throw Error(Errc::kBadConfig, fmt::format("{}: invalid JSON: {}", source, parse_reason(e.what())));
  }
}


// ---------------------------------------------------------------------------
// Field checks shared by validate_config and apply_overrides.

void check_thread_pool(const Checker& k, const ThreadPoolConfig& tp) {
  k.integer("params.threadPool.core", tp.core, kCoreRange);
  k.integer("params.threadPool.threadMax", tp.thread_max, kThreadMaxRange);
  if (tp.core > tp.thread_max) {
    k.fail("params.threadPool.core",
           fmt::format("must be <= threadMax ({}), got {}", tp.thread_max, tp.core));
  }
  k.number("params.threadPool.keepAliveTime", tp.keep_alive_time, kKeepAliveRange);
  k.integer("params.threadPool.queueMax", tp.queue_max, kQueueMaxRange);
  k.integer("params.threadPool.createThreadThreshold", tp.create_thread_threshold, kThresholdRange);
  if (tp.create_thread_threshold > tp.queue_max) {
    k.fail(
        "params.threadPool.createThreadThreshold",
        fmt::format("must be <= queueMax ({}), got {}", tp.queue_max, tp.create_thread_threshold));
  }
}

void check_membership(const Checker& k, const MembershipConfig& m) {
  const std::string p = "params.broach.membership.";
  k.number(p + "probeIntervalMs", m.probe_interval_ms, kIntervalMsRange);
  k.number(p + "probeTimeoutMs", m.probe_timeout_ms, kIntervalMsRange);
  if (m.probe_timeout_ms >= m.probe_interval_ms) {
    k.fail(p + "probeTimeoutMs", fmt::format("must be < probeIntervalMs ({}), got {}",
                                             m.probe_interval_ms, m.probe_timeout_ms));
  }
  k.integer(p + "indirectChecks", m.indirect_checks, kSmallCountRange);
  k.integer(p + "suspicionMult", m.suspicion_mult, kSmallCountRange);
  k.integer(p + "suspicionMaxMult", m.suspicion_max_mult, kSmallCountRange);
  k.number(p + "gossipIntervalMs", m.gossip_interval_ms, kIntervalMsRange);
  k.integer(p + "gossipNodes", m.gossip_nodes, kSmallCountRange);
  k.integer(p + "retransmitMult", m.retransmit_mult, kSmallCountRange);
  k.number(p + "pushPullIntervalMs", m.push_pull_interval_ms, kIntervalMsRange);
  k.number(p + "reconnectIntervalMs", m.reconnect_interval_ms, kIntervalMsRange);
  k.number(p + "deadReclaimMs", m.dead_reclaim_ms, kIntervalMsRange);
  k.integer(p + "weight", m.weight, kWeightRange);
}

void check_balancing(const Checker& k, const Config& c) {
  // Policy names are checked against the registry when the node starts
  // (user policies may be registered after the file is read); here only
  // their form.
  if (c.load_balance.policy.empty()) k.fail("params.broach.loadBalance.policy", "must not be empty");
  k.number("params.broach.loadBalance.slowStartMs", c.load_balance.slow_start_ms, kSlowStartMsRange);
  k.number("params.broach.loadBalance.slowStartMinPercent", c.load_balance.slow_start_min_percent, kPercentRange);
  for (const auto& [svc, pol] : c.load_balance.services) {
    if (pol.empty()) k.fail("params.broach.loadBalance.services." + svc, "must not be empty");
  }
  const std::string b = "params.broach.breaker.";
  k.integer(b + "consecutiveFailures", c.breaker.consecutive_failures, kThreadMaxRange);
  k.number(b + "errorRate", c.breaker.error_rate, kRatioRange);
  k.integer(b + "minCalls", c.breaker.min_calls, kThreadMaxRange);
  k.number(b + "windowMs", c.breaker.window_ms, kIntervalMsRange);
  k.number(b + "openMs", c.breaker.open_ms, kIntervalMsRange);
  k.number(b + "openMaxMs", c.breaker.open_max_ms, kIntervalMsRange);
  if (c.breaker.open_ms > c.breaker.open_max_ms) {
    k.fail(b + "openMs", fmt::format("must be <= openMaxMs ({}), got {}", c.breaker.open_max_ms,
                                     c.breaker.open_ms));
  }
  if (!c.http.empty()) k.bind_address("params.broach.http", c.http);
  k.number("params.broach.drainMs", c.drain_ms, kDrainMsRange);
  k.number("params.broach.trace.sampleRate", c.trace.sample_rate, kRatioRange);
  k.integer("params.broach.trace.keep", c.trace.keep, kTraceKeepRange);
  for (const auto& [svc, lim] : c.max_concurrency) {
    const std::string key = "params.broach.maxConcurrency." + svc;
    if (svc.empty()) k.fail(key, "a service name must not be empty");
    if (!lim.adaptive) k.integer(key, lim.limit, kConcurrencyRange);
  }
  const std::string r = "params.broach.retry.";
  k.integer(r + "maxRetries", c.retry.max_retries, kRetriesRange);
  k.number(r + "budgetRatio", c.retry.budget_ratio, kRatioRange);
  k.number(r + "hedgeDelayMs", c.retry.hedge_delay_ms, kKeepAliveRange);
}

void check_transport(const Checker& k, const TransportConfig& t) {
  const std::string p = "params.broach.transport.";
  k.integer(p + "maxDatagramBytes", t.max_datagram_bytes, kDatagramRange);
  k.integer(p + "maxMessageBytes", t.max_message_bytes, kMessageRange);
  k.integer(p + "sendWindow", t.send_window, kWindowRange);
  k.number(p + "rtoMinMs", t.rto_min_ms, kRtoRange);
  k.number(p + "rtoInitialMs", t.rto_initial_ms, kRtoRange);
  k.number(p + "rtoMaxMs", t.rto_max_ms, kRtoRange);
  if (t.rto_min_ms > t.rto_initial_ms || t.rto_initial_ms > t.rto_max_ms) {
    k.fail(p + "rtoInitialMs",
           fmt::format("must satisfy rtoMinMs <= rtoInitialMs <= rtoMaxMs, got {} <= {} <= {}",
                       t.rto_min_ms, t.rto_initial_ms, t.rto_max_ms));
  }
  k.integer(p + "dedupMaxEntries", t.dedup_max_entries, kDedupEntriesRange);
  k.integer(p + "dedupMaxBytes", t.dedup_max_bytes, kBudgetRange);
  k.integer(p + "reassemblyMaxBytesPerPeer", t.reassembly_max_bytes_per_peer, kBudgetRange);
  k.integer(p + "reassemblyMaxBytesTotal", t.reassembly_max_bytes_total, kBudgetRange);
  // A peer must be able to reassemble one largest message, and the total
  // budget must hold at least one peer's.
  if (t.reassembly_max_bytes_per_peer < t.max_message_bytes) {
    k.fail(p + "reassemblyMaxBytesPerPeer",
           fmt::format("must be >= maxMessageBytes ({}), got {}", t.max_message_bytes,
                       t.reassembly_max_bytes_per_peer));
  }
  if (t.reassembly_max_bytes_total < t.reassembly_max_bytes_per_peer) {
    k.fail(p + "reassemblyMaxBytesTotal",
           fmt::format("must be >= reassemblyMaxBytesPerPeer ({}), got {}",
                       t.reassembly_max_bytes_per_peer, t.reassembly_max_bytes_total));
  }
  k.integer(p + "socketBufferBytes", t.socket_buffer_bytes, kSocketBufferRange);
  k.number(p + "busyPollMicros", t.busy_poll_micros, kBusyPollRange);
}

void check_members(const Checker& k, std::string_view key, const std::vector<std::string>& list) {
  for (std::size_t i = 0; i < list.size(); ++i) {
    k.member(fmt::format("{}[{}]", key, i), list[i]);
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// Public functions.

std::string canonical_log_level(std::string_view level) {
  std::string s(level);
  for (char& ch : s) {
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  }
  if (s == "warning") return "warn";
  if (s == "debug" || s == "info" || s == "warn" || s == "error" || s == "off") return s;
  return "";
}

void validate_config(const Config& c) {
  Checker k(c.source);
  k.name("name", c.name, false);
  k.name("version", c.version, true);
  k.log_level("logLevel", c.log_level);
  k.integer("params.rpcPort", c.rpc_port, kPortRange);
  k.ip_address("params.rpcIp", c.rpc_ip);
  check_members(k, "params.clusterAddress", c.cluster_address);
  k.number("params.rpcTimeOut", c.rpc_timeout, kTimeoutRange);
  k.number("params.udpTimeOut", c.udp_timeout, kTimeoutRange);
  check_thread_pool(k, c.thread_pool);
  check_transport(k, c.transport);
  check_membership(k, c.membership);
  check_balancing(k, c);
  for (std::size_t i = 0; i < c.security.admin_networks.size(); ++i) {
    Network n;
    if (!Network::parse(c.security.admin_networks[i], n)) {
      k.fail(fmt::format("params.broach.security.adminNetworks[{}]", i),
             fmt::format("must be an IPv4 network \"a.b.c.d/len\", got {}", json_quoted(c.security.admin_networks[i])));
    }
  }
}

Config parse_config(std::string_view json_text, std::string_view source) {
  Json root = parse_json(json_text, source);
  Config config;
  config.source = std::string(source);
  Walker walker(source, config.warnings);
  walker.section<Config>(root, "", kTopKeys, config);
  validate_config(config);
  return config;
}

Config load_config_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    int err = errno;
    throw Error(Errc::kBadConfig,
                fmt::format("{}: cannot open: {}", path, std::generic_category().message(err)));
  }
  std::string text;
  char buf[8192];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  int err = std::ferror(f) ? errno : 0;
  std::fclose(f);
  if (err != 0) {
    throw Error(Errc::kBadConfig,
                fmt::format("{}: cannot read: {}", path, std::generic_category().message(err)));
  }
  Config c = parse_config(text, path);
  // A relative keyring path is relative to the config file's directory.
  auto& ring = c.security.keyring;
  if (!ring.empty() && ring.front() != '/') {
    const auto slash = path.rfind('/');
    if (slash != std::string::npos) ring = path.substr(0, slash + 1) + ring;
  }
  return c;
}

Config default_config() {
  static const Config kDefault = parse_config(config_detail::kDefaultJson, "<default>");
  return kDefault;
}

void apply_overrides(Config& config, const ConfigOverrides& o) {
  // Each flag is checked under its own name first, so the message points at
  // the command line rather than at the file the value replaces.
  Checker cli("");
  if (o.ip) cli.ip_address("--ip (params.rpcIp)", *o.ip);
  if (o.port) cli.integer("--port (params.rpcPort)", *o.port, kPortRange);
  if (o.seeds) check_members(cli, "--seed (params.clusterAddress)", *o.seeds);
  if (o.name) cli.name("--name (name)", *o.name, false);
  if (o.version) cli.name("--version (version)", *o.version, true);
  if (o.log_level) cli.log_level("--log-level (logLevel)", *o.log_level);

  if (o.ip) config.rpc_ip = *o.ip;
  if (o.port) config.rpc_port = *o.port;
  if (o.seeds) config.cluster_address = *o.seeds;
  if (o.name) config.name = *o.name;
  if (o.version) config.version = *o.version;
  if (o.log_level) config.log_level = canonical_log_level(*o.log_level);
  if (o.http) config.http = *o.http;  // checked with the rest, named params.broach.http
  if (o.keyring) config.security.keyring = *o.keyring;
  if (o.busy_poll_micros) config.transport.busy_poll_micros = *o.busy_poll_micros;
  validate_config(config);
}

}  // namespace broach
