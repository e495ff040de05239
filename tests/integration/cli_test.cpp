// The broach CLI against a real node: JSON outputs parsed (not grepped),
// and every error path exits non-zero with a message.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "support/process.hpp"

namespace broach {
namespace {

struct Run {
  int status;
  std::string out;
};

Run run(const std::string& args) {
  Run r{-1, ""};
  FILE* p = ::popen((std::string(BROACH_CLI) + " " + args + " 2>/dev/null").c_str(), "r");
  if (!p) return r;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    node_ = std::make_unique<testing::ChildProcess>(std::vector<std::string>{
        BROACH_CLI, "node", "--ip", "127.0.0.1", "--port", "0", "--log-level", "warn"});
    const auto line = node_->wait_for_line("listening on", std::chrono::seconds(30));
    addr_ = line.substr(line.rfind(' ') + 1);
    ASSERT_FALSE(addr_.empty());
  }
  std::unique_ptr<testing::ChildProcess> node_;
  std::string addr_;
};

TEST_F(Cli, CallPrintsJsonResults) {
  auto r = run("call --to " + addr_ + " add 1 2");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(nlohmann::json::parse(r.out), 3);
  r = run("call --to " + addr_ + " echo '{\"a\":[1,2]}'");
  EXPECT_EQ(nlohmann::json::parse(r.out)["a"][1], 2);
  r = run("call --seed " + addr_ + " whoami");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(nlohmann::json::parse(r.out), addr_);
}

TEST_F(Cli, MembersRoutesStatsAndBenchSpeakJson) {
  auto r = run("members --seed " + addr_ + " --json");
  ASSERT_EQ(r.status, 0);
  auto members = nlohmann::json::parse(r.out);
  ASSERT_EQ(members.size(), 1u);
  EXPECT_EQ(members[0]["state"], "alive");
  r = run("routes --seed " + addr_ + " --json");
  ASSERT_EQ(r.status, 0);
  EXPECT_EQ(nlohmann::json::parse(r.out)["echo"][0]["address"], addr_);
  r = run("bench --to " + addr_ + " --calls 200 --concurrency 4 --json");
  ASSERT_EQ(r.status, 0);
  auto b = nlohmann::json::parse(r.out);
  EXPECT_EQ(b["calls"], 200);
  EXPECT_EQ(b["errors"], 0);
  EXPECT_GT(b["latency_us"]["p50"].get<double>(), 0);
  EXPECT_GE(b["latency_us"]["p99"].get<double>(), b["latency_us"]["p50"].get<double>());
  r = run("stats --seed " + addr_ + " --json");
  ASSERT_EQ(r.status, 0);
  auto s = nlohmann::json::parse(r.out);
  EXPECT_GE(s["services"]["echo"]["served"].get<int>(), 200);  // the bench's calls
}

TEST_F(Cli, TracedCallIsFoundByTrace) {
  auto r = run("trace --seed " + addr_ + " --json");
  ASSERT_EQ(r.status, 0);
  EXPECT_TRUE(nlohmann::json::parse(r.out).empty()) << "nothing traced yet: " << r.out;
  ASSERT_EQ(run("call --to " + addr_ + " sleep 30").status, 0);  // not traced
  ASSERT_EQ(run("call --to " + addr_ + " --trace sleep 30").status, 0);
  ASSERT_EQ(run("call --to " + addr_ + " --trace echo hi").status, 0);
  r = run("trace --seed " + addr_ + " --json");
  ASSERT_EQ(r.status, 0);
  auto traces = nlohmann::json::parse(r.out);
  ASSERT_EQ(traces.size(), 2u) << r.out;
  // Newest first: the echo, then the sleep; each as the provider served it
  // (the calling CLI's own spans left with it).
  ASSERT_EQ(traces[1]["spans"].size(), 1u) << r.out;
  const auto& serve = traces[1]["spans"][0];
  EXPECT_EQ(serve["kind"], "serve");
  EXPECT_EQ(serve["service"], "sleep");
  EXPECT_EQ(serve["node"], addr_);
  EXPECT_GE(serve["duration_us"].get<std::int64_t>(), 30000);
  EXPECT_EQ(serve["outcome"], "ok");
  r = run("trace --seed " + addr_ + " --min-ms 25 --json");
  ASSERT_EQ(r.status, 0);
  traces = nlohmann::json::parse(r.out);
  ASSERT_EQ(traces.size(), 1u) << r.out;
  EXPECT_EQ(traces[0]["spans"][0]["service"], "sleep");
  r = run("trace --seed " + addr_ + " --service echo");  // the table
  ASSERT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("serve   echo"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("sleep"), std::string::npos) << r.out;
  EXPECT_EQ(run("trace --seed " + addr_ + " --min-ms -1").status, 1);
}

TEST_F(Cli, ErrorPathsExitNonZero) {
  EXPECT_EQ(run("call --to " + addr_ + " work02 1 2").status, 3);            // not found
  EXPECT_EQ(run("call --to " + addr_ + " add 1").status, 3);                 // bad arguments
  EXPECT_EQ(run("call --seed " + addr_ + " nosuch").status, 3);              // nobody offers it
  EXPECT_EQ(run("call --to not-an-address add 1 2").status, 1);              // usage
  EXPECT_EQ(run("call add 1 2").status, 1);                                  // neither --to nor --seed
  EXPECT_EQ(run("members --seed 127.0.0.1:1 --timeout 0.5").status, 3);      // unreachable seed
  EXPECT_EQ(run("node --config /nonexistent/x.json").status, 2);             // config error
  EXPECT_EQ(run("node --port 70000").status, 2);                             // bad flag value
  EXPECT_EQ(run("bench --to " + addr_ + " --service nosuch --calls 5").status, 3);
  EXPECT_EQ(run("no-such-command").status, 1);
}

// A node started with a keyring (broach keygen) answers only commands that
// hold the key; without it, or with another key, a command fails in time
// with a message that says why, and the node counts what it dropped.
TEST(CliSealed, KeyringIsRequiredAndEnough) {
  const std::string dir = ::testing::TempDir();
  const std::string k1 = dir + "/broach_k1_" + std::to_string(::getpid());
  const std::string k2 = dir + "/broach_k2_" + std::to_string(::getpid());
  ASSERT_EQ(run("keygen > " + k1).status, 0);
  ASSERT_EQ(run("keygen > " + k2).status, 0);
  testing::ChildProcess node(std::vector<std::string>{BROACH_CLI, "node", "--ip", "127.0.0.1", "--port", "0",
                                                      "--log-level", "warn", "--keyring", k1});
  const auto line = node.wait_for_line("listening on", std::chrono::seconds(30));
  const std::string addr = line.substr(line.rfind(' ') + 1);
  auto r = run("call --to " + addr + " --keyring " + k1 + " add 1 2");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(nlohmann::json::parse(r.out), 3);
  EXPECT_EQ(run("call --to " + addr + " --timeout 1 add 1 2").status, 3);
  EXPECT_EQ(run("call --to " + addr + " --timeout 1 --keyring " + k2 + " add 1 2").status, 3);
  FILE* p = ::popen((std::string(BROACH_CLI) + " call --to " + addr + " --timeout 1 add 1 2 2>&1").c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string err;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) err.append(buf, n);
  ::pclose(p);
  EXPECT_NE(err.find("--keyring"), std::string::npos) << err;
  r = run("stats --seed " + addr + " --keyring " + k1 + " --json");
  ASSERT_EQ(r.status, 0);
  const auto dropped = nlohmann::json::parse(r.out)["transport"]["dropped"];
  EXPECT_GT(dropped["unsealed"].get<int>(), 0);
  EXPECT_GT(dropped["bad_key_id"].get<int>(), 0);
  std::remove(k1.c_str());
  std::remove(k2.c_str());
}

// `broach keys` rotates the key of a running two-node cluster: install the
// new key, make it primary, remove the old one. Every member reports it
// applied each step; afterwards the old key is refused and the new one works,
// and the nodes' keyring files hold only the new key.
TEST(CliSealed, KeysRotateARunningCluster) {
  const std::string dir = ::testing::TempDir() + "/broach_rot_" + std::to_string(::getpid());
  ASSERT_EQ(run("keygen > /dev/null").status, 0);
  ASSERT_EQ(::system(("mkdir -p " + dir).c_str()), 0);
  const std::string k1 = dir + "/k1", k2 = dir + "/k2", n1 = dir + "/n1", n2 = dir + "/n2";
  ASSERT_EQ(run("keygen > " + k1).status, 0);
  ASSERT_EQ(run("keygen > " + k2).status, 0);
  ASSERT_EQ(::system(("cp " + k1 + " " + n1 + " && cp " + k1 + " " + n2).c_str()), 0);
  testing::ChildProcess a(std::vector<std::string>{BROACH_CLI, "node", "--ip", "127.0.0.1", "--port", "0",
                                                   "--log-level", "warn", "--keyring", n1});
  const auto la = a.wait_for_line("listening on", std::chrono::seconds(30));
  const std::string addr_a = la.substr(la.rfind(' ') + 1);
  testing::ChildProcess b(std::vector<std::string>{BROACH_CLI, "node", "--ip", "127.0.0.1", "--port", "0",
                                                   "--log-level", "warn", "--keyring", n2, "--seed", addr_a});
  const auto lb = b.wait_for_line("listening on", std::chrono::seconds(30));
  const std::string addr_b = lb.substr(lb.rfind(' ') + 1);
  // Wait (polling) until A knows B.
  for (int i = 0; i < 100; ++i) {
    auto m = run("members --seed " + addr_a + " --keyring " + k1 + " --json");
    if (m.status == 0 && nlohmann::json::parse(m.out).size() == 2) break;
  }
  auto key_of = [](const std::string& file) {
    FILE* f = std::fopen(file.c_str(), "r");
    char line[256];
    std::string key;
    while (f && std::fgets(line, sizeof line, f)) {
      if (line[0] != '#') key = std::string(line, std::strcspn(line, "\n"));
    }
    if (f) std::fclose(f);
    return key;
  };
  const std::string old_key = key_of(k1), new_key = key_of(k2);
  auto step = run("keys install " + new_key + " --seed " + addr_a + " --keyring " + k1);
  EXPECT_EQ(step.status, 0) << step.out;
  EXPECT_NE(step.out.find(addr_b + "  applied"), std::string::npos) << step.out;
  step = run("keys use " + new_key + " --seed " + addr_a + " --keyring " + k1);
  EXPECT_EQ(step.status, 0) << step.out;
  step = run("keys remove " + old_key + " --seed " + addr_a + " --keyring " + k2);
  EXPECT_EQ(step.status, 0) << step.out;
  EXPECT_EQ(run("call --to " + addr_b + " --timeout 1 --keyring " + k1 + " add 1 2").status, 3);
  auto r = run("call --to " + addr_b + " --keyring " + k2 + " add 1 2");
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(key_of(n2), new_key);  // written back: survives a restart
  ASSERT_EQ(::system(("rm -rf " + dir).c_str()), 0);
}

}  // namespace
}  // namespace broach
