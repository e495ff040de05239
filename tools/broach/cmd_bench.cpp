// `broach bench`: a load generator in the spirit of ghz / rpc_press. N
// chains of asynchronous calls (each answer issues the next call) for a
// duration or a number of calls; a live progress line; calls/s, errors by
// kind and latency percentiles from an HDR-style histogram.
#include <nlohmann/json.hpp>

#include <pthread.h>
#include <signal.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "broach/histogram.hpp"
#include "cli.hpp"

namespace broach::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct BenchFlags {
  std::string seed, to, service = "echo", args_json, ip;
  bool join = false;
  std::size_t payload = 16;
  int concurrency = 1;
  double duration = 0;
  std::uint64_t calls = 0;
  bool json = false;
  bool low_latency = false;
};

struct BenchState {
  Node* node = nullptr;
  // Replaced while chains run (--seed refreshes it): read under targets_mu.
  std::shared_ptr<const std::vector<Endpoint>> targets;
  // Providers whose process is gone (a peer_gone answer: their host said
  // nothing listens there), skipped until the time given, when one call
  // looks again; the member list still names them until gossip declares
  // them dead. Under targets_mu.
  std::unordered_map<Endpoint, Clock::time_point> gone_until;
  std::atomic<bool> any_gone{false};  // gone_until is not empty
  std::mutex targets_mu;
  std::atomic<std::uint64_t> retried{0};
  std::string service;
  Bytes args;
  Clock::time_point end;
  std::uint64_t max_calls = 0;
  std::atomic<bool> stopped{false};  // SIGINT/SIGTERM: no new calls, in-flight ones finish
  std::atomic<std::uint64_t> issued{0}, ok{0}, failed{0}, next_target{0};
  std::array<std::atomic<std::uint64_t>, 32> errors{};  // by Errc value
  LatencyHistogram latency;
  std::mutex mu;
  std::condition_variable cv;
  int running = 0;  // guarded by mu

  bool may_issue() {
    if (stopped.load(std::memory_order_relaxed)) return false;
    if (max_calls > 0) return issued.fetch_add(1) < max_calls;
    issued.fetch_add(1);
    return Clock::now() < end;
  }
  void chain_done() {
    std::lock_guard lock(mu);
    if (--running == 0) cv.notify_all();
  }
  std::shared_ptr<const std::vector<Endpoint>> current_targets() {
    std::lock_guard lock(targets_mu);
    return targets;
  }
  /// The next target round robin, skipping gone ones (all gone: the next).
  Endpoint pick() {
    std::lock_guard lock(targets_mu);
    const auto& t = *targets;
    const auto now = Clock::now();
    for (std::size_t k = 0; k < t.size(); ++k) {
      const Endpoint& e = t[next_target.fetch_add(1) % t.size()];
      if (gone_until.empty()) return e;
      auto g = gone_until.find(e);
      if (g == gone_until.end()) return e;
      if (g->second <= now) {
        g->second = now + std::chrono::seconds(1);  // this call looks again; the others keep skipping
        return e;
      }
    }
    return t[next_target.fetch_add(1) % t.size()];
  }
  void mark_gone(const Endpoint& e) {
    std::lock_guard lock(targets_mu);
    gone_until[e] = Clock::now() + std::chrono::seconds(1);
    any_gone.store(true, std::memory_order_relaxed);
  }
  void mark_back(const Endpoint& e) {
    std::lock_guard lock(targets_mu);
    gone_until.erase(e);  // it answered: a new process took the address
    any_gone.store(!gone_until.empty(), std::memory_order_relaxed);
  }
  void set_targets(std::vector<Endpoint> t) {
    if (t.empty()) return;  // keep calling the last known providers
    std::lock_guard lock(targets_mu);
    targets = std::make_shared<const std::vector<Endpoint>>(std::move(t));
  }
  void issue() {
    if (!may_issue()) {
      chain_done();
      return;
    }
    attempt(Clock::now(), 0);
  }
  // One attempt of a call; a provider's "not run" answer (overloaded: its
  // pool is full, or it is stopping) is retried once on the next provider,
  // as a call by name would be.
  void attempt(Clock::time_point t0, int tries) {
    const Endpoint to = pick();
    node->call_raw_async(to, service, args, CallOptions{}, [this, t0, tries, to](RawResult r) {
      if (!r.ok() && r.error().code() == Errc::kPeerGone) mark_gone(to);
      if (!r.ok() && r.error().code() == Errc::kOverloaded && tries == 0 && current_targets()->size() > 1) {
        retried.fetch_add(1, std::memory_order_relaxed);
        attempt(t0, tries + 1);
        return;
      }
      latency.record(Clock::now() - t0);
      if (r.ok()) {
        ok.fetch_add(1, std::memory_order_relaxed);
        if (any_gone.load(std::memory_order_relaxed)) mark_back(to);
      } else {
        failed.fetch_add(1, std::memory_order_relaxed);
        const auto code = static_cast<std::size_t>(r.error().code());
        if (code < errors.size()) errors[code].fetch_add(1, std::memory_order_relaxed);
      }
      issue();  // on the loop thread: the next call of this chain
    });
  }
};

/// The providers of `service` as the member at `seed` sees them, asked with
/// `node` (any thread but its loop's). Empty on any failure.
std::vector<Endpoint> providers_from(Node& node, const Endpoint& seed, const std::string& service) {
  std::vector<Endpoint> out;
  CallOptions o;
  o.timeout = std::chrono::milliseconds(500);
  auto r = node.call_raw(seed, "__broach.routes", detail::pack_args(), o);
  if (!r.ok()) return out;
  const auto* p = reinterpret_cast<const std::uint8_t*>(r.value().data());
  const auto routes = nlohmann::json::from_msgpack(p, p + r.value().size(), true, false);
  if (!routes.is_object() || !routes.contains(service)) return out;
  for (const auto& x : routes[service]) {
    Endpoint e;
    if (x.contains("address") && Endpoint::parse(x["address"].get<std::string>(), e, nullptr, false)) {
      out.push_back(e);
    }
  }
  return out;
}

int targets_from_seed(const BenchFlags& f, std::vector<Endpoint>& out) {
  Endpoint s;
  std::string why;
  if (!Endpoint::parse(f.seed, s, &why, /*allow_port_zero=*/false)) {
    std::cerr << "broach bench: --seed: expected IP:PORT, got '" << f.seed << "' (" << why << ")\n";
    return kExitUsage;
  }
  Node node(client_config(s, 3));
  auto r = node.call_raw(s, "__broach.routes", detail::pack_args());
  if (!r.ok()) {
    const bool silent = r.error().code() == Errc::kDeliveryTimeout || r.error().code() == Errc::kCallTimeout;
    std::cerr << "error: " << errc_name(r.error().code()) << ": " << r.error().message()
              << (silent ? unreachable_hint(f.seed) : "") << "\n";
    return kExitCallFailed;
  }
  const auto* p = reinterpret_cast<const std::uint8_t*>(r.value().data());
  const auto routes = nlohmann::json::from_msgpack(p, p + r.value().size());
  if (!routes.contains(f.service)) {
    std::cerr << "error: not_found: no live member of the cluster offers " << f.service << "\n";
    return kExitCallFailed;
  }
  for (const auto& x : routes[f.service]) {
    Endpoint e;
    if (Endpoint::parse(x["address"].get<std::string>(), e, nullptr, /*allow_port_zero=*/false)) {
      out.push_back(e);
    }
  }
  return kExitOk;
}

int run_bench(const BenchFlags& f) {
  if (f.concurrency < 1 || (f.duration <= 0 && f.calls == 0)) {
    std::cerr << "broach bench: need --concurrency >= 1 and --duration or --calls\n";
    return kExitUsage;
  }
  if (f.join && f.seed.empty()) {
    std::cerr << "broach bench: --join needs --seed\n";
    return kExitUsage;
  }
  Endpoint ip;
  if (!f.ip.empty() && !Endpoint::parse_host(f.ip, ip)) {
    std::cerr << "broach bench: --ip: expected an IPv4 or IPv6 address, got '" << f.ip << "'\n";
    return kExitUsage;
  }
  std::vector<Endpoint> targets;
  if (!f.seed.empty()) {
    if (int rc = targets_from_seed(f, targets); rc != kExitOk) return rc;
  } else {
    Endpoint e;
    std::string why;
    if (!Endpoint::parse(f.to, e, &why, /*allow_port_zero=*/false)) {
      std::cerr << "broach bench: --to: expected IP:PORT, got '" << f.to << "' (" << why << ")\n";
      return kExitUsage;
    }
    targets.push_back(e);
  }
  nlohmann::json args = nlohmann::json::array();
  if (!f.args_json.empty()) {
    try {
      args = nlohmann::json::parse(f.args_json);
    } catch (const nlohmann::json::exception& e) {
      std::cerr << "broach bench: --args: not JSON: " << e.what() << "\n";
      return kExitUsage;
    }
    if (!args.is_array()) args = nlohmann::json::array({args});
  } else if (f.service == "echo") {
    args.push_back(std::string(f.payload, 'x'));
  }
  const auto packed = nlohmann::json::to_msgpack(args);

  Config c = client_config(targets.front(), 0);
  c.thread_pool.core = 1;
  if (f.low_latency) c.transport.busy_poll_micros = kLowLatencyBusyPollMicros;
  if (f.join) {
    // A member for the length of the run: `broach keys` reaches it too, so
    // a key rotation under this load changes its ring with everyone's.
    c.cluster_address = {f.seed};
    c.rpc_ip = !f.ip.empty() ? f.ip : (targets.front().v6 ? "::1" : "127.0.0.1");
  }
  // SIGINT/SIGTERM end the run early (calls in flight finish, the summary
  // is printed): blocked before the node's threads start, polled below.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  Node node(c);
  BenchState st;
  st.node = &node;
  st.set_targets(targets);
  st.service = f.service;
  st.args.assign(reinterpret_cast<const std::byte*>(packed.data()),
                 reinterpret_cast<const std::byte*>(packed.data()) + packed.size());
  st.max_calls = f.calls;
  const auto start = Clock::now();
  st.end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(f.duration));
  st.running = f.concurrency;
  for (int i = 0; i < f.concurrency; ++i) st.issue();
  // Live progress on stderr while the chains run.
  std::unique_lock lock(st.mu);
  std::uint64_t last = 0;
  auto last_t = start;
  // With --seed, the providers are asked for again every 250 ms, so that
  // the load follows the cluster: a provider that left (a drain) stops
  // getting calls, a new one starts getting them.
  Endpoint seed;
  const bool follow = !f.seed.empty() && Endpoint::parse(f.seed, seed, nullptr, false);
  auto next_report = start + std::chrono::seconds(1);
  while (!st.cv.wait_for(lock, std::chrono::milliseconds(250), [&] { return st.running == 0; })) {
    const timespec no_wait{};
    if (!st.stopped.load() && sigtimedwait(&stop_signals, nullptr, &no_wait) > 0) st.stopped.store(true);
    if (follow) {
      lock.unlock();
      st.set_targets(providers_from(node, seed, f.service));
      lock.lock();
      if (st.running == 0) break;
    }
    const auto now = Clock::now();
    if (now < next_report) continue;
    next_report = now + std::chrono::seconds(1);
    const auto done = st.ok.load() + st.failed.load();
    std::fprintf(stderr, "\r  %6.1f s  %10.0f calls/s  %llu calls  %llu errors   ",
                 std::chrono::duration<double>(now - start).count(),
                 (done - last) / std::chrono::duration<double>(now - last_t).count(),
                 static_cast<unsigned long long>(done), static_cast<unsigned long long>(st.failed.load()));
    last = done;
    last_t = now;
  }
  lock.unlock();
  std::fprintf(stderr, "\n");
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  nlohmann::json out;
  out["service"] = f.service;
  out["targets"] = nlohmann::json::array();
  for (const auto& t : targets) out["targets"].push_back(t.to_string());
  out["concurrency"] = f.concurrency;
  out["payload_bytes"] = packed.size();
  out["seconds"] = secs;
  out["stopped_by_signal"] = st.stopped.load();
  out["calls"] = st.ok.load() + st.failed.load();
  out["ok"] = st.ok.load();
  out["errors"] = st.failed.load();
  out["retried_elsewhere"] = st.retried.load();
  nlohmann::json kinds = nlohmann::json::object();
  for (std::size_t i = 1; i < st.errors.size(); ++i) {
    const auto n = st.errors[i].load();
    if (n > 0 && errc_known(static_cast<std::uint16_t>(i))) kinds[errc_name(static_cast<Errc>(i))] = n;
  }
  out["errors_by_kind"] = kinds;
  out["calls_per_s"] = static_cast<double>(st.ok.load() + st.failed.load()) / secs;
  out["latency_us"] = {{"p50", st.latency.quantile_us(0.5)},   {"p90", st.latency.quantile_us(0.9)},
                       {"p99", st.latency.quantile_us(0.99)},  {"p999", st.latency.quantile_us(0.999)},
                       {"max", static_cast<double>(st.latency.max_ns()) / 1000.0}};
  // What the calls cost on the wire, from this process's own counters
  // (Bundles carry several datagrams in one).
  const auto node_stats = nlohmann::json::parse(node.stats_json(), nullptr, false);
  const double calls = static_cast<double>(std::max<std::uint64_t>(1, st.ok.load() + st.failed.load()));
  if (node_stats.is_object() && node_stats.contains("transport")) {
    const auto& t = node_stats["transport"];
    out["datagrams_sent_per_call"] = t.value("datagrams_out", 0.0) / calls;
    out["datagrams_received_per_call"] = t.value("datagrams_in", 0.0) / calls;
    out["bundled_sent"] = t.value("bundled_out", 0.0);
  }
  if (f.json) {
    std::cout << out.dump() << "\n";
  } else {
    std::printf("%s x%d for %.1f s: %llu calls, %.0f calls/s, %llu errors\n", f.service.c_str(),
                f.concurrency, secs, static_cast<unsigned long long>(out["calls"].get<std::uint64_t>()),
                out["calls_per_s"].get<double>(), static_cast<unsigned long long>(st.failed.load()));
    for (const auto& [k, n] : kinds.items()) std::printf("  %s: %llu\n", k.c_str(), n.get<unsigned long long>());
    const auto& l = out["latency_us"];
    std::printf("latency (us): p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f\n", l["p50"].get<double>(),
                l["p90"].get<double>(), l["p99"].get<double>(), l["p999"].get<double>(), l["max"].get<double>());
    if (out.contains("datagrams_sent_per_call")) {
      std::printf("datagrams per call: %.2f sent, %.2f received\n", out["datagrams_sent_per_call"].get<double>(),
                  out["datagrams_received_per_call"].get<double>());
    }
  }
  return st.failed.load() > 0 && st.ok.load() == 0 ? kExitCallFailed : kExitOk;
}

}  // namespace

void register_bench(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("bench", "load a service with concurrent calls and report calls/s and latency");
  auto f = std::make_shared<BenchFlags>();
  auto* to = cmd->add_option("--to", f->to, "IP:PORT of one provider");
  auto* seed = cmd->add_option("--seed", f->seed, "IP:PORT of any member: load every provider of the service");
  to->excludes(seed);
  seed->excludes(to);
  cmd->add_option("--service", f->service, "service to call (default echo)");
  cmd->add_option("--payload", f->payload, "bytes of the string sent to echo (default 16)");
  cmd->add_option("--args", f->args_json, "arguments as a JSON array (instead of the echo payload)");
  cmd->add_option("--concurrency", f->concurrency, "calls in flight (default 1)");
  add_keyring_flag(*cmd);
  auto* dur = cmd->add_option("--duration", f->duration, "seconds to run (SIGINT or SIGTERM ends the run early, with its summary)");
  auto* calls = cmd->add_option("--calls", f->calls, "number of calls to make");
  dur->excludes(calls);
  calls->excludes(dur);
  cmd->add_flag("--json", f->json, "print one JSON object");
  cmd->add_flag("--low-latency", f->low_latency,
                "busy-poll before sleeping (params.broach.transport.busyPollMicros = 200); "
                "start the providers with --low-latency too");
  cmd->add_flag("--join", f->join,
                "join the cluster (--seed) as a member for the run, so that `broach keys` rotates this "
                "process's key too; its --keyring file is written back like a node's");
  cmd->add_option("--ip", f->ip, "with --join: the address members reach this process at (default 127.0.0.1, or ::1 for an IPv6 seed)");
  cmd->callback([f, &exit_code] {
    if (f->to.empty() && f->seed.empty()) {
      std::cerr << "broach bench: one of --to or --seed is required\n";
      exit_code = kExitUsage;
      return;
    }
    exit_code = run_bench(*f);
  });
}

}  // namespace broach::cli
