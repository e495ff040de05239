// Internal header. The real transport: one non-blocking IPv4 UDP socket
// registered with an EpollLoop; receives in batches with recvmmsg, sends
// batches with one sendmmsg. Where the kernel has them, a batch of
// equal-size datagrams to one peer leaves as one UDP GSO send (UDP_SEGMENT:
// the kernel cuts it into datagrams, or loopback carries it whole) and the
// socket accepts GRO (UDP_GRO: several datagrams of one flow arrive in one
// buffer, which on_readable() cuts apart again). Neither changes a byte on
// the wire: each datagram is still one protocol datagram. The socket asks
// for ICMP errors (IP_RECVERR): a port-unreachable answer to a datagram it
// sent reaches the receiver's on_unreachable (a peer process that is gone).
//
// Layer: transport. Thread contract: owned by the loop thread; construct and
// destroy it on (or before starting) that loop. It owns the socket.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "transport/epoll_loop.hpp"
#include "transport/transport.hpp"

namespace broach {

struct UdpOptions {
  int socket_buffer_bytes = 4 << 20;  ///< SO_RCVBUF/SO_SNDBUF (forced when root)
  int batch = 32;                      ///< datagrams per recvmmsg call
  bool gso = true;                     ///< use UDP GSO/GRO where the kernel has them
};

/// A socket address of either family (what sendto/recvmmsg take).
struct SockAddr {
  union {
    sockaddr_in v4;
    sockaddr_in6 v6;
  } u{};
  socklen_t len = 0;
};

class UdpTransport final : public Transport {
 public:
  /// Binds to `bind` (port 0 = any free port). Throws Error{kIoError} naming
  /// the address when the socket cannot be made or bound.
  UdpTransport(EpollLoop& loop, const Endpoint& bind, const UdpOptions& options = {});
  ~UdpTransport() override;

  Endpoint local() const override { return local_; }
  bool send(const Endpoint& to, std::span<const std::byte> data) override;
  std::size_t send_batch(const Endpoint& to,
                         std::span<const std::span<const std::byte>> datagrams) override;
  bool thread_safe_send() const override { return true; }
  void set_receiver(DatagramReceiver* receiver) override { receiver_ = receiver; }

  struct Stats {
    std::uint64_t sent = 0, received = 0, send_errors = 0, recv_calls = 0;
    std::uint64_t gso_sends = 0;      ///< GSO sends (each carries >= 2 datagrams)
    std::uint64_t gso_datagrams = 0;  ///< datagrams that left in GSO sends
    std::uint64_t gso_fallbacks = 0;  ///< GSO sends refused by the kernel, resent one by one
    std::uint64_t gro_receives = 0;   ///< received buffers that held >= 2 datagrams
    std::uint64_t port_unreachable = 0;  ///< ICMP port-unreachable reports for datagrams sent
    std::uint64_t icmp_other = 0;  ///< other ICMP errors read (ignored), and port-unreachable ones not sent by the destination
  };
  /// Any thread (the loop-thread counters may be a moment stale).
  Stats stats() const;
  /// True while GSO sends are in use: asked for, accepted by the kernel at
  /// construction, and not turned off by a refused send since.
  bool gso_active() const { return gso_.load(std::memory_order_relaxed); }
  /// True when the socket accepts GRO (asked for and the kernel has it).
  bool gro_active() const { return gro_; }

 private:
  /// Whether this socket's family can send to `to` (any thread).
  bool reachable(const Endpoint& to) const;
  void on_readable();
  /// EPOLLERR: reads the socket's error queue (IP_RECVERR), reporting
  /// port-unreachable errors to the receiver.
  void on_error();
  /// True for an errno that may be a pending ICMP error about an earlier
  /// datagram (reported once by whichever socket call comes next, instead of
  /// its own result): the call is made once more.
  static bool icmp_errno(int err);
  void deliver(const Endpoint& from, std::span<const std::byte> data, int segment);
  /// One sendmmsg of `datagrams` (at most kMaxBatch); GSO runs when `gso`.
  /// Returns how many datagrams the kernel took, or -1 with errno set.
  long send_chunk(const SockAddr& sa, std::span<const std::span<const std::byte>> datagrams, bool gso);

  EpollLoop& loop_;  // outlives this
  int fd_ = -1;
  Endpoint local_;
  DatagramReceiver* receiver_ = nullptr;
  int batch_;
  std::vector<std::byte> buffers_;
  std::vector<mmsghdr> hdrs_;
  std::vector<iovec> iovs_;
  std::vector<SockAddr> addrs_;
  bool v6_ = false;  ///< an AF_INET6 socket (IPv4 peers as ::ffff:a.b.c.d)
  std::vector<std::byte> controls_;  // one cmsg slot per receive buffer (GRO)
  std::atomic<bool> gso_{false};     // any thread reads; cleared on a refused send
  bool gro_ = false;
  std::atomic<std::uint64_t> sent_{0}, send_errors_{0};  // any thread (send)
  std::atomic<std::uint64_t> gso_sends_{0}, gso_datagrams_{0}, gso_fallbacks_{0};
  std::atomic<std::uint64_t> received_{0}, recv_calls_{0}, gro_receives_{0};  // written on the loop thread
  std::atomic<std::uint64_t> port_unreachable_{0}, icmp_other_{0};             // written on the loop thread
};

}  // namespace broach
