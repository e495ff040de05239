#include "transport/udp_transport.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.hpp"
#include "broach/error.hpp"

namespace broach {
namespace {

constexpr std::size_t kBufSize = 65536;

sockaddr_in to_sockaddr(const Endpoint& e) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(e.ip);
  sa.sin_port = htons(e.port);
  return sa;
}

void set_buffer(int fd, int opt, int force_opt, int bytes) {
  if (::setsockopt(fd, SOL_SOCKET, force_opt, &bytes, sizeof(bytes)) != 0) {
    ::setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof(bytes));
  }
}

}  // namespace

UdpTransport::UdpTransport(EpollLoop& loop, const Endpoint& bind, const UdpOptions& options)
    : loop_(loop), batch_(options.batch) {
  fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw Error(Errc::kIoError, std::string("socket: ") + std::strerror(errno));
  set_buffer(fd_, SO_RCVBUF, SO_RCVBUFFORCE, options.socket_buffer_bytes);
  set_buffer(fd_, SO_SNDBUF, SO_SNDBUFFORCE, options.socket_buffer_bytes);
  auto sa = to_sockaddr(bind);
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    const int err = errno;
    ::close(fd_);
    throw Error(Errc::kIoError, "bind " + bind.to_string() + ": " + std::strerror(err));
  }
  socklen_t len = sizeof(sa);
  ::getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len);
  local_ = Endpoint{ntohl(sa.sin_addr.s_addr), ntohs(sa.sin_port)};
  if (local_.ip == 0) local_.ip = bind.ip;

  if (batch_ < 1) batch_ = 1;
  buffers_.resize(kBufSize * static_cast<std::size_t>(batch_));
  hdrs_.resize(static_cast<std::size_t>(batch_));
  iovs_.resize(static_cast<std::size_t>(batch_));
  addrs_.resize(static_cast<std::size_t>(batch_));
  loop_.add_fd(fd_, [this] { on_readable(); });
}

UdpTransport::~UdpTransport() {
  loop_.remove_fd(fd_);
  ::close(fd_);
}

bool UdpTransport::send(const Endpoint& to, std::span<const std::byte> data) {
  auto sa = to_sockaddr(to);
  for (;;) {
    const auto n = ::sendto(fd_, data.data(), data.size(), 0, reinterpret_cast<sockaddr*>(&sa),
                            sizeof(sa));
    if (n >= 0) {
      sent_.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    if (errno == EINTR) continue;
    // EAGAIN (buffer full), ECONNREFUSED (ICMP from an earlier send) and the
    // like: the datagram is lost, which the reliable layer above handles.
    send_errors_.fetch_add(1, std::memory_order_relaxed);
    BROACH_LOG_DEBUG("sendto {} failed: {}", to.to_string(), std::strerror(errno));
    return false;
  }
}

std::size_t UdpTransport::send_batch(const Endpoint& to,
                                     std::span<const std::span<const std::byte>> datagrams) {
  constexpr std::size_t kMax = 64;
  auto sa = to_sockaddr(to);
  std::size_t sent = 0;
  while (sent < datagrams.size()) {
    mmsghdr msgs[kMax];
    iovec iov[kMax];
    const std::size_t n = std::min(kMax, datagrams.size() - sent);
    for (std::size_t i = 0; i < n; ++i) {
      const auto& d = datagrams[sent + i];
      iov[i].iov_base = const_cast<std::byte*>(d.data());
      iov[i].iov_len = d.size();
      std::memset(&msgs[i], 0, sizeof(mmsghdr));
      msgs[i].msg_hdr.msg_name = &sa;
      msgs[i].msg_hdr.msg_namelen = sizeof(sa);
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    const int r = ::sendmmsg(fd_, msgs, static_cast<unsigned>(n), 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      // The rest are lost, as a full socket buffer loses single sends; the
      // reliable layer retransmits them.
      send_errors_.fetch_add(datagrams.size() - sent, std::memory_order_relaxed);
      return sent;
    }
    sent += static_cast<std::size_t>(r);
    sent_.fetch_add(static_cast<std::uint64_t>(r), std::memory_order_relaxed);
    if (static_cast<std::size_t>(r) < n) {
      send_errors_.fetch_add(datagrams.size() - sent, std::memory_order_relaxed);
      return sent;
    }
  }
  return sent;
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
      hdrs_[i].msg_hdr.msg_name = &addrs_[i];
      hdrs_[i].msg_hdr.msg_namelen = sizeof(sockaddr_in);
    }
    const int n = ::recvmmsg(fd_, hdrs_.data(), static_cast<unsigned>(batch_), MSG_DONTWAIT, nullptr);
    ++recv_calls_;
    if (n <= 0) return;
    for (int i = 0; i < n; ++i) {
      const auto& sa = addrs_[i];
      Endpoint from{ntohl(sa.sin_addr.s_addr), ntohs(sa.sin_port)};
      ++received_;
      if (receiver_ != nullptr && !(hdrs_[i].msg_hdr.msg_flags & MSG_TRUNC)) {
        receiver_->on_datagram(from, std::span<const std::byte>(
                                         buffers_.data() + kBufSize * static_cast<std::size_t>(i),
                                         hdrs_[i].msg_len));
      }
    }
    if (n < batch_) return;
  }
}

}  // namespace broach
