// chaos_node: the two sides of the chaos-under-load fault test
// (tests/fault/chaos_test.sh), on the public API only.
//
//   chaos_node serve IP PORT SEED RECORD_FILE
//     A provider of "put" (not idempotent: appends the call's id to
//     RECORD_FILE, one write(2) per call, then answers value * 2) and "get"
//     (idempotent: answers value + 1). SIGTERM stops it gracefully (drain).
//   chaos_node load IP PORT SEED LOG_FILE STOP_FILE THREADS TIMEOUT_MS
//     A member that keeps THREADS calls by name in flight, alternating put
//     and get, each with a unique id, until STOP_FILE exists. One line per
//     call to LOG_FILE: "start_ms end_ms service id outcome", outcome being
//     ok, wrong (a result that is not the expected one) or the error's kind.
//
// SEED "-" means none (the first member). Logs go to stderr at info level:
// the test reads the membership verdicts ("member ... is dead") from them.
#include <broach/broach.hpp>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

broach::Config config(const char* ip, const char* port, const char* seed) {
  broach::Config c = broach::default_config();
  c.rpc_ip = ip;
  c.rpc_port = std::atoi(port);
  c.log_level = "info";
  if (std::string(seed) != "-") c.cluster_address = {seed};
  c.retry.idempotent = {"get"};
  return c;
}

sigset_t term_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

int serve(char** argv) {
  // Blocked before any thread starts, so every thread inherits the mask and
  // sigwait below is the only receiver.
  const sigset_t set = term_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  const int record = ::open(argv[3], O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (record < 0) {
    std::perror("chaos_node: record file");
    return 1;
  }
  broach::Node node(config(argv[0], argv[1], argv[2]));
  node.provide("put", [record](std::uint64_t id, std::int64_t value) {
    const std::string line = std::to_string(id) + "\n";
    if (::write(record, line.data(), line.size()) != static_cast<ssize_t>(line.size())) std::abort();
    return value * 2;
  });
  node.provide("get", [](std::uint64_t, std::int64_t value) { return value + 1; });
  std::fprintf(stderr, "chaos_node: serving on %s\n", node.address().to_string().c_str());
  int sig = 0;
  sigwait(&set, &sig);
  node.stop();  // graceful: leave, drain, finish running requests
  ::close(record);
  return 0;
}

int load(char** argv) {
  const sigset_t set = term_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  const std::string log_path = argv[3], stop_path = argv[4];
  const int threads = std::atoi(argv[5]);
  const auto timeout = std::chrono::milliseconds(std::atoi(argv[6]));
  broach::Node node(config(argv[0], argv[1], argv[2]));
  std::FILE* log = std::fopen(log_path.c_str(), "w");
  if (log == nullptr) {
    std::perror("chaos_node: log file");
    return 1;
  }
  std::mutex log_mu;
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> next_id{1};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      broach::CallOptions opts;
      opts.timeout = timeout;
      for (std::uint64_t n = 0; !stop.load(); ++n) {
        const std::uint64_t id = next_id.fetch_add(1);
        const bool put = (n + static_cast<std::uint64_t>(t)) % 2 == 0;
        const auto value = static_cast<std::int64_t>(id % 1000);
        const std::int64_t start = unix_ms();
        auto r = node.call_raw(put ? "put" : "get", broach::detail::pack_args(id, value), opts);
        const std::int64_t end = unix_ms();
        std::string outcome;
        if (r.ok()) {
          const auto got = broach::detail::unpack_value<std::int64_t>(r.value());
          outcome = got == (put ? value * 2 : value + 1) ? "ok" : "wrong";
        } else {
          outcome = broach::errc_name(r.error().code());
        }
        std::lock_guard<std::mutex> lock(log_mu);
        std::fprintf(log, "%lld %lld %s %llu %s\n", static_cast<long long>(start), static_cast<long long>(end),
                     put ? "put" : "get", static_cast<unsigned long long>(id), outcome.c_str());
        if (!r.ok() && r.error().code() == broach::Errc::kNotFound) {
          // Nobody provides it this moment (all behind a partition): do
          // not spin; the next call comes shortly.
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
      }
    });
  }
  // Until the stop file appears (or a signal).
  while (::access(stop_path.c_str(), F_OK) != 0) {
    timespec ts{0, 50'000'000};
    int sig = 0;
    if (sigtimedwait(&set, nullptr, &ts) > 0) break;
    (void)sig;
  }
  stop = true;
  for (auto& w : workers) w.join();
  std::fclose(log);
  node.stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "serve" && argc == 6) return serve(argv + 2);
  if (mode == "load" && argc == 9) return load(argv + 2);
  std::fprintf(stderr,
               "usage: chaos_node serve IP PORT SEED RECORD_FILE\n"
               "       chaos_node load IP PORT SEED LOG_FILE STOP_FILE THREADS TIMEOUT_MS\n");
  return 2;
}
