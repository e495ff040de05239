// Public header. An IPv4 UDP endpoint ("ip:port") as a small value type, and
// the one parser of "a.b.c.d:port" text used everywhere (config file, command
// line, node wiring, tools), so every place accepts exactly the same spellings.
// The parser is defined inline here so that any layer may use it without
// linking the transport library (config validates addresses with it).
// Thread contract: immutable value; the parse functions are pure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>

namespace broach {

struct Endpoint {
  std::uint32_t ip = 0;    ///< host byte order
  std::uint16_t port = 0;

  friend bool operator==(const Endpoint&, const Endpoint&) = default;
  friend auto operator<=>(const Endpoint&, const Endpoint&) = default;
  std::string to_string() const;
  /// The dotted IPv4 address alone ("a.b.c.d").
  std::string ip_string() const;
  std::uint64_t key() const { return (static_cast<std::uint64_t>(ip) << 16) | port; }

  /// Parses "a.b.c.d:port": a dotted IPv4 address (four octets 0-255, each
  /// 1-3 decimal digits, no leading zero, sign or space), ':' and a decimal
  /// port 0-65535 (no leading zero, sign or space); no other text. Host names
  /// are not resolved and IPv6 is not supported.
  /// Port 0 is accepted only when allow_port_zero is true (a bind address:
  /// "pick a free port"). An address one sends to (a seed, --to, a provider)
  /// needs a real port: such callers pass allow_port_zero = false.
  /// On failure returns false, leaves `out` unchanged and, when `why` is not
  /// null, sets it to a short reason ("missing ':port'", "not an IPv4 address:
  /// x", "port out of range: 70000", ...).
  static bool parse(std::string_view text, Endpoint& out, std::string* why = nullptr,
                    bool allow_port_zero = true);
  /// Parses a dotted IPv4 address with the same rules as the address part of
  /// parse(); false when malformed (`out` is then unchanged).
  static bool parse_ip(std::string_view text, std::uint32_t& out);
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
  const auto colon = text.find(':');
  std::uint32_t ip = 0;
  const bool ip_ok = colon != std::string_view::npos && parse_ip(text.substr(0, colon), ip);
  // "[::1]:80", "::1", "fe80::1:80": brackets, or several ':' without an
  // IPv4 address before the first one.
  const bool looks_ipv6 = text.front() == '[' ||
                          (colon != std::string_view::npos && !ip_ok &&
                           text.find(':', colon + 1) != std::string_view::npos);
  if (looks_ipv6) return fail(why, "not an IPv4 address (IPv6 is not supported): " + str(text));
  if (colon == std::string_view::npos) return fail(why, "missing ':port'");
  if (colon == 0) return fail(why, "missing IP address before ':'");
  if (!ip_ok) return fail(why, "not an IPv4 address: " + str(text.substr(0, colon)));
  const auto ps = text.substr(colon + 1);
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
  out.ip = ip;
  out.port = static_cast<std::uint16_t>(port);
  return true;
}

}  // namespace broach

template <>
struct std::hash<broach::Endpoint> {
  std::size_t operator()(const broach::Endpoint& e) const noexcept {
    return std::hash<std::uint64_t>{}(e.key() * 0x9e3779b97f4a7c15ULL);
  }
};
