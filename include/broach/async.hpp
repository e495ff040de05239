// Public header. Async<T>: the return type of a coroutine handler.
//
//   node.provide("sum_of_squares", [&node](int a, int b) -> broach::Async<int> {
//     broach::Result<int> x = co_await node.call_async<int>("square", a);
//     broach::Result<int> y = co_await node.call_async<int>("square", b);
//     co_return x.value() + y.value();
//   });
//
// A coroutine handler holds no thread while it awaits: the node starts it on
// its loop thread when the request arrives, and each co_await of a
// Node::call_async resumes it on the loop thread when that call ends (or
// through CallFuture::resume_via, on a thread of your choosing). So, between
// its co_awaits, it runs where a callback runs: it must not block there.
// Hand blocking work to your own threads with resume_via.
//
// Rules: parameters are taken by value (the arguments a request carried are
// gone once the coroutine first suspends; a reference parameter does not
// compile). An exception that escapes the coroutine becomes the call's
// error, as for an ordinary handler (an Error keeps kBadArguments, anything
// else is kRemoteError). An Async is started at most once, by the node; it
// is not awaitable by other coroutines.
//
// Thread contract: the coroutine runs on one thread at a time; which one
// depends on where it is resumed (see above).
#pragma once

#include <coroutine>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <utility>

#include "broach/error.hpp"

namespace broach {

template <class T>
class Async;

namespace detail {
template <class T>
struct AsyncValue {
  std::optional<T> value;
  void return_value(T v) { value.emplace(std::move(v)); }
};
template <>
struct AsyncValue<void> {
  void return_void() {}
};
}  // namespace detail

template <class T>
class Async {
 public:
  struct promise_type : detail::AsyncValue<T> {
    std::exception_ptr error;
    std::function<void(promise_type&)> done;

    Async get_return_object() { return Async(std::coroutine_handle<promise_type>::from_promise(*this)); }
    std::suspend_always initial_suspend() noexcept { return {}; }
    struct Final {
      bool await_ready() noexcept { return false; }
      // Reports the outcome, then frees the frame (suspended here, so it may).
      void await_suspend(std::coroutine_handle<promise_type> h) noexcept {
        auto done = std::move(h.promise().done);
        if (done) done(h.promise());
        h.destroy();
      }
      void await_resume() noexcept {}
    };
    Final final_suspend() noexcept { return {}; }
    void unhandled_exception() { error = std::current_exception(); }
  };

  Async(Async&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  Async& operator=(Async&& o) noexcept {
    if (this != &o) {
      if (h_) h_.destroy();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  Async(const Async&) = delete;
  Async& operator=(const Async&) = delete;
  /// An Async never started frees its coroutine unrun.
  ~Async() {
    if (h_) h_.destroy();
  }

  /// Runs the coroutine until its first suspension; `done` gets its outcome
  /// once, on the thread where it finishes. The frame frees itself after.
  void start(std::function<void(Result<T>)> done) && {
    auto h = std::exchange(h_, {});
    h.promise().done = [done = std::move(done)](promise_type& p) {
      if (p.error) {
        try {
          std::rethrow_exception(p.error);
        } catch (const Error& e) {
          done(Error(e.code() == Errc::kBadArguments ? Errc::kBadArguments : Errc::kRemoteError, e.message()));
        } catch (const std::exception& e) {
          done(Error(Errc::kRemoteError, e.what()));
        } catch (...) {
          done(Error(Errc::kRemoteError, "unknown exception"));
        }
        return;
      }
      if constexpr (std::is_void_v<T>) {
        done(Result<T>());
      } else {
        done(Result<T>(std::move(*p.value)));
      }
    };
    h.resume();
  }

 private:
  explicit Async(std::coroutine_handle<promise_type> h) : h_(h) {}
  std::coroutine_handle<promise_type> h_;
};

namespace detail {
template <class>
struct is_async : std::false_type {};
template <class T>
struct is_async<Async<T>> : std::true_type {
  using value_type = T;
};
}  // namespace detail

}  // namespace broach
