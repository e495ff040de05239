#include "base/allocator.hpp"

#include <cstdlib>
#include <cstring>
#include <mutex>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace broach {

AllocatorTuning tune_allocator(std::size_t mmap_threshold, std::size_t trim_threshold) {
#if defined(__GLIBC__)
  static std::once_flag once;
  AllocatorTuning result = AllocatorTuning::kAlreadyDone;
  std::call_once(once, [&] {
    // Each threshold the environment sets is left to it, the other is still
    // set: MALLOC_MMAP_THRESHOLD_ alone used to turn the whole tuning off,
    // and glibc's 128 KiB trim threshold then handed the heap's top back to
    // the kernel after every large buffer (the membership scale benchmark,
    // run with that variable, spent most of its time in brk and page faults).
    const char* tunables = std::getenv("GLIBC_TUNABLES");
    if (tunables != nullptr && std::strstr(tunables, "glibc.malloc.") != nullptr) {
      result = AllocatorTuning::kLeftToEnvironment;
      return;
    }
    const bool env_mmap = std::getenv("MALLOC_MMAP_THRESHOLD_") != nullptr;
    const bool env_trim = std::getenv("MALLOC_TRIM_THRESHOLD_") != nullptr;
    if (env_mmap && env_trim) {
      result = AllocatorTuning::kLeftToEnvironment;
      return;
    }
    // Setting either option also turns glibc's dynamic adjustment off.
    if (!env_mmap) ::mallopt(M_MMAP_THRESHOLD, static_cast<int>(mmap_threshold));
    if (!env_trim) ::mallopt(M_TRIM_THRESHOLD, static_cast<int>(trim_threshold));
    result = AllocatorTuning::kApplied;
  });
  return result;
#else
  (void)mmap_threshold;
  (void)trim_threshold;
  return AllocatorTuning::kUnsupported;
#endif
}

}  // namespace broach
