// NamedCalls: attempts, retries and hedges of calls by name.
#include "api/named_calls.hpp"

namespace broach::api {

void NamedCalls::start(const std::string& service, Bytes args, const CallOptions& opts, Done done) {
  d_.counters.calls_by_name.fetch_add(1, std::memory_order_relaxed);
  d_.router.on_call();
  auto c = std::make_shared<NamedCall>();
  c->service = service;
  c->args = std::move(args);
  c->opts = opts;
  c->deadline = call_deadline(d_.config, opts, d_.clock.now());
  c->done = std::move(done);
  if (d_.stopping.load(std::memory_order_relaxed)) {
    complete_on_loop(d_.loop, std::move(c->done), Error(Errc::kShutdown, "node is stopping"));
    return;
  }
  if (const ClientList* list = d_.interceptors.client()) {
    auto ic = std::make_shared<InterceptedCall>();
    ic->list = list;
    ic->call.service = service;
    ic->call.trace = opts.trace;
    ic->call.deadline = to_public(c->deadline);
    ic->started = d_.clock.now();
    // after_call runs on the loop thread, as the call ends.
    c->done = [ic, &clock = d_.clock, done = std::move(c->done)](RawResult r) mutable {
      run_after_call(*ic->list, ic->call, r, clock.now() - ic->started);
      done(std::move(r));
    };
    std::optional<Error> refused = run_before_call(*list, ic->call);
    if (!refused) refused = ic->repack();
    c->deadline = std::min(c->deadline, from_public(ic->call.deadline));
    ic->call.deadline = to_public(c->deadline);  // an interceptor may shorten it, never extend it
    c->intercepted = std::move(ic);
    if (refused) {
      finish(c, std::move(*refused));
      return;
    }
  }
  attempt(c, /*hedge=*/false);
  if (d_.router.hedge_delay() > Duration::zero() && d_.router.idempotent(service, opts)) {
    d_.loop.try_post([this, c] { arm_hedge(c); });
  }
}

void NamedCalls::arm_hedge(const CallPtr& c) {
  BROACH_ASSERT_IN_LOOP(d_.loop);
  if (c->finished) return;
  d_.loop.run_after(d_.router.hedge_delay(), [this, c] {
    if (c->finished || c->running != 1) return;
    d_.counters.hedges.fetch_add(1, std::memory_order_relaxed);
    attempt(c, /*hedge=*/true);
  });
}

void NamedCalls::attempt(const CallPtr& c, bool hedge) {
  const bool on_loop = d_.loop.in_loop_thread();
  const TimePoint now = d_.clock.now();
  if (now >= c->deadline) {
    if (hedge) return;
    fail(c, Error(Errc::kCallTimeout, "no time left for " + c->service));
    return;
  }
  const auto table = d_.routes();
  auto choice = d_.router.pick(*table, c->service, c->opts, c->tried, now);
  if (!choice.ok()) {
    if (hedge) return;  // no second provider for a backup: the first attempt goes on
    if (choice.error().code() == Errc::kCircuitOpen && !c->last_error) {
      d_.counters.circuit_open_rejections.fetch_add(1, std::memory_order_relaxed);
    }
    fail(c, choice.error());
    return;
  }
  const Choice chosen = choice.value();
  if (InterceptedCall* ic = c->intercepted.get()) {
    ++ic->call.attempts;
    if (ic->call.trace) d_.tracer.note_pick(ic->call, chosen.policy, chosen.candidates, chosen.fused, chosen.probe);
    std::optional<Error> refused = run_before_attempt(*ic->list, ic->call, chosen.address);
    if (!refused) refused = ic->repack();
    c->deadline = std::min(c->deadline, from_public(ic->call.deadline));
    ic->call.deadline = to_public(c->deadline);
    if (refused) {
      d_.router.cancel_pick(chosen.address, c->service);  // not attempted: no outcome to count
      if (!hedge) finish(c, std::move(*refused));
      return;
    }
  }
  c->tried.push_back(chosen.address);
  ++c->running;
  auto ended = [this, c, provider = chosen.address, now](RawResult r) {
    attempt_ended(c, provider, now, std::move(r));
  };
  Bytes no_metadata;
  const Bytes& metadata = c->intercepted ? c->intercepted->packed : no_metadata;
  if (chosen.self && d_.config.load_balance.local_in_process) {
    if (on_loop) {
      d_.local.run(c->service, c->args, c->deadline, std::move(ended), metadata);
    } else if (!d_.loop.try_post([this, c, ended = std::move(ended), metadata]() mutable {
                 d_.local.run(c->service, c->args, c->deadline, std::move(ended), std::move(metadata));
               })) {
      ended(Error(Errc::kShutdown, "node is stopping"));
    }
    return;
  }
  std::function<void(std::uint32_t)> on_sends;
  if (c->intercepted && c->intercepted->call.trace) {
    on_sends = [tracer = &d_.tracer, ic = c->intercepted, provider = chosen.address](std::uint32_t sends) {
      tracer->note_sends(ic->call, provider, sends);
    };
  }
  d_.direct.call(chosen.address, c->service, c->args, c->deadline, std::move(ended), metadata, std::move(on_sends));
}

void NamedCalls::attempt_ended(const CallPtr& c, const Endpoint& provider, TimePoint t0, RawResult r) {
  const TimePoint now = d_.clock.now();
  const Errc code = r.ok() ? Errc::kOk : r.error().code();
  d_.router.on_finish(provider, c->service, code, now - t0, now);
  if (c->intercepted) run_after_attempt(*c->intercepted->list, c->intercepted->call, provider, r, now - t0);
  --c->running;
  if (c->finished) return;
  if (r.ok()) {
    finish(c, std::move(r));
    return;
  }
  c->last_error = r.error();
  if (c->running > 0) return;  // a hedge is still out: let it answer
  if (d_.router.may_retry(c->service, c->opts, code, c->retries)) {
    ++c->retries;
    d_.counters.retries.fetch_add(1, std::memory_order_relaxed);
    attempt(c, /*hedge=*/false);
    return;
  }
  finish(c, std::move(r));
}

void NamedCalls::fail(const CallPtr& c, Error no_pick) {
  // After failed attempts, report what went wrong with them, not "all tried".
  if (c->last_error && (no_pick.code() == Errc::kNoProvider || no_pick.code() == Errc::kCallTimeout)) {
    finish(c, *c->last_error);
    return;
  }
  finish(c, std::move(no_pick));
}

void NamedCalls::finish(const CallPtr& c, RawResult r) {
  if (!d_.loop.in_loop_thread()) {
    // Only the first attempt runs off the loop: nothing else holds `c` yet.
    c->finished = true;
    complete_on_loop(d_.loop, std::move(c->done), std::move(r));
    return;
  }
  if (c->finished) return;
  c->finished = true;
  complete_on_loop(d_.loop, std::move(c->done), std::move(r));
}

}  // namespace broach::api
