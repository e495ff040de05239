// Internal header. Time for protocol code: a monotonic TimePoint in
// nanoseconds that is either real (steady_clock) or virtual (simulation).
// Protocol code never reads steady_clock itself; it asks its Loop.
#pragma once

#include <chrono>
#include <cstdint>

namespace broach {

using Duration = std::chrono::nanoseconds;
/// Nanoseconds on a monotonic clock whose epoch is unspecified.
using TimePoint = std::chrono::time_point<std::chrono::steady_clock, Duration>;

using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::seconds;

/// Seconds as a double (config files speak seconds) to a Duration.
inline Duration seconds_f(double s) {
  return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(s));
}
inline double to_seconds(Duration d) { return std::chrono::duration<double>(d).count(); }
inline double to_ms(Duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

/// The real clock.
inline TimePoint steady_now() {
  return std::chrono::time_point_cast<Duration>(std::chrono::steady_clock::now());
}

}  // namespace broach
