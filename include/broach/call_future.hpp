// Public header. CallFuture<R>: what Node::call_async returns. A
// std::future<Result<R>> (get, wait, wait_for: block a thread on it), that a
// C++20 coroutine can also co_await without blocking any thread:
//
//   broach::Task<int> twice(broach::Node& node, broach::Endpoint to) {   // any coroutine type
//     broach::Result<int> r = co_await node.call_async<int>(to, "add", 1, 2);
//     ...
//   }
//
// The coroutine resumes on the node's loop thread when the call ends (then it
// must not block, like any callback there), or through the function given
// to resume_via(), e.g. one that submits to your own thread pool:
//
//   co_await node.call_async<int>(to, "slow", 1).resume_via(
//       [&pool](std::function<void()> f) { pool.submit(std::move(f)); });
//
// Thread contract: a CallFuture is used by one thread at a time, like a
// std::future; the call's completion may run concurrently with co_await,
// which is what the state's mutex is for. A CallFuture is awaited at most
// once, and not also waited on with get().
#pragma once

#include <coroutine>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <utility>

#include "broach/error.hpp"

namespace broach {

namespace detail {
/// Shared by a call's completion and its CallFuture.
struct CallWaiter {
  std::mutex mu;
  bool done = false;                       ///< the future holds the result
  std::coroutine_handle<> waiter;          ///< a suspended co_await, if any
  std::function<void(std::function<void()>)> resume_via;  ///< empty: resume inline

  /// The completion, after it set the promise: resumes a waiting coroutine.
  void complete() {
    std::coroutine_handle<> h;
    std::function<void(std::function<void()>)> via;
    {
      std::lock_guard lock(mu);
      done = true;
      h = std::exchange(waiter, {});
      via = resume_via;
    }
    if (!h) return;
    if (via) {
      via([h] { h.resume(); });
    } else {
      h.resume();
    }
  }
};
}  // namespace detail

template <class R>
class CallFuture : public std::future<Result<R>> {
 public:
  CallFuture(std::future<Result<R>> f, std::shared_ptr<detail::CallWaiter> w)
      : std::future<Result<R>>(std::move(f)), waiter_(std::move(w)) {}

  /// Resume a co_await through `post` (which must run the function it is
  /// given exactly once, on any thread) instead of on the loop thread.
  CallFuture&& resume_via(std::function<void(std::function<void()>)> post) && {
    std::lock_guard lock(waiter_->mu);
    waiter_->resume_via = std::move(post);
    return std::move(*this);
  }

  class Awaiter {
   public:
    explicit Awaiter(CallFuture&& f) : f_(std::move(f)) {}
    bool await_ready() const noexcept { return false; }
    /// False (do not suspend) when the call has ended already.
    bool await_suspend(std::coroutine_handle<> h) {
      std::lock_guard lock(f_.waiter_->mu);
      if (f_.waiter_->done) return false;
      f_.waiter_->waiter = h;
      return true;
    }
    /// The result is in the future by now: get() does not block.
    Result<R> await_resume() { return f_.get(); }

   private:
    CallFuture f_;
  };
  Awaiter operator co_await() && { return Awaiter(std::move(*this)); }

 private:
  std::shared_ptr<detail::CallWaiter> waiter_;
};

}  // namespace broach
