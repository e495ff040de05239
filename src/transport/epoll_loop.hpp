// Internal header. The real event loop: epoll, an eventfd for cross-thread
// posts, and a timer heap with nanosecond deadlines (epoll_pwait2).
//
// Layer: transport. One EpollLoop per thread ("one loop per thread"): run()
// executes on the calling thread until stop(); start_thread() runs it on its
// own thread. Thread contract: post() and stop() are safe from any thread;
// everything else must be called on the loop thread (or before it starts).
// It does not own the fds registered with it.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <queue>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/loop.hpp"
#include "base/thread_annotations.hpp"

namespace broach {

class EpollLoop final : public Loop {
 public:
  EpollLoop();
  ~EpollLoop() override;
  EpollLoop(const EpollLoop&) = delete;
  EpollLoop& operator=(const EpollLoop&) = delete;

  TimePoint now() const override;
  TimerId run_at(TimePoint when, Task task) override;
  void cancel(TimerId id) override;
  void post(Task task) override;
  bool try_post(Task task) override;
  bool try_post_lazy(Task task) override;
  bool in_loop_thread() const override;

  /// Calls `on_readable` on the loop whenever `fd` is readable (level-triggered),
  /// and `on_error` (when given) first whenever it reports an error
  /// (EPOLLERR: for a UDP socket with IP_RECVERR, its error queue is not empty).
  void add_fd(int fd, std::function<void()> on_readable, std::function<void()> on_error = {});
  void remove_fd(int fd);
  std::uint64_t add_idle_hook(Task hook) override {
    idle_hooks_.emplace_back(++last_hook_, std::move(hook));
    return last_hook_;
  }
  void remove_idle_hook(std::uint64_t id) override {
    std::erase_if(idle_hooks_, [id](const auto& h) { return h.first == id; });
  }

  /// Busy polling: before blocking, the loop polls for events (epoll with
  /// a zero timeout) for up to `d` (never past its next timer). Zero (the
  /// default) blocks at once. Before the loop runs.
  void set_busy_poll(Duration d) { busy_poll_ = d; }
  Duration busy_poll() const { return busy_poll_; }

  /// Runs the loop on the calling thread until stop().
  void run();
  /// Starts a thread running run(); returns once the loop is running.
  void start_thread(const char* name = "broach-loop");
  /// Asks the loop to finish; joins the thread when start_thread() made one.
  /// Posted tasks still queued are run before run() returns.
  void stop();

 private:
  struct TimerEntry {
    TimePoint when;
    std::uint64_t seq;
    TimerId id;
    bool operator>(const TimerEntry& o) const {
      return when != o.when ? when > o.when : seq > o.seq;
    }
  };
  void wake();
  void run_posted();
  void run_due_timers();
  int wait_timeout_ns() const;

  int epfd_ = -1;
  int wakefd_ = -1;
  std::atomic<bool> stopping_{false};
  std::atomic<std::thread::id> loop_thread_{};
  std::thread thread_;

  Mutex post_mu_;
  std::vector<Task> posted_ BROACH_GUARDED_BY(post_mu_);
  bool wake_pending_ BROACH_GUARDED_BY(post_mu_) = false;
  bool closed_ BROACH_GUARDED_BY(post_mu_) = false;  ///< run() is over, nothing more will run

  std::priority_queue<TimerEntry, std::vector<TimerEntry>, std::greater<>> heap_;
  std::unordered_map<TimerId, Task> timers_;
  TimerId next_timer_ = 1;
  std::uint64_t seq_ = 0;
  struct FdHandlers {
    std::function<void()> readable, error;
  };
  std::unordered_map<int, FdHandlers> fds_;
  std::vector<std::pair<std::uint64_t, Task>> idle_hooks_;  // loop thread
  std::uint64_t last_hook_ = 0;
  Duration busy_poll_ = Duration::zero();
  void run_idle_hooks() {
    for (auto& [id, h] : idle_hooks_) h();
  }
};

}  // namespace broach
