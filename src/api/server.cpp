// Server: requests to handlers, on the pool or the loop, and back.
#include "api/server.hpp"

#include "routing/route_table.hpp"

namespace broach::api {
namespace {
// A stopping provider refuses work it has not started with `overloaded`:
// the caller knows it did not run and retries on another provider.
constexpr const char* kStoppingMessage = "provider is stopping (draining): not run, retry elsewhere";
}  // namespace

Server::Server(const Deps& deps, reliable::Engine& engine, InternalHandler& internal)
    : d_(deps), engine_(engine), internal_(internal), any_limit_(!deps.max_concurrency.empty()) {
  hook_ = d_.loop.add_idle_hook([this] { hand_off(); });
}

std::optional<Server::Admission> Server::admit(const std::string& service) {
  BROACH_ASSERT_IN_LOOP(d_.loop);
  if (!any_limit_) return Admission{};  // null: no limit
  auto it = limiters_.find(service);
  if (it == limiters_.end()) {
    auto c = d_.max_concurrency.find(service);
    if (c == d_.max_concurrency.end()) c = d_.max_concurrency.find("*");
    std::unique_ptr<breaker::ConcurrencyLimiter> l;
    if (c != d_.max_concurrency.end()) {
      l = std::make_unique<breaker::ConcurrencyLimiter>(
          breaker::ConcurrencyLimitOptions{c->second.adaptive, c->second.limit}, d_.clock.now());
    }
    it = limiters_.emplace(service, std::move(l)).first;
  }
  breaker::ConcurrencyLimiter* l = it->second.get();
  if (l == nullptr) return Admission{};
  if (!l->try_admit()) {
    d_.counters.rejected_concurrency_limit.fetch_add(1, std::memory_order_relaxed);
    return std::nullopt;
  }
  return std::make_shared<AdmissionHold>(*l, d_.clock);
}

std::string Server::limit_message(const std::string& service) const {
  int limit = 0;
  if (auto it = limiters_.find(service); it != limiters_.end() && it->second) limit = it->second->limit();
  return "provider " + engine_.options().advertised.to_string() + ": " + service +
         " is at its concurrency limit (" + std::to_string(limit) + " in flight): not run, retry elsewhere";
}

Server::~Server() {
  d_.loop.remove_idle_hook(hook_);
  if (nudge_timer_ != kNoTimer) d_.loop.cancel(nudge_timer_);
}

void Server::arm_nudge() {
  nudge_timer_ = d_.loop.run_after(kNudgeEvery, [this] {
    nudge_timer_ = kNoTimer;
    if (outstanding_.load(std::memory_order_relaxed) == 0) return;
    d_.executor.nudge();
    arm_nudge();
  });
}

void Server::on_request(reliable::IncomingRequest&& req) {
  BROACH_ASSERT_IN_LOOP(d_.loop);
  if (routing::is_internal_service(req.service) && internal_.handle(req)) return;
  d_.counters.requests_received.fetch_add(1, std::memory_order_relaxed);
  auto svc = d_.services.find(req.service);
  if (!svc) {
    refuse(req.token, Errc::kNotFound, req.service);
    return;
  }
  const auto admission = admit(req.service);
  if (!admission) {
    refuse(req.token, Errc::kOverloaded, limit_message(req.service));
    return;
  }
  if (svc->async_handler) {
    // The completion holds the admission: answered (even twice) or
    // dropped uncalled, it leaves the limit once.
    invoke_async(req.service, svc->async_handler, req.args, req.deadline,
                 [this, token = req.token, a = *admission](RawResult r) {
                   finish(a);
                   engine_.respond_from_any_thread(token, to_call_result(std::move(r)));
                 },
                 req.token.reply_to, req.metadata, req.received);
    return;
  }
  if (svc->options.run_on_loop) {
    run(svc->handler, req, *admission);
    return;
  }
  // Handed to the pool at the end of this loop iteration, with the other
  // requests that arrived in it: one lock and at most one wake-up per batch.
  // The task holds the admission: run, refused or destroyed unrun, it
  // leaves the limit once.
  handoff_tokens_.push_back(req.token);
  outstanding_.fetch_add(1, std::memory_order_relaxed);
  handoff_.push_back([this, handler = std::move(svc->handler), req = std::move(req), a = *admission]() mutable {
    run(handler, req, a);
    outstanding_.fetch_sub(1, std::memory_order_relaxed);
  });
}

void Server::hand_off() {
  BROACH_ASSERT_IN_LOOP(d_.loop);
  if (handoff_.empty()) return;
  results_.resize(handoff_.size());
  d_.executor.try_submit_batch(handoff_, results_);
  for (std::size_t i = 0; i < handoff_.size(); ++i) {
    const Errc rc = results_[i];
    if (rc != Errc::kOk) outstanding_.fetch_sub(1, std::memory_order_relaxed);  // destroyed unrun
    if (rc == Errc::kQueueFull) {
      d_.counters.rejected_overloaded.fetch_add(1, std::memory_order_relaxed);
      refuse(handoff_tokens_[i], Errc::kOverloaded,
             "provider " + engine_.options().advertised.to_string() + " has its queue and threads full");
    } else if (rc != Errc::kOk) {
      refuse(handoff_tokens_[i], Errc::kOverloaded, kStoppingMessage);
    }
  }
  handoff_.clear();
  handoff_tokens_.clear();
  // While handlers are outstanding, nudge the pool every kNudgeEvery: a
  // backlog of short tasks runs on one worker, and if that worker is stuck
  // in a long handler another is woken within kNudgeEvery.
  if (outstanding_.load(std::memory_order_relaxed) > 0 && nudge_timer_ == kNoTimer) arm_nudge();
  // Refusals, and tasks the pool ran here (caller-runs), queued responses
  // after the path's own end-of-iteration flush: send them now.
  engine_.path().flush();
}

// Runs on a worker thread, or on the loop thread (run_on_loop, caller-runs).
void Server::run(const RawHandler& handler, reliable::IncomingRequest& req, const Admission& a) {
  RawResult r = invoke(req.service, handler, req.args, req.deadline, req.token.reply_to, req.metadata, req.received);
  finish(a);  // before the answer: a caller that sends again at once finds room
  engine_.respond_from_any_thread(req.token, to_call_result(std::move(r)));
}

void Server::refuse(const reliable::RequestToken& token, Errc code, std::string message) {
  engine_.respond(token, reliable::CallResult{code, {}, std::move(message)});
}

RawResult Server::invoke(const std::string& service, const RawHandler& handler, std::span<const std::byte> args,
                         TimePoint deadline, std::optional<Endpoint> caller, std::span<const std::byte> metadata,
                         TimePoint received) {
  const TimePoint t0 = d_.clock.now();
  RawResult r = invoke_unmeasured(service, handler, args, deadline, caller, metadata, received);
  auto& m = d_.metrics.service(service);
  m.served.fetch_add(1, std::memory_order_relaxed);
  if (!r.ok()) m.served_errors.add(r.error().code());
  m.served_latency.record(d_.clock.now() - t0);
  return r;
}

ServerCall Server::server_call(const std::string& service, TimePoint deadline, const std::optional<Endpoint>& caller,
                               std::span<const std::byte> metadata, TimePoint received) const {
  ServerCall sc;
  sc.service = service;
  sc.caller = caller ? *caller : engine_.options().advertised;
  sc.deadline = deadline == TimePoint::max() ? std::chrono::steady_clock::time_point::max() : to_public(deadline);
  sc.metadata = unpack_metadata(metadata);
  sc.received = to_public(received == TimePoint{} ? d_.clock.now() : received);
  if (d_.on_traced_request && sc.metadata.count(kTraceMetadataKey)) d_.on_traced_request();
  return sc;
}

void Server::invoke_async(const std::string& service, const RawAsyncHandler& handler, std::span<const std::byte> args,
                          TimePoint deadline, std::function<void(RawResult)> done, std::optional<Endpoint> caller,
                          std::span<const std::byte> metadata, TimePoint received) {
  BROACH_ASSERT_IN_LOOP(d_.loop);
  if (d_.stopping.load(std::memory_order_relaxed)) {
    done(Error(Errc::kOverloaded, kStoppingMessage));
    return;
  }
  if (d_.clock.now() >= deadline) {
    d_.counters.expired_in_queue.fetch_add(1, std::memory_order_relaxed);
    done(Error(Errc::kDeadlineExpired, "caller's deadline passed while the request was queued"));
    return;
  }
  const TimePoint t0 = d_.clock.now();
  // With interceptors installed: what they (and the handler's nested calls,
  // until it first suspends) see of the request; kept until it finishes.
  std::shared_ptr<const ServerCall> sc;
  const ServerList* list = nullptr;
  if (d_.interceptors.any() || !metadata.empty()) {
    sc = std::make_shared<const ServerCall>(server_call(service, deadline, caller, metadata, received));
    list = d_.interceptors.server();
  }
  const ServerCallScope scope(sc.get());
  if (list != nullptr) {
    if (auto e = run_before_handler(*list, *sc)) {
      RawResult r(std::move(*e));
      auto& m = d_.metrics.service(service);  // as invoke() records a refused synchronous one
      m.served.fetch_add(1, std::memory_order_relaxed);
      m.served_errors.add(r.error().code());
      m.served_latency.record(d_.clock.now() - t0);
      run_after_handler(*list, *sc, r, d_.clock.now() - t0);
      done(std::move(r));
      return;
    }
  }
  d_.counters.handlers_run.fetch_add(1, std::memory_order_relaxed);
  // Runs once, on whichever thread the coroutine finishes on; or, when the
  // handler throws before it starts, not at all (the catch below answers).
  auto shared_done = std::make_shared<std::function<void(RawResult)>>(std::move(done));
  auto finish = [this, service, t0, shared_done, sc, list](RawResult r) {
    auto& m = d_.metrics.service(service);
    m.served.fetch_add(1, std::memory_order_relaxed);
    if (!r.ok()) {
      d_.counters.handler_errors.fetch_add(1, std::memory_order_relaxed);
      m.served_errors.add(r.error().code());
    }
    m.served_latency.record(d_.clock.now() - t0);
    if (list != nullptr) run_after_handler(*list, *sc, r, d_.clock.now() - t0);
    (*shared_done)(std::move(r));
  };
  auto refused = [&](Error e) {
    d_.counters.handler_errors.fetch_add(1, std::memory_order_relaxed);
    RawResult r(std::move(e));
    if (list != nullptr) run_after_handler(*list, *sc, r, d_.clock.now() - t0);
    (*shared_done)(std::move(r));
  };
  try {
    handler(args, std::move(finish));
  } catch (const Error& e) {  // before it started: the arguments did not unpack
    refused(Error(e.code() == Errc::kBadArguments ? Errc::kBadArguments : Errc::kRemoteError, e.message()));
  } catch (const std::exception& e) {
    refused(Error(Errc::kRemoteError, e.what()));
  }
}

RawResult Server::invoke_unmeasured(const std::string& service, const RawHandler& handler,
                                    std::span<const std::byte> args, TimePoint deadline,
                                    const std::optional<Endpoint>& caller, std::span<const std::byte> metadata,
                                    TimePoint received) {
  if (d_.stopping.load(std::memory_order_relaxed)) return Error(Errc::kOverloaded, kStoppingMessage);
  if (d_.clock.now() >= deadline) {
    // The caller has given up: running the work now would only waste it.
    d_.counters.expired_in_queue.fetch_add(1, std::memory_order_relaxed);
    return Error(Errc::kDeadlineExpired, "caller's deadline passed while the request was queued");
  }
  if (!d_.interceptors.any() && metadata.empty()) return call_handler(d_.counters, handler, args);
  // Interceptors installed, or metadata came: they and the handler (and its
  // nested calls) see the request as current_server_call().
  const ServerCall sc = server_call(service, deadline, caller, metadata, received);
  const ServerCallScope scope(&sc);
  const ServerList* list = d_.interceptors.server();
  if (list == nullptr) return call_handler(d_.counters, handler, args);
  const TimePoint t0 = d_.clock.now();
  if (auto e = run_before_handler(*list, sc)) {
    RawResult r(std::move(*e));
    run_after_handler(*list, sc, r, d_.clock.now() - t0);
    return r;
  }
  RawResult r = call_handler(d_.counters, handler, args);
  run_after_handler(*list, sc, r, d_.clock.now() - t0);
  return r;
}

RawResult Server::call_handler(NodeCounters& counters, const RawHandler& handler, std::span<const std::byte> args) {
  counters.handlers_run.fetch_add(1, std::memory_order_relaxed);
  try {
    return handler(args);
  } catch (const Error& e) {
    counters.handler_errors.fetch_add(1, std::memory_order_relaxed);
    return Error(e.code() == Errc::kBadArguments ? Errc::kBadArguments : Errc::kRemoteError, e.message());
  } catch (const std::exception& e) {
    counters.handler_errors.fetch_add(1, std::memory_order_relaxed);
    return Error(Errc::kRemoteError, e.what());
  } catch (...) {
    counters.handler_errors.fetch_add(1, std::memory_order_relaxed);
    return Error(Errc::kRemoteError, "unknown exception");
  }
}

}  // namespace broach::api
