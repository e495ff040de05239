// bench_rpc: BroachRpc's echo between two processes, measured from the
// caller. Compare with bench_udp_floor, the same traffic without the
// framework.
//
//   bench_rpc server [--ip 127.0.0.1] [--port 0] [--core N] [--max-threads M]
//       a Node providing echo(std::string) -> std::string with the default
//       config (worker pool core=3, up to 15 threads, unless overridden);
//       prints "listening on IP:PORT".
//   bench_rpc echo --to IP:PORT [--size 16] [--inflight 1] [--seconds 5] [--mode sync|async]
//       sync (the default for --inflight 1): a loop of blocking call<std::string>.
//       async (the default above 1): `inflight` call_then chains, each callback
//       (on the node's loop thread) issuing the next call at once.
//   Both modes take --cpu C (pin to CPU C) and --max-datagram B, which sets
//   params.broach.transport.maxDatagramBytes (default 1472; loopback carries
//   up to the config limit, 65000). Give both sides the same value.
//   --path1500 makes loopback a 1500-byte path (maxDatagramBytes 1472 and
//   loopbackLargeDatagrams false); --gso 0 turns UDP GSO/GRO off.
//
//   bench_rpc memory [--seconds 1]
//       RSS of an idle node (after --seconds), then with 10,000 calls in
//       flight (to a bound socket that never answers); one JSON line.
//
// Both sides use the typed API a user would: the string is packed, encoded,
// fragmented when larger than a datagram, and unpacked again on each side.
//
// Allocations: this binary counts every operator new (all threads, library
// included). The client reports its own allocations per call, and the
// server's (the server provides __bench.allocs, read before and after the
// measured window): client_allocs_per_call, server_allocs_per_call.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <new>
#include <string>
#include <thread>

#include "bench_util.hpp"
#include "broach/node.hpp"

namespace {
std::atomic<std::uint64_t> g_allocs{0};
}  // namespace

// The counting allocator (every thread of this process).
void* operator new(std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n == 0 ? 1 : n);
}
void* operator new[](std::size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
// These replace the global pair (new calls malloc, delete calls free), so
// they match; GCC 12 inlines the replacement delete into std::function's
// manager and then flags free() on memory from operator new.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace broach::bench {
namespace {

Config bench_config(const Flags& f, int default_port) {
  Config c = default_config();
  c.rpc_ip = f.str("ip", "127.0.0.1");
  c.rpc_port = static_cast<int>(f.num("port", default_port));
  c.log_level = "warn";
  // Both sides must agree to use larger datagrams (loopback's MTU is 64 KiB).
  c.transport.max_datagram_bytes =
      static_cast<int>(f.num("max-datagram", c.transport.max_datagram_bytes));
  // A sealed cluster: both sides need the same keyring (broach keygen).
  c.security.keyring = f.str("keyring", "");
  // Low-latency mode (params.broach.transport.busyPollMicros).
  c.transport.busy_poll_micros = f.num("busy-poll", 0);
  // A 1500-byte path even on loopback, with or without UDP GSO/GRO.
  if (f.num("path1500", 0) != 0) {
    c.transport.max_datagram_bytes = 1472;
    c.transport.loopback_large_datagrams = false;
  }
  c.transport.gso = f.num("gso", 1) != 0;
  // The built-in request-id interceptor (metadata on every request).
  c.interceptors.request_id = f.num("request-id", 0) != 0;
  // Per-call traces: this fraction of the calls started here (the provider
  // records its side of each, and installs its tracer at the first).
  c.trace.sample_rate = f.num("trace-sample", 0);
  return c;
}

// Interceptors that do nothing but count: what the hooks themselves cost.
std::atomic<std::uint64_t> g_hooks{0};
class NoopClient final : public ClientInterceptor {
 public:
  std::optional<Error> before_call(ClientCall&) override {
    g_hooks.fetch_add(1, std::memory_order_relaxed);
    return std::nullopt;
  }
  void after_call(const ClientCall&, const RawResult&, std::chrono::nanoseconds) override {
    g_hooks.fetch_add(1, std::memory_order_relaxed);
  }
};
class NoopServer final : public ServerInterceptor {
 public:
  std::optional<Error> before_handler(const ServerCall&) override {
    g_hooks.fetch_add(1, std::memory_order_relaxed);
    return std::nullopt;
  }
};
/// --interceptors N: N no-op client and N no-op server interceptors.
template <class Side>
void install_noop(Node& node, const Flags& f) {
  for (int i = 0; i < static_cast<int>(f.num("interceptors", 0)); ++i) node.add_interceptor(std::make_shared<Side>());
}

int run_server(const Flags& f) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before the node's threads start
  Config c = bench_config(f, 0);
  c.thread_pool.core = static_cast<int>(f.num("core", c.thread_pool.core));
  c.thread_pool.thread_max = static_cast<int>(f.num("max-threads", c.thread_pool.thread_max));
  c.thread_pool.thread_max = std::max(c.thread_pool.thread_max, c.thread_pool.core);
  Node node(c);
  install_noop<NoopServer>(node, f);
  node.provide("echo", [](std::string s) { return s; });
  // The same handler on the loop thread (ServiceOptions::run_on_loop).
  node.provide("echo_loop", [](std::string s) { return s; }, broach::ServiceOptions{true});
  // This process's allocation count, for the client's allocations-per-call.
  node.provide("__bench.allocs", [] { return g_allocs.load(std::memory_order_relaxed); },
               broach::ServiceOptions{true});
  std::printf("listening on %s\n", node.address().to_string().c_str());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  node.stop();
  return 0;
}

// One call in flight, the caller blocked on each: what a plain user loop sees.
void run_sync(Node& node, const Endpoint& to, const std::string& service, const std::string& payload,
              const Window& w, Report& r) {
  for (std::uint64_t start = now_ns(); start < w.end; start = now_ns()) {
    bool ok = false;
    try {
      ok = node.call<std::string>(to, service, payload).size() == payload.size();
    } catch (const Error&) {
    }
    r.record(start, now_ns(), ok, w.contains(start));
  }
}

// `inflight` independent chains of calls. Callbacks run on the loop thread
// only, so the report needs no lock; the main thread reads it after the last
// chain has ended (under mu_).
class AsyncEcho {
 public:
  AsyncEcho(Node& node, Endpoint to, std::string service, std::string payload, Window w, Report& r)
      : node_(node), to_(to), service_(std::move(service)), payload_(std::move(payload)), w_(w), r_(r) {}

  void run(int inflight) {
    {
      std::lock_guard lock(mu_);
      outstanding_ = inflight;
    }
    for (int i = 0; i < inflight; ++i) issue();
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return outstanding_ == 0; });
  }

 private:
  void issue() {
    const std::uint64_t start = now_ns();
    node_.call_then<std::string>(
        to_, service_, [this, start](broach::Result<std::string> res) { on_done(start, res); },
        payload_);
  }

  void on_done(std::uint64_t start, broach::Result<std::string>& res) {
    const std::uint64_t done = now_ns();
    r_.record(start, done, res.ok() && res.value().size() == payload_.size(), w_.contains(done));
    if (done < w_.end) {
      issue();
      return;
    }
    std::lock_guard lock(mu_);
    if (--outstanding_ == 0) cv_.notify_all();
  }

  Node& node_;
  const Endpoint to_;
  const std::string service_;
  const std::string payload_;
  const Window w_;
  Report& r_;
  std::mutex mu_;
  std::condition_variable cv_;
  int outstanding_ = 0;  // guarded by mu_
};

int run_client(const Flags& f) {
  Endpoint to;
  std::string why;
  if (!Endpoint::parse(f.str("to", ""), to, &why, /*allow_port_zero=*/false)) {
    std::fprintf(stderr, "bench_rpc: --to: expected IP:PORT (%s)\n", why.c_str());
    return 2;
  }
  const auto size = static_cast<std::uint64_t>(f.num("size", 16));
  const int inflight = static_cast<int>(f.num("inflight", 1));
  const double seconds = f.num("seconds", 5);
  const std::string mode = f.str("mode", inflight == 1 ? "sync" : "async");
  if (inflight < 1 || seconds <= 0 || (mode != "sync" && mode != "async") ||
      (mode == "sync" && inflight != 1)) {
    std::fprintf(stderr, "bench_rpc: bad --inflight/--seconds/--mode\n");
    return 2;
  }
  Config c = bench_config(f, 0);
  c.thread_pool.core = 1;  // the caller provides nothing; its pool stays idle
  Node node(c);
  install_noop<NoopClient>(node, f);
  const std::string service = f.str("service", "echo");
  if (service != "echo" && service != "echo_loop") {
    std::fprintf(stderr, "bench_rpc: --service: echo or echo_loop\n");
    return 2;
  }
  std::string workload = service + size_name(size) + "_inflight" + std::to_string(inflight);
  if (mode == "async" && inflight == 1) workload += "_async";
  if (!c.security.keyring.empty()) workload += "_sealed";
  if (c.transport.busy_poll_micros > 0) workload += "_busypoll";
  if (c.transport.max_datagram_bytes != default_config().transport.max_datagram_bytes) {
    workload += "_dg" + std::to_string(c.transport.max_datagram_bytes);
  }
  if (!c.transport.loopback_large_datagrams) workload += "_path1500";
  if (!c.transport.gso) workload += "_nogso";
  if (f.num("interceptors", 0) > 0) workload += "_icpt" + std::to_string(static_cast<int>(f.num("interceptors", 0)));
  if (c.interceptors.request_id) workload += "_reqid";
  if (c.trace.sample_rate > 0) {
    workload += "_trace" + std::to_string(static_cast<int>(std::lround(c.trace.sample_rate * 1000))) + "pm";
  }
  Report r{"rpc", workload, size, inflight};
  const std::string payload(size, 'x');
  const auto server_allocs = [&]() -> std::uint64_t {
    try {
      return node.call<std::uint64_t>(to, "__bench.allocs");
    } catch (const Error&) {
      return 0;  // an older server: no figure
    }
  };
  const double cpu0 = process_cpu_s();
  const std::uint64_t s0 = server_allocs();
  const std::uint64_t a0 = g_allocs.load();
  const Window w = Window::starting_now(seconds);
  if (mode == "sync") {
    run_sync(node, to, service, payload, w, r);
  } else {
    AsyncEcho(node, to, service, payload, w, r).run(inflight);
  }
  const std::uint64_t a1 = g_allocs.load();
  const std::uint64_t s1 = server_allocs();
  r.cpu_s = process_cpu_s() - cpu0;
  // Over every call (warm-up included), like the CPU figures; the two
  // __bench.allocs calls add a handful on each side.
  r.extra_f.emplace_back("client_allocs_per_call", r.calls_total ? double(a1 - a0) / double(r.calls_total) : 0);
  if (s0 != 0 && s1 > s0) {
    r.extra_f.emplace_back("server_allocs_per_call", r.calls_total ? double(s1 - s0) / double(r.calls_total) : 0);
  }
  r.seconds = w.seconds();
  const NodeStats s = node.stats();
  r.extra.emplace_back("retransmits", s.retransmits);
  r.extra.emplace_back("datagrams_dropped", s.datagrams_dropped);
  r.print();
  return 0;
}

// Resident set size of this process, KiB (VmRSS).
std::uint64_t rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10);
  }
  return 0;
}

int run_memory(const Flags& f) {
  Config c = bench_config(f, 0);
  c.udp_timeout = 30;  // the 10,000 calls stay in flight while RSS is read
  Node node(c);
  node.provide("echo", [](std::string s) { return s; });
  std::this_thread::sleep_for(std::chrono::duration<double>(f.num("seconds", 1)));
  const std::uint64_t idle = rss_kib();
  // A bound socket that never reads: the calls to it stay in flight.
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(sa);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    std::perror("bench_rpc memory: socket");
    return 1;
  }
  Endpoint silent;
  Endpoint::parse("127.0.0.1:" + std::to_string(ntohs(sa.sin_port)), silent);
  constexpr int kCalls = 10000;
  std::atomic<int> ended{0};
  const std::string payload(16, 'x');
  for (int i = 0; i < kCalls; ++i) {
    node.call_then<std::string>(silent, "echo", [&](Result<std::string>) { ended.fetch_add(1); }, payload);
  }
  // Every call registered and its first datagram sent (the loop has run
  // what was posted when a call of our own comes back).
  node.call<std::string>(node.address(), "echo", std::string("sync"));
  const std::uint64_t busy = rss_kib();
  std::printf("{\"bench\":\"rpc\",\"workload\":\"memory\",\"rss_idle_kib\":%llu,"
              "\"rss_10k_in_flight_kib\":%llu,\"bytes_per_call_in_flight\":%.0f,\"ended_early\":%d}\n",
              static_cast<unsigned long long>(idle), static_cast<unsigned long long>(busy),
              (static_cast<double>(busy) - static_cast<double>(idle)) * 1024.0 / kCalls, ended.load());
  std::fflush(stdout);
  ::close(fd);
  node.stop();
  return 0;
}

int usage() {
  std::fprintf(stderr,
               "usage: bench_rpc server [--ip IP] [--port P] [--core N] [--max-threads M]\n"
               "       bench_rpc echo --to IP:PORT [--size N] [--inflight W] [--seconds D]"
               " [--mode sync|async]\n"
               "         [--service echo|echo_loop]  (echo_loop runs on the server's loop thread)\n"
               "       (all modes: [--cpu C] pins to CPU C, [--max-datagram B] sets maxDatagramBytes,\n"
               "        [--keyring FILE] seals every datagram with FILE's key,\n"
               "        [--busy-poll US] busy-polls US microseconds before sleeping,\n"
               "        [--path1500 1] a 1500-byte path even on loopback, [--gso 0] no UDP GSO/GRO,\n"
               "        [--interceptors N] N no-op client (echo) or server interceptors,\n"
               "        [--request-id 1] the built-in request-id interceptor: metadata on every call,\n"
               "        [--trace-sample R] trace a fraction R of the calls (params.broach.trace.sampleRate))\n"
               "       bench_rpc memory [--seconds D]  (RSS idle, and with 10,000 calls in flight)\n");
  return 2;
}

}  // namespace
}  // namespace broach::bench

int main(int argc, char** argv) {
  using namespace broach::bench;
  const Flags f(argc, argv, {"ip", "port", "core", "max-threads", "max-datagram", "to", "size",
                              "inflight", "seconds", "mode", "cpu", "service", "keyring", "interceptors", "request-id",
                              "busy-poll", "path1500", "gso", "trace-sample"});
  if (!f.ok()) return usage();
  pin_to_cpu(static_cast<int>(f.num("cpu", -1)));
  try {
    if (f.mode() == "server") return run_server(f);
    if (f.mode() == "echo") return run_client(f);
    if (f.mode() == "memory") return run_memory(f);
  } catch (const broach::Error& e) {
    std::fprintf(stderr, "bench_rpc: %s\n", e.what());
    return 1;
  }
  return usage();
}
