// Test support: which seeds a simulated scenario runs.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <vector>

namespace broach::testing {

/// Seeds for a scenario: 1..N, N = 20 or $BROACH_SIM_SEEDS; or A..B when
/// $BROACH_SIM_SEEDS is "A-B" (to replay one failing seed: "179-179").
inline std::vector<std::uint64_t> sim_seeds(std::uint64_t fallback = 20) {
  const char* env = std::getenv("BROACH_SIM_SEEDS");
  std::uint64_t first = 1, last = fallback;
  if (env != nullptr) {
    char* end = nullptr;
    last = std::strtoull(env, &end, 10);
    if (end != nullptr && *end == '-') {
      first = last;
      last = std::strtoull(end + 1, nullptr, 10);
    }
  }
  std::vector<std::uint64_t> out;
  for (std::uint64_t s = first; s <= last; ++s) out.push_back(s);
  return out;
}

}  // namespace broach::testing
