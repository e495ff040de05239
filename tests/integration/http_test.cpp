// The HTTP endpoint: /metrics counts what happened and passes promtool; the
// status page, loaded in headless Chromium against a 3-node cluster, shows
// the three members and their services.
#include <gtest/gtest.h>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <regex>
#include <thread>

#include "broach/node.hpp"
#include "support/process.hpp"

namespace broach {
namespace {

using Clock = std::chrono::steady_clock;

Config http_config(const std::vector<std::string>& seeds = {}) {
  Config c = default_config();
  c.rpc_ip = "127.0.0.1";
  c.rpc_port = 0;
  c.log_level = "warn";
  c.http = "127.0.0.1:0";
  c.cluster_address = seeds;
  return c;
}

std::string get(const std::string& hostport, const std::string& path) {
  const auto colon = hostport.rfind(':');
  httplib::Client cli(hostport.substr(0, colon), std::stoi(hostport.substr(colon + 1)));
  auto res = cli.Get(path.c_str());
  return res && res->status == 200 ? res->body : "";
}

double metric(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

std::string run_capture(const std::string& cmd, int& status) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) {
    status = -1;
    return out;
  }
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  status = ::pclose(p);
  return out;
}

// The DOM of `url` after headless Chromium ran its scripts (5 s of
// virtual time); `status` is Chromium's exit status.
std::string chromium_dom(const std::string& url, int& status) {
  const std::string profile = ::testing::TempDir() + "/broach_chromium_" + std::to_string(::getpid());
  const std::string cmd =
      "chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
      "--disable-background-networking --disable-component-update --disable-sync "
      "--user-data-dir=" + profile + " --virtual-time-budget=5000 --dump-dom " + url + " 2>/dev/null";
  std::string dom = run_capture(cmd, status);
  std::system(("rm -rf " + profile).c_str());
  return dom;
}

TEST(Http, MetricsCountKnownCallsAndPassPromtool) {
  Node server(http_config());
  server.provide("add", [](int a, int b) { return a + b; });
  server.provide("boom", []() -> int { throw std::runtime_error("no"); });
  Config cc = http_config();
  cc.http.clear();
  Node client(cc);
  for (int i = 0; i < 7; ++i) client.call<int>(server.address(), "add", i, 1);
  for (int i = 0; i < 3; ++i) EXPECT_THROW(client.call<int>(server.address(), "boom"), Error);
  const std::string text = get(server.http_address(), "/metrics");
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(metric(text, R"(broach_calls_served_total{service="add"})"), 7);
  EXPECT_EQ(metric(text, R"(broach_calls_served_total{service="boom"})"), 3);
  EXPECT_EQ(metric(text, R"(broach_calls_served_errors_total{service="boom",error="remote_error"})"), 3);
  EXPECT_EQ(metric(text, R"(broach_call_served_duration_seconds_count{service="add"})"), 7);
  EXPECT_EQ(metric(text, R"(broach_call_served_duration_seconds_bucket{service="add",le="+Inf"})"), 7);
  EXPECT_EQ(metric(text, R"(broach_members{state="alive"})"), 1);
  // The caller's own counters, read the same way through its stats.
  const auto stats = nlohmann::json::parse(client.stats_json());
  EXPECT_EQ(stats["services"]["add"]["made"].get<int>(), 7);
  EXPECT_EQ(stats["services"]["boom"]["made_errors"]["remote_error"].get<int>(), 3);
  // ... and each failure among the recent errors the status page lists.
  ASSERT_EQ(stats["recent_errors"].size(), 3u);
  for (const auto& e : stats["recent_errors"]) {
    EXPECT_EQ(e["service"], "boom");
    EXPECT_EQ(e["provider"], server.address().to_string());
    EXPECT_EQ(e["error"], "remote_error");
    EXPECT_GT(e["time_ms"].get<std::int64_t>(), 1'700'000'000'000);
  }

  if (std::system("command -v promtool >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "promtool not installed (Debian package prometheus)";
  }
  const std::string path = ::testing::TempDir() + "/broach_metrics_" + std::to_string(::getpid()) + ".txt";
  std::ofstream(path) << text;
  int status = 0;
  const std::string out = run_capture("promtool check metrics < " + path + " 2>&1", status);
  std::remove(path.c_str());
  EXPECT_EQ(status, 0) << out;
}

// /series.json: the node's history, one point per second. Calls made
// between two points show as a rate with a latency, by service.
TEST(Http, SeriesJsonPlotsCallsPerSecondAndLatency) {
  Node server(http_config());
  server.provide("add", [](int a, int b) { return a + b; });
  auto series = [&](const std::string& prefix) {
    const std::string body = get(server.http_address(), "/series.json?prefix=" + prefix);
    return body.empty() ? nlohmann::json() : nlohmann::json::parse(body);
  };
  // Calls keep coming until a point shows them (points are a second apart).
  const auto end = Clock::now() + std::chrono::seconds(20);
  nlohmann::json j;
  auto seen = [&] {
    j = series("broach_calls_served");
    const auto& s = j["series"];
    const std::string rate = R"(broach_calls_served_total{service="add"})";
    const std::string p50 = R"(broach_calls_served_p50_us{service="add"})";
    if (!s.contains(rate) || !s.contains(p50)) return false;
    for (std::size_t i = 0; i < s[rate]["values"].size(); ++i) {
      const auto& r = s[rate]["values"][i];
      const auto& l = s[p50]["values"][i];
      if (r.is_number() && r.get<double>() > 0 && l.is_number() && l.get<double>() > 0) return true;
    }
    return false;
  };
  while (!seen() && Clock::now() < end) {
    for (int i = 0; i < 20; ++i) server.call<int>(server.address(), "add", i, 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(seen()) << j.dump();
  EXPECT_EQ(j["interval_ms"], 1000);
  EXPECT_EQ(j["times_ms"].size(), j["series"][R"(broach_calls_served_total{service="add"})"]["values"].size());
  for (const auto& [name, s] : j["series"].items()) EXPECT_EQ(name.rfind("broach_calls_served", 0), 0u) << name;
  // Without a filter: the transport's counters and the membership gauges too.
  const auto all = series("");
  EXPECT_TRUE(all["series"].contains("broach_datagrams_sent_total"));
  EXPECT_EQ(all["series"][R"(broach_members{state="alive"})"]["kind"], "gauge");
}

TEST(Http, MembersAndRoutesAreJson) {
  Node server(http_config());
  server.provide("add", [](int a, int b) { return a + b; });
  const auto members = nlohmann::json::parse(get(server.http_address(), "/members"));
  ASSERT_EQ(members.size(), 1u);
  EXPECT_EQ(members[0]["address"], server.address().to_string());
  const auto routes = nlohmann::json::parse(get(server.http_address(), "/routes"));
  const auto end = Clock::now() + std::chrono::seconds(5);
  auto r = routes;
  while (!r.contains("add") && Clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    r = nlohmann::json::parse(get(server.http_address(), "/routes"));
  }
  ASSERT_TRUE(r.contains("add"));
  EXPECT_EQ(r["add"][0]["address"], server.address().to_string());
}

// /rpcz.json and /rpcz: the traces the node holds, filtered; the page
// draws them (in headless Chromium, where installed).
TEST(Http, RpczServesTracesAndThePageDrawsThem) {
  Node server(http_config());
  Config plain = http_config();
  plain.http.clear();
  Node client(plain);
  server.provide("add", [](int a, int b) { return a + b; });
  CallOptions traced;
  traced.trace = true;
  EXPECT_EQ(client.call_with<int>(server.address(), "add", traced, 2, 3), 5);
  EXPECT_EQ(client.call<int>(server.address(), "add", 1, 1), 2);  // not traced
  const std::string http = server.http_address();
  const auto all = nlohmann::json::parse(get(http, "/rpcz.json"));
  ASSERT_EQ(all["traces"].size(), 1u) << all.dump(1);
  const auto& span = all["traces"][0]["spans"][0];
  EXPECT_EQ(span["kind"], "serve");
  EXPECT_EQ(span["service"], "add");
  EXPECT_EQ(span["peer"], client.address().to_string());
  EXPECT_TRUE(all["tracing"].get<bool>());
  EXPECT_EQ(nlohmann::json::parse(get(http, "/rpcz.json?service=nosuch"))["traces"].size(), 0u);
  EXPECT_EQ(nlohmann::json::parse(get(http, "/rpcz.json?errors=1"))["traces"].size(), 0u);
  EXPECT_EQ(metric(get(http, "/metrics"), "broach_trace_spans_total"), 1);
  {
    const auto colon = http.rfind(':');
    httplib::Client cli(http.substr(0, colon), std::stoi(http.substr(colon + 1)));
    auto res = cli.Get("/rpcz.json?min_ms=soon");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 400);
    EXPECT_NE(res->body.find("min_ms"), std::string::npos) << res->body;
  }
  EXPECT_NE(get(http, "/rpcz").find("Traces held by this node"), std::string::npos);
  if (std::system("test -x /usr/bin/chromium") != 0) GTEST_SKIP() << "Chromium not installed";
  int status = 0;
  const std::string dom = chromium_dom("http://" + http + "/rpcz", status);
  ASSERT_EQ(status, 0) << "chromium failed";
  const std::string id = all["traces"][0]["trace_id"];
  EXPECT_NE(dom.find("trace " + id), std::string::npos) << dom;
  EXPECT_NE(dom.find(client.address().to_string()), std::string::npos) << "the caller, as the serve span's peer";
  EXPECT_NE(dom.find("1 traces kept"), std::string::npos) << dom;
}

TEST(Http, StatusPageInHeadlessChromiumShowsTheCluster) {
  if (std::system("test -x /usr/bin/chromium") != 0) GTEST_SKIP() << "Chromium not installed";
  std::vector<std::unique_ptr<testing::ChildProcess>> nodes;
  std::vector<std::string> addrs;
  std::string http;
  for (int i = 0; i < 3; ++i) {
    std::vector<std::string> argv{BROACH_CLI, "node", "--ip", "127.0.0.1", "--port", "0",
                                  "--log-level", "warn", "--name", "member" + std::to_string(i)};
    if (i == 0) {
      argv.insert(argv.end(), {"--http", "127.0.0.1:0"});
    } else {
      argv.insert(argv.end(), {"--seed", addrs[0]});
    }
    nodes.push_back(std::make_unique<testing::ChildProcess>(argv));
    if (i == 0) {
      const auto h = nodes.back()->wait_for_line("http on", std::chrono::seconds(30));
      http = h.substr(h.rfind(' ') + 1);
    }
    const auto l = nodes.back()->wait_for_line("listening on", std::chrono::seconds(30));
    addrs.push_back(l.substr(l.rfind(' ') + 1));
  }
  // Wait until the first member sees all three (gossip), then render.
  const auto end = Clock::now() + std::chrono::seconds(20);
  while (Clock::now() < end) {
    const auto body = get(http, "/members");
    if (!body.empty() && nlohmann::json::parse(body).size() == 3) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  // Load through the cluster while the page records it: calls by name from
  // a client that is not a member (member0 serves a share of them).
  testing::ChildProcess load({BROACH_CLI, "bench", "--seed", addrs[0], "--service", "add", "--args", "[1,2]",
                              "--concurrency", "2", "--duration", "60"});
  // Wait until member0's history holds a second with calls served.
  const auto busy_end = Clock::now() + std::chrono::seconds(30);
  auto served = [&] {
    const auto body = get(http, "/series.json?prefix=broach_calls_served_total&last=3");
    if (body.empty()) return false;
    const auto j = nlohmann::json::parse(body);
    for (const auto& [name, s] : j["series"].items()) {
      for (const auto& v : s["values"]) {
        if (v.is_number() && v.get<double>() > 0) return true;
      }
    }
    return false;
  };
  while (!served() && Clock::now() < busy_end) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(served()) << "no calls served by member0: " << get(http, "/series.json?prefix=broach_calls&last=3");
  // member2 dies: the events must show it.
  nodes[2]->kill(SIGKILL);
  nodes[2]->wait();
  const auto dead_end = Clock::now() + std::chrono::seconds(30);
  auto seen_dead = [&] {
    const auto body = get(http, "/status.json");
    if (body.empty()) return false;
    const auto st = nlohmann::json::parse(body);
    for (const auto& e : st["events"]) {
      if (e["event"] == "dead" && e["address"] == addrs[2]) return true;
    }
    return false;
  };
  while (!seen_dead() && Clock::now() < dead_end) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(seen_dead()) << "member2's death is not among member0's events";
  int status = 0;
  const std::string dom = chromium_dom("http://" + http + "/", status);
  ASSERT_EQ(status, 0) << "chromium failed";
  for (const auto& a : addrs) EXPECT_NE(dom.find(a), std::string::npos) << a << " not on the page";
  for (const char* name : {"member0", "member1", "member2"}) EXPECT_NE(dom.find(name), std::string::npos) << name;
  EXPECT_NE(dom.find("add, echo, sleep, whoami"), std::string::npos) << "services not shown";
  EXPECT_NE(dom.find("2 alive"), std::string::npos);
  // The events table: both others joined, member2 died (newest first).
  const auto events = dom.substr(dom.find("id=\"events\""));
  for (int i : {1, 2}) {
    EXPECT_NE(events.find("joined</td><td>" + addrs[i] + "</td><td>member" + std::to_string(i)), std::string::npos)
        << "member" << i << " joined, not in the events table";
  }
  EXPECT_NE(events.find("<td class=\"dead\">dead</td><td>" + addrs[2] + "</td>"), std::string::npos)
      << "member2 dead, not in the events table";
  // The routes table: the two live members serve "add", with a breaker.
  const auto routes = dom.substr(dom.find("id=\"routes\""));
  for (int i : {0, 1}) {
    EXPECT_NE(routes.find("<td>add</td><td>" + addrs[i] + "</td><td>member" + std::to_string(i) + "</td>"),
              std::string::npos)
        << "member" << i << " not a provider of add in the routes table";
  }
  EXPECT_NE(routes.find(">closed</td>"), std::string::npos) << "no breaker state in the routes table";
  // The charts were drawn with data: the page's own script reports, on each
  // canvas, the points it plotted and the pixels it inked.
  auto attr = [&](const std::string& id, const std::string& name) -> long {
    const auto at = dom.find("id=\"chart-" + id + "\"");
    if (at == std::string::npos) return -1;
    const auto tag_start = dom.rfind('<', at);
    const auto tag_end = dom.find('>', at);
    const std::string tag = dom.substr(tag_start, tag_end - tag_start);
    std::smatch m;
    if (!std::regex_search(tag, m, std::regex(name + "=\"([0-9]+)\""))) return -1;
    return std::stol(m[1]);
  };
  for (const char* id : {"calls", "latency", "members"}) {
    EXPECT_GT(attr(id, "data-points"), 0) << id << " chart has no data";
    EXPECT_GT(attr(id, "data-pixels"), 1000) << id << " chart is blank";
  }
}

}  // namespace
}  // namespace broach
