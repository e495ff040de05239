// UdpTransport on loopback: batches leave as UDP GSO sends where the kernel
// has them, GRO buffers are cut back into the datagrams that were sent, and
// every datagram arrives whole, in order, with or without either.
#include "transport/udp_transport.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "transport/epoll_loop.hpp"

namespace broach {
namespace {

using Datagram = std::vector<std::byte>;

/// Runs `f` on `loop`'s thread and waits for it.
template <class F>
void run_on(EpollLoop& loop, F f) {
  std::promise<void> done;
  loop.post([&] {
    f();
    done.set_value();
  });
  done.get_future().wait();
}

/// Waits (polling, generous bound) until `got` (guarded by `mu`) holds `n`
/// items; returns a copy of it.
template <class T>
std::vector<T> wait_for_count(std::mutex& mu, const std::vector<T>& got, std::size_t n) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < until) {
    {
      std::lock_guard lock(mu);
      if (got.size() >= n) return got;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::lock_guard lock(mu);
  return got;
}

class Collector final : public DatagramReceiver {
 public:
  void on_datagram(const Endpoint&, std::span<const std::byte> data) override {
    std::lock_guard lock(mu_);
    got_.emplace_back(data.begin(), data.end());
  }
  /// Waits (polling, generous bound) until `n` datagrams arrived.
  std::vector<Datagram> wait_for(std::size_t n) { return wait_for_count(mu_, got_, n); }

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
    run_on(loop, f);
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

namespace broach {
namespace {

// IPv6 sockets: ::1 to ::1 (senders seen as IPv6), "::" dual stack reaching
// an IPv4 socket (the IPv4 side sees a plain IPv4 sender, the "::" side sees
// IPv4 replies as IPv4), and sends to the other family refused before the
// kernel (counted, GSO left on).
class From final : public DatagramReceiver {
 public:
  void on_datagram(const Endpoint& from, std::span<const std::byte>) override {
    std::lock_guard lock(mu_);
    from_.push_back(from);
  }
  std::vector<Endpoint> wait_for(std::size_t n) { return wait_for_count(mu_, from_, n); }

 private:
  std::mutex mu_;
  std::vector<Endpoint> from_;
};

TEST(UdpTransport, Ipv6SocketsAndTheOtherFamily) {
  EpollLoop loop;
  loop.start_thread("udp6-test");
  auto run = [&](auto f) { run_on(loop, f); };
  Endpoint lo6, any6;
  ASSERT_TRUE(Endpoint::parse("[::1]:0", lo6));
  ASSERT_TRUE(Endpoint::parse("[::]:0", any6));
  std::unique_ptr<UdpTransport> a, b, dual, v4;
  From at_b, at_v4, at_dual;
  try {
    run([&] {
      a = std::make_unique<UdpTransport>(loop, lo6, UdpOptions{1 << 20, 8, true});
      b = std::make_unique<UdpTransport>(loop, lo6, UdpOptions{1 << 20, 8, true});
      dual = std::make_unique<UdpTransport>(loop, any6, UdpOptions{1 << 20, 8, true});
      v4 = std::make_unique<UdpTransport>(loop, Endpoint{0x7f000001, 0}, UdpOptions{1 << 20, 8, true});
    });
  } catch (const Error& e) {
    loop.stop();
    GTEST_SKIP() << "no IPv6 here: " << e.what();
  }
  run([&] {
    b->set_receiver(&at_b);
    v4->set_receiver(&at_v4);
    dual->set_receiver(&at_dual);
  });
  const std::byte payload[3] = {std::byte{1}, std::byte{2}, std::byte{3}};
  bool ok = false;
  run([&] { ok = a->send(b->local(), payload); });
  ASSERT_TRUE(ok);
  auto seen = at_b.wait_for(1);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], a->local());  // [::1]:port, an IPv6 endpoint
  EXPECT_TRUE(seen[0].v6);

  Endpoint v4_at = v4->local();
  run([&] { ok = dual->send(v4_at, payload); });
  ASSERT_TRUE(ok);
  seen = at_v4.wait_for(1);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_FALSE(seen[0].v6);
  EXPECT_EQ(seen[0].ip, 0x7f000001u);
  Endpoint dual_at = seen[0];  // where the dual-stack socket is, as IPv4 sees it
  run([&] { ok = v4->send(dual_at, payload); });
  ASSERT_TRUE(ok);
  seen = at_dual.wait_for(1);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_FALSE(seen[0].v6);  // mapped ::ffff:127.0.0.1 reported as IPv4
  EXPECT_EQ(seen[0], v4_at);

  // The other family: refused here and counted, GSO stays on.
  std::size_t n = 7;
  const std::span<const std::byte> one(payload);
  std::vector<std::span<const std::byte>> views{one, one};
  const bool gso_before = a->gso_active();
  run([&] {
    ok = v4->send(b->local(), payload);
    n = a->send_batch(v4_at, views);  // ::1-bound: cannot reach IPv4
  });
  EXPECT_FALSE(ok);
  EXPECT_EQ(n, 0u);
  EXPECT_EQ(v4->stats().send_errors, 1u);
  EXPECT_EQ(a->stats().send_errors, 2u);
  EXPECT_EQ(a->gso_active(), gso_before);
  run([&] {
    a.reset();
    b.reset();
    dual.reset();
    v4.reset();
  });
  loop.stop();
}

// Reports of ICMP port unreachable, as the receiver sees them.
class Bounces final : public DatagramReceiver {
 public:
  void on_datagram(const Endpoint&, std::span<const std::byte>) override {}
  void on_unreachable(const Endpoint& to, std::span<const std::byte> sent) override {
    std::lock_guard lock(mu_);
    got_.emplace_back(to, Datagram(sent.begin(), sent.end()));
  }
  std::vector<std::pair<Endpoint, Datagram>> wait_for(std::size_t n) { return wait_for_count(mu_, got_, n); }

 private:
  std::mutex mu_;
  std::vector<std::pair<Endpoint, Datagram>> got_;
};

// A datagram to a port nobody listens on comes back as on_unreachable with
// that address and the start of the datagram (the socket asks for ICMP
// errors); the error leaves no trace on later sends or reads, on an IPv4
// socket and on a dual-stack one sending to an IPv4 peer.
TEST(UdpTransport, PortUnreachableIsReportedWithTheQuotedDatagram) {
  EpollLoop loop;
  loop.start_thread("icmp-test");
  auto run = [&](auto f) { run_on(loop, f); };
  std::unique_ptr<UdpTransport> a, closed, peer, dual;
  Bounces bounces, dual_bounces;
  Collector at_peer;
  Endpoint dead;
  run([&] {
    a = std::make_unique<UdpTransport>(loop, Endpoint{0x7f000001, 0}, UdpOptions{1 << 20, 8, true});
    closed = std::make_unique<UdpTransport>(loop, Endpoint{0x7f000001, 0}, UdpOptions{1 << 20, 8, true});
    peer = std::make_unique<UdpTransport>(loop, Endpoint{0x7f000001, 0}, UdpOptions{1 << 20, 8, true});
    dead = closed->local();
    closed.reset();  // the port is free now: nothing listens there
    a->set_receiver(&bounces);
    peer->set_receiver(&at_peer);
  });
  Datagram d(600);
  for (std::size_t k = 0; k < d.size(); ++k) d[k] = static_cast<std::byte>(k & 0xff);
  bool ok = false;
  run([&] { ok = a->send(dead, d); });
  ASSERT_TRUE(ok);
  auto got = bounces.wait_for(1);
  ASSERT_EQ(got.size(), 1u) << "no port-unreachable report";
  EXPECT_EQ(got[0].first, dead);
  ASSERT_GE(got[0].second.size(), 64u);  // at least the header and some payload
  EXPECT_TRUE(std::equal(got[0].second.begin(), got[0].second.end(), d.begin()));
  EXPECT_EQ(a->stats().port_unreachable, 1u);
  // Later sends and reads are untouched by the error.
  for (int i = 0; i < 3; ++i) {
    run([&] { ok = a->send(dead, d); });
    ASSERT_TRUE(ok) << "a send failed after a port-unreachable report";
  }
  run([&] { ok = a->send(peer->local(), d); });
  ASSERT_TRUE(ok);
  EXPECT_EQ(at_peer.wait_for(1).size(), 1u);
  EXPECT_EQ(bounces.wait_for(4).size(), 4u);
  EXPECT_EQ(a->stats().send_errors, 0u);

  // A dual-stack socket: IPv4 peers' errors arrive too, reported as IPv4.
  Endpoint any6;
  ASSERT_TRUE(Endpoint::parse("[::]:0", any6));
  try {
    run([&] { dual = std::make_unique<UdpTransport>(loop, any6, UdpOptions{1 << 20, 8, true}); });
  } catch (const Error&) {
    run([&] { a.reset(); peer.reset(); });
    loop.stop();
    return;  // no IPv6 here; the IPv4 half passed
  }
  run([&] {
    dual->set_receiver(&dual_bounces);
    ok = dual->send(dead, d);
  });
  ASSERT_TRUE(ok);
  got = dual_bounces.wait_for(1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].first, dead);
  EXPECT_FALSE(got[0].first.v6);
  run([&] {
    a.reset();
    peer.reset();
    dual.reset();
  });
  loop.stop();
}

}  // namespace
}  // namespace broach
