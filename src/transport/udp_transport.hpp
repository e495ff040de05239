// Internal header. The real transport: one non-blocking IPv4 UDP socket
// registered with an EpollLoop; receives in batches with recvmmsg.
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
  };
  Stats stats() const {
    return Stats{sent_.load(std::memory_order_relaxed), received_, send_errors_.load(std::memory_order_relaxed),
                 recv_calls_};
  }

 private:
  void on_readable();

  EpollLoop& loop_;  // outlives this
  int fd_ = -1;
  Endpoint local_;
  DatagramReceiver* receiver_ = nullptr;
  int batch_;
  std::vector<std::byte> buffers_;
  std::vector<mmsghdr> hdrs_;
  std::vector<iovec> iovs_;
  std::vector<sockaddr_in> addrs_;
  std::atomic<std::uint64_t> sent_{0}, send_errors_{0};  // any thread (send)
  std::uint64_t received_ = 0, recv_calls_ = 0;          // loop thread
};

}  // namespace broach
