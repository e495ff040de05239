// Internal header. Clang thread-safety annotations, and the annotated mutexes
// and locks that every mutex in the library uses, so that `clang
// -Wthread-safety` (make tsa, preset clang-tsa) proves at compile time that
// each guarded member is only touched with its mutex held.
//
// Why wrappers: libstdc++'s std::mutex, std::shared_mutex, std::lock_guard and
// std::unique_lock carry no capability attributes, so the analysis cannot see
// them. Mutex, SharedMutex, MutexLock, ReaderLock, WriterLock and CondVar are
// inline, zero-overhead shells over std::mutex, std::shared_mutex and
// std::condition_variable that it can see. Under any compiler but clang the
// macros expand to nothing and the classes are the std ones, renamed.
//
// How to use:
//   mutable Mutex mu_;
//   std::deque<Task> queue_ BROACH_GUARDED_BY(mu_);
//   CondVar cv_;                                  // not guarded itself
//   void drain_locked() BROACH_REQUIRES(mu_);     // caller holds mu_
//   void post(Task t) BROACH_EXCLUDES(mu_) {      // caller must not hold mu_
//     MutexLock lock(mu_);
//     queue_.push_back(std::move(t));
//     lock.unlock();                              // early release is checked too
//     cv_.notify_one();
//   }
//   // Waiting: pass the Mutex (held by a MutexLock) to the CondVar. A
//   // predicate lambda reads guarded state, so it says it runs under mu_:
//   cv_.wait(mu_, [this]() BROACH_REQUIRES(mu_) { return !queue_.empty(); });
//
// Rules the analysis relies on: lock a Mutex with MutexLock (never with
// std::lock_guard / std::unique_lock, which it cannot see; a std lock on
// Mutex compiles, but every guarded access under it then warns), and wait
// with CondVar. Mutex::native() exposes the std::mutex for code that has
// to hand it to a std API; whatever it does is invisible to the analysis.
//
// Thread contract: Mutex, SharedMutex and CondVar are what std::mutex,
// std::shared_mutex and std::condition_variable are (safe from any thread;
// neither recursive nor copyable). A MutexLock, ReaderLock or WriterLock
// belongs to the thread that made it and lives in one scope.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <shared_mutex>

// ---- The macros (clang's attribute names; no-ops elsewhere) ----------------

#if defined(__clang__)
#define BROACH_THREAD_ANNOTATION_(x) __attribute__((x))
#else
#define BROACH_THREAD_ANNOTATION_(x)
#endif

/// On a class: its objects are capabilities (lockables) named `x` in messages.
#define BROACH_CAPABILITY(x) BROACH_THREAD_ANNOTATION_(capability(x))
/// On a class: RAII object that holds the capabilities its constructor acquires.
#define BROACH_SCOPED_CAPABILITY BROACH_THREAD_ANNOTATION_(scoped_lockable)
/// On a data member: read needs `x` held (shared or exclusive), write needs it exclusive.
#define BROACH_GUARDED_BY(x) BROACH_THREAD_ANNOTATION_(guarded_by(x))
/// On a pointer member: the pointee (not the pointer) is guarded by `x`.
#define BROACH_PT_GUARDED_BY(x) BROACH_THREAD_ANNOTATION_(pt_guarded_by(x))
/// On a function: the caller must hold these exclusively (and still does after).
#define BROACH_REQUIRES(...) BROACH_THREAD_ANNOTATION_(requires_capability(__VA_ARGS__))
/// On a function: the caller must hold these at least shared.
#define BROACH_REQUIRES_SHARED(...) \
  BROACH_THREAD_ANNOTATION_(requires_shared_capability(__VA_ARGS__))
/// On a function: acquires these exclusively (no argument: `this`).
#define BROACH_ACQUIRE(...) BROACH_THREAD_ANNOTATION_(acquire_capability(__VA_ARGS__))
/// On a function: acquires these shared (no argument: `this`).
#define BROACH_ACQUIRE_SHARED(...) \
  BROACH_THREAD_ANNOTATION_(acquire_shared_capability(__VA_ARGS__))
/// On a function: releases these, held exclusively (no argument: `this`).
#define BROACH_RELEASE(...) BROACH_THREAD_ANNOTATION_(release_capability(__VA_ARGS__))
/// On a function: releases these, held shared (no argument: `this`).
#define BROACH_RELEASE_SHARED(...) \
  BROACH_THREAD_ANNOTATION_(release_shared_capability(__VA_ARGS__))
/// On a function: acquires these exclusively when it returns `ok` (try_lock).
#define BROACH_TRY_ACQUIRE(...) \
  BROACH_THREAD_ANNOTATION_(try_acquire_capability(__VA_ARGS__))
/// On a function: acquires these shared when it returns `ok` (try_lock_shared).
#define BROACH_TRY_ACQUIRE_SHARED(...) \
  BROACH_THREAD_ANNOTATION_(try_acquire_shared_capability(__VA_ARGS__))
/// On a function: the caller must not hold these (it takes them itself).
#define BROACH_EXCLUDES(...) BROACH_THREAD_ANNOTATION_(locks_excluded(__VA_ARGS__))
/// On a function: not analysed. Last resort; say why next to it.
#define BROACH_NO_THREAD_SAFETY_ANALYSIS BROACH_THREAD_ANNOTATION_(no_thread_safety_analysis)

namespace broach {

// ---- Mutexes ----------------------------------------------------------------

/// std::mutex the analysis can see. Lockable (lock, unlock, try_lock), so std
/// APIs that take any lockable accept it; prefer MutexLock and CondVar.
class BROACH_CAPABILITY("mutex") Mutex {
 public:
  constexpr Mutex() noexcept = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() BROACH_ACQUIRE() { mu_.lock(); }
  void unlock() BROACH_RELEASE() { mu_.unlock(); }
  bool try_lock() BROACH_TRY_ACQUIRE(true) { return mu_.try_lock(); }

  /// The std::mutex inside, for a std API that needs one (CondVar uses it).
  /// Locking or unlocking through it bypasses the analysis.
  std::mutex& native() noexcept { return mu_; }

 private:
  std::mutex mu_;
};

/// std::shared_mutex the analysis can see: lock/unlock for writers,
/// lock_shared/unlock_shared for readers. Lock it with WriterLock/ReaderLock.
class BROACH_CAPABILITY("shared_mutex") SharedMutex {
 public:
  SharedMutex() = default;
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  void lock() BROACH_ACQUIRE() { mu_.lock(); }
  void unlock() BROACH_RELEASE() { mu_.unlock(); }
  bool try_lock() BROACH_TRY_ACQUIRE(true) { return mu_.try_lock(); }
  void lock_shared() BROACH_ACQUIRE_SHARED() { mu_.lock_shared(); }
  void unlock_shared() BROACH_RELEASE_SHARED() { mu_.unlock_shared(); }
  bool try_lock_shared() BROACH_TRY_ACQUIRE_SHARED(true) { return mu_.try_lock_shared(); }

 private:
  std::shared_mutex mu_;
};

// ---- Scoped locks -----------------------------------------------------------

/// Holds a Mutex for its scope, like std::unique_lock: unlock() releases it
/// early (say, before a notify or a call out) and lock() takes it again; the
/// destructor releases it only when held. The analysis tracks both.
class BROACH_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) BROACH_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() BROACH_RELEASE() {
    if (held_) mu_.unlock();
  }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  /// Takes the mutex again after unlock(); it must not be held.
  void lock() BROACH_ACQUIRE() {
    mu_.lock();
    held_ = true;
  }
  /// Releases the mutex before the end of the scope; it must be held.
  void unlock() BROACH_RELEASE() {
    mu_.unlock();
    held_ = false;
  }

 private:
  Mutex& mu_;
  bool held_ = true;
};

/// Holds a SharedMutex shared (readers) for its whole scope. No early unlock:
/// clang 14 re-takes a re-locked shared scope as exclusive, which would let a
/// write through unchecked; end the scope instead.
class BROACH_SCOPED_CAPABILITY ReaderLock {
 public:
  explicit ReaderLock(SharedMutex& mu) BROACH_ACQUIRE_SHARED(mu) : mu_(mu) { mu_.lock_shared(); }
  ~ReaderLock() BROACH_RELEASE() { mu_.unlock_shared(); }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  SharedMutex& mu_;
};

/// Holds a SharedMutex exclusively (writers) for its whole scope.
class BROACH_SCOPED_CAPABILITY WriterLock {
 public:
  explicit WriterLock(SharedMutex& mu) BROACH_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~WriterLock() BROACH_RELEASE() { mu_.unlock(); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  SharedMutex& mu_;
};

// ---- Condition variable -----------------------------------------------------

namespace detail {
// Lends the caller's already-locked std::mutex to std::condition_variable for
// one wait, and gives it back locked without unlocking it, even when the
// predicate throws: ownership stays with the caller's MutexLock.
class AdoptedLock {
 public:
  explicit AdoptedLock(Mutex& mu) noexcept : lock(mu.native(), std::adopt_lock) {}
  ~AdoptedLock() { lock.release(); }
  AdoptedLock(const AdoptedLock&) = delete;
  AdoptedLock& operator=(const AdoptedLock&) = delete;
  std::unique_lock<std::mutex> lock;
};
}  // namespace detail

/// std::condition_variable for a Mutex. Every wait takes the Mutex the caller
/// holds (through a MutexLock) and returns with it held again, exactly as
/// std::condition_variable::wait(unique_lock&, ...) does; the std overloads
/// are called underneath, so timing and spurious-wake-up semantics are the
/// standard ones. A predicate that reads guarded members is a lambda
/// annotated BROACH_REQUIRES(that mutex); it always runs with it held.
class CondVar {
 public:
  CondVar() = default;
  CondVar(const CondVar&) = delete;
  CondVar& operator=(const CondVar&) = delete;

  void notify_one() noexcept { cv_.notify_one(); }
  void notify_all() noexcept { cv_.notify_all(); }

  void wait(Mutex& mu) BROACH_REQUIRES(mu) {
    detail::AdoptedLock a(mu);
    cv_.wait(a.lock);
  }
  template <class Predicate>
  void wait(Mutex& mu, Predicate pred) BROACH_REQUIRES(mu) {
    detail::AdoptedLock a(mu);
    cv_.wait(a.lock, std::move(pred));
  }

  template <class Rep, class Period>
  std::cv_status wait_for(Mutex& mu, const std::chrono::duration<Rep, Period>& rel)
      BROACH_REQUIRES(mu) {
    detail::AdoptedLock a(mu);
    return cv_.wait_for(a.lock, rel);
  }
  /// Returns pred() as last evaluated: false means the time ran out.
  template <class Rep, class Period, class Predicate>
  bool wait_for(Mutex& mu, const std::chrono::duration<Rep, Period>& rel, Predicate pred)
      BROACH_REQUIRES(mu) {
    detail::AdoptedLock a(mu);
    return cv_.wait_for(a.lock, rel, std::move(pred));
  }

  template <class Clock, class Dur>
  std::cv_status wait_until(Mutex& mu, const std::chrono::time_point<Clock, Dur>& deadline)
      BROACH_REQUIRES(mu) {
    detail::AdoptedLock a(mu);
    return cv_.wait_until(a.lock, deadline);
  }
  /// Returns pred() as last evaluated: false means the deadline passed.
  template <class Clock, class Dur, class Predicate>
  bool wait_until(Mutex& mu, const std::chrono::time_point<Clock, Dur>& deadline,
                  Predicate pred) BROACH_REQUIRES(mu) {
    detail::AdoptedLock a(mu);
    return cv_.wait_until(a.lock, deadline, std::move(pred));
  }

 private:
  std::condition_variable cv_;
};

}  // namespace broach
