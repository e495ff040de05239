// Public header. An IPv4 UDP endpoint ("ip:port") as a small value type.
// Thread contract: immutable value.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace broach {

struct Endpoint {
  std::uint32_t ip = 0;    ///< host byte order
  std::uint16_t port = 0;

  friend bool operator==(const Endpoint&, const Endpoint&) = default;
  friend auto operator<=>(const Endpoint&, const Endpoint&) = default;
  std::string to_string() const;
  std::uint64_t key() const { return (static_cast<std::uint64_t>(ip) << 16) | port; }
  /// Parses "a.b.c.d:port" strictly; false when malformed.
  static bool parse(std::string_view text, Endpoint& out);
  /// Parses a dotted IPv4 address; false when malformed.
  static bool parse_ip(std::string_view text, std::uint32_t& out);
};

}  // namespace broach

template <>
struct std::hash<broach::Endpoint> {
  std::size_t operator()(const broach::Endpoint& e) const noexcept {
    return std::hash<std::uint64_t>{}(e.key() * 0x9e3779b97f4a7c15ULL);
  }
};
