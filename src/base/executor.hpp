// Internal header. Where request handlers run.
//
// The real ThreadPool (exec/) implements it with the seed's semantics; the
// simulation uses InlineExecutor so that a 1,000-node run is one thread and
// replays exactly. Thread contract: submit is safe from any thread.
#pragma once

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
