// Public header. A UDP endpoint ("ip:port" for IPv4, "[ip6]:port" for IPv6)
// as a small value type, and the one parser of that text used everywhere
// (config file, command line, node wiring, tools), so every place accepts
// exactly the same spellings. The parser is defined inline here so that any
// layer may use it without linking the transport library (config validates
// addresses with it).
// Thread contract: immutable value; the parse functions are pure.
#pragma once

#include <arpa/inet.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

namespace broach {

struct Endpoint {
  std::uint32_t ip = 0;    ///< IPv4, host byte order (0 when v6)
  std::uint16_t port = 0;
  bool v6 = false;         ///< an IPv6 endpoint: the address is ip6
  std::array<std::uint8_t, 16> ip6{};  ///< IPv6, network byte order (zero when IPv4)

  friend bool operator==(const Endpoint&, const Endpoint&) = default;
  friend auto operator<=>(const Endpoint&, const Endpoint&) = default;
  /// "a.b.c.d:port", or "[ip6]:port" (RFC 5952 text, as inet_ntop writes it).
  std::string to_string() const;
  /// The address alone: "a.b.c.d", or the IPv6 text without brackets.
  std::string ip_string() const;
  /// 127.0.0.0/8 or ::1.
  bool loopback() const {
    if (!v6) return (ip >> 24) == 127;
    static constexpr std::array<std::uint8_t, 16> kOne{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return ip6 == kOne;
  }
  /// The same host (address, any port).
  bool same_host(const Endpoint& o) const { return v6 == o.v6 && (v6 ? ip6 == o.ip6 : ip == o.ip); }
  /// 64 bits that tell endpoints apart: exact for IPv4, a mix of the 16
  /// bytes and the port for IPv6 (for hashing and rings, not for identity).
  std::uint64_t key() const {
    if (!v6) return (static_cast<std::uint64_t>(ip) << 16) | port;
    std::uint64_t hi = 0, lo = 0;
    std::memcpy(&hi, ip6.data(), 8);
    std::memcpy(&lo, ip6.data() + 8, 8);
    std::uint64_t h = (hi * 0x9e3779b97f4a7c15ULL) ^ (lo + 0x7f4a7c159e3779b9ULL + (hi << 6) + (hi >> 2));
    return (h * 0xbf58476d1ce4e5b9ULL) ^ port ^ (1ULL << 63);
  }

  /// Parses "a.b.c.d:port" or "[ip6]:port". IPv4: a dotted address (four
  /// octets 0-255, each 1-3 decimal digits, no leading zero, sign or
  /// space). IPv6: any text inet_pton(AF_INET6) takes (no zone "%eth0"),
  /// in brackets. Then ':' and a decimal port 0-65535 (no leading zero,
  /// sign or space); no other text. Host names are not resolved.
  /// Port 0 is accepted only when allow_port_zero is true (a bind address:
  /// "pick a free port"). An address one sends to (a seed, --to, a provider)
  /// needs a real port: such callers pass allow_port_zero = false.
  /// On failure returns false, leaves `out` unchanged and, when `why` is not
  /// null, sets it to a short reason ("missing ':port'", "not an IPv4 address:
  /// x", "IPv6 address needs brackets: [::1]:18080", "port out of range:
  /// 70000", ...).
  static bool parse(std::string_view text, Endpoint& out, std::string* why = nullptr,
                    bool allow_port_zero = true);
  /// Parses a dotted IPv4 address with the same rules as the address part of
  /// parse(); false when malformed (`out` is then unchanged).
  static bool parse_ip(std::string_view text, std::uint32_t& out);
  /// Parses an address alone, IPv4 (dotted) or IPv6 (no brackets), into
  /// `out` (its port unchanged); false when malformed (`out` unchanged).
  /// Here and in parse(), an IPv4-mapped IPv6 address (::ffff:a.b.c.d) is
  /// the IPv4 address.
  static bool parse_host(std::string_view text, Endpoint& out);
};

/// An IPv4 network, "a.b.c.d/len" (len 0..32; "a.b.c.d" alone is /32).
struct Network {
  std::uint32_t ip = 0;    ///< host byte order, host bits zero
  std::uint32_t mask = 0;  ///< host byte order
  bool contains(std::uint32_t addr) const { return (addr & mask) == ip; }
  /// False when malformed (`out` unchanged).
  static bool parse(std::string_view text, Network& out);
};

namespace endpoint_detail {

/// 1..max_digits decimal digits, no sign, space or leading zero ("0" itself
/// is fine). Digits beyond max_digits are refused, so `out` cannot overflow.
inline bool parse_decimal(std::string_view s, std::size_t max_digits, std::uint32_t& out) {
  if (s.empty() || s.size() > max_digits) return false;
  if (s.size() > 1 && s[0] == '0') return false;
  std::uint32_t v = 0;
  for (char ch : s) {
    if (ch < '0' || ch > '9') return false;
    v = v * 10 + static_cast<std::uint32_t>(ch - '0');
  }
  out = v;
  return true;
}

inline bool all_digits(std::string_view s) {
  for (char ch : s) {
    if (ch < '0' || ch > '9') return false;
  }
  return !s.empty();
}

inline bool fail(std::string* why, std::string reason) {
  if (why != nullptr) *why = std::move(reason);
  return false;
}

}  // namespace endpoint_detail

inline bool Endpoint::parse_ip(std::string_view text, std::uint32_t& out) {
  std::uint32_t ip = 0;
  for (int i = 0; i < 4; ++i) {
    const auto dot = text.find('.');
    if ((dot == std::string_view::npos) != (i == 3)) return false;  // exactly three dots
    std::uint32_t octet = 0;
    if (!endpoint_detail::parse_decimal(text.substr(0, dot), 3, octet) || octet > 255) return false;
    ip = (ip << 8) | octet;
    if (dot != std::string_view::npos) text.remove_prefix(dot + 1);
  }
  out = ip;
  return true;
}

namespace endpoint_detail {
/// An IPv6 address without brackets or zone: what inet_pton takes.
inline bool parse_ip6(std::string_view text, std::array<std::uint8_t, 16>& out) {
  if (text.empty() || text.size() > 45 || text.find('%') != std::string_view::npos) return false;
  char buf[46];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  std::array<std::uint8_t, 16> a{};
  if (inet_pton(AF_INET6, buf, a.data()) != 1) return false;
  out = a;
  return true;
}

/// 16 address bytes as an endpoint's address: an IPv4-mapped address
/// (::ffff:a.b.c.d) becomes the IPv4 address, as the UDP layer reports
/// such senders, so that one host has one identity.
inline void set_ip6(Endpoint& e, const std::array<std::uint8_t, 16>& a) {
  static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(a.data(), kMapped, 12) == 0) {
    e.v6 = false;
    e.ip6 = {};
    e.ip = (std::uint32_t{a[12]} << 24) | (std::uint32_t{a[13]} << 16) | (std::uint32_t{a[14]} << 8) | a[15];
    return;
  }
  e.v6 = true;
  e.ip = 0;
  e.ip6 = a;
}
}  // namespace endpoint_detail

inline bool Endpoint::parse_host(std::string_view text, Endpoint& out) {
  std::uint32_t ip = 0;
  if (parse_ip(text, ip)) {
    out.v6 = false;
    out.ip = ip;
    out.ip6 = {};
    return true;
  }
  std::array<std::uint8_t, 16> a{};
  if (!endpoint_detail::parse_ip6(text, a)) return false;
  endpoint_detail::set_ip6(out, a);
  return true;
}

inline bool Network::parse(std::string_view text, Network& out) {
  const auto slash = text.find('/');
  std::uint32_t ip = 0, len = 32;
  if (!Endpoint::parse_ip(text.substr(0, slash), ip)) return false;
  if (slash != std::string_view::npos &&
      (!endpoint_detail::parse_decimal(text.substr(slash + 1), 2, len) || len > 32)) {
    return false;
  }
  const std::uint32_t mask = len == 0 ? 0 : ~std::uint32_t{0} << (32 - len);
  out.ip = ip & mask;
  out.mask = mask;
  return true;
}

inline bool Endpoint::parse(std::string_view text, Endpoint& out, std::string* why,
                            bool allow_port_zero) {
  using endpoint_detail::fail;
  const auto str = [](std::string_view v) { return std::string(v); };
  if (text.empty()) return fail(why, "empty address");
  if (text.find_first_of(" \t\r\n\v\f") != std::string_view::npos) {
    return fail(why, "address contains a space: '" + str(text) + "'");
  }
  Endpoint e;
  std::string_view ps;
  if (text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return fail(why, "missing ']' after an IPv6 address: " + str(text));
    std::array<std::uint8_t, 16> a{};
    if (!endpoint_detail::parse_ip6(text.substr(1, close - 1), a)) {
      return fail(why, "not an IPv6 address: " + str(text.substr(1, close - 1)));
    }
    endpoint_detail::set_ip6(e, a);
    if (close + 1 >= text.size() || text[close + 1] != ':') return fail(why, "missing ':port' after ']'");
    ps = text.substr(close + 2);
  } else {
    const auto colon = text.find(':');
    if (colon == std::string_view::npos) return fail(why, "missing ':port'");
    const bool ip4_ok = parse_ip(text.substr(0, colon), e.ip);
    if (!ip4_ok && text.find(':', colon + 1) != std::string_view::npos) {
      // "::1", "fe80::1:80": an IPv6 address needs brackets before its port.
      return fail(why, "an IPv6 address needs brackets, as in [::1]:18080: " + str(text));
    }
    if (colon == 0) return fail(why, "missing IP address before ':'");
    if (!ip4_ok) {
      return fail(why, "not an IPv4 address: " + str(text.substr(0, colon)));
    }
    ps = text.substr(colon + 1);
  }
  if (ps.empty()) return fail(why, "missing port after ':'");
  if (!endpoint_detail::all_digits(ps)) {
    return fail(why, "port is not a decimal number: " + str(ps));
  }
  if (ps.size() > 1 && ps[0] == '0') return fail(why, "port has a leading zero: " + str(ps));
  std::uint32_t port = 0;
  if (!endpoint_detail::parse_decimal(ps, 5, port) || port > 65535) {
    return fail(why, "port out of range: " + str(ps));
  }
  if (port == 0 && !allow_port_zero) return fail(why, "port 0 is not allowed here");
  e.port = static_cast<std::uint16_t>(port);
  out = e;
  return true;
}

}  // namespace broach

namespace broach::endpoint_detail {
/// A per-process random salt for hashing IPv6 endpoints: tables keyed by
/// senders' addresses (anyone with a /64 picks many) must not be made to
/// collide by someone who knows the hash. IPv4 keys are exact (no salt
/// needed). Not used by Endpoint::key(), which must agree across nodes.
inline std::uint64_t hash_salt() {
  static const std::uint64_t salt = [] {
    std::uint64_t s = 0;
    const auto* p = &s;  // ASLR and the clock: not secret-grade, but unknown to a remote sender
    s = reinterpret_cast<std::uintptr_t>(p) ^
        static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    return (s * 0xbf58476d1ce4e5b9ULL) | 1;
  }();
  return salt;
}
}  // namespace broach::endpoint_detail

template <>
struct std::hash<broach::Endpoint> {
  std::size_t operator()(const broach::Endpoint& e) const noexcept {
    if (!e.v6) return std::hash<std::uint64_t>{}(e.key() * 0x9e3779b97f4a7c15ULL);
    std::uint64_t hi = 0, lo = 0;
    std::memcpy(&hi, e.ip6.data(), 8);
    std::memcpy(&lo, e.ip6.data() + 8, 8);
    const std::uint64_t s = broach::endpoint_detail::hash_salt();
    std::uint64_t h = (hi ^ s) * 0x9e3779b97f4a7c15ULL;
    h = (h ^ (h >> 29) ^ lo ^ (s << 7)) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 31) ^ e.port) * 0x94d049bb133111ebULL;
    return static_cast<std::size_t>(h ^ (h >> 32));
  }
};
