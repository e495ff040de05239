#include "transport/epoll_loop.hpp"

#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>

#include "base/assert.hpp"
#include "base/log.hpp"
#include "broach/error.hpp"

namespace broach {
namespace {

[[noreturn]] void throw_errno(const char* what) {
  throw Error(Errc::kIoError, std::string(what) + ": " + std::strerror(errno));
}

}  // namespace

EpollLoop::EpollLoop() {
  epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) throw_errno("epoll_create1");
  wakefd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wakefd_ < 0) {
    ::close(epfd_);
    throw_errno("eventfd");
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = wakefd_;
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, wakefd_, &ev) != 0) throw_errno("epoll_ctl");
}

EpollLoop::~EpollLoop() {
  stop();
  ::close(wakefd_);
  ::close(epfd_);
}

TimePoint EpollLoop::now() const { return steady_now(); }

TimerId EpollLoop::run_at(TimePoint when, Task task) {
  const TimerId id = next_timer_++;
  timers_.emplace(id, std::move(task));
  heap_.push(TimerEntry{when, seq_++, id});
  return id;
}

void EpollLoop::cancel(TimerId id) { timers_.erase(id); }

void EpollLoop::post(Task task) { try_post(std::move(task)); }

bool EpollLoop::try_post_lazy(Task task) {
  // A long lazy queue is woken anyway, so memory stays bounded.
  constexpr std::size_t kLazyLimit = 256;
  bool need_wake = false;
  {
    MutexLock lock(post_mu_);
    if (closed_) return false;
    posted_.push_back(std::move(task));
    if (posted_.size() >= kLazyLimit && !wake_pending_) {
      wake_pending_ = true;
      need_wake = true;
    }
  }
  if (need_wake) wake();
  return true;
}

bool EpollLoop::try_post(Task task) {
  bool need_wake = false;
  {
    MutexLock lock(post_mu_);
    if (closed_) return false;
    posted_.push_back(std::move(task));
    if (!wake_pending_) {
      wake_pending_ = true;
      need_wake = true;
    }
  }
  if (need_wake) wake();
  return true;
}

bool EpollLoop::in_loop_thread() const {
  return loop_thread_.load(std::memory_order_relaxed) == std::this_thread::get_id();
}

void EpollLoop::wake() {
  const std::uint64_t one = 1;
  // A full eventfd counter (impossible in practice) still leaves it readable.
  [[maybe_unused]] auto n = ::write(wakefd_, &one, sizeof(one));
}

void EpollLoop::add_fd(int fd, std::function<void()> on_readable, std::function<void()> on_error) {
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = fd;
  if (::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) throw_errno("epoll_ctl(add)");
  fds_[fd] = FdHandlers{std::move(on_readable), std::move(on_error)};
}

void EpollLoop::remove_fd(int fd) {
  ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
  fds_.erase(fd);
}

void EpollLoop::run_posted() {
  std::vector<Task> batch;
  {
    MutexLock lock(post_mu_);
    batch.swap(posted_);
    wake_pending_ = false;
  }
  for (auto& t : batch) t();
}

void EpollLoop::run_due_timers() {
  const TimePoint t = now();
  while (!heap_.empty() && heap_.top().when <= t) {
    const TimerId id = heap_.top().id;
    heap_.pop();
    auto it = timers_.find(id);
    if (it == timers_.end()) continue;  // cancelled
    Task task = std::move(it->second);
    timers_.erase(it);
    task();
  }
  // Drop cancelled entries at the top so the wait timeout is right.
  while (!heap_.empty() && !timers_.count(heap_.top().id)) heap_.pop();
}

void EpollLoop::run() {
  loop_thread_.store(std::this_thread::get_id());
  constexpr int kMaxEvents = 64;
  epoll_event events[kMaxEvents];
  while (!stopping_.load(std::memory_order_acquire)) {
    timespec ts{};
    timespec* tsp = nullptr;
    if (!heap_.empty()) {
      auto d = heap_.top().when - now();
      if (d.count() < 0) d = Duration::zero();
      ts.tv_sec = static_cast<time_t>(d.count() / 1'000'000'000);
      ts.tv_nsec = static_cast<long>(d.count() % 1'000'000'000);
      tsp = &ts;
    }
    int n = 0;
    if (busy_poll_ > Duration::zero()) {
      // Low-latency mode: poll without sleeping until something arrives,
      // the spin budget is spent or the next timer is due; then block.
      const TimePoint start = now();
      TimePoint until = start + busy_poll_;
      if (!heap_.empty()) until = std::min(until, heap_.top().when);
      // Each empty poll yields the CPU, so that a thread sharing it (a
      // caller waiting for this loop's completion) still runs.
      const timespec zero{};
      for (;;) {
        n = ::epoll_pwait2(epfd_, events, kMaxEvents, &zero, nullptr);
        if (n != 0 || now() >= until || stopping_.load(std::memory_order_relaxed)) break;
        sched_yield();
      }
      if (n == 0 && tsp != nullptr) {
        auto d = heap_.top().when - now();
        if (d.count() < 0) d = Duration::zero();
        ts.tv_sec = static_cast<time_t>(d.count() / 1'000'000'000);
        ts.tv_nsec = static_cast<long>(d.count() % 1'000'000'000);
      }
    }
    if (n == 0) n = ::epoll_pwait2(epfd_, events, kMaxEvents, tsp, nullptr);
    if (n < 0 && errno != EINTR) {
      BROACH_LOG_ERROR("epoll_pwait2 failed: {}", std::strerror(errno));
      break;
    }
    // Posted tasks first: a caller that posts a call's registration and then
    // sends its first datagram itself (see Node) must find the call
    // registered when the response is read below.
    run_posted();
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == wakefd_) {
        std::uint64_t v;
        [[maybe_unused]] auto r = ::read(wakefd_, &v, sizeof(v));
        continue;
      }
      auto it = fds_.find(fd);
      if (it == fds_.end()) continue;
      if ((events[i].events & EPOLLERR) != 0 && it->second.error) {
        it->second.error();
        it = fds_.find(fd);  // the handler may have removed the fd
        if (it == fds_.end()) continue;
      }
      if ((events[i].events & ~static_cast<std::uint32_t>(EPOLLERR)) != 0 || !it->second.error) it->second.readable();
    }
    run_posted();
    run_due_timers();
    run_idle_hooks();
  }
  // Drain: run what was posted before the loop closed, then refuse more.
  for (;;) {
    std::vector<Task> batch;
    {
      MutexLock lock(post_mu_);
      if (posted_.empty()) {
        closed_ = true;
        break;
      }
      batch.swap(posted_);
    }
    for (auto& t : batch) t();
    run_idle_hooks();  // what the drained tasks sent
  }
  loop_thread_.store(std::thread::id{});
}

void EpollLoop::start_thread(const char* name) {
  BROACH_ASSERT(!thread_.joinable());
  std::promise<void> started;
  auto fut = started.get_future();
  thread_ = std::thread([this, name, &started] {
    ::pthread_setname_np(::pthread_self(), name);
    loop_thread_.store(std::this_thread::get_id());
    started.set_value();
    run();
  });
  fut.wait();
}

void EpollLoop::stop() {
  stopping_.store(true, std::memory_order_release);
  wake();
  if (thread_.joinable() && std::this_thread::get_id() != thread_.get_id()) thread_.join();
}

}  // namespace broach
