// Internal header. The event-loop seam every protocol object is built on.
//
// A Loop gives a protocol object its time, its timers and the one way to reach
// it from other threads (post). Real time: EpollLoop (transport/). Virtual
// time: SimLoop (sim/). Thread contract: now/run_at/cancel only on the loop
// thread; post is safe from any thread.
#pragma once

#include <cstdint>
#include <functional>

#include "base/assert.hpp"
#include "base/time.hpp"

namespace broach {

using Task = std::function<void()>;
using TimerId = std::uint64_t;
inline constexpr TimerId kNoTimer = 0;

class Loop {
 public:
  virtual ~Loop() = default;
  /// Current time of this loop (virtual under simulation).
  virtual TimePoint now() const = 0;
  /// Runs `task` on the loop at or after `when`. Loop thread only.
  virtual TimerId run_at(TimePoint when, Task task) = 0;
  TimerId run_after(Duration d, Task task) { return run_at(now() + d, std::move(task)); }
  /// Cancels a timer; a no-op when it already ran or was cancelled. Loop thread only.
  virtual void cancel(TimerId id) = 0;
  /// Queues `task` to run on the loop thread soon. Safe from any thread.
  virtual void post(Task task) = 0;
  /// Like post(), but returns false (and drops `task`) when the loop has
  /// finished for good and would never run it, so the caller can report that.
  virtual bool try_post(Task task) {
    post(std::move(task));
    return true;
  }
  /// Like try_post(), but does not wake the loop: the task runs at the
  /// loop's next wake-up (a datagram, a timer, another post). For
  /// bookkeeping that is not urgent, saving a thread wake-up. Owners must
  /// keep a periodic timer so that "next wake-up" is bounded.
  virtual bool try_post_lazy(Task task) { return try_post(std::move(task)); }
  /// True when the calling thread is the loop thread.
  virtual bool in_loop_thread() const = 0;
  /// `hook` runs on the loop thread after each batch of events (I/O, due
  /// timers, posted tasks), before the loop waits again: where the datagram
  /// path flushes what it coalesced. Returns an id for remove_idle_hook.
  /// Loop thread, or while the loop is not running.
  virtual std::uint64_t add_idle_hook(Task hook) = 0;
  virtual void remove_idle_hook(std::uint64_t id) = 0;
};

}  // namespace broach

/// Opens a function that only the loop's own thread may run: aborts with the
/// place when another thread calls it. Checked in debug, sanitizer and
/// `make test` builds (no NDEBUG); compiled out under NDEBUG unless
/// BROACH_CHECK_THREADS is defined.
#if defined(NDEBUG) && !defined(BROACH_CHECK_THREADS)
#define BROACH_ASSERT_IN_LOOP(loop) ((void)0)
#else
#define BROACH_ASSERT_IN_LOOP(loop) BROACH_ASSERT((loop).in_loop_thread())
#endif
