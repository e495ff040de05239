// DirectCalls and LocalCalls.
#include "api/calls.hpp"

namespace broach::api {

void complete_on_loop(Loop& loop, Done done, RawResult r) {
  auto shared = std::make_shared<std::pair<Done, RawResult>>(std::move(done), std::move(r));
  if (!loop.try_post([shared] { shared->first(std::move(shared->second)); })) {
    shared->first(std::move(shared->second));  // the loop is gone for good
  }
}

TimePoint call_deadline(const Config& config, const CallOptions& opts, TimePoint now) {
  const Duration timeout = opts.timeout ? Duration(*opts.timeout) : seconds_f(config.rpc_timeout);
  return now + timeout;
}

void DirectCalls::call(const Endpoint& to, const std::string& service, std::span<const std::byte> args,
                       TimePoint deadline, Done done, std::span<const std::byte> metadata,
                       std::function<void(std::uint32_t)> on_sends) {
  if (d_.stopping.load(std::memory_order_relaxed)) {
    complete_on_loop(d_.loop, std::move(done), Error(Errc::kShutdown, "node is stopping"));
    return;
  }
  const TimePoint now = d_.clock.now();
  auto complete = [done = std::move(done), m = &d_.metrics.service(service), now, clock = &d_.clock,
                   metrics = &d_.metrics, to, service, on_sends = std::move(on_sends)](reliable::CallResult&& r) {
    if (on_sends) on_sends(r.sends);
    m->made.fetch_add(1, std::memory_order_relaxed);
    if (r.code != Errc::kOk) {
      m->made_errors.add(r.code);
      metrics->record_error(CallError{unix_now_ms(), service, to.to_string(), r.code, r.message});
    }
    m->made_latency.record(clock->now() - now);
    if (r.code == Errc::kOk) {
      done(RawResult(std::move(r.body)));
    } else {
      done(RawResult(Error(r.code, std::move(r.message))));
    }
  };
  // The adoption of a call sent from this thread need not wake the loop
  // (the response will, and the engine's 25 ms housekeeping bounds it);
  // short deadlines wake it at once so that they are enforced on time.
  const bool lazy = deadline - now > milliseconds(200);
  d_.engine.call_from_any_thread(to, reliable::request_payload(service, args, metadata), deadline, now,
                                 std::move(complete), lazy);
}

void LocalCalls::run(const std::string& service, Bytes args, TimePoint deadline, Done done, Bytes metadata) {
  BROACH_ASSERT_IN_LOOP(d_.loop);
  d_.counters.local_calls.fetch_add(1, std::memory_order_relaxed);
  auto svc = d_.services.find(service);
  if (!svc) {
    complete_on_loop(d_.loop, std::move(done), Error(Errc::kNotFound, service));
    return;
  }
  // In-process calls share the service's concurrency limit with remote ones.
  const auto admission = d_.server.admit(service);
  if (!admission) {
    complete_on_loop(d_.loop, std::move(done), Error(Errc::kOverloaded, d_.server.limit_message(service)));
    return;
  }
  // The completion (or the task) holds the admission: it leaves the limit
  // once, when answered, or when dropped unrun.
  const Server::Admission a = *admission;
  if (svc->async_handler) {
    // A coroutine handler starts here, on the loop; its completion is
    // posted, so it never runs before this call returns.
    d_.server.invoke_async(service, svc->async_handler, args, deadline,
                           [&loop = d_.loop, a, done = std::move(done)](RawResult r) mutable {
                             Server::finish(a);
                             complete_on_loop(loop, std::move(done), std::move(r));
                           },
                           std::nullopt, metadata);
    return;
  }
  auto shared_done = std::make_shared<Done>(std::move(done));
  auto task = [this, service, handler = std::move(svc->handler), args = std::move(args), deadline,
               shared_done, metadata = std::move(metadata), a]() mutable {
    RawResult r = d_.server.invoke(service, handler, args, deadline, std::nullopt, metadata);
    Server::finish(a);
    complete_on_loop(d_.loop, std::move(*shared_done), std::move(r));
  };
  if (svc->options.run_on_loop) {
    if (!d_.loop.try_post(std::move(task))) {
      complete_on_loop(d_.loop, std::move(*shared_done), Error(Errc::kShutdown, "node is stopping"));
    }
    return;
  }
  const Errc rc = d_.executor.try_submit(std::move(task));
  if (rc == Errc::kQueueFull) {
    d_.counters.rejected_overloaded.fetch_add(1, std::memory_order_relaxed);
    complete_on_loop(d_.loop, std::move(*shared_done),
                     Error(Errc::kOverloaded, "this node's queue and threads are full"));
  } else if (rc != Errc::kOk) {
    complete_on_loop(d_.loop, std::move(*shared_done), Error(Errc::kShutdown, "node is stopping"));
  }
}

}  // namespace broach::api
