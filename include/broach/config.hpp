// Public header. The node configuration: the seed's JSON file, kept key for
// key, plus BroachRpc's own settings under "params.broach". Every key, type,
// default and meaning is listed in docs/config.md.
// Thread contract: plain values; load functions are thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace broach {

/// params.threadPool: the seed's worker pool (see ThreadPool).
struct ThreadPoolConfig {
  int core = 3;                     ///< threads always alive
  int thread_max = 15;              ///< upper bound on threads
  double keep_alive_time = 9;       ///< seconds a non-core thread may idle before exiting
  int queue_max = 1000;             ///< queued tasks at most
  bool is_exc_info = false;         ///< full: true = reject with an error, false = caller runs it
  int create_thread_threshold = 2;  ///< queue length above which extra threads start
};

/// params.broach.transport: the reliable UDP layer.
struct TransportConfig {
  int max_datagram_bytes = 1472;               ///< UDP payload per datagram (1500 MTU - IP - UDP)
  std::uint64_t max_message_bytes = 64u << 20; ///< largest request or response
  int send_window = 128;                       ///< fragments of one message in flight
  double rto_initial_ms = 20;                  ///< first retransmission timeout to a new peer
  double rto_min_ms = 10;                      ///< lower bound of the adaptive timeout
  double rto_max_ms = 1000;                    ///< upper bound of the adaptive timeout
  int dedup_max_entries = 100000;              ///< at-most-once cache: entries
  std::uint64_t dedup_max_bytes = 64u << 20;   ///< at-most-once cache: cached response bytes
  std::uint64_t reassembly_max_bytes_per_peer = 128u << 20;  ///< partial messages per peer
  std::uint64_t reassembly_max_bytes_total = 512u << 20;     ///< partial messages, all peers
  int socket_buffer_bytes = 4 << 20;           ///< SO_RCVBUF / SO_SNDBUF request
  /// coalesce: small datagrams to one peer within one loop iteration share
  /// a Bundle datagram (docs/protocol.md); off only for peers that predate it.
  bool coalesce = true;
  /// busyPollMicros: the loop polls its socket this long (without sleeping)
  /// before it blocks, and a blocking call spins as long before it sleeps:
  /// lower latency for a CPU kept busy. 0 (default) = off. `--low-latency`.
  double busy_poll_micros = 0;
  /// loopbackLargeDatagrams: messages to 127.0.0.0/8 travel in 65,000-byte
  /// datagrams whatever maxDatagramBytes says (loopback's MTU is 64 KiB).
  bool loopback_large_datagrams = true;
  /// gso: batches of equal-size datagrams to one peer leave as one UDP GSO
  /// send, and the socket takes GRO, where the kernel has them.
  bool gso = true;
  /// tuneAllocator: a real node sets glibc's mmap and trim thresholds (32 and
  /// 128 MiB) once per process, so large messages reuse memory instead of
  /// faulting in fresh pages for each one; the environment's own malloc
  /// settings win. Process-wide: the first node started decides.
  bool tune_allocator = true;
};

/// params.broach.membership: gossip membership (docs/membership.md).
struct MembershipConfig {
  double probe_interval_ms = 500;      ///< one member probed per interval
  double probe_timeout_ms = 200;       ///< direct ack wait before indirect probes
  int indirect_checks = 3;             ///< members asked to probe on our behalf
  int suspicion_mult = 4;              ///< min suspicion = mult * log10(N) * probe interval
  int suspicion_max_mult = 3;          ///< max suspicion = max_mult * min
  double gossip_interval_ms = 200;     ///< piggyback-free gossip period
  int gossip_nodes = 3;                ///< members gossiped to per period
  int retransmit_mult = 4;             ///< each update sent mult * log10(N+1) times
  double push_pull_interval_ms = 15000;  ///< full-state exchange period
  double reconnect_interval_ms = 3000;   ///< retry seeds when alone / a dead member
  double dead_reclaim_ms = 30000;      ///< how long dead and left records are kept
  int weight = 100;                    ///< this member's weight (load balancing)
};

/// params.broach.loadBalance: how a provider is chosen for a call by name.
struct LoadBalanceConfig {
  std::string policy = "round_robin";              ///< default policy (docs/usage.md lists them)
  std::map<std::string, std::string> services;     ///< per-service policy: service -> policy
  bool local_in_process = true;                    ///< a call that picks this node runs in-process
  /// slowStartMs: a provider that has just joined (or come back from dead)
  /// gets a share of calls that ramps linearly from slowStartMinPercent of
  /// its full weight to all of it over this window (0 = off), in
  /// round_robin, random, weighted, least_outstanding and p2c_ewma.
  double slow_start_ms = 10000;
  double slow_start_min_percent = 10;              ///< slowStartMinPercent: the share it starts with
};

/// params.broach.breaker: circuit breaking per provider and per provider+service.
struct BreakerConfig {
  int consecutive_failures = 5;   ///< open after this many failures in a row
  double error_rate = 0.5;        ///< ... or this failure fraction over the window
  int min_calls = 20;             ///< ... with at least this many calls in it
  double window_ms = 10000;       ///< the error-rate window
  double open_ms = 1000;          ///< first open period, doubled per failed probe
  double open_max_ms = 30000;     ///< cap of the open period
};

/// params.broach.retry: retries on another provider, only when safe.
struct RetryConfig {
  int max_retries = 2;                   ///< extra attempts per call at most
  double budget_ratio = 0.1;             ///< retries may add at most this fraction of calls
  std::vector<std::string> idempotent;   ///< services safe to run twice: retried after timeouts too
  double hedge_delay_ms = 0;             ///< idempotent services: backup request after this long (0 = off)
};

/// params.broach.interceptors: the interceptors that come with BroachRpc
/// (broach/interceptor.hpp), all off by default.
struct InterceptorConfig {
  bool request_id = false;          ///< requestId: "x-request-id" on every call, carried into nested calls
  bool propagate_deadline = false;  ///< propagateDeadline: a nested call never outlives its parent
  bool access_log = false;          ///< accessLog: one debug line per call made and request served
};

/// params.broach.trace: per-call traces (docs/observability.md). A sampled
/// call records spans on every node it passes through; each node keeps the
/// last `keep` traces it saw in memory (/rpcz, `broach trace`).
struct TraceConfig {
  double sample_rate = 0;  ///< sampleRate: fraction of calls started here that are traced (0 = none)
  int keep = 256;          ///< keep: traces held per node, the oldest forgotten first
};

/// params.broach.security: sealing every datagram with a shared key
/// (docs/security.md). No key configured: plaintext, as in the seed.
struct SecurityConfig {
  /// Path of a keyring file (`broach keygen > FILE`); relative paths are
  /// relative to the config file's directory.
  std::string keyring;
  /// Inline keys, base64 of 32 bytes each; the first one seals. Used when
  /// `keyring` is empty.
  std::vector<std::string> keys;
  bool verify_incoming = true;  ///< verifyIncoming: drop datagrams not sealed with a key of the ring
  bool seal_outgoing = true;    ///< sealOutgoing: seal every datagram this node sends
  /// adminNetworks: besides members and key holders, the networks (CIDR,
  /// "10.1.0.0/16") whose unsealed requests the internal services
  /// __broach.members/routes/stats answer (what `broach members|routes|stats`
  /// read). __broach.keys answers sealed requests only.
  std::vector<std::string> admin_networks{"127.0.0.0/8"};
  bool enabled() const { return !keyring.empty() || !keys.empty(); }
};

/// One service's entry in params.broach.maxConcurrency: how many of its
/// requests this provider keeps in flight (queued for the pool or running)
/// before it answers new ones `overloaded` at once.
struct ConcurrencyLimitConfig {
  bool adaptive = false;  ///< "auto": a limit that follows measured latency
  int limit = 0;          ///< a number: that limit, fixed
};

struct Config {
  std::string name = "BroachRpc";       ///< instance / service name
  std::string version = "1.0.0";        ///< instance version
  std::string log_level = "info";       ///< debug | info | warn | error | off
  std::string rpc_ip = "127.0.0.1";     ///< params.rpcIp: address to bind and advertise
  int rpc_port = 18080;                 ///< params.rpcPort (0 = any free port)
  std::vector<std::string> cluster_address;  ///< params.clusterAddress: "ip:port" of live members
  double rpc_timeout = 6;               ///< params.rpcTimeOut: seconds per call, end to end
  double udp_timeout = 3;               ///< params.udpTimeOut: seconds of silence before delivery fails
  ThreadPoolConfig thread_pool;         ///< params.threadPool
  TransportConfig transport;            ///< params.broach.transport
  MembershipConfig membership;          ///< params.broach.membership
  LoadBalanceConfig load_balance;       ///< params.broach.loadBalance
  BreakerConfig breaker;                ///< params.broach.breaker
  RetryConfig retry;                    ///< params.broach.retry
  std::string http;                     ///< params.broach.http: "ip:port" of the status/metrics endpoint; "" = off
  /// params.broach.drainMs: how long stop() may keep serving after it has
  /// announced the leave, waiting for callers to stop sending (0 = stop at once).
  double drain_ms = 5000;
  SecurityConfig security;              ///< params.broach.security
  InterceptorConfig interceptors;       ///< params.broach.interceptors
  TraceConfig trace;                    ///< params.broach.trace
  /// params.broach.maxConcurrency: service -> "auto" or a number; the key
  /// "*" covers services not listed. Empty (default): no limit, the
  /// worker pool's queue alone decides (the seed's semantics).
  std::map<std::string, ConcurrencyLimitConfig> max_concurrency;

  std::string source = "<default>";     ///< where this config came from (file path)
  std::vector<std::string> warnings;    ///< e.g. unknown keys, each naming file and key
};

/// Command-line overrides; a set field replaces the file's value.
struct ConfigOverrides {
  std::optional<std::string> ip;
  std::optional<int> port;
  std::optional<std::vector<std::string>> seeds;  ///< replaces clusterAddress
  std::optional<std::string> name;
  std::optional<std::string> version;
  std::optional<std::string> log_level;
  std::optional<std::string> http;  ///< "ip:port" of the HTTP endpoint
  std::optional<std::string> keyring;  ///< keyring file (params.broach.security.keyring)
  /// --low-latency: params.broach.transport.busyPollMicros
  std::optional<double> busy_poll_micros;
};

/// The busy-poll time `--low-latency` sets (microseconds).
inline constexpr double kLowLatencyBusyPollMicros = 200;

/// The built-in configuration used when no file is given (the seed's example).
Config default_config();
/// Parses and validates JSON text; `source` names it in messages.
/// Throws Error{kBadConfig} naming the source and the key.
Config parse_config(std::string_view json_text, std::string_view source);
/// Reads and parses a file. Throws Error{kBadConfig} (unreadable, invalid, ...).
Config load_config_file(const std::string& path);
/// Applies overrides and validates the result. Throws Error{kBadConfig}.
void apply_overrides(Config& config, const ConfigOverrides& overrides);
/// Validates every field (also run by parse_config). Throws Error{kBadConfig}.
void validate_config(const Config& config);

// Addresses ("a.b.c.d:port", rpcIp) are checked with Endpoint::parse and
// Endpoint::parse_ip (broach/endpoint.hpp): one set of rules everywhere.

/// The canonical spelling of a logLevel (case-insensitive input; "warning"
/// becomes "warn"): one of debug, info, warn, error, off; empty when unknown.
std::string canonical_log_level(std::string_view level);

}  // namespace broach
