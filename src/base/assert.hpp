// Internal header. BROACH_ASSERT: our own invariants, checked in every build
// (release too); a failure prints the place and aborts, because continuing
// with corrupt protocol state would be worse. Never use it to validate input:
// network input is validated and dropped with a counter, API misuse throws
// Error{kInvalidArgument} through BROACH_REQUIRE.
#pragma once

#include "broach/error.hpp"

namespace broach::detail {
[[noreturn]] void assert_fail(const char* expr, const char* file, int line) noexcept;
}  // namespace broach::detail

#define BROACH_ASSERT(cond) \
  ((cond) ? (void)0 : ::broach::detail::assert_fail(#cond, __FILE__, __LINE__))

#define BROACH_REQUIRE(cond, msg)                                   \
  do {                                                              \
    if (!(cond)) throw ::broach::Error(::broach::Errc::kInvalidArgument, (msg)); \
  } while (0)
