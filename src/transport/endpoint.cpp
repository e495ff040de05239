#include "transport/endpoint.hpp"

#include <charconv>

namespace broach {

std::string Endpoint::to_string() const {
  return std::to_string(ip >> 24) + "." + std::to_string((ip >> 16) & 0xff) + "." +
         std::to_string((ip >> 8) & 0xff) + "." + std::to_string(ip & 0xff) + ":" +
         std::to_string(port);
}

bool Endpoint::parse_ip(std::string_view text, std::uint32_t& out) {
  std::uint32_t ip = 0;
  const char* p = text.data();
  const char* end = text.data() + text.size();
  for (int i = 0; i < 4; ++i) {
    if (i > 0) {
      if (p == end || *p != '.') return false;
      ++p;
    }
    if (p == end || *p < '0' || *p > '9') return false;
    unsigned octet = 0;
    auto [q, ec] = std::from_chars(p, end, octet);
    if (ec != std::errc() || octet > 255 || q - p > 3) return false;
    p = q;
    ip = (ip << 8) | octet;
  }
  if (p != end) return false;
  out = ip;
  return true;
}

bool Endpoint::parse(std::string_view text, Endpoint& out) {
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return false;
  std::uint32_t ip = 0;
  if (!parse_ip(text.substr(0, colon), ip)) return false;
  const auto ps = text.substr(colon + 1);
  if (ps.empty() || ps.size() > 5) return false;
  unsigned port = 0;
  auto [q, ec] = std::from_chars(ps.data(), ps.data() + ps.size(), port);
  if (ec != std::errc() || q != ps.data() + ps.size() || port == 0 || port > 65535) return false;
  out.ip = ip;
  out.port = static_cast<std::uint16_t>(port);
  return true;
}

}  // namespace broach
