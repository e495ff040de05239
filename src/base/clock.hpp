// Internal header. The clock seam: the time a node's threads read.
//
// A Loop's now() belongs to its loop thread; code that runs on callers' or
// workers' threads (a deadline check before a handler, the start time of a
// call sent from the caller's thread) reads a Clock instead. SteadyClock is
// the real one; a simulation passes a clock that reads its virtual time.
// Both read the same time base as the node's Loop.
// Thread contract: now() is safe from any thread.
#pragma once

#include "base/loop.hpp"
#include "base/time.hpp"

namespace broach {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint now() const = 0;
};

/// std::chrono::steady_clock, the time base of EpollLoop.
class SteadyClock final : public Clock {
 public:
  TimePoint now() const override { return steady_now(); }
};

/// The time of a single-threaded loop (SimLoop): only for simulations,
/// where every thread is the loop's thread.
class LoopClock final : public Clock {
 public:
  explicit LoopClock(const Loop& loop) : loop_(loop) {}
  TimePoint now() const override { return loop_.now(); }

 private:
  const Loop& loop_;
};

}  // namespace broach
