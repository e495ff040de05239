// Internal header. Keys that seal datagrams, and the seal itself.
//
// A keyring is an ordered set of 32-byte keys shared by the members of a
// cluster: the first (primary) key seals what this node sends; any key of
// the ring opens what it receives, so a cluster can rotate keys without
// downtime (install a new key everywhere, make it primary, remove the old).
// A key's 16-bit id, carried in every sealed header, is derived from the key
// itself (key_id_of), so rings need no id bookkeeping and two nodes can never
// disagree about which id a key has.
//
// The seal is XChaCha20-Poly1305 (libsodium, IETF variant): the 24-byte
// nonce is the sender's node id (8 bytes LE), 8 zero bytes and its
// per-life datagram counter (8 bytes LE); the associated data is the whole 56-byte
// header as sent; the 16-byte tag follows the ciphertext. docs/protocol.md
// ("Sealed datagrams") is the specification.
// Thread contract: a Keyring is immutable once built (share it through a
// shared_ptr<const Keyring>); the functions are stateless and thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace broach::reliable {

inline constexpr std::size_t kKeySize = 32;
inline constexpr std::size_t kTagSize = 16;

struct Key {
  std::uint16_t id = 0;
  std::array<std::uint8_t, kKeySize> bytes{};
};

/// The id of a key: the first two bytes (little-endian) of BLAKE2b-64 of the
/// key under the personal string "broach-key-id" (0 becomes 1).
std::uint16_t key_id_of(std::span<const std::uint8_t, kKeySize> key);

class Keyring {
 public:
  Keyring() = default;
  /// `keys` in order, the first one seals. Throws Error{kBadConfig} naming
  /// `where` when a key is not base64 of 32 bytes or two keys share an id.
  static Keyring from_base64(const std::vector<std::string>& keys, const std::string& where);
  /// The keyring file format: one base64 key per line, the first seals;
  /// blank lines and lines starting with '#' are ignored.
  static Keyring parse(std::string_view text, const std::string& where);
  /// Reads a keyring file. Throws Error{kBadConfig} naming the file.
  static Keyring load(const std::string& path);
  /// A fresh random key (libsodium's CSPRNG), base64.
  static std::string generate_base64();

  std::string to_text() const;
  /// Writes the ring to `path` atomically (temporary file, fsync, rename),
  /// readable by the owner only.
  void save(const std::string& path) const;

  bool empty() const { return keys_.empty(); }
  const Key& primary() const { return keys_.front(); }
  const Key* find(std::uint16_t id) const;
  const std::vector<Key>& keys() const { return keys_; }
  static std::string to_base64(const Key& k);

  /// A ring with `k` added (at the end; no change if present).
  Keyring with(const Key& k) const;
  /// A ring with key `id` first (it seals). Throws when it is not in the ring.
  Keyring with_primary(std::uint16_t id) const;
  /// A ring without key `id`. Throws when it is the primary.
  Keyring without(std::uint16_t id) const;

 private:
  void add(const Key& k, const std::string& where);
  std::vector<Key> keys_;
};

/// Decodes one base64 key; nullopt when it is not base64 of 32 bytes.
std::optional<Key> key_from_base64(std::string_view text);

/// Seals `data` in place (plaintext in, ciphertext out) and writes the tag.
/// `header` is the associated data.
void seal(const Key& key, std::uint64_t node_id, std::uint64_t counter, std::span<const std::byte> header,
          std::span<std::byte> data, std::span<std::byte, kTagSize> tag);
/// Opens `data` in place; false (and `data` unspecified) when the tag does
/// not verify.
bool open(const Key& key, std::uint64_t node_id, std::uint64_t counter, std::span<const std::byte> header,
          std::span<std::byte> data, std::span<const std::byte, kTagSize> tag);

}  // namespace broach::reliable
