// Internal header. Where request handlers run.
//
// The real ThreadPool (exec/) implements it with the seed's semantics; the
// simulation uses InlineExecutor so that a 1,000-node run is one thread and
// replays exactly. Thread contract: submit is safe from any thread.
#pragma once

#include <cstddef>
#include <span>

#include "base/loop.hpp"
#include "broach/error.hpp"

namespace broach {

class Executor {
 public:
  virtual ~Executor() = default;
  /// Runs `task` now or later. Returns kOk when the task ran or will run,
  /// kQueueFull when it was refused (isExcInfo=true and the pool is full),
  /// kPoolShutdown when the executor no longer accepts work. A refused task is
  /// destroyed without running; the caller must report the refusal.
  virtual Errc try_submit(Task task) noexcept = 0;
  /// try_submit of each task in order, results[i] for tasks[i]
  /// (results.size() >= tasks.size()). An executor may do it more cheaply
  /// than one by one (ThreadPool: one lock, one wake-up).
  virtual void try_submit_batch(std::span<Task> tasks, std::span<Errc> results) noexcept {
    for (std::size_t i = 0; i < tasks.size(); ++i) results[i] = try_submit(std::move(tasks[i]));
  }
  /// Called now and then while work is outstanding: an executor that runs
  /// a backlog of short tasks on one thread wakes another when nobody has
  /// taken a task for a while (the busy threads are stuck in long ones).
  virtual void nudge() noexcept {}
};

/// Runs every task on the submitting thread, at once.
class InlineExecutor final : public Executor {
 public:
  Errc try_submit(Task task) noexcept override {
    task();
    return Errc::kOk;
  }
};

}  // namespace broach
