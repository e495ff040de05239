// `broach top`: a live view of the whole cluster, one row per member and
// service, refreshed every second (like top).
//
// Each refresh asks the seed for the member list and every live member for
// its counters (__broach.stats, all at once); rates and latency quantiles
// are over the time since the previous refresh, from the difference of two
// snapshots (latency from the histograms' buckets): the handler's time on
// the member that serves the service, in microseconds. A provider's breaker
// column is what the members that call it think of it: the worst state any
// of them holds toward it, for that service or for the whole provider.
//
// On a terminal: the screen is redrawn in place and keys act at once (q
// quits; c, e, 5, 9, m, s sort by calls, errors, p50, p99, member,
// service). Otherwise (a pipe, a file): one plain table per refresh, each
// after a time line, for --iterations refreshes (default: until killed).
#include <poll.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <thread>

#include "broach/histogram.hpp"
#include "cli.hpp"

namespace broach::cli {
namespace {

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

struct TopFlags {
  std::string seed;
  double interval_s = 1;
  std::string sort = "calls";
  int iterations = 0;  // 0: until q or a signal
  double timeout_s = 2;
};

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop.store(true); }

struct Histo {
  std::map<std::size_t, std::uint64_t> buckets;
  std::uint64_t count = 0;
};

Histo histo_of(const Json& latency) {
  Histo h;
  h.count = latency.value("count", std::uint64_t{0});
  if (latency.contains("buckets")) {
    for (const auto& b : latency["buckets"]) h.buckets[b[0].get<std::size_t>()] = b[1].get<std::uint64_t>();
  }
  return h;
}

// The q-quantile (us) of the samples in `now` that were not in `before`;
// -1 when there were none.
double window_quantile_us(const Histo& now, const Histo* before, double q) {
  std::vector<std::pair<std::size_t, std::uint64_t>> diff;
  std::uint64_t n = 0;
  for (const auto& [i, c] : now.buckets) {
    std::uint64_t prev = 0;
    if (before != nullptr) {
      auto it = before->buckets.find(i);
      if (it != before->buckets.end()) prev = it->second;
    }
    if (c > prev) {
      diff.emplace_back(i, c - prev);
      n += c - prev;
    }
  }
  if (n == 0) return -1;
  const auto rank = static_cast<std::uint64_t>(q * static_cast<double>(n - 1)) + 1;
  std::uint64_t seen = 0;
  for (const auto& [i, c] : diff) {
    seen += c;
    if (seen >= rank) {
      const double mid = static_cast<double>(LatencyHistogram::lower_bound(i)) +
                         static_cast<double>(LatencyHistogram::width(i)) / 2;
      return mid / 1e3;
    }
  }
  return -1;
}

std::uint64_t sum_errors(const Json& errors) {
  std::uint64_t n = 0;
  for (const auto& [k, v] : errors.items()) n += v.get<std::uint64_t>();
  return n;
}

struct Counters {
  std::uint64_t served = 0, made = 0, errors = 0;
  Histo latency;  // served
};
using Snapshot = std::map<std::pair<std::string, std::string>, Counters>;  // (member, service)

struct Row {
  std::string member, state, service, breaker;
  double served_s = 0, made_s = 0, errors_s = 0, p50 = -1, p99 = -1;
};

int rank(const std::string& breaker) { return breaker == "open" ? 2 : breaker == "half_open" ? 1 : 0; }

// One refresh: members, then every live member's stats in parallel.
struct View {
  std::vector<Row> rows;
  std::size_t members = 0, answered = 0;
  std::string error;
};

View refresh(Node& node, const Endpoint& seed, const TopFlags& f, Snapshot& prev, Clock::time_point& prev_at) {
  View v;
  auto r = node.call_raw(seed, "__broach.members", detail::pack_args());
  if (!r.ok()) {
    v.error = seed.to_string() + ": " + errc_name(r.error().code()) + ": " + r.error().message();
    return v;
  }
  const auto* p = reinterpret_cast<const std::uint8_t*>(r.value().data());
  const Json members = Json::from_msgpack(p, p + r.value().size());
  std::vector<std::pair<Endpoint, std::string>> live;  // address, state
  for (const auto& m : members) {
    const std::string state = m["state"];
    if (state != "alive" && state != "suspect") continue;
    Endpoint e;
    if (Endpoint::parse(m["address"].get<std::string>(), e, nullptr, false)) live.emplace_back(e, state);
  }
  v.members = live.size();
  std::vector<std::future<RawResult>> replies;
  CallOptions opts;
  opts.timeout = std::chrono::milliseconds(static_cast<long>(f.timeout_s * 1000));
  for (const auto& [addr, state] : live) {
    auto promise = std::make_shared<std::promise<RawResult>>();
    replies.push_back(promise->get_future());
    node.call_raw_async(addr, "__broach.stats", detail::pack_args(), opts,
                        [promise](RawResult res) { promise->set_value(std::move(res)); });
  }
  const auto now_at = Clock::now();
  const double dt = std::max(1e-3, std::chrono::duration<double>(now_at - prev_at).count());
  Snapshot now;
  // Breakers, as the callers see each provider: (provider, service or "") -> worst state.
  std::map<std::pair<std::string, std::string>, std::string> breakers;
  std::vector<Json> stats(live.size());
  for (std::size_t i = 0; i < live.size(); ++i) {
    RawResult res = replies[i].get();
    if (!res.ok()) continue;
    ++v.answered;
    const auto* b = reinterpret_cast<const std::uint8_t*>(res.value().data());
    stats[i] = Json::from_msgpack(b, b + res.value().size());
    for (const auto& br : stats[i]["breakers"]) {
      auto& slot = breakers[{br["provider"].get<std::string>(), br["service"].get<std::string>()}];
      if (rank(br["state"]) >= rank(slot)) slot = br["state"];
    }
  }
  for (std::size_t i = 0; i < live.size(); ++i) {
    if (stats[i].is_null()) continue;
    const std::string member = live[i].first.to_string();
    for (const auto& [service, s] : stats[i]["services"].items()) {
      Counters c;
      c.served = s["served"].get<std::uint64_t>();
      c.made = s["made"].get<std::uint64_t>();
      c.errors = sum_errors(s["served_errors"]);
      c.latency = histo_of(s["served_latency_us"]);
      const auto key = std::make_pair(member, service);
      const Counters* before = nullptr;
      if (auto it = prev.find(key); it != prev.end()) before = &it->second;
      Row row;
      row.member = member;
      row.state = live[i].second;
      row.service = service;
      if (before != nullptr) {
        // A restarted member's counters start again from 0.
        auto rate = [dt](std::uint64_t a, std::uint64_t b) { return a >= b ? static_cast<double>(a - b) / dt : 0.0; };
        row.served_s = rate(c.served, before->served);
        row.made_s = rate(c.made, before->made);
        row.errors_s = rate(c.errors, before->errors);
      }
      const bool restarted = before != nullptr && c.latency.count < before->latency.count;
      const Histo* base = before == nullptr || restarted ? nullptr : &before->latency;
      row.p50 = window_quantile_us(c.latency, base, 0.50);
      row.p99 = window_quantile_us(c.latency, base, 0.99);
      std::string br = "closed";
      for (const auto& k : {std::make_pair(member, service), std::make_pair(member, std::string())}) {
        if (auto it = breakers.find(k); it != breakers.end() && rank(it->second) > rank(br)) br = it->second;
      }
      row.breaker = br;
      const bool used = c.served + c.made > 0;
      now[key] = std::move(c);
      if (used) v.rows.push_back(std::move(row));
    }
  }
  prev = std::move(now);
  prev_at = now_at;
  return v;
}

const char* const kSortKeys[] = {"calls", "errors", "p50", "p99", "member", "service"};

void sort_rows(std::vector<Row>& rows, const std::string& key) {
  auto by = [&](const Row& a, const Row& b) {
    if (key == "errors" && a.errors_s != b.errors_s) return a.errors_s > b.errors_s;
    if (key == "p50" && a.p50 != b.p50) return a.p50 > b.p50;
    if (key == "p99" && a.p99 != b.p99) return a.p99 > b.p99;
    if (key == "member" && a.member != b.member) return a.member < b.member;
    if (key == "service" && a.service != b.service) return a.service < b.service;
    if (key == "calls" && a.served_s + a.made_s != b.served_s + b.made_s) return a.served_s + a.made_s > b.served_s + b.made_s;
    return std::tie(a.member, a.service) < std::tie(b.member, b.service);
  };
  std::stable_sort(rows.begin(), rows.end(), by);
}

std::string us_text(double us) {
  if (us < 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, us < 100 ? "%.1f" : "%.0f", us);
  return buf;
}

std::string render(const View& v, const std::string& seed, const std::string& sort, bool tty) {
  std::string out;
  char line[512];
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char when[32];
  std::strftime(when, sizeof when, "%H:%M:%S", &tm);
  std::snprintf(line, sizeof line, "broach top  %s  seed %s  %zu members (%zu answered)  sort: %s%s\n", when,
                seed.c_str(), v.members, v.answered, sort.c_str(),
                tty ? "   keys: q quit, c e 5 9 m s sort" : "");
  out += line;
  if (!v.error.empty()) out += "error: " + v.error + "\n";
  std::snprintf(line, sizeof line, "%-22s %-8s %-18s %10s %10s %9s %10s %10s  %s\n", "MEMBER", "STATE", "SERVICE",
                "SERVED/s", "MADE/s", "ERRORS/s", "p50(us)", "p99(us)", "BREAKER");
  out += line;
  for (const auto& r : v.rows) {
    std::snprintf(line, sizeof line, "%-22s %-8s %-18s %10.1f %10.1f %9.1f %10s %10s  %s\n", r.member.c_str(),
                  r.state.c_str(), r.service.c_str(), r.served_s, r.made_s, r.errors_s, us_text(r.p50).c_str(),
                  us_text(r.p99).c_str(), r.breaker.c_str());
    out += line;
  }
  return out;
}

// Raw keyboard input on a terminal, restored however top ends.
class RawTerminal {
 public:
  RawTerminal() {
    if (tcgetattr(STDIN_FILENO, &saved_) != 0) return;
    termios raw = saved_;
    raw.c_lflag &= static_cast<tcflag_t>(~(ICANON | ECHO));
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    active_ = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
    std::fputs("\x1b[?1049h\x1b[?25l", stdout);  // alternate screen, no cursor
  }
  ~RawTerminal() {
    std::fputs("\x1b[?25h\x1b[?1049l", stdout);
    std::fflush(stdout);
    if (active_) tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  termios saved_{};
  bool active_ = false;
};

int run_top(TopFlags f) {
  Endpoint seed;
  std::string why;
  if (!Endpoint::parse(f.seed, seed, &why, /*allow_port_zero=*/false)) {
    std::cerr << "broach: --seed: expected IP:PORT, got '" << f.seed << "' (" << why << ")\n";
    return kExitUsage;
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  const bool tty = isatty(STDOUT_FILENO) != 0 && isatty(STDIN_FILENO) != 0;
  try {
    Node node(client_config(seed, f.timeout_s));
    Snapshot prev;
    auto prev_at = Clock::now();
    std::unique_ptr<RawTerminal> term;
    if (tty) term = std::make_unique<RawTerminal>();
    // The first refresh only sets the baseline for the rates.
    View v = refresh(node, seed, f, prev, prev_at);
    int shown = 0;
    auto next = Clock::now() + std::chrono::milliseconds(static_cast<long>(f.interval_s * 1000));
    bool redraw = false;
    while (!g_stop.load()) {
      // Wait for the next refresh, acting on keys meanwhile.
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now()).count();
      if (left > 0 && !redraw) {
        if (tty) {
          pollfd pfd{STDIN_FILENO, POLLIN, 0};
          if (poll(&pfd, 1, static_cast<int>(left)) > 0) {
            char key = 0;
            if (read(STDIN_FILENO, &key, 1) == 1) {
              const std::map<char, const char*> sorts{{'c', "calls"}, {'e', "errors"}, {'5', "p50"},
                                                      {'9', "p99"},   {'m', "member"}, {'s', "service"}};
              if (key == 'q' || key == 'Q') break;
              if (auto it = sorts.find(key); it != sorts.end()) {
                f.sort = it->second;
                redraw = true;
              }
            }
            continue;
          }
        } else {
          std::this_thread::sleep_for(std::chrono::milliseconds(left));
        }
        if (g_stop.load()) break;
      }
      if (!redraw) {
        v = refresh(node, seed, f, prev, prev_at);
        next += std::chrono::milliseconds(static_cast<long>(f.interval_s * 1000));
        if (next < Clock::now()) next = Clock::now();
      }
      redraw = false;
      sort_rows(v.rows, f.sort);
      const std::string text = render(v, f.seed, f.sort, tty);
      if (tty) {
        std::fputs("\x1b[H\x1b[2J", stdout);
        std::fputs(text.c_str(), stdout);
      } else {
        std::fputs(text.c_str(), stdout);
        std::fputs("\n", stdout);
      }
      std::fflush(stdout);
      if (f.iterations > 0 && ++shown >= f.iterations) break;
    }
    return kExitOk;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return kExitRuntime;
  }
}

}  // namespace

void register_top(CLI::App& app, int& exit_code) {
  auto* cmd = app.add_subcommand("top", "a live view of the cluster: per member and service, calls/s, errors/s, "
                                        "p50/p99 and breaker state (q quits)");
  auto f = std::make_shared<TopFlags>();
  cmd->add_option("--seed", f->seed, "IP:PORT of any live member")->required();
  cmd->add_option("--interval", f->interval_s, "seconds between refreshes (default 1)")->check(CLI::Range(0.1, 3600.0));
  cmd->add_option("--sort", f->sort, "calls (default), errors, p50, p99, member or service")
      ->check(CLI::IsMember(std::vector<std::string>(std::begin(kSortKeys), std::end(kSortKeys))));
  cmd->add_option("--iterations", f->iterations, "stop after this many refreshes (default: until q or Ctrl-C)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--timeout", f->timeout_s, "seconds to wait for each member (default 2)");
  add_keyring_flag(*cmd);
  cmd->callback([f, &exit_code] { exit_code = run_top(*f); });
}

}  // namespace broach::cli
