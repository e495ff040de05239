// Reassembly under a flood, with real processes: a `broach node` (64 MiB
// reassembly budget) is flooded with fake fragmented messages from 32 source
// addresses (7.8 MB claims whose fragments mostly arrive, claims of 2^20
// one-byte fragments, repeats of fragment 0) while a member of its cluster
// (this process) makes small calls and one 1 MiB call. The node's RSS stays
// within its baseline plus the documented budget (and a margin for the rest
// of the process), the member's 1 MiB call succeeds, and every small call
// is answered, none after a stall (the worst within 1 s). Their latency
// percentiles are printed, not asserted: on a shared 2-core machine a
// timing bound flakes (docs/performance.md has the figures).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>

#include "broach/node.hpp"
#include "support/process.hpp"
#include "wire/header.hpp"

namespace broach {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::uint64_t kBudget = 64u << 20;

std::uint64_t rss_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (in >> key) {
    if (key == "VmRSS:") {
      std::uint64_t kb = 0;
      in >> kb;
      return kb * 1024;
    }
    in.ignore(1 << 16, '\n');
  }
  return 0;
}

// Fake fragments of message `id` (node id `node`), `count` fragments of
// `frag` bytes each.
std::vector<std::byte> fragment(std::uint64_t node, std::uint64_t id, std::uint32_t index, std::uint32_t count,
                                std::uint32_t frag) {
  wire::Header h;
  h.type = wire::MsgType::kRequest;
  h.node_id = node;
  h.message_id = id;
  h.fragment_index = index;
  h.fragment_count = count;
  h.total_len = frag * count;
  h.payload_len = static_cast<std::uint16_t>(frag);
  std::vector<std::byte> d(wire::kHeaderSize + frag, std::byte{0x5a});
  wire::encode_header(h, d);
  return d;
}

class Flooder {
 public:
  /// `pace`: microseconds of pause after every second datagram.
  Flooder(const Endpoint& target, int sources, int pace) : pace_(pace) {
    to_.sin_family = AF_INET;
    to_.sin_port = htons(target.port);
    to_.sin_addr.s_addr = htonl(target.ip);
    for (int i = 0; i < sources; ++i) {
      const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(0x7f000064u + static_cast<std::uint32_t>(i));  // 127.0.0.100+i
      if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) fds_.push_back(fd);
    }
    thread_ = std::thread([this] { run(); });
  }
  ~Flooder() {
    stop_ = true;
    thread_.join();
    for (int fd : fds_) ::close(fd);
  }
  std::uint64_t datagrams() const { return sent_.load(); }
  std::size_t sources() const { return fds_.size(); }

 private:
  void send(int fd, const std::vector<std::byte>& d) {
    if (::sendto(fd, d.data(), d.size(), 0, reinterpret_cast<const sockaddr*>(&to_), sizeof to_) > 0) ++sent_;
  }
  void run() {
    // Round robin over the sources, one message each per round, a few
    // datagrams at a time: a flood the loop must live with, paced so that
    // it does not simply overrun the socket buffer (which drops anything,
    // legitimate or not, before the node sees it).
    std::uint64_t id = 0;
    std::uint32_t burst = 0;
    auto paced = [&](int fd, const std::vector<std::byte>& d) {
      send(fd, d);
      if (++burst % 2 == 0) std::this_thread::sleep_for(std::chrono::microseconds(pace_));
    };
    while (!stop_) {
      ++id;
      for (std::uint32_t i = 0; i < 120 && !stop_; ++i) {
        for (std::size_t s = 0; s < fds_.size() && !stop_; ++s) {
          const std::uint64_t node = 0xf100d000 + s;
          if (s % 3 == 0) {
            // 2^20 one-byte fragments claimed; a few sent, and fragment 0 again.
            if (i < 8) paced(fds_[s], fragment(node, id, i * 4099, 1u << 20, 1));
            if (i == 8) paced(fds_[s], fragment(node, id, 0, 1u << 20, 1));
          } else if (i + 1 < 120) {
            // 120 x 65,000 bytes claimed; all but the last fragment sent
            // (the memory is really touched)...
            paced(fds_[s], fragment(node, id, i, 120, 65000));
          } else {
            paced(fds_[s], fragment(node, id, 0, 120, 65000));  // ...and fragment 0 once more
          }
        }
      }
    }
  }

  const int pace_;
  sockaddr_in to_{};
  std::vector<int> fds_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> sent_{0};
  std::thread thread_;
};

TEST(Flood, FakePartialsNeitherExhaustMemoryNorStarveAMember) {
  const std::string cfg = ::testing::TempDir() + "/broach_flood_" + std::to_string(::getpid()) + ".json";
  {
    std::ofstream out(cfg);
    out << R"({"name": "flooded", "params": {"rpcIp": "127.0.0.1", "rpcPort": 0, "udpTimeOut": 1,
      "broach": {"transport": {"maxMessageBytes": 8388608, "reassemblyMaxBytesPerPeer": 16777216, "socketBufferBytes": 33554432,
                               "reassemblyMaxBytesTotal": )"
        << kBudget << "}}}}";
  }
  testing::ChildProcess node(std::vector<std::string>{BROACH_CLI, "node", "--config", cfg, "--log-level", "warn"});
  const auto line = node.wait_for_line("listening on", std::chrono::seconds(30));
  Endpoint addr;
  ASSERT_TRUE(Endpoint::parse(line.substr(line.rfind(' ') + 1), addr));
  // This process is a member of the node's cluster.
  Config c = default_config();
  c.rpc_ip = "127.0.0.1";
  c.rpc_port = 0;
  c.log_level = "warn";
  c.cluster_address = {addr.to_string()};
  c.transport.max_message_bytes = 8u << 20;
  Node member(c);
  for (int i = 0; i < 300 && member.members().size() < 2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_EQ(member.members().size(), 2u);
  ASSERT_EQ(member.call<std::string>(addr, "echo", std::string("warm")), "warm");
  const std::uint64_t baseline = rss_bytes(node.pid());
  ASSERT_GT(baseline, 0u);

  const int pace_us = 250;
  const std::uint64_t flood_datagrams = 20000;
  std::atomic<std::uint64_t> max_rss{baseline};
  std::atomic<bool> sampling{true};
  std::thread sampler([&] {
    while (sampling) {
      max_rss = std::max<std::uint64_t>(max_rss, rss_bytes(node.pid()));
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
  struct Join {  // also when an assertion returns early
    std::atomic<bool>& flag;
    std::thread& t;
    ~Join() {
      flag = false;
      if (t.joinable()) t.join();
    }
  } join_sampler{sampling, sampler};
  auto transport_stats = [&] {
    auto r = member.call_raw(addr, "__broach.stats", detail::pack_args());
    EXPECT_TRUE(r.ok());
    if (!r.ok()) return nlohmann::json::object();
    const auto* p = reinterpret_cast<const std::uint8_t*>(r.value().data());
    return nlohmann::json::from_msgpack(p, p + r.value().size())["transport"];
  };
  std::vector<double> small_ms;
  {
    Flooder flood(addr, 32, pace_us);
    ASSERT_EQ(flood.sources(), 32u);
    // The first fill of the budget costs the kernel ~64 MiB of fresh pages;
    // what is measured is the node living under a flood that holds its
    // budget full.
    const auto start = Clock::now();
    while (transport_stats().value("reassembly_bytes", std::uint64_t{0}) < kBudget / 2) {
      ASSERT_LT(Clock::now() - start, std::chrono::seconds(20)) << "the flood never filled the budget";
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    // Until the flood has filled the budget several times over.
    while (flood.datagrams() < flood_datagrams && Clock::now() - start < std::chrono::seconds(30)) {
      const auto t0 = Clock::now();
      auto r = member.call_raw(addr, "echo", detail::pack_args(std::string(16, 's')));
      small_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
      ASSERT_TRUE(r.ok()) << r.error().message();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    // A member's 1 MiB call goes through during the flood.
    std::string big(1 << 20, 'x');
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
    const auto t0 = Clock::now();
    EXPECT_EQ(member.call<std::string>(addr, "echo", big), big);
    std::printf("1 MiB echo during the flood: %.1f ms; %llu fake datagrams sent\n",
                std::chrono::duration<double, std::milli>(Clock::now() - t0).count(),
                static_cast<unsigned long long>(flood.datagrams()));
  }
  sampling = false;
  sampler.join();
  std::sort(small_ms.begin(), small_ms.end());
  ASSERT_GT(small_ms.size(), 20u);
  const double p99 = small_ms[small_ms.size() * 99 / 100], worst = small_ms.back();
  std::printf("small calls during the flood: %zu, p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", small_ms.size(),
              small_ms[small_ms.size() / 2], p99, worst);
  std::printf("node RSS: baseline %.1f MiB, max %.1f MiB (budget %.0f MiB)\n", baseline / 1048576.0,
              max_rss.load() / 1048576.0, kBudget / 1048576.0);
  // A stalled loop (as zero-filling each claimed buffer once did: 1.4-1.9 s
  // per claim) fails the bound on the worst call. The p99 (3 ms on a quiet
  // machine, 213 ms once beside a sanitizer build) is a figure, not a test.
  EXPECT_LT(worst, 1000.0);
  // The documented bound: reassemblyMaxBytesTotal, plus 32 MiB for the rest
  // (cached responses, allocator slack).
  EXPECT_LE(max_rss.load(), baseline + kBudget + (32u << 20));
  // The flood did press on the budget.
  const auto t = transport_stats();
  EXPECT_GT(t["reassembly_evicted"].get<std::uint64_t>() + t["reassembly_refused"].get<std::uint64_t>(), 0u)
      << t.dump();
  std::remove(cfg.c_str());
}

}  // namespace
}  // namespace broach
