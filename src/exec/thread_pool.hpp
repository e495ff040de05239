// Internal header. ThreadPool: the worker pool that runs request handlers, with
// the Python seed's semantics (params.threadPool), behind the base Executor.
//
// Layer: exec (depends on base only). Thread contract: try_submit, submit,
// shutdown and stats are safe from any thread, including from inside one of
// this pool's own tasks. The destructor must not run on one of the pool's own
// threads (asserted).
//
// The rules, in the order try_submit applies them:
//   1. After shutdown() started, every submit is refused with kPoolShutdown.
//   2. Room in the queue (< queue_max): the task is queued. If the queue now
//      holds more than create_thread_threshold tasks and threads < thread_max,
//      one extra thread is started (the seed starts it even when a thread is
//      idle; so do we).
//   3. Queue full, threads < thread_max: a new thread is started and runs this
//      task before it takes anything from the queue.
//   4. Queue and threads full: is_exc_info=true refuses (kQueueFull, the task
//      is destroyed unrun); false runs the task on the submitting thread
//      before try_submit returns (caller-runs, which also slows the producer).
// `core` threads start in the constructor and live until shutdown; the others
// exit after keep_alive_time seconds without a task. A task that throws is
// caught, logged at error and counted; its worker keeps going.
//
// What it deliberately does not do: priorities, futures/results (a task is a
// void() closure; the caller wires its own reply), or cancelling queued work.
//
// Locking: one Mutex (mu_) guards the queue and the worker bookkeeping; the
// members it guards say so (BROACH_GUARDED_BY) and the helpers that run under
// it say so (BROACH_REQUIRES), checked by clang -Wthread-safety (make tsa).
// Tasks always run with mu_ released.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/executor.hpp"
#include "base/thread_annotations.hpp"
#include "base/time.hpp"
#include "broach/config.hpp"

namespace broach {

class ThreadPool final : public Executor {
 public:
  /// Validates `config` (core >= 1, thread_max >= core, queue_max >= 1,
  /// create_thread_threshold >= 0, keep_alive_time finite and >= 0) and starts
  /// the core threads. `name` prefixes the thread names and log lines.
  /// Throws Error{kInvalidArgument} on a bad config.
  explicit ThreadPool(const ThreadPoolConfig& config, std::string name = "broach-pool");
  /// Calls shutdown(): every queued task still runs before this returns.
  ~ThreadPool() override;
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  /// Runs `task` on the pool, or on the calling thread when the pool is full
  /// and is_exc_info is false. Returns kOk (ran or will run exactly once),
  /// kQueueFull (refused: full and is_exc_info), kPoolShutdown (refused: shut
  /// down) or kInvalidArgument (empty task). A refused task is destroyed
  /// unrun. Safe from any thread.
  Errc try_submit(Task task) noexcept override BROACH_EXCLUDES(mu_);
  /// try_submit for each task in order (same rules, same results), under
  /// one lock and with at most one wake-up. Tasks that were queued or
  /// refused are left empty; caller-runs tasks run before this returns.
  void try_submit_batch(std::span<Task> tasks, std::span<Errc> results) noexcept override
      BROACH_EXCLUDES(mu_);
  /// Wakes an idle worker when tasks are queued and nobody has taken one
  /// for kSpreadAfter. Any thread.
  void nudge() noexcept override BROACH_EXCLUDES(mu_);
  /// try_submit, but a refusal throws Error{kQueueFull | kPoolShutdown |
  /// kInvalidArgument}.
  void submit(Task task) BROACH_EXCLUDES(mu_);

  /// Stops accepting work, lets the workers run every task already queued,
  /// then joins them. Idempotent; concurrent callers all wait.
  /// Called from one of this pool's own tasks it cannot wait for its own
  /// thread, so it only stops accepting and returns at once: the workers
  /// (the caller's too, once its task returns) still drain the queue, and
  /// the destructor or a later shutdown() from outside joins them.
  void shutdown() BROACH_EXCLUDES(mu_);

  /// Counters. Each field is exact when read, but they are read one at a
  /// time: the set is not one atomic snapshot while tasks are running.
  /// A backlog is spread over more threads when its tasks take this long on
  /// average, or when nobody has taken a task for this long.
  static constexpr std::chrono::nanoseconds kSpreadAfter = std::chrono::microseconds(20);
  struct Stats {
    std::size_t threads = 0;            ///< live worker threads
    std::size_t idle = 0;               ///< workers waiting for a task
    std::size_t queued = 0;             ///< tasks in the queue (not yet started)
    std::size_t peak_threads = 0;       ///< most live workers ever
    std::uint64_t completed = 0;        ///< tasks finished, on workers or callers, thrown or not
    std::uint64_t rejected = 0;         ///< kQueueFull refusals (shutdown refusals are not counted)
    std::uint64_t caller_ran = 0;       ///< tasks run on the submitting thread (pool full)
    std::uint64_t task_exceptions = 0;  ///< tasks that threw (logged, swallowed)
    /// Moving average of task run times: at kSpreadAfter or above, a backlog
    /// is spread over idle workers; below, left to the one woken.
    std::chrono::nanoseconds avg_task{0};
  };
  Stats stats() const BROACH_EXCLUDES(mu_);
  const ThreadPoolConfig& config() const noexcept { return config_; }
  /// True when the calling thread is one of this pool's workers.
  bool in_worker_thread() const noexcept;
  const std::string& name() const noexcept { return name_; }

 private:
  struct Worker {
    std::thread thread;
    Task first;  ///< rule 3: run before anything queued
  };

  bool spawn_locked(Task& first, bool core) BROACH_REQUIRES(mu_);
  void worker_main(std::uint64_t id, bool core) BROACH_EXCLUDES(mu_);
  void exit_worker_locked(std::uint64_t id) BROACH_REQUIRES(mu_);
  void run_task(Task& task) noexcept BROACH_EXCLUDES(mu_);
  void reap_exited_locked(std::vector<std::thread>& out) BROACH_REQUIRES(mu_);

  const ThreadPoolConfig config_;
  const std::string name_;
  const std::size_t thread_max_;
  const std::size_t queue_max_;
  const std::size_t threshold_;
  const Duration keep_alive_;

  mutable Mutex mu_;
  struct Queued {
    Task task;
    std::chrono::steady_clock::time_point queued_at;
  };
  std::deque<Queued> queue_ BROACH_GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point last_take_ BROACH_GUARDED_BY(mu_){};  ///< a worker last took a task
  /// live workers by id
  std::unordered_map<std::uint64_t, Worker> workers_ BROACH_GUARDED_BY(mu_);
  /// handles of exited workers, not yet joined
  std::vector<std::thread> exited_ BROACH_GUARDED_BY(mu_);
  std::uint64_t next_worker_id_ BROACH_GUARDED_BY(mu_) = 0;
  std::size_t threads_ BROACH_GUARDED_BY(mu_) = 0;  ///< live workers (== workers_.size())
  std::size_t idle_ BROACH_GUARDED_BY(mu_) = 0;
  std::size_t peak_threads_ BROACH_GUARDED_BY(mu_) = 0;
  bool shutting_down_ BROACH_GUARDED_BY(mu_) = false;
  // Waited on with mu_ held (CondVar::wait(mu_, ...)); notified with or without it.
  CondVar work_cv_;  ///< a task was queued, or shutdown started
  CondVar exit_cv_;  ///< a worker exited (shutdown waits for 0)

  // Counters written outside mu_ (after a task ran).
  std::atomic<std::uint64_t> completed_{0};
  std::atomic<std::uint64_t> rejected_{0};
  std::atomic<std::uint64_t> caller_ran_{0};
  std::atomic<std::uint64_t> task_exceptions_{0};
  /// Moving average of task run times; starts "slow" so that a new pool
  /// spreads work until it has seen that its tasks are short.
  std::atomic<std::int64_t> avg_task_ns_{kSpreadAfter.count()};
};

}  // namespace broach
