// Keyring and the XChaCha20-Poly1305 seal (libsodium).
#include "reliable/keyring.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/assert.hpp"
#include "broach/error.hpp"

namespace broach::reliable {
namespace {

void ensure_sodium() {
  static const int rc = sodium_init();
  BROACH_ASSERT(rc >= 0);
}

// XChaCha20-Poly1305 with the 24-byte nonce node_id LE ‖ 8 zero bytes ‖
// counter LE is, by its definition, ChaCha20-Poly1305-IETF under the subkey
// HChaCha20(key, node_id ‖ 0^8) with the 12-byte nonce 0^4 ‖ counter LE.
// The subkey depends only on (key, sender), so it is computed once per
// sender and cached: one ChaCha20 block less per datagram.
struct Subkey {
  std::array<std::uint8_t, kKeySize> key{};  // compared whole: a Key may be a temporary
  std::uint64_t node_id = 0;
  bool valid = false;
  std::array<unsigned char, 32> bytes{};
};

const std::array<unsigned char, 32>& subkey_of(const Key& key, std::uint64_t node_id) {
  // Per thread, direct-mapped: senders seal under one (key, node id); the
  // loop opens for a few hundred senders at most at a time.
  thread_local std::array<Subkey, 256> cache;
  Subkey& e = cache[((node_id ^ key.id) * 0x9e3779b97f4a7c15ULL) >> 56];
  if (!e.valid || e.node_id != node_id || std::memcmp(e.key.data(), key.bytes.data(), kKeySize) != 0) {
    unsigned char in[16] = {};
    for (int i = 0; i < 8; ++i) in[i] = static_cast<unsigned char>(node_id >> (8 * i));
    crypto_core_hchacha20(e.bytes.data(), in, key.bytes.data(), nullptr);
    std::memcpy(e.key.data(), key.bytes.data(), kKeySize);
    e.node_id = node_id;
    e.valid = true;
  }
  return e.bytes;
}

std::array<unsigned char, 12> ietf_nonce(std::uint64_t counter) {
  std::array<unsigned char, 12> n{};
  for (int i = 0; i < 8; ++i) n[static_cast<std::size_t>(4 + i)] = static_cast<unsigned char>(counter >> (8 * i));
  return n;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::uint16_t key_id_of(std::span<const std::uint8_t, kKeySize> key) {
  ensure_sodium();
  static const char kPersonal[crypto_generichash_blake2b_PERSONALBYTES] = "broach-key-id";
  std::uint8_t out[8];
  crypto_generichash_blake2b_salt_personal(out, sizeof out, key.data(), key.size(), nullptr, 0, nullptr,
                                           reinterpret_cast<const unsigned char*>(kPersonal));
  const auto id = static_cast<std::uint16_t>(out[0] | (out[1] << 8));
  return id == 0 ? 1 : id;
}

std::optional<Key> key_from_base64(std::string_view text) {
  ensure_sodium();
  text = trim(text);
  Key k;
  std::size_t len = 0;
  if (sodium_base642bin(k.bytes.data(), k.bytes.size(), text.data(), text.size(), nullptr, &len, nullptr,
                        sodium_base64_VARIANT_ORIGINAL) != 0 ||
      len != kKeySize) {
    return std::nullopt;
  }
  k.id = key_id_of(k.bytes);
  return k;
}

std::string Keyring::to_base64(const Key& k) {
  ensure_sodium();
  char out[sodium_base64_ENCODED_LEN(kKeySize, sodium_base64_VARIANT_ORIGINAL)];
  sodium_bin2base64(out, sizeof out, k.bytes.data(), k.bytes.size(), sodium_base64_VARIANT_ORIGINAL);
  return out;
}

std::string Keyring::generate_base64() {
  ensure_sodium();
  Key k;
  randombytes_buf(k.bytes.data(), k.bytes.size());
  return to_base64(k);
}

void Keyring::add(const Key& k, const std::string& where) {
  for (const auto& o : keys_) {
    if (o.id == k.id) {
      throw Error(Errc::kBadConfig, where + ": two keys share key id " + std::to_string(k.id) +
                                        (o.bytes == k.bytes ? " (the same key twice)" : " (generate another key)"));
    }
  }
  keys_.push_back(k);
}

Keyring Keyring::from_base64(const std::vector<std::string>& keys, const std::string& where) {
  Keyring r;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    auto k = key_from_base64(keys[i]);
    const std::string at = where + "[" + std::to_string(i) + "]";
    if (!k) throw Error(Errc::kBadConfig, at + ": not a key (base64 of 32 bytes; make one with broach keygen)");
    r.add(*k, at);
  }
  return r;
}

Keyring Keyring::parse(std::string_view text, const std::string& where) {
  Keyring r;
  std::size_t line_no = 0;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    std::string_view line = trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    if (line.empty() || line.front() == '#') continue;
    const std::string at = where + ": line " + std::to_string(line_no);
    auto k = key_from_base64(line);
    if (!k) throw Error(Errc::kBadConfig, at + ": not a key (base64 of 32 bytes; make one with broach keygen)");
    r.add(*k, at);
  }
  if (r.empty()) throw Error(Errc::kBadConfig, where + ": no key in the keyring");
  return r;
}

Keyring Keyring::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(Errc::kBadConfig, path + ": cannot open keyring: " + std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path);
}

std::string Keyring::to_text() const {
  std::string out = "# BroachRpc keyring: one base64 key per line; the first one seals.\n";
  for (const auto& k : keys_) out += to_base64(k) + "\n";
  return out;
}

void Keyring::save(const std::string& path) const {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw Error(Errc::kIoError, tmp + ": cannot write keyring: " + std::strerror(errno));
  const std::string text = to_text();
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    ::unlink(tmp.c_str());
    throw Error(Errc::kIoError, path + ": cannot write keyring: " + std::strerror(errno));
  }
}

const Key* Keyring::find(std::uint16_t id) const {
  for (const auto& k : keys_) {
    if (k.id == id) return &k;
  }
  return nullptr;
}

Keyring Keyring::with(const Key& k) const {
  if (find(k.id)) return *this;
  Keyring r = *this;
  r.add(k, "keyring");
  return r;
}

Keyring Keyring::with_primary(std::uint16_t id) const {
  const Key* k = find(id);
  if (!k) throw Error(Errc::kInvalidArgument, "key " + std::to_string(id) + " is not in the keyring");
  Keyring r;
  r.keys_.push_back(*k);
  for (const auto& o : keys_) {
    if (o.id != id) r.keys_.push_back(o);
  }
  return r;
}

Keyring Keyring::without(std::uint16_t id) const {
  if (find(id) == nullptr) throw Error(Errc::kInvalidArgument, "key " + std::to_string(id) + " is not in the keyring");
  if (primary().id == id) {
    throw Error(Errc::kInvalidArgument, "key " + std::to_string(id) + " seals: make another key primary first");
  }
  Keyring r;
  for (const auto& o : keys_) {
    if (o.id != id) r.keys_.push_back(o);
  }
  return r;
}

void seal(const Key& key, std::uint64_t node_id, std::uint64_t counter, std::span<const std::byte> header,
          std::span<std::byte> data, std::span<std::byte, kTagSize> tag) {
  const auto nonce = ietf_nonce(counter);
  auto* d = reinterpret_cast<unsigned char*>(data.data());
  crypto_aead_chacha20poly1305_ietf_encrypt_detached(
      d, reinterpret_cast<unsigned char*>(tag.data()), nullptr, d, data.size(),
      reinterpret_cast<const unsigned char*>(header.data()), header.size(), nullptr, nonce.data(),
      subkey_of(key, node_id).data());
}

bool open(const Key& key, std::uint64_t node_id, std::uint64_t counter, std::span<const std::byte> header,
          std::span<std::byte> data, std::span<const std::byte, kTagSize> tag) {
  const auto nonce = ietf_nonce(counter);
  auto* d = reinterpret_cast<unsigned char*>(data.data());
  return crypto_aead_chacha20poly1305_ietf_decrypt_detached(
             d, nullptr, d, data.size(), reinterpret_cast<const unsigned char*>(tag.data()),
             reinterpret_cast<const unsigned char*>(header.data()), header.size(), nonce.data(),
             subkey_of(key, node_id).data()) == 0;
}

}  // namespace broach::reliable
