#include "api/call_router.hpp"

#include <algorithm>

#include "base/log.hpp"

namespace broach::api {
namespace {

breaker::BreakerOptions breaker_options(const BreakerConfig& b) {
  breaker::BreakerOptions o;
  o.consecutive_failures = b.consecutive_failures;
  o.error_rate = b.error_rate;
  o.min_calls = b.min_calls;
  o.window = seconds_f(b.window_ms / 1000.0);
  o.open_base = seconds_f(b.open_ms / 1000.0);
  o.open_max = seconds_f(b.open_max_ms / 1000.0);
  return o;
}

// The provider could not be reached (counts against the provider as a whole).
bool unreachable(Errc code) {
  return code == Errc::kDeliveryTimeout || code == Errc::kCallTimeout || code == Errc::kPeerGone;
}

// The provider failed this service (counts against provider+service).
// `overloaded` is not a failure: the provider answered at once that it did
// not run the request (its concurrency limit, a full pool, a drain), the
// call is retried elsewhere, and fusing a provider that sheds load would
// turn shedding a part into refusing all. Only a provider that refuses
// everything is fused (CircuitBreaker::on_refusal).
bool service_failure(Errc code) {
  return unreachable(code) || code == Errc::kRemoteError || code == Errc::kDeadlineExpired;
}

std::unique_ptr<lb::Policy> make_or_throw(const Config& c, const std::string& name, const std::string& key) {
  auto p = lb::make_policy(name);
  if (!p) {
    std::string known;
    for (const auto& n : lb::policy_names()) known += (known.empty() ? "" : ", ") + n;
    throw Error(Errc::kBadConfig,
                c.source + ": " + key + ": unknown load-balancing policy '" + name + "' (known: " + known + ")");
  }
  return p;
}

// How slow start applies to a built-in policy: by weight ("weighted"), as
// equal shares (the ones that ignore weights), or not at all (a key's
// provider is fixed by the hash; local_first prefers this node; a policy
// of the application's own sees Candidate::warmth and decides itself).
CallRouter::Ramp ramp_of(const std::string& name) {
  if (name == "weighted") return CallRouter::Ramp::kByWeight;
  if (name == "round_robin" || name == "random" || name == "least_outstanding" || name == "p2c_ewma") {
    return CallRouter::Ramp::kEqual;
  }
  return CallRouter::Ramp::kNone;
}

}  // namespace

CallRouter::CallRouter(const Config& config, std::uint64_t rng_seed)
    : breaker_options_(breaker_options(config.breaker)),
      max_retries_(config.retry.max_retries),
      hedge_delay_(seconds_f(config.retry.hedge_delay_ms / 1000.0)),
      idempotent_(config.retry.idempotent.begin(), config.retry.idempotent.end()),
      slow_start_(seconds_f(config.load_balance.slow_start_ms / 1000.0)),
      slow_start_min_(config.load_balance.slow_start_min_percent / 100.0),
      budget_(config.retry.budget_ratio, 10),
      rng_(rng_seed) {
  default_policy_ = make_or_throw(config, config.load_balance.policy, "params.broach.loadBalance.policy");
  default_policy_name_ = config.load_balance.policy;
  default_ramp_ = ramp_of(config.load_balance.policy);
  for (const auto& [svc, name] : config.load_balance.services) {
    service_policies_[svc] = make_or_throw(config, name, "params.broach.loadBalance.services." + svc);
    service_policy_names_[svc] = name;
    service_ramps_[svc] = ramp_of(name);
  }
}

lb::Policy& CallRouter::policy_for(const std::string& service) {
  auto it = service_policies_.find(service);
  return it == service_policies_.end() ? *default_policy_ : *it->second;
}

CallRouter::Ramp CallRouter::ramp_for(const std::string& service) const {
  auto it = service_ramps_.find(service);
  return it == service_ramps_.end() ? default_ramp_ : it->second;
}

void CallRouter::provider_joined(const Endpoint& provider, bool serves, TimePoint now) {
  if (slow_start_ <= Duration::zero()) return;
  MutexLock lock(mu_);
  gone_.erase(provider);
  start_ramp_locked(provider, serves, now);
}

void CallRouter::provider_alive(const Endpoint& provider, bool serves, TimePoint now) {
  if (slow_start_ <= Duration::zero()) return;
  MutexLock lock(mu_);
  if (gone_.erase(provider) != 0) start_ramp_locked(provider, serves, now);  // back from dead; not a refuted suspicion
}

void CallRouter::provider_updated(const Endpoint& provider, bool serves, TimePoint now) {
  if (slow_start_ <= Duration::zero() || !serves) return;
  MutexLock lock(mu_);
  if (no_services_yet_.erase(provider) != 0) warming_[provider] = now;
}

void CallRouter::provider_gone(const Endpoint& provider) {
  if (slow_start_ <= Duration::zero()) return;
  MutexLock lock(mu_);
  warming_.erase(provider);
  no_services_yet_.erase(provider);
  if (gone_.size() < kMaxGone) gone_.insert(provider);
}

void CallRouter::provider_forgotten(const Endpoint& provider) {
  if (slow_start_ <= Duration::zero()) return;
  MutexLock lock(mu_);
  warming_.erase(provider);
  no_services_yet_.erase(provider);
  gone_.erase(provider);
}

void CallRouter::start_ramp_locked(const Endpoint& provider, bool serves, TimePoint now) {
  // A member that offers nothing yet (its services are announced a moment
  // after it joins) starts its ramp when it first offers something: the
  // window is for traffic, not for the time before any could come.
  if (serves) {
    no_services_yet_.erase(provider);
    warming_[provider] = now;
  } else if (no_services_yet_.size() < kMaxGone) {
    warming_.erase(provider);
    no_services_yet_.insert(provider);
  }
}

double CallRouter::warmth_locked(const Endpoint& provider, TimePoint now) {
  auto it = warming_.find(provider);
  if (it == warming_.end()) return 1.0;
  const Duration elapsed = now - it->second;
  if (elapsed >= slow_start_) {
    warming_.erase(it);
    return 1.0;
  }
  const double frac = std::max(0.0, to_seconds(elapsed) / to_seconds(slow_start_));
  return slow_start_min_ + (1.0 - slow_start_min_) * frac;
}

std::size_t CallRouter::pick_warming_locked(lb::Policy& policy, Ramp ramp, std::span<const lb::Candidate> c,
                                            const lb::PickContext& ctx) {
  // The warming providers get exactly their ramped share, drawn here; the
  // rest of the calls go to the policy, over the warm providers only. A
  // provider at warmth f counts as f of itself: weight x f for "weighted",
  // f of an equal share for the others.
  auto weight = [&](const lb::Candidate& x) {
    return (ramp == Ramp::kByWeight ? static_cast<double>(x.weight) : 1.0) * x.warmth;
  };
  double total = 0, warming = 0;
  for (const auto& x : c) {
    total += weight(x);
    if (x.warmth < 1.0) warming += weight(x);
  }
  if (total <= 0) return policy.pick(c, ctx);
  double r = rng_.uniform() * total;
  if (r < warming) {
    for (std::size_t i = 0; i < c.size(); ++i) {
      if (c[i].warmth >= 1.0) continue;
      if (r < weight(c[i])) return i;
      r -= weight(c[i]);
    }
  }
  std::vector<lb::Candidate> warm;
  std::vector<std::size_t> index;
  for (std::size_t i = 0; i < c.size(); ++i) {
    if (c[i].warmth < 1.0) continue;
    warm.push_back(c[i]);
    index.push_back(i);
  }
  if (warm.empty()) return policy.pick(c, ctx);  // (r fell past the last warming one by rounding)
  return index[std::min(policy.pick(warm, ctx), warm.size() - 1)];
}

bool CallRouter::version_matches(const std::string& want, std::string_view have) {
  if (want.empty()) return true;
  if (want.back() == '*') return have.substr(0, want.size() - 1) == std::string_view(want).substr(0, want.size() - 1);
  return have == want;
}

CallRouter::ProviderState& CallRouter::provider_locked(const Endpoint& e) {
  auto it = providers_.find(e);
  if (it == providers_.end()) {
    it = providers_.emplace(e, ProviderState{0, 0, breaker::CircuitBreaker(breaker_options_)}).first;
  }
  return it->second;
}

breaker::CircuitBreaker& CallRouter::service_breaker_locked(const Endpoint& e, const std::string& service) {
  auto key = std::make_pair(e, service);
  auto it = service_breakers_.find(key);
  if (it == service_breakers_.end()) {
    it = service_breakers_.emplace(key, breaker::CircuitBreaker(breaker_options_)).first;
  }
  return it->second;
}

Result<Choice> CallRouter::pick(const routing::RouteTable& table, const std::string& service,
                                const CallOptions& opts, const std::vector<Endpoint>& exclude,
                                TimePoint now) {
  const auto* entry = table.find(service);
  if (entry == nullptr || entry->providers.empty()) {
    return Error(Errc::kNotFound, "no live member of the cluster offers " + service);
  }
  std::vector<lb::Candidate> candidates;
  candidates.reserve(entry->providers.size());
  bool any_version = false, any_untried = false, any_warming = false;
  std::uint16_t fused = 0;
  MutexLock lock(mu_);
  last_table_ = table.version();
  if (not_offered_table_ != table.version()) {
    not_offered_.clear();
    not_offered_table_ = table.version();
  }
  if (!warming_.empty() && now - warming_swept_ >= slow_start_) {
    // Ramps end when their provider is next looked at; a provider of a
    // service nobody calls is never looked at: drop ended ones now and then.
    warming_swept_ = now;
    std::erase_if(warming_, [&](const auto& w) { return now - w.second >= slow_start_; });
  }
  for (const auto& p : entry->providers) {
    if (!version_matches(opts.version, p.version)) continue;
    if (!not_offered_.empty() && not_offered_.count({p.address, service})) continue;
    any_version = true;
    if (std::find(exclude.begin(), exclude.end(), p.address) != exclude.end()) continue;
    any_untried = true;
    ProviderState& ps = provider_locked(p.address);
    // Fused providers are skipped; a half-open one is a candidate (its probe).
    if (!ps.breaker.would_allow(now) || !service_breaker_locked(p.address, service).would_allow(now)) {
      ++fused;
      continue;
    }
    lb::Candidate c;
    c.address = p.address;
    c.name = p.name;
    c.version = p.version;
    c.weight = p.weight;
    c.self = p.self;
    c.outstanding = ps.outstanding;
    c.latency_ewma_us = ps.ewma_us;
    if (!warming_.empty()) {
      c.warmth = warmth_locked(p.address, now);
      any_warming = any_warming || c.warmth < 1.0;
    }
    candidates.push_back(c);
  }
  if (!any_version) {
    return Error(Errc::kNoProvider, "no live provider of " + service + " has version " + opts.version);
  }
  if (!any_untried) return Error(Errc::kNoProvider, "every provider of " + service + " was tried");
  if (candidates.empty()) {
    return Error(Errc::kCircuitOpen, "every provider of " + service + " is fused after recent failures");
  }
  const lb::PickContext ctx{service, opts.routing_key, rng_.next()};
  lb::Policy& policy = policy_for(service);
  const Ramp ramp = any_warming ? ramp_for(service) : Ramp::kNone;
  const std::size_t i = std::min(
      ramp == Ramp::kNone ? policy.pick(candidates, ctx) : pick_warming_locked(policy, ramp, candidates, ctx),
      candidates.size() - 1);
  const lb::Candidate& chosen = candidates[i];
  ProviderState& ps = provider_locked(chosen.address);
  breaker::CircuitBreaker& sb = service_breaker_locked(chosen.address, service);
  const bool probe = ps.breaker.state(now) == breaker::BreakerState::kHalfOpen ||
                     sb.state(now) == breaker::BreakerState::kHalfOpen;
  ps.breaker.allow(now);  // reserves the half-open probe, if that is what this is
  sb.allow(now);
  ++ps.outstanding;
  auto name = service_policy_names_.find(service);
  return Choice{chosen.address, chosen.self,
                name == service_policy_names_.end() ? std::string_view(default_policy_name_) : std::string_view(name->second),
                static_cast<std::uint16_t>(std::min<std::size_t>(candidates.size(), 65535)), fused, probe};
}

void CallRouter::cancel_pick(const Endpoint& provider, const std::string& service) {
  MutexLock lock(mu_);
  ProviderState& ps = provider_locked(provider);
  if (ps.outstanding > 0) --ps.outstanding;
  ps.breaker.release();
  service_breaker_locked(provider, service).release();
}

void CallRouter::on_finish(const Endpoint& provider, const std::string& service, Errc code,
                           Duration latency, TimePoint now) {
  MutexLock lock(mu_);
  ProviderState& ps = provider_locked(provider);
  if (ps.outstanding > 0) --ps.outstanding;
  if (code == Errc::kNotFound && last_table_ != 0) {
    not_offered_.insert({provider, service});
    not_offered_table_ = last_table_;
  }
  if (code == Errc::kOk) {
    const double us = std::chrono::duration<double, std::micro>(latency).count();
    ps.ewma_us = ps.ewma_us == 0 ? us : 0.8 * ps.ewma_us + 0.2 * us;
  }
  // Any answer proves the provider reachable; silence counts against it.
  auto log_change = [&](const breaker::CircuitBreaker& b, breaker::BreakerState before, const char* what) {
    const auto after = b.state(now);
    if ((before == breaker::BreakerState::kOpen) == (after == breaker::BreakerState::kOpen)) return;
    BROACH_LOG_INFO("circuit {} for {} {} ({} trips)", after == breaker::BreakerState::kOpen ? "open" : "closed",
                    provider.to_string(), what, b.trips());
  };
  const auto before_p = ps.breaker.state(now);
  if (code == Errc::kPeerGone) {
    ps.breaker.on_gone(now);  // no process there: every service of it fails alike
  } else if (unreachable(code)) {
    ps.breaker.on_failure(now);
  } else {
    ps.breaker.on_success(now);
  }
  log_change(ps.breaker, before_p, "(all services)");
  auto& sb = service_breaker_locked(provider, service);
  const auto before_s = sb.state(now);
  if (service_failure(code)) {
    sb.on_failure(now);
  } else if (code == Errc::kOk) {
    sb.on_success(now);
  } else if (code == Errc::kOverloaded) {
    sb.on_refusal(now);
  }
  log_change(sb, before_s, service.c_str());
}

void CallRouter::on_call() {
  MutexLock lock(mu_);
  budget_.on_call();
}

bool CallRouter::idempotent(const std::string& service, const CallOptions& opts) const {
  if (opts.retry == RetryMode::kIdempotent) return true;
  return idempotent_.count(service) > 0;
}

bool CallRouter::may_retry(const std::string& service, const CallOptions& opts, Errc code, int retries_done) {
  if (opts.retry == RetryMode::kNever || retries_done >= max_retries_) return false;
  switch (retry_class(code)) {
    case RetryClass::kNotExecuted:
    case RetryClass::kOverloaded:
      break;  // provably did not run there
    case RetryClass::kMaybeExecuted:
      if (!idempotent(service, opts)) return false;
      break;
    case RetryClass::kPermanent:
      return false;
  }
  // Calls that can no longer reach anyone are not worth a retry.
  if (code == Errc::kCircuitOpen || code == Errc::kNoProvider || code == Errc::kShutdown) return false;
  MutexLock lock(mu_);
  return budget_.try_retry();
}

CallRouter::ProviderView CallRouter::provider_view(const Endpoint& provider, const std::string& service,
                                                   TimePoint now) {
  MutexLock lock(mu_);
  ProviderView v;
  v.warmth = warmth_locked(provider, now);
  auto it = providers_.find(provider);
  if (it != providers_.end()) {
    v.outstanding = it->second.outstanding;
    v.latency_ewma_us = it->second.ewma_us;
    v.breaker = it->second.breaker.state(now);
  }
  auto sb = service_breakers_.find({provider, service});
  if (v.breaker == breaker::BreakerState::kClosed && sb != service_breakers_.end()) v.breaker = sb->second.state(now);
  return v;
}

std::vector<CallRouter::BreakerView> CallRouter::breakers(TimePoint now) const {
  MutexLock lock(mu_);
  std::vector<BreakerView> out;
  for (const auto& [e, ps] : providers_) out.push_back({e, "", ps.breaker.state(now), ps.breaker.trips()});
  for (const auto& [k, b] : service_breakers_) out.push_back({k.first, k.second, b.state(now), b.trips()});
  return out;
}

}  // namespace broach::api
