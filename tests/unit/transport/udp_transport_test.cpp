// UdpTransport on loopback: batches leave as UDP GSO sends where the kernel
// has them, GRO buffers are cut back into the datagrams that were sent, and
// every datagram arrives whole, in order, with or without either.
#include "transport/udp_transport.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "transport/epoll_loop.hpp"

namespace broach {
namespace {

using Datagram = std::vector<std::byte>;

class Collector final : public DatagramReceiver {
 public:
  void on_datagram(const Endpoint&, std::span<const std::byte> data) override {
    std::lock_guard lock(mu_);
    got_.emplace_back(data.begin(), data.end());
  }
  /// Waits (polling, generous bound) until `n` datagrams arrived.
  std::vector<Datagram> wait_for(std::size_t n) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < until) {
      {
        std::lock_guard lock(mu_);
        if (got_.size() >= n) return got_;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::lock_guard lock(mu_);
    return got_;
  }

 private:
  std::mutex mu_;
  std::vector<Datagram> got_;
};

// Datagram i of `sizes`: its size, filled with a pattern naming i.
std::vector<Datagram> make_datagrams(const std::vector<std::size_t>& sizes) {
  std::vector<Datagram> out;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    Datagram d(sizes[i]);
    for (std::size_t k = 0; k < d.size(); ++k) d[k] = static_cast<std::byte>((i * 31 + k) & 0xff);
    out.push_back(std::move(d));
  }
  return out;
}

struct Pair {
  explicit Pair(bool sender_gso, bool receiver_gso) {
    loop.start_thread("udp-test");
    run([&] {
      const Endpoint any{0x7f000001, 0};
      sender = std::make_unique<UdpTransport>(loop, any, UdpOptions{4 << 20, 32, sender_gso});
      receiver = std::make_unique<UdpTransport>(loop, any, UdpOptions{4 << 20, 32, receiver_gso});
      receiver->set_receiver(&collector);
    });
  }
  ~Pair() {
    run([&] {
      sender.reset();
      receiver.reset();
    });
    loop.stop();
  }
  template <class F>
  void run(F f) {
    std::promise<void> done;
    loop.post([&] {
      f();
      done.set_value();
    });
    done.get_future().wait();
  }
  std::size_t send(const std::vector<Datagram>& ds) {
    std::vector<std::span<const std::byte>> views(ds.begin(), ds.end());
    std::size_t n = 0;
    run([&] { n = sender->send_batch(receiver->local(), views); });
    return n;
  }

  EpollLoop loop;
  Collector collector;
  std::unique_ptr<UdpTransport> sender, receiver;
};

void expect_same(const std::vector<Datagram>& sent, const std::vector<Datagram>& got) {
  ASSERT_EQ(got.size(), sent.size());
  for (std::size_t i = 0; i < sent.size(); ++i) EXPECT_EQ(got[i], sent[i]) << "datagram " << i;
}

TEST(UdpTransport, FragmentsOfOneSizeLeaveInGsoSendsAndArriveWhole) {
  Pair p(true, true);
  // 100 fragments of 1472 bytes and a short last one: more than one GSO send
  // (64 segments and ~64 KB at most each) and more than one sendmmsg chunk.
  std::vector<std::size_t> sizes(100, 1472);
  sizes.push_back(300);
  const auto sent = make_datagrams(sizes);
  EXPECT_EQ(p.send(sent), sent.size());
  expect_same(sent, p.collector.wait_for(sent.size()));
  const auto s = p.sender->stats();
  EXPECT_EQ(s.sent, sent.size());
  EXPECT_EQ(p.receiver->stats().received, sent.size());
  if (p.sender->gso_active()) {
    // 44 segments of 1472 bytes fit one send: 101 datagrams in 3 sends.
    EXPECT_EQ(s.gso_sends, 3u);
    EXPECT_EQ(s.gso_datagrams, sent.size());
    EXPECT_EQ(s.gso_fallbacks, 0u);
  } else {
    GTEST_LOG_(INFO) << "this kernel has no UDP GSO: checked the fallback path only";
  }
}

TEST(UdpTransport, MixedSizesSplitIntoRunsAndKeepTheirOrder) {
  Pair p(true, true);
  const auto sent = make_datagrams({100, 1472, 1472, 1472, 50, 1472, 1472, 1000, 1472, 9000, 9000, 20, 7});
  EXPECT_EQ(p.send(sent), sent.size());
  expect_same(sent, p.collector.wait_for(sent.size()));
  if (p.sender->gso_active()) {
    // Runs: [100], [1472 x3, 50], [1472 x2, 1000], [1472], [9000 x2, 20], [7].
    EXPECT_EQ(p.sender->stats().gso_sends, 3u);
    EXPECT_EQ(p.sender->stats().gso_datagrams, 10u);
  }
}

TEST(UdpTransport, ReceiverWithoutGroGetsTheDatagramsOneByOne) {
  Pair p(true, false);
  EXPECT_FALSE(p.receiver->gro_active());
  const auto sent = make_datagrams(std::vector<std::size_t>(50, 1200));
  EXPECT_EQ(p.send(sent), sent.size());
  expect_same(sent, p.collector.wait_for(sent.size()));
  EXPECT_EQ(p.receiver->stats().gro_receives, 0u);
}

TEST(UdpTransport, WithGsoOffEveryDatagramIsItsOwnMessage) {
  Pair p(false, false);
  EXPECT_FALSE(p.sender->gso_active());
  const auto sent = make_datagrams(std::vector<std::size_t>(70, 1472));
  EXPECT_EQ(p.send(sent), sent.size());
  expect_same(sent, p.collector.wait_for(sent.size()));
  EXPECT_EQ(p.sender->stats().gso_sends, 0u);
  EXPECT_EQ(p.receiver->stats().gro_receives, 0u);
}

TEST(UdpTransport, GroBuffersAreCutAtTheSegmentSize) {
  // A GSO send to a GRO socket on loopback arrives as one buffer, which the
  // transport cuts back into the datagrams sent (the kernel would otherwise
  // have cut it itself).
  Pair p(true, true);
  if (!p.sender->gso_active() || !p.receiver->gro_active()) GTEST_SKIP() << "no UDP GSO/GRO here";
  const auto sent = make_datagrams({1472, 1472, 1472, 1472, 500});
  EXPECT_EQ(p.send(sent), sent.size());
  expect_same(sent, p.collector.wait_for(sent.size()));
  EXPECT_EQ(p.sender->stats().gso_sends, 1u);
  EXPECT_GE(p.receiver->stats().gro_receives, 1u);
  EXPECT_EQ(p.receiver->stats().received, sent.size());
}

}  // namespace
}  // namespace broach
