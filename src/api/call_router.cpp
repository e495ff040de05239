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
bool unreachable(Errc code) { return code == Errc::kDeliveryTimeout || code == Errc::kCallTimeout; }

// The provider failed this service (counts against provider+service).
bool service_failure(Errc code) {
  return unreachable(code) || code == Errc::kRemoteError || code == Errc::kOverloaded ||
         code == Errc::kDeadlineExpired;
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

}  // namespace

CallRouter::CallRouter(const Config& config, std::uint64_t rng_seed)
    : breaker_options_(breaker_options(config.breaker)),
      max_retries_(config.retry.max_retries),
      hedge_delay_(seconds_f(config.retry.hedge_delay_ms / 1000.0)),
      idempotent_(config.retry.idempotent.begin(), config.retry.idempotent.end()),
      budget_(config.retry.budget_ratio, 10),
      rng_(rng_seed) {
  default_policy_ = make_or_throw(config, config.load_balance.policy, "params.broach.loadBalance.policy");
  for (const auto& [svc, name] : config.load_balance.services) {
    service_policies_[svc] = make_or_throw(config, name, "params.broach.loadBalance.services." + svc);
  }
}

lb::Policy& CallRouter::policy_for(const std::string& service) {
  auto it = service_policies_.find(service);
  return it == service_policies_.end() ? *default_policy_ : *it->second;
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
  bool any_version = false, any_untried = false;
  MutexLock lock(mu_);
  last_table_ = table.version();
  if (not_offered_table_ != table.version()) {
    not_offered_.clear();
    not_offered_table_ = table.version();
  }
  for (const auto& p : entry->providers) {
    if (!version_matches(opts.version, p.version)) continue;
    if (!not_offered_.empty() && not_offered_.count({p.address, service})) continue;
    any_version = true;
    if (std::find(exclude.begin(), exclude.end(), p.address) != exclude.end()) continue;
    any_untried = true;
    ProviderState& ps = provider_locked(p.address);
    // Fused providers are skipped; a half-open one is a candidate (its probe).
    if (!ps.breaker.would_allow(now) || !service_breaker_locked(p.address, service).would_allow(now)) continue;
    lb::Candidate c;
    c.address = p.address;
    c.name = p.name;
    c.version = p.version;
    c.weight = p.weight;
    c.self = p.self;
    c.outstanding = ps.outstanding;
    c.latency_ewma_us = ps.ewma_us;
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
  const std::size_t i = std::min(policy_for(service).pick(candidates, ctx), candidates.size() - 1);
  const lb::Candidate& chosen = candidates[i];
  ProviderState& ps = provider_locked(chosen.address);
  ps.breaker.allow(now);  // reserves the half-open probe, if that is what this is
  service_breaker_locked(chosen.address, service).allow(now);
  ++ps.outstanding;
  return Choice{chosen.address, chosen.self};
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
  if (unreachable(code)) {
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

std::vector<CallRouter::BreakerView> CallRouter::breakers(TimePoint now) const {
  MutexLock lock(mu_);
  std::vector<BreakerView> out;
  for (const auto& [e, ps] : providers_) out.push_back({e, "", ps.breaker.state(now), ps.breaker.trips()});
  for (const auto& [k, b] : service_breakers_) out.push_back({k.first, k.second, b.state(now), b.trips()});
  return out;
}

}  // namespace broach::api
