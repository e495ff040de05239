// The public key helpers (broach/security.hpp) over reliable::Keyring.
#include "broach/security.hpp"

#include <cstdio>

#include "reliable/keyring.hpp"

namespace broach {

std::string generate_keyring() {
  const auto ring = reliable::Keyring::from_base64({reliable::Keyring::generate_base64()}, "generated");
  return ring.to_text();
}

std::string keyring_ids(const std::string& path) {
  const auto ring = reliable::Keyring::load(path);
  std::string out;
  for (const auto& k : ring.keys()) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%04x", k.id);
    out += (out.empty() ? "" : " ") + std::string(buf);
  }
  return out;
}

}  // namespace broach
