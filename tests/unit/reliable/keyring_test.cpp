// The seal is exactly XChaCha20-Poly1305 with the nonce docs/protocol.md
// gives (node_id LE, 8 zero bytes, counter LE), whatever the per-sender
// subkey cache does; and it opens only with the same key, sender, counter
// and header.
#include <gtest/gtest.h>
#include <sodium.h>

#include <cstring>
#include <vector>

#include "reliable/keyring.hpp"

namespace broach::reliable {
namespace {

Key make_key(std::uint8_t fill) {
  Key k;
  for (std::size_t i = 0; i < k.bytes.size(); ++i) k.bytes[i] = static_cast<std::uint8_t>(fill + i * 7);
  k.id = key_id_of(k.bytes);
  return k;
}

std::vector<std::byte> bytes(std::size_t n, std::uint8_t seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>(seed + i * 13);
  return v;
}

TEST(Seal, IsXChaCha20Poly1305WithTheDocumentedNonce) {
  ASSERT_GE(sodium_init(), 0);
  const auto header = bytes(56, 1);
  for (std::uint64_t node : {1ull, 0x0123456789abcdefull}) {
    for (std::uint64_t counter : {1ull, 2ull, 0xfffffffffull}) {
      for (std::uint8_t fill : {3, 200}) {
        const Key key = make_key(fill);
        auto data = bytes(100, 9);
        const auto plain = data;
        std::array<std::byte, kTagSize> tag{};
        seal(key, node, counter, header, data, tag);
        // Reference: libsodium's XChaCha20-Poly1305 with the documented nonce.
        unsigned char nonce[24] = {};
        for (int i = 0; i < 8; ++i) {
          nonce[i] = static_cast<unsigned char>(node >> (8 * i));
          nonce[16 + i] = static_cast<unsigned char>(counter >> (8 * i));
        }
        std::vector<unsigned char> ref(plain.size());
        unsigned char ref_tag[16];
        crypto_aead_xchacha20poly1305_ietf_encrypt_detached(
            ref.data(), ref_tag, nullptr, reinterpret_cast<const unsigned char*>(plain.data()), plain.size(),
            reinterpret_cast<const unsigned char*>(header.data()), header.size(), nullptr, nonce, key.bytes.data());
        EXPECT_EQ(std::memcmp(ref.data(), data.data(), ref.size()), 0);
        EXPECT_EQ(std::memcmp(ref_tag, tag.data(), 16), 0);
        auto opened = data;
        ASSERT_TRUE(open(key, node, counter, header, opened, tag));
        EXPECT_EQ(opened, plain);
      }
    }
  }
}

TEST(Seal, OpensOnlyWithTheSameKeySenderCounterAndHeader) {
  ASSERT_GE(sodium_init(), 0);
  const Key a = make_key(1), b = make_key(2);
  auto header = bytes(56, 4);
  auto data = bytes(40, 5);
  std::array<std::byte, kTagSize> tag{};
  seal(a, 77, 5, header, data, tag);
  auto try_open = [&](const Key& k, std::uint64_t node, std::uint64_t counter, std::vector<std::byte> h) {
    auto d = data;
    return open(k, node, counter, h, d, tag);
  };
  EXPECT_TRUE(try_open(a, 77, 5, header));
  EXPECT_FALSE(try_open(b, 77, 5, header));
  EXPECT_FALSE(try_open(a, 78, 5, header));
  EXPECT_FALSE(try_open(a, 77, 6, header));
  auto h2 = header;
  h2[10] ^= std::byte{1};
  EXPECT_FALSE(try_open(a, 77, 5, h2));
  // Keys that are temporaries at one address: the subkey cache must notice.
  for (std::uint8_t fill = 0; fill < 50; ++fill) {
    const Key k = make_key(fill);
    auto d = bytes(20, fill);
    std::array<std::byte, kTagSize> t{};
    seal(k, 1, 1, header, d, t);
    const Key other = make_key(static_cast<std::uint8_t>(fill + 1));
    auto d2 = d;
    EXPECT_FALSE(open(other, 1, 1, header, d2, t));
    EXPECT_TRUE(open(k, 1, 1, header, d, t));
  }
}

}  // namespace
}  // namespace broach::reliable
