// Internal header. The datagram seam: the one interface between protocol
// logic and the network.
//
// Layer: transport. Implementations: UdpTransport (real sockets, epoll) and
// SimTransport (sim/, in-memory with loss, duplication, reordering, delay and
// partitions on virtual time). A transport moves datagrams and knows nothing
// about messages: it is unreliable by contract (a send may be lost silently).
// Thread contract: every method is called on the owning loop's thread, and
// the receiver is called there too; send() may also be called from other
// threads when thread_safe_send() says so.
#pragma once

#include <cstddef>
#include <span>

#include "transport/endpoint.hpp"

namespace broach {

class DatagramReceiver {
 public:
  virtual ~DatagramReceiver() = default;
  /// One datagram from `from`. `data` is valid only during the call.
  virtual void on_datagram(const Endpoint& from, std::span<const std::byte> data) = 0;
  /// The host of `to` answered that no socket listens at `to` (ICMP port
  /// unreachable) for a datagram this transport sent; `sent` is as much of
  /// that datagram as the ICMP message quoted (the start of it: the header).
  /// Unauthenticated (anyone on the path can forge one): a hint, checked by
  /// the receiver against what it sent. Default: ignored.
  virtual void on_unreachable(const Endpoint& to, std::span<const std::byte> sent) {
    (void)to;
    (void)sent;
  }
};

class Transport {
 public:
  virtual ~Transport() = default;
  /// The address this transport receives on.
  virtual Endpoint local() const = 0;
  /// Sends one datagram; best effort. Returns false when the datagram was
  /// dropped locally (e.g. socket buffer full), which the caller may count.
  virtual bool send(const Endpoint& to, std::span<const std::byte> data) = 0;
  /// Sends several datagrams to one peer; best effort, like send(). Returns
  /// how many were handed to the network. UdpTransport makes one sendmmsg
  /// call of them.
  virtual std::size_t send_batch(const Endpoint& to, std::span<const std::span<const std::byte>> datagrams) {
    std::size_t n = 0;
    for (const auto& d : datagrams) n += send(to, d) ? 1 : 0;
    return n;
  }
  /// True when send() may be called from any thread (a plain socket send).
  /// Lets a caller put a datagram on the wire without a hop to the loop.
  virtual bool thread_safe_send() const { return false; }
  /// Sets the receiver (non-owning; must outlive the transport's use).
  virtual void set_receiver(DatagramReceiver* receiver) = 0;
};

}  // namespace broach
