#include "exec/thread_pool.hpp"

#include <pthread.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <new>
#include <system_error>
#include <utility>

#include "base/assert.hpp"
#include "base/burst.hpp"
#include "base/log.hpp"

namespace broach {
namespace {

// The pool whose worker is the current thread, if any: lets shutdown() see
// that it was called from one of its own tasks and must not wait for itself.
thread_local const ThreadPool* tls_current_pool = nullptr;

// keep_alive_time is seconds as a double; anything past ~31 years means
// "never" and is clamped so that now() + keep_alive cannot overflow.
constexpr double kMaxKeepAliveSeconds = 1e9;

const ThreadPoolConfig& validated(const ThreadPoolConfig& c) {
  BROACH_REQUIRE(c.core >= 1, "threadPool.core must be >= 1, got " + std::to_string(c.core));
  BROACH_REQUIRE(c.thread_max >= c.core, "threadPool.threadMax (" + std::to_string(c.thread_max) +
                                             ") must be >= core (" + std::to_string(c.core) + ")");
  BROACH_REQUIRE(c.queue_max >= 1,
                 "threadPool.queueMax must be >= 1, got " + std::to_string(c.queue_max));
  BROACH_REQUIRE(c.create_thread_threshold >= 0,
                 "threadPool.createThreadThreshold must be >= 0, got " +
                     std::to_string(c.create_thread_threshold));
  BROACH_REQUIRE(std::isfinite(c.keep_alive_time) && c.keep_alive_time >= 0,
                 "threadPool.keepAliveTime must be a finite number of seconds >= 0, got " +
                     std::to_string(c.keep_alive_time));
  return c;
}

// Linux keeps 15 characters of a thread name: "<name>-<id>", name cut to fit.
void set_thread_name(const std::string& pool, std::uint64_t id) {
  std::string suffix = "-" + std::to_string(id);
  std::string name = pool.substr(0, suffix.size() < 15 ? 15 - suffix.size() : 0) + suffix;
  name.resize(std::min<std::size_t>(name.size(), 15));
  pthread_setname_np(pthread_self(), name.c_str());
}

// Joins the handles of exited workers when it goes out of scope, which is
// after the pool mutex was released (it is declared before the lock).
struct Reaper {
  std::vector<std::thread> threads;
  Reaper() = default;
  Reaper(const Reaper&) = delete;
  Reaper& operator=(const Reaper&) = delete;
  ~Reaper() {
    for (auto& t : threads) {
      if (t.joinable()) t.join();
    }
  }
};

}  // namespace

ThreadPool::ThreadPool(const ThreadPoolConfig& config, std::string name)
    : config_(validated(config)),
      name_(std::move(name)),
      thread_max_(static_cast<std::size_t>(config.thread_max)),
      queue_max_(static_cast<std::size_t>(config.queue_max)),
      threshold_(static_cast<std::size_t>(config.create_thread_threshold)),
      keep_alive_(seconds_f(std::min(config.keep_alive_time, kMaxKeepAliveSeconds))) {
  bool started = true;
  {
    MutexLock lock(mu_);
    for (int i = 0; i < config_.core && started; ++i) {
      Task none;
      started = spawn_locked(none, /*core=*/true);
    }
  }
  if (!started) {
    shutdown();
    throw Error(Errc::kIoError, name_ + ": cannot start the core threads");
  }
  BROACH_LOG_DEBUG("{}: started (core {}, max {}, queue {}, threshold {}, keepAlive {}s, {})",
                   name_, config_.core, config_.thread_max, config_.queue_max,
                   config_.create_thread_threshold, config_.keep_alive_time,
                   config_.is_exc_info ? "reject when full" : "caller runs when full");
}

bool ThreadPool::in_worker_thread() const noexcept { return tls_current_pool == this; }

ThreadPool::~ThreadPool() {
  // A worker cannot join itself; destroying the pool from its own task is a bug.
  BROACH_ASSERT(tls_current_pool != this);
  shutdown();
}

Errc ThreadPool::try_submit(Task task) noexcept {
  Errc rc = Errc::kOk;
  try_submit_batch(std::span<Task>(&task, 1), std::span<Errc>(&rc, 1));
  return rc;
}

void ThreadPool::try_submit_batch(std::span<Task> tasks, std::span<Errc> results) noexcept {
  BROACH_ASSERT(results.size() >= tasks.size());
  Reaper reaper;  // joins exited workers after mu_ is released
  MutexLock lock(mu_);
  reaper.threads.swap(exited_);
  const std::size_t queued_before = queue_.size();
  const auto now = std::chrono::steady_clock::now();
  std::size_t caller_runs = 0;  // rule 4 tasks, left in `tasks` and run after mu_ is released
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    Task& task = tasks[i];
    results[i] = Errc::kOk;
    if (!task) {
      results[i] = Errc::kInvalidArgument;
      continue;
    }
    if (shutting_down_) {
      results[i] = Errc::kPoolShutdown;
      continue;
    }
    // Rule 2: room in the queue. A failed allocation counts as a full queue.
    bool queued = false;
    if (queue_.size() < queue_max_) {
      try {
        queue_.push_back(Queued{std::move(task), now});  // strong guarantee: task intact on throw
        queued = true;
      } catch (const std::bad_alloc&) {
        BROACH_LOG_ERROR("{}: out of memory queueing a task; treating the queue as full", name_);
      }
    }
    if (queued) {
      if (queue_.size() > threshold_ && threads_ < thread_max_) {
        Task none;
        spawn_locked(none, /*core=*/false);  // on failure the queued task still runs later
      }
      task = nullptr;
      continue;
    }
    // Rule 3: queue full, room for a thread: it runs this task first.
    if (threads_ < thread_max_ && spawn_locked(task, /*core=*/false)) continue;
    // Rule 4: queue and threads full.
    if (config_.is_exc_info) {
      results[i] = Errc::kQueueFull;
      if (rejected_.fetch_add(1) == 0) {
        BROACH_LOG_WARN("{}: queue and threads full, rejecting tasks (counted in stats)", name_);
      }
      task = nullptr;
      continue;
    }
    ++caller_runs;  // stays in tasks[i]
  }
  // Wake-ups: a push onto an empty queue wakes an idle worker, and so does
  // a push onto a queue nobody has taken from for kSpreadAfter (the busy
  // workers are stuck in long tasks) or when tasks are slow; a worker that dequeues and leaves
  // tasks behind may wake the next one (see worker_main). One wake per busy
  // period instead of one per task keeps submitters from stampeding
  // sleeping threads.
  const bool wake = idle_ > 0 && !queue_.empty() &&
                    (queued_before == 0 || now - last_take_ >= kSpreadAfter ||
                     avg_task_ns_.load(std::memory_order_relaxed) >= kSpreadAfter.count());
  lock.unlock();
  if (wake) work_cv_.notify_one();
  if (caller_runs == 0) return;
  if (caller_ran_.fetch_add(caller_runs) == 0) {
    BROACH_LOG_WARN("{}: queue and threads full, submitters run tasks (counted in stats)", name_);
  }
  for (Task& task : tasks) {
    if (task) run_task(task);
  }
}

void ThreadPool::nudge() noexcept {
  MutexLock lock(mu_);
  const bool wake = idle_ > 0 && !queue_.empty() && std::chrono::steady_clock::now() - last_take_ >= kSpreadAfter;
  lock.unlock();
  if (wake) work_cv_.notify_one();
}

void ThreadPool::submit(Task task) {
  BROACH_REQUIRE(static_cast<bool>(task), name_ + ": submit of an empty task");
  switch (try_submit(std::move(task))) {
    case Errc::kOk:
      return;
    case Errc::kQueueFull:
      throw Error(Errc::kQueueFull, name_ + ": queue (" + std::to_string(queue_max_) +
                                        ") and threads (" + std::to_string(thread_max_) +
                                        ") are full");
    case Errc::kPoolShutdown:
      throw Error(Errc::kPoolShutdown, name_ + ": pool is shut down");
    default:
      throw Error(Errc::kInvalidArgument, name_ + ": task refused");
  }
}

void ThreadPool::shutdown() {
  MutexLock lock(mu_);
  if (!shutting_down_) {
    shutting_down_ = true;
    BROACH_LOG_DEBUG("{}: shutting down, {} queued tasks left to run", name_, queue_.size());
    work_cv_.notify_all();
  }
  // From one of our own tasks: our thread is one of those we would wait for.
  if (tls_current_pool == this) return;
  exit_cv_.wait(mu_, [this]() BROACH_REQUIRES(mu_) { return threads_ == 0; });
  BROACH_ASSERT(queue_.empty());
  std::vector<std::thread> done;
  done.swap(exited_);
  lock.unlock();
  for (auto& t : done) t.join();
}

ThreadPool::Stats ThreadPool::stats() const {
  Stats s;
  {
    MutexLock lock(mu_);
    s.threads = threads_;
    s.idle = idle_;
    s.queued = queue_.size();
    s.peak_threads = peak_threads_;
  }
  s.completed = completed_.load();
  s.rejected = rejected_.load();
  s.caller_ran = caller_ran_.load();
  s.task_exceptions = task_exceptions_.load();
  s.avg_task = std::chrono::nanoseconds(avg_task_ns_.load(std::memory_order_relaxed));
  return s;
}

// Starts a worker; `first` is moved into it only when the thread started.
// The new thread blocks on mu_ (held by the caller) until its record is
// complete. Returns false, and logs, when the system refuses a thread.
bool ThreadPool::spawn_locked(Task& first, bool core) {
  const std::uint64_t id = ++next_worker_id_;
  try {
    auto [it, inserted] = workers_.try_emplace(id);
    BROACH_ASSERT(inserted);
    try {
      it->second.thread = std::thread([this, id, core] { worker_main(id, core); });
    } catch (...) {
      workers_.erase(it);
      throw;
    }
    it->second.first = std::move(first);
  } catch (const std::exception& e) {
    BROACH_LOG_ERROR("{}: cannot start a thread ({} running): {}", name_, threads_, e.what());
    return false;
  }
  ++threads_;
  peak_threads_ = std::max(peak_threads_, threads_);
  return true;
}

// Worker loop: run the first task if any, then take from the queue until the
// pool shuts down with an empty queue, or (non-core) keep_alive_ passes with
// nothing to do.
void ThreadPool::worker_main(std::uint64_t id, bool core) {
  tls_current_pool = this;
  set_thread_name(name_, id);
  const auto has_work = [this]() BROACH_REQUIRES(mu_) {
    return !queue_.empty() || shutting_down_;
  };
  burst::open_on_this_thread();
  MutexLock lock(mu_);
  Task task = std::move(workers_.at(id).first);
  for (;;) {
    if (task) {
      lock.unlock();
      burst::before_task();  // ends the burst first when it is due (base/burst.hpp)
      run_task(task);        // also destroys the closure, outside mu_
      burst::after_task();
      lock.lock();
    }
    if (!queue_.empty()) {
      task = std::move(queue_.front().task);
      queue_.pop_front();
      last_take_ = std::chrono::steady_clock::now();
      // Pass the wake-up on, to spread a backlog over the idle threads, when
      // tasks are slow (their moving average is kSpreadAfter or more). A
      // backlog of short tasks is run by one thread: waking more only adds
      // context switches and lock contention. Liveness does not depend on
      // it (this worker comes back to the queue before it ever waits, and a
      // push onto an empty queue wakes a sleeper).
      if (!queue_.empty() && idle_ > 0 && avg_task_ns_.load(std::memory_order_relaxed) >= kSpreadAfter.count()) {
        work_cv_.notify_one();
      }
      continue;
    }
    if (burst::pending()) {
      // Out of work: what the burst deferred goes now, before any wait.
      lock.unlock();
      burst::flush();
      lock.lock();
      continue;
    }
    if (shutting_down_) break;
    ++idle_;
    bool woken = true;
    if (core) {
      work_cv_.wait(mu_, has_work);
    } else {
      woken = work_cv_.wait_for(mu_, keep_alive_, has_work);
    }
    --idle_;
    if (!woken) break;  // idle for keep_alive_ with an empty queue
  }
  exit_worker_locked(id);
}

// The handle moves to exited_; whoever takes it next (a submit or shutdown)
// joins it after releasing mu_. This thread touches nothing after returning.
void ThreadPool::exit_worker_locked(std::uint64_t id) {
  auto it = workers_.find(id);
  BROACH_ASSERT(it != workers_.end());
  exited_.push_back(std::move(it->second.thread));
  workers_.erase(it);
  --threads_;
  if (threads_ == 0) exit_cv_.notify_all();
}

void ThreadPool::run_task(Task& task) noexcept {
  const auto t0 = std::chrono::steady_clock::now();
  try {
    task();
  } catch (const std::exception& e) {
    task_exceptions_.fetch_add(1);
    BROACH_LOG_ERROR("{}: task threw: {}", name_, e.what());
  } catch (...) {
    task_exceptions_.fetch_add(1);
    BROACH_LOG_ERROR("{}: task threw a non-standard exception", name_);
  }
  task = nullptr;  // release captured state before the task counts as completed
  // Moving average (1/8 weight) of task run times; races between workers
  // only blur it.
  const std::int64_t d = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
  const std::int64_t avg = avg_task_ns_.load(std::memory_order_relaxed);
  avg_task_ns_.store(avg + (d - avg) / 8, std::memory_order_relaxed);
  completed_.fetch_add(1);
}

}  // namespace broach
