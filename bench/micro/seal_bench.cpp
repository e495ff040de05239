// The seal's cost per datagram (params.broach.security), against libsodium's
// XChaCha20-Poly1305 called directly with the same nonce (which recomputes
// the HChaCha20 subkey every time): 16 B (a small call) and 1,400 B.
#include <benchmark/benchmark.h>
#include <sodium.h>

#include <vector>

#include "reliable/keyring.hpp"

namespace {

broach::reliable::Key key() {
  broach::reliable::Key k;
  for (std::size_t i = 0; i < k.bytes.size(); ++i) k.bytes[i] = static_cast<std::uint8_t>(i * 11 + 3);
  k.id = broach::reliable::key_id_of(k.bytes);
  return k;
}

void BM_Seal(benchmark::State& state) {
  if (sodium_init() < 0) state.SkipWithError("sodium_init");
  const auto k = key();
  std::vector<std::byte> header(56, std::byte{1}), data(static_cast<std::size_t>(state.range(0)), std::byte{2});
  std::array<std::byte, broach::reliable::kTagSize> tag{};
  std::uint64_t counter = 0;
  for (auto _ : state) {
    broach::reliable::seal(k, 0x1234, ++counter, header, data, tag);
    benchmark::DoNotOptimize(tag);
  }
}
BENCHMARK(BM_Seal)->Arg(16)->Arg(1400);

void BM_XChaChaDirect(benchmark::State& state) {
  if (sodium_init() < 0) state.SkipWithError("sodium_init");
  const auto k = key();
  std::vector<unsigned char> header(56, 1), data(static_cast<std::size_t>(state.range(0)), 2);
  unsigned char tag[16], nonce[24] = {0x34, 0x12};
  std::uint64_t counter = 0;
  for (auto _ : state) {
    ++counter;
    for (int i = 0; i < 8; ++i) nonce[16 + i] = static_cast<unsigned char>(counter >> (8 * i));
    crypto_aead_xchacha20poly1305_ietf_encrypt_detached(data.data(), tag, nullptr, data.data(), data.size(),
                                                        header.data(), header.size(), nullptr, nonce,
                                                        k.bytes.data());
    benchmark::DoNotOptimize(tag);
  }
}
BENCHMARK(BM_XChaChaDirect)->Arg(16)->Arg(1400);

}  // namespace

BENCHMARK_MAIN();
