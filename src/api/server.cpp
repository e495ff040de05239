// Server: requests to handlers, on the pool or the loop, and back.
#include "api/server.hpp"

#include "routing/route_table.hpp"

namespace broach::api {

void Server::on_request(reliable::IncomingRequest&& req) {
  BROACH_ASSERT_IN_LOOP(d_.loop);
  if (routing::is_internal_service(req.service) && internal_.handle(req)) return;
  d_.counters.requests_received.fetch_add(1, std::memory_order_relaxed);
  auto svc = d_.services.find(req.service);
  if (!svc) {
    refuse(req.token, Errc::kNotFound, req.service);
    return;
  }
  if (svc->options.run_on_loop) {
    run(svc->handler, req);
    return;
  }
  const auto token = req.token;
  const Errc rc = d_.executor.try_submit(
      [this, handler = std::move(svc->handler), req = std::move(req)]() mutable { run(handler, req); });
  if (rc == Errc::kQueueFull) {
    d_.counters.rejected_overloaded.fetch_add(1, std::memory_order_relaxed);
    refuse(token, Errc::kOverloaded,
           "provider " + engine_.options().advertised.to_string() + " has its queue and threads full");
  } else if (rc != Errc::kOk) {
    refuse(token, Errc::kShutdown, "provider is stopping");
  }
}

// Runs on a worker thread, or on the loop thread (run_on_loop, caller-runs).
void Server::run(const RawHandler& handler, reliable::IncomingRequest& req) {
  engine_.respond_from_any_thread(req.token, to_call_result(invoke(req.service, handler, req.args, req.deadline)));
}

void Server::refuse(const reliable::RequestToken& token, Errc code, std::string message) {
  engine_.respond(token, reliable::CallResult{code, {}, std::move(message)});
}

RawResult Server::invoke(const std::string& service, const RawHandler& handler,
                         std::span<const std::byte> args, TimePoint deadline) {
  const TimePoint t0 = d_.clock.now();
  RawResult r = invoke_unmeasured(handler, args, deadline);
  auto& m = d_.metrics.service(service);
  m.served.fetch_add(1, std::memory_order_relaxed);
  if (!r.ok()) m.served_errors.add(r.error().code());
  m.served_latency.record(d_.clock.now() - t0);
  return r;
}

RawResult Server::invoke_unmeasured(const RawHandler& handler, std::span<const std::byte> args,
                                    TimePoint deadline) {
  if (d_.stopping.load(std::memory_order_relaxed)) return Error(Errc::kShutdown, "provider is stopping");
  if (d_.clock.now() >= deadline) {
    // The caller has given up: running the work now would only waste it.
    d_.counters.expired_in_queue.fetch_add(1, std::memory_order_relaxed);
    return Error(Errc::kDeadlineExpired, "caller's deadline passed while the request was queued");
  }
  d_.counters.handlers_run.fetch_add(1, std::memory_order_relaxed);
  try {
    return handler(args);
  } catch (const Error& e) {
    d_.counters.handler_errors.fetch_add(1, std::memory_order_relaxed);
    return Error(e.code() == Errc::kBadArguments ? Errc::kBadArguments : Errc::kRemoteError, e.message());
  } catch (const std::exception& e) {
    d_.counters.handler_errors.fetch_add(1, std::memory_order_relaxed);
    return Error(Errc::kRemoteError, e.what());
  } catch (...) {
    d_.counters.handler_errors.fetch_add(1, std::memory_order_relaxed);
    return Error(Errc::kRemoteError, "unknown exception");
  }
}

}  // namespace broach::api
