#include "base/assert.hpp"

#include <cstdio>
#include <cstdlib>

namespace broach::detail {

void assert_fail(const char* expr, const char* file, int line) noexcept {
  std::fprintf(stderr, "broach: assertion failed: %s at %s:%d\n", expr, file, line);
  std::fflush(stderr);
  std::abort();
}

}  // namespace broach::detail
