// Internal header. Bursts: work a pool worker may put off while it has more
// queued tasks to run, and does in one go when it runs out.
//
// A worker of ThreadPool runs its tasks inside a burst. Code running in a
// task (Engine::respond_from_any_thread) may defer a flush to the end of the
// burst instead of paying a system call or a thread wake-up per task: the
// responses of 64 short handlers then leave in a few coalesced datagrams
// instead of 64 sends.
//
// The burst ends, and every deferred flush runs, before the worker
//  - waits for work (the queue is empty: a lone call is never held back),
//  - starts another task when what is deferred is kMaxHold old or older, or
//    kMaxItems items were deferred, or the task it just ran took kMaxHold or
//    longer (slow handlers gain nothing from holding responses back).
// So a deferred item waits at most kMaxHold plus the run time of one other
// task that followed only short tasks (documented in docs/performance.md).
//
// Thread contract: everything here is per thread (thread_local state); no
// function touches another thread's burst.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace broach::burst {

using Flush = void (*)(void* owner);

inline constexpr std::chrono::nanoseconds kMaxHold = std::chrono::microseconds(20);
inline constexpr std::size_t kMaxItems = 64;
inline constexpr std::size_t kMaxFlushes = 4;  ///< distinct owners deferring in one burst

struct State {
  bool open = false;  ///< this thread runs tasks in bursts (a pool worker)
  std::size_t items = 0;
  std::size_t flushes = 0;
  std::chrono::steady_clock::time_point first{};
  std::chrono::steady_clock::time_point task_start{};
  bool last_task_long = false;
  struct Entry {
    Flush fn;
    void* owner;
  } entry[kMaxFlushes];
};

inline State& state() {
  thread_local State s;
  return s;
}

/// Runs every deferred flush, in the order they were first deferred.
inline void flush() {
  State& s = state();
  while (s.flushes > 0) {
    // A flush may defer again (it should not); take the list first.
    const std::size_t n = s.flushes;
    State::Entry e[kMaxFlushes];
    for (std::size_t i = 0; i < n; ++i) e[i] = s.entry[i];
    s.flushes = 0;
    s.items = 0;
    for (std::size_t i = 0; i < n; ++i) e[i].fn(e[i].owner);
  }
  s.items = 0;
}

/// True when the calling thread runs in a burst and may defer.
inline bool active() { return state().open; }

/// Defers `fn(owner)` to the end of the burst (once per (fn, owner)), for
/// one more item. Only when active(). When the burst already holds
/// kMaxFlushes owners, the oldest are flushed first.
inline void defer(Flush fn, void* owner) {
  State& s = state();
  bool known = false;
  for (std::size_t i = 0; i < s.flushes; ++i) known = known || (s.entry[i].fn == fn && s.entry[i].owner == owner);
  if (!known) {
    if (s.flushes == kMaxFlushes) flush();
    if (s.flushes == 0) s.first = std::chrono::steady_clock::now();
    s.entry[s.flushes++] = State::Entry{fn, owner};
  }
  ++s.items;
}

// --- For the thread that runs the tasks (ThreadPool's workers). ---

/// Marks the calling thread as running tasks in bursts.
inline void open_on_this_thread() { state().open = true; }

/// Before a task runs, with more queued: ends the burst first when it is due.
/// Returns true when it flushed.
inline bool before_task() {
  State& s = state();
  bool flushed = false;
  if (s.flushes > 0) {
    const auto now = std::chrono::steady_clock::now();
    if (s.last_task_long || s.items >= kMaxItems || now - s.first >= kMaxHold) {
      flush();
      flushed = true;
    }
  }
  s.task_start = std::chrono::steady_clock::now();
  return flushed;
}

/// After a task ran.
inline void after_task() {
  State& s = state();
  s.last_task_long = std::chrono::steady_clock::now() - s.task_start >= kMaxHold;
}

/// True when something is deferred.
inline bool pending() { return state().flushes > 0; }

}  // namespace broach::burst
