// Endpoint::to_string and ip_string. The parser (Endpoint::parse, Endpoint::parse_ip) is
// defined inline in include/broach/endpoint.hpp so that layers below
// transport (config) use the very same rules without linking this library.
#include "transport/endpoint.hpp"

namespace broach {

std::string Endpoint::ip_string() const {
  if (v6) {
    char buf[INET6_ADDRSTRLEN];
    return inet_ntop(AF_INET6, ip6.data(), buf, sizeof(buf)) != nullptr ? std::string(buf) : std::string("?");
  }
  return std::to_string(ip >> 24) + "." + std::to_string((ip >> 16) & 0xff) + "." +
         std::to_string((ip >> 8) & 0xff) + "." + std::to_string(ip & 0xff);
}

std::string Endpoint::to_string() const {
  if (v6) return "[" + ip_string() + "]:" + std::to_string(port);
  return ip_string() + ":" + std::to_string(port);
}

}  // namespace broach
