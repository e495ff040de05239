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
    const char* tunables = std::getenv("GLIBC_TUNABLES");
    if (std::getenv("MALLOC_MMAP_THRESHOLD_") != nullptr || std::getenv("MALLOC_TRIM_THRESHOLD_") != nullptr ||
        (tunables != nullptr && std::strstr(tunables, "glibc.malloc.") != nullptr)) {
      result = AllocatorTuning::kLeftToEnvironment;
      return;
    }
    // Setting either option also turns glibc's dynamic adjustment off.
    ::mallopt(M_MMAP_THRESHOLD, static_cast<int>(mmap_threshold));
    ::mallopt(M_TRIM_THRESHOLD, static_cast<int>(trim_threshold));
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
