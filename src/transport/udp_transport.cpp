#include "transport/udp_transport.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <linux/errqueue.h>
#include <netinet/icmp6.h>
#include <netinet/ip_icmp.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/log.hpp"
#include "broach/error.hpp"

namespace broach {
namespace {

constexpr std::size_t kBufSize = 65536;
// Datagrams per sendmmsg call, and the kernel's limits on one GSO send: at
// most 64 segments (UDP_MAX_SEGMENTS) and one IPv4 datagram's worth of bytes.
constexpr std::size_t kMaxBatch = 64;
constexpr std::size_t kMaxGsoSegments = 64;
constexpr std::size_t kMaxGsoBytes = 65507;
constexpr std::size_t kSendCtrl = CMSG_SPACE(sizeof(std::uint16_t));
constexpr std::size_t kRecvCtrl = CMSG_SPACE(sizeof(int));

void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) {  // single writer
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

// An endpoint as this socket's family: an IPv6 socket reaches an IPv4
// endpoint at its mapped address ::ffff:a.b.c.d; an IPv4 socket cannot
// reach an IPv6 one (the send fails and is counted).
SockAddr to_sockaddr(const Endpoint& e, bool v6_socket) {
  SockAddr sa;
  if (!v6_socket && !e.v6) {
    sa.u.v4.sin_family = AF_INET;
    sa.u.v4.sin_addr.s_addr = htonl(e.ip);
    sa.u.v4.sin_port = htons(e.port);
    sa.len = sizeof(sockaddr_in);
    return sa;
  }
  sa.u.v6.sin6_family = AF_INET6;
  sa.u.v6.sin6_port = htons(e.port);
  if (e.v6) {
    std::memcpy(&sa.u.v6.sin6_addr, e.ip6.data(), 16);
  } else {
    unsigned char* b = sa.u.v6.sin6_addr.s6_addr;
    b[10] = 0xff;
    b[11] = 0xff;
    const std::uint32_t n = htonl(e.ip);
    std::memcpy(b + 12, &n, 4);
  }
  sa.len = sizeof(sockaddr_in6);
  return sa;
}

// The sender of a datagram; a mapped IPv4 address becomes an IPv4 endpoint.
Endpoint from_sockaddr(const SockAddr& sa) {
  Endpoint e;
  if (sa.u.v4.sin_family == AF_INET) {
    e.ip = ntohl(sa.u.v4.sin_addr.s_addr);
    e.port = ntohs(sa.u.v4.sin_port);
    return e;
  }
  e.port = ntohs(sa.u.v6.sin6_port);
  std::array<std::uint8_t, 16> a{};
  std::memcpy(a.data(), sa.u.v6.sin6_addr.s6_addr, 16);
  endpoint_detail::set_ip6(e, a);
  return e;
}

void set_buffer(int fd, int opt, int force_opt, int bytes) {
  if (::setsockopt(fd, SOL_SOCKET, force_opt, &bytes, sizeof(bytes)) != 0) {
    ::setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof(bytes));
  }
}

}  // namespace

UdpTransport::UdpTransport(EpollLoop& loop, const Endpoint& bind, const UdpOptions& options)
    : loop_(loop), batch_(options.batch) {
  v6_ = bind.v6;
  fd_ = ::socket(v6_ ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw Error(Errc::kIoError, std::string("socket: ") + std::strerror(errno));
  set_buffer(fd_, SO_RCVBUF, SO_RCVBUFFORCE, options.socket_buffer_bytes);
  set_buffer(fd_, SO_SNDBUF, SO_SNDBUFFORCE, options.socket_buffer_bytes);
  if (v6_) {
    // Dual stack on "::" whatever net.ipv6.bindv6only says: IPv4 peers
    // arrive as mapped addresses (reported as IPv4).
    const int off = 0;
    ::setsockopt(fd_, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
  }
  auto sa = to_sockaddr(bind, v6_);
  if (::bind(fd_, reinterpret_cast<const sockaddr*>(&sa.u), sa.len) != 0) {
    const int err = errno;
    ::close(fd_);
    throw Error(Errc::kIoError, "bind " + bind.to_string() + ": " + std::strerror(err));
  }
  sa.len = sizeof(sa.u);
  ::getsockname(fd_, reinterpret_cast<sockaddr*>(&sa.u), &sa.len);
  local_ = bind;  // the address as bound (a wildcard stays a wildcard), with the port the kernel chose
  local_.port = from_sockaddr(sa).port;

  {
    // ICMP errors for datagrams sent from this unconnected socket go to its
    // error queue (on_error); without this the kernel drops them. A dual
    // stack socket needs both: IPv4 peers' errors arrive through IPv4.
    const int on = 1;
    if (::setsockopt(fd_, SOL_IP, IP_RECVERR, &on, sizeof(on)) != 0 ||
        (v6_ && ::setsockopt(fd_, SOL_IPV6, IPV6_RECVERR, &on, sizeof(on)) != 0)) {
      BROACH_LOG_INFO("IP_RECVERR refused ({}): a peer whose port closed is noticed by timeout only",
                      std::strerror(errno));
    }
  }

  if (options.gso) {
    // Probing the options is the runtime check: a kernel without them
    // (before 4.18 / 5.0) refuses, and batches leave one datagram each.
    int segment = 0;
    socklen_t seg_len = sizeof(segment);
    gso_.store(::getsockopt(fd_, SOL_UDP, UDP_SEGMENT, &segment, &seg_len) == 0, std::memory_order_relaxed);
    const int on = 1;
    gro_ = ::setsockopt(fd_, SOL_UDP, UDP_GRO, &on, sizeof(on)) == 0;
  }

  if (batch_ < 1) batch_ = 1;
  buffers_.resize(kBufSize * static_cast<std::size_t>(batch_));
  controls_.resize(kRecvCtrl * static_cast<std::size_t>(batch_));
  hdrs_.resize(static_cast<std::size_t>(batch_));
  iovs_.resize(static_cast<std::size_t>(batch_));
  addrs_.resize(static_cast<std::size_t>(batch_));
  loop_.add_fd(fd_, [this] { on_readable(); }, [this] { on_error(); });
}

UdpTransport::~UdpTransport() {
  loop_.remove_fd(fd_);
  ::close(fd_);
}

bool UdpTransport::reachable(const Endpoint& to) const {
  if (!v6_) return !to.v6;  // an IPv4 socket reaches IPv4 only
  // An IPv6 socket reaches IPv4 (mapped) only when bound to "::".
  return to.v6 || local_.ip6 == std::array<std::uint8_t, 16>{};
}

bool UdpTransport::send(const Endpoint& to, std::span<const std::byte> data) {
  if (!reachable(to)) {  // the other family: refused here, not by the kernel
    send_errors_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  const auto sa = to_sockaddr(to, v6_);
  bool retried = false;
  for (;;) {
    const auto n = ::sendto(fd_, data.data(), data.size(), 0, reinterpret_cast<const sockaddr*>(&sa.u), sa.len);
    if (n >= 0) {
      sent_.fetch_add(1, std::memory_order_relaxed);  // any thread
      return true;
    }
    if (errno == EINTR) continue;
    if (!retried && icmp_errno(errno)) {  // maybe an earlier datagram's ICMP error, reported here once
      retried = true;
      continue;
    }
    // EAGAIN (buffer full) and the like: the datagram is lost, which the
    // reliable layer above handles.
    send_errors_.fetch_add(1, std::memory_order_relaxed);
    BROACH_LOG_DEBUG("sendto {} failed: {}", to.to_string(), std::strerror(errno));
    return false;
  }
}

UdpTransport::Stats UdpTransport::stats() const {
  Stats s;
  s.sent = sent_.load(std::memory_order_relaxed);
  s.received = received_.load(std::memory_order_relaxed);
  s.send_errors = send_errors_.load(std::memory_order_relaxed);
  s.recv_calls = recv_calls_.load(std::memory_order_relaxed);
  s.gso_sends = gso_sends_.load(std::memory_order_relaxed);
  s.gso_datagrams = gso_datagrams_.load(std::memory_order_relaxed);
  s.gso_fallbacks = gso_fallbacks_.load(std::memory_order_relaxed);
  s.gro_receives = gro_receives_.load(std::memory_order_relaxed);
  s.port_unreachable = port_unreachable_.load(std::memory_order_relaxed);
  s.icmp_other = icmp_other_.load(std::memory_order_relaxed);
  return s;
}

long UdpTransport::send_chunk(const SockAddr& sa, std::span<const std::span<const std::byte>> datagrams,
                              bool gso) {
  mmsghdr msgs[kMaxBatch];
  iovec iov[kMaxBatch];
  std::size_t runs[kMaxBatch];  // datagrams carried by each message
  alignas(cmsghdr) std::byte ctrl[kMaxBatch][kSendCtrl];
  const std::size_t n = datagrams.size();
  std::size_t m = 0;
  std::uint64_t gso_msgs = 0, gso_dgrams = 0;
  for (std::size_t i = 0; i < n; ++i) {
    iov[i].iov_base = const_cast<std::byte*>(datagrams[i].data());
    iov[i].iov_len = datagrams[i].size();
  }
  for (std::size_t i = 0; i < n; ++m) {
    // A GSO run: datagrams of one size, the last one possibly shorter.
    const std::size_t seg = datagrams[i].size();
    std::size_t run = 1, bytes = seg;
    if (gso && seg > 0) {
      while (i + run < n && run < kMaxGsoSegments && datagrams[i + run].size() <= seg && !datagrams[i + run].empty() &&
             bytes + datagrams[i + run].size() <= kMaxGsoBytes) {
        bytes += datagrams[i + run].size();
        if (datagrams[i + run++].size() < seg) break;
      }
    }
    std::memset(&msgs[m], 0, sizeof(mmsghdr));
    auto& h = msgs[m].msg_hdr;
    h.msg_name = const_cast<void*>(static_cast<const void*>(&sa.u));
    h.msg_namelen = sa.len;
    h.msg_iov = &iov[i];
    h.msg_iovlen = run;
    if (run > 1) {
      h.msg_control = ctrl[m];
      h.msg_controllen = kSendCtrl;
      cmsghdr* c = CMSG_FIRSTHDR(&h);
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(std::uint16_t));
      const auto seg16 = static_cast<std::uint16_t>(seg);
      std::memcpy(CMSG_DATA(c), &seg16, sizeof(seg16));
      ++gso_msgs;
      gso_dgrams += run;
    }
    runs[m] = run;
    i += run;
  }
  const int r = ::sendmmsg(fd_, msgs, static_cast<unsigned>(m), 0);
  if (r < 0) return -1;
  std::size_t taken = 0;
  for (int k = 0; k < r; ++k) taken += runs[k];
  if (static_cast<std::size_t>(r) == m) {
    gso_sends_.fetch_add(gso_msgs, std::memory_order_relaxed);
    gso_datagrams_.fetch_add(gso_dgrams, std::memory_order_relaxed);
  }
  return static_cast<long>(taken);
}

std::size_t UdpTransport::send_batch(const Endpoint& to,
                                     std::span<const std::span<const std::byte>> datagrams) {
  if (!reachable(to)) {  // the other family (a kernel EINVAL would also turn GSO off)
    send_errors_.fetch_add(datagrams.size(), std::memory_order_relaxed);
    return 0;
  }
  const auto sa = to_sockaddr(to, v6_);
  std::size_t sent = 0;
  bool retried = false;
  while (sent < datagrams.size()) {
    const auto chunk = datagrams.subspan(sent, std::min(kMaxBatch, datagrams.size() - sent));
    const bool gso = gso_.load(std::memory_order_relaxed);
    const long r = send_chunk(sa, chunk, gso);
    if (r < 0) {
      const int err = errno;
      if (err == EINTR) continue;
      if (!retried && icmp_errno(err)) {  // maybe an earlier datagram's ICMP error (even EMSGSIZE), once
        retried = true;
        continue;
      }
      if (gso && (err == EIO || err == EINVAL || err == ENOPROTOOPT || err == EOPNOTSUPP || err == EMSGSIZE)) {
        // The kernel refused a GSO send (a device without checksum offload,
        // a segment above the route's MTU): turn GSO off for good and send
        // this chunk again one datagram per message.
        gso_fallbacks_.fetch_add(1, std::memory_order_relaxed);
        if (gso_.exchange(false, std::memory_order_relaxed)) {
          BROACH_LOG_INFO("UDP GSO send refused ({}); sending datagrams one by one", std::strerror(err));
        }
        continue;
      }
      // The rest are lost, as a full socket buffer loses single sends; the
      // reliable layer retransmits them.
      send_errors_.fetch_add(datagrams.size() - sent, std::memory_order_relaxed);
      return sent;
    }
    sent += static_cast<std::size_t>(r);
    sent_.fetch_add(static_cast<std::uint64_t>(r), std::memory_order_relaxed);
    if (static_cast<std::size_t>(r) < chunk.size()) {
      if (!retried) {  // a pending ICMP error may have cut the batch short: the rest once more
        retried = true;
        continue;
      }
      send_errors_.fetch_add(datagrams.size() - sent, std::memory_order_relaxed);
      return sent;
    }
  }
  return sent;
}

void UdpTransport::deliver(const Endpoint& from, std::span<const std::byte> data, int segment) {
  if (segment <= 0 || data.size() <= static_cast<std::size_t>(segment)) {
    bump(received_);
    receiver_->on_datagram(from, data);
    return;
  }
  // GRO: datagrams of `segment` bytes back to back, the last maybe shorter.
  bump(gro_receives_);
  const auto seg = static_cast<std::size_t>(segment);
  for (std::size_t off = 0; off < data.size(); off += seg) {
    bump(received_);
    receiver_->on_datagram(from, data.subspan(off, std::min(seg, data.size() - off)));
  }
}

void UdpTransport::on_readable() {
  // Bounded work per wake-up so timers and posted tasks are not starved.
  for (int round = 0; round < 8; ++round) {
    for (int i = 0; i < batch_; ++i) {
      iovs_[i].iov_base = buffers_.data() + kBufSize * static_cast<std::size_t>(i);
      iovs_[i].iov_len = kBufSize;
      std::memset(&hdrs_[i], 0, sizeof(mmsghdr));
      hdrs_[i].msg_hdr.msg_iov = &iovs_[i];
      hdrs_[i].msg_hdr.msg_iovlen = 1;
      hdrs_[i].msg_hdr.msg_name = &addrs_[i].u;
      hdrs_[i].msg_hdr.msg_namelen = sizeof(addrs_[i].u);
      if (gro_) {
        hdrs_[i].msg_hdr.msg_control = controls_.data() + kRecvCtrl * static_cast<std::size_t>(i);
        hdrs_[i].msg_hdr.msg_controllen = kRecvCtrl;
      }
    }
    const int n = ::recvmmsg(fd_, hdrs_.data(), static_cast<unsigned>(batch_), MSG_DONTWAIT, nullptr);
    bump(recv_calls_);
    if (n < 0 && icmp_errno(errno)) continue;  // an ICMP error reported instead of the datagrams waiting (bounded: 8 rounds)
    if (n <= 0) return;
    for (int i = 0; i < n; ++i) {
      const Endpoint from = from_sockaddr(addrs_[i]);
      if (receiver_ == nullptr || (hdrs_[i].msg_hdr.msg_flags & MSG_TRUNC)) {
        bump(received_);
        continue;
      }
      int segment = 0;
      if (gro_) {
        for (cmsghdr* c = CMSG_FIRSTHDR(&hdrs_[i].msg_hdr); c != nullptr; c = CMSG_NXTHDR(&hdrs_[i].msg_hdr, c)) {
          if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
            std::memcpy(&segment, CMSG_DATA(c), sizeof(segment));
          }
        }
      }
      deliver(from,
              std::span<const std::byte>(buffers_.data() + kBufSize * static_cast<std::size_t>(i), hdrs_[i].msg_len),
              segment);
    }
    if (n < batch_) return;
  }
}

bool UdpTransport::icmp_errno(int err) {
  // Any ICMP error (port, host, network or protocol unreachable, fragmentation
  // needed, ...) leaves its errno pending on the socket, and the next call
  // reports it instead of doing its own work; so every errno but those of
  // a full buffer may be one. EINTR is handled apart.
  return err != EAGAIN && err != EWOULDBLOCK && err != ENOBUFS && err != EINTR;
}

void UdpTransport::on_error() {
  // Bounded per wake-up like reads; EPOLLERR stays up while more wait.
  for (int i = 0; i < 64; ++i) {
    // The quoted datagram: its start is enough (the header).
    std::array<std::byte, 512> data;
    alignas(cmsghdr) std::array<std::byte, 512> ctrl;
    SockAddr dest;  // where the datagram had gone
    iovec iov{data.data(), data.size()};
    msghdr msg{};
    msg.msg_name = &dest.u;
    msg.msg_namelen = sizeof(dest.u);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = ctrl.data();
    msg.msg_controllen = ctrl.size();
    const auto n = ::recvmsg(fd_, &msg, MSG_ERRQUEUE | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      // The queue is empty. An error the kernel could not queue (receive
      // buffer full) may still be pending and keep EPOLLERR up: clear it.
      int pending = 0;
      socklen_t len = sizeof(pending);
      ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &pending, &len);
      return;
    }
    const Endpoint to = from_sockaddr(dest);
    bool port_unreachable = false;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      const bool v4 = c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR;
      const bool v6 = c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_RECVERR;
      if ((!v4 && !v6) || c->cmsg_len < CMSG_LEN(sizeof(sock_extended_err))) continue;
      sock_extended_err ee;
      std::memcpy(&ee, CMSG_DATA(c), sizeof(ee));
      const bool kind = (ee.ee_origin == SO_EE_ORIGIN_ICMP && ee.ee_type == ICMP_DEST_UNREACH &&
                         ee.ee_code == ICMP_PORT_UNREACH) ||
                        (ee.ee_origin == SO_EE_ORIGIN_ICMP6 && ee.ee_type == ICMP6_DST_UNREACH &&
                         ee.ee_code == ICMP6_DST_UNREACH_NOPORT);
      if (!kind) continue;
      // Only the destination host itself says "no process at this port" (a
      // router never does): the ICMP's sender (the offender, right after the
      // error in the control message) must be the address we sent to, so a
      // forger has to spoof that host's address.
      const std::size_t off = sizeof(sock_extended_err);
      const std::size_t room = c->cmsg_len - CMSG_LEN(0);
      SockAddr offender;
      if (room >= off + sizeof(sockaddr_in)) {
        std::memcpy(&offender.u, CMSG_DATA(c) + off, std::min(room - off, sizeof(offender.u)));
        const sa_family_t fam = offender.u.v4.sin_family;
        if (fam == AF_INET || (fam == AF_INET6 && room >= off + sizeof(sockaddr_in6))) {
          Endpoint from = from_sockaddr(offender);
          from.port = to.port;
          port_unreachable = from == to;
        }
      }
    }
    if (!port_unreachable || msg.msg_namelen == 0) {
      bump(icmp_other_);
      continue;
    }
    bump(port_unreachable_);
    if (receiver_ != nullptr) {
      receiver_->on_unreachable(to, std::span<const std::byte>(data.data(), static_cast<std::size_t>(n)));
    }
  }
}

}  // namespace broach
