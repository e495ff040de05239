// bench_udp_floor: plain UDP on loopback with no framework, the floor that
// bench_rpc is compared against. Same sockets (4 MiB buffers), same
// datagram sizes, nothing else: no header, no retransmission, no threads.
//
//   bench_udp_floor server   [--ip 127.0.0.1] [--port 0] [--spin 1]
//       blocking recvfrom/sendto echo loop; prints "listening on IP:PORT".
//   bench_udp_floor pingpong --to IP:PORT [--size 16] [--seconds 5] [--spin 1]
//       one datagram in flight: round-trip latency and round trips/s.
//   --spin 1: receive without ever sleeping (MSG_DONTWAIT in a loop), the
//       floor of busy-polling (bench_rpc --busy-poll).
//   bench_udp_floor window   --to IP:PORT [--size 16] [--window 64] [--seconds 5]
//       W datagrams in flight: send W, then one more per reply.
//
// Each datagram carries its send time in its first 8 bytes, so a reply
// needs no bookkeeping to give its round-trip time. Loopback can still drop
// (a full receive buffer): a client that hears nothing for 200 ms counts the
// datagrams in flight as lost ("timeouts") and refills the window.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "bench_util.hpp"

namespace broach::bench {
namespace {

constexpr int kSocketBuffer = 4 << 20;  // what the library asks for (TransportConfig)
constexpr std::size_t kMaxDatagram = 65507;

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "bench_udp_floor: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

bool parse_addr(const std::string& text, sockaddr_in& sa) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  sa = sockaddr_in{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(std::stoi(text.substr(colon + 1))));
  return ::inet_pton(AF_INET, text.substr(0, colon).c_str(), &sa.sin_addr) == 1;
}

int udp_socket() {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  for (int opt : {SO_RCVBUFFORCE, SO_SNDBUFFORCE}) {
    if (::setsockopt(fd, SOL_SOCKET, opt, &kSocketBuffer, sizeof(kSocketBuffer)) != 0) {
      const int plain = opt == SO_RCVBUFFORCE ? SO_RCVBUF : SO_SNDBUF;
      ::setsockopt(fd, SOL_SOCKET, plain, &kSocketBuffer, sizeof(kSocketBuffer));
    }
  }
  return fd;
}

int run_server(const Flags& f) {
  sockaddr_in sa{};
  const std::string bind_to = f.str("ip", "127.0.0.1") + ":" + f.str("port", "0");
  if (!parse_addr(bind_to, sa)) {
    std::fprintf(stderr, "bench_udp_floor: bad address %s\n", bind_to.c_str());
    return 2;
  }
  const int fd = udp_socket();
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) die("bind");
  socklen_t len = sizeof(sa);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  char ip[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof(ip));
  std::printf("listening on %s:%d\n", ip, ntohs(sa.sin_port));
  std::fflush(stdout);
  std::vector<char> buf(kMaxDatagram);
  const int flags = f.num("spin", 0) != 0 ? MSG_DONTWAIT : 0;
  for (;;) {
    sockaddr_in from{};
    socklen_t from_len = sizeof(from);
    const auto n = ::recvfrom(fd, buf.data(), buf.size(), flags, reinterpret_cast<sockaddr*>(&from),
                              &from_len);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      die("recvfrom");
    }
    ::sendto(fd, buf.data(), static_cast<std::size_t>(n), 0, reinterpret_cast<sockaddr*>(&from),
             from_len);
  }
}

// A connected client socket with a 200 ms receive timeout.
int client_socket(const std::string& to) {
  sockaddr_in sa{};
  if (!parse_addr(to, sa)) {
    std::fprintf(stderr, "bench_udp_floor: --to: expected IP:PORT, got '%s'\n", to.c_str());
    std::exit(2);
  }
  const int fd = udp_socket();
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) die("connect");
  timeval tv{0, 200'000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

void send_stamped(int fd, std::vector<char>& buf) {
  const std::uint64_t t = now_ns();
  std::memcpy(buf.data(), &t, sizeof(t));
  if (::send(fd, buf.data(), buf.size(), 0) < 0 && errno != EAGAIN && errno != ECONNREFUSED) {
    die("send");
  }
}

// Receives one reply; returns its send time, or 0 on timeout.
std::uint64_t recv_stamp(int fd, std::vector<char>& buf, bool spin = false) {
  const std::uint64_t give_up = now_ns() + 200'000'000;  // as SO_RCVTIMEO
  for (;;) {
    const auto n = ::recv(fd, buf.data(), buf.size(), spin ? MSG_DONTWAIT : 0);
    if (n >= static_cast<ssize_t>(sizeof(std::uint64_t))) {
      std::uint64_t t;
      std::memcpy(&t, buf.data(), sizeof(t));
      return t;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (spin && now_ns() < give_up) continue;
      return 0;
    }
    if (n < 0 && errno != EINTR && errno != ECONNREFUSED) die("recv");
  }
}

// One datagram in flight. A late reply (its stamp is not the one just sent)
// is skipped.
Report run_pingpong(const Flags& f, std::uint64_t size, double seconds) {
  const int fd = client_socket(f.str("to", ""));
  std::vector<char> out(size), in(kMaxDatagram);
  const bool spin = f.num("spin", 0) != 0;
  Report r{"udp_floor", "pingpong" + size_name(size) + (spin ? "_spin" : ""), size, 1};
  std::uint64_t timeouts = 0;
  const double cpu0 = process_cpu_s();
  const Window w = Window::starting_now(seconds);
  for (std::uint64_t t = now_ns(); t < w.end; t = now_ns()) {
    send_stamped(fd, out);
    std::uint64_t sent;
    std::memcpy(&sent, out.data(), sizeof(sent));
    std::uint64_t stamp;
    do {
      stamp = recv_stamp(fd, in, spin);
    } while (stamp != 0 && stamp != sent);
    if (stamp == 0) {
      ++timeouts;
      continue;
    }
    const std::uint64_t done = now_ns();
    ++r.calls_total;
    if (w.contains(sent)) {
      ++r.calls;
      r.bytes += size;
      r.latency.record_ns(done - sent);
    }
  }
  r.cpu_s = process_cpu_s() - cpu0;
  ::close(fd);
  r.seconds = w.seconds();
  r.errors = timeouts;
  r.extra.emplace_back("timeouts", timeouts);
  return r;
}

// W datagrams in flight; every reply sends one more.
Report run_window(const Flags& f, std::uint64_t size, double seconds) {
  const int fd = client_socket(f.str("to", ""));
  const int window = static_cast<int>(f.num("window", 64));
  std::vector<char> out(size), in(kMaxDatagram);
  Report r{"udp_floor", "window" + size_name(size) + "_w" + std::to_string(window), size, window};
  std::uint64_t timeouts = 0, lost = 0;
  const double cpu0 = process_cpu_s();
  const Window w = Window::starting_now(seconds);
  int inflight = 0;
  while (now_ns() < w.end) {
    for (; inflight < window; ++inflight) send_stamped(fd, out);
    const std::uint64_t stamp = recv_stamp(fd, in);
    if (stamp == 0) {
      ++timeouts;
      lost += static_cast<std::uint64_t>(inflight);
      inflight = 0;
      continue;
    }
    if (inflight > 0) --inflight;
    const std::uint64_t done = now_ns();
    ++r.calls_total;
    if (w.contains(done)) {
      ++r.calls;
      r.bytes += size;
      r.latency.record_ns(done - stamp);
    }
  }
  r.cpu_s = process_cpu_s() - cpu0;
  ::close(fd);
  r.seconds = w.seconds();
  r.errors = lost;
  r.extra.emplace_back("timeouts", timeouts);
  return r;
}

int usage() {
  std::fprintf(stderr,
               "usage: bench_udp_floor server [--ip IP] [--port P] [--spin 1]\n"
               "       bench_udp_floor pingpong --to IP:PORT [--size N] [--seconds D] [--spin 1]\n"
               "       bench_udp_floor window --to IP:PORT [--size N] [--window W] [--seconds D]\n"
               "       (all modes: [--cpu C] pins to CPU C)\n");
  return 2;
}

}  // namespace
}  // namespace broach::bench

int main(int argc, char** argv) {
  using namespace broach::bench;
  const Flags f(argc, argv, {"ip", "port", "to", "size", "window", "seconds", "cpu", "spin"});
  if (!f.ok()) return usage();
  pin_to_cpu(static_cast<int>(f.num("cpu", -1)));
  if (f.mode() == "server") return run_server(f);
  const auto size = static_cast<std::uint64_t>(f.num("size", 16));
  const double seconds = f.num("seconds", 5);
  if (f.str("to", "").empty() || size < 8 || size > kMaxDatagram || seconds <= 0) return usage();
  if (f.mode() == "pingpong") {
    run_pingpong(f, size, seconds).print();
  } else if (f.mode() == "window") {
    run_window(f, size, seconds).print();
  } else {
    return usage();
  }
  return 0;
}
