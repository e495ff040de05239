// Internal header (api layer). Chooses a provider for each call by name and
// learns from how calls end: load-balancing policies, per-provider and
// per-provider+service circuit breakers, in-flight counts and latency
// averages, and the retry rules with their budget.
// Thread contract: thread-safe (one mutex; picks and outcomes are short).
#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/rng.hpp"
#include "base/thread_annotations.hpp"
#include "base/time.hpp"
#include "breaker/circuit_breaker.hpp"
#include "broach/config.hpp"
#include "broach/lb.hpp"
#include "broach/node.hpp"
#include "routing/route_table.hpp"

namespace broach::api {

struct Choice {
  Endpoint address;
  bool self = false;
  // How it was made (for traces):
  std::string_view policy;   ///< the policy's name (the router's string, lives as long as it)
  std::uint16_t candidates = 0;  ///< providers the policy chose among
  std::uint16_t fused = 0;       ///< providers skipped because a breaker was open
  bool probe = false;            ///< the provider's breaker was half-open: this attempt is its probe
};

class CallRouter {
 public:
  /// Throws Error{kBadConfig} naming the key when a policy name is unknown.
  /// `rng_seed` drives the random policies (a simulation replays it).
  CallRouter(const Config& config, std::uint64_t rng_seed);

  /// Picks a provider of `service` from `table`, skipping `exclude` (already
  /// tried), providers whose version does not match, and fused providers.
  /// kNotFound: nobody offers it; kNoProvider: none of the right version or
  /// all tried; kCircuitOpen: every remaining provider is fused.
  Result<Choice> pick(const routing::RouteTable& table, const std::string& service,
                      const CallOptions& opts, const std::vector<Endpoint>& exclude, TimePoint now);
  /// Reports how an attempt ended (also releases the in-flight count).
  void on_finish(const Endpoint& provider, const std::string& service, Errc code, Duration latency,
                 TimePoint now);
  /// A pick that was not attempted after all (an interceptor refused it):
  /// releases its in-flight count and any half-open probe slot it took,
  /// counting no outcome.
  void cancel_pick(const Endpoint& provider, const std::string& service);
  /// Counts a first attempt (it earns retry budget).
  void on_call();
  /// May a failed attempt be retried on another provider?
  bool may_retry(const std::string& service, const CallOptions& opts, Errc code, int retries_done);
  bool idempotent(const std::string& service, const CallOptions& opts) const;
  Duration hedge_delay() const { return hedge_delay_; }

  // Slow start (params.broach.loadBalance.slowStartMs): a provider that
  // joined, or came back from dead, gets a share that ramps linearly from
  // slowStartMinPercent of its full share to all of it over the window.
  /// A member joined (a new member or a new life of one), now; `serves`:
  /// it offers at least one service (else the ramp starts when it does).
  void provider_joined(const Endpoint& provider, bool serves, TimePoint now);
  /// A member is alive: starts its slow start if it had been gone (dead or
  /// left), not when it refuted a suspicion.
  void provider_alive(const Endpoint& provider, bool serves, TimePoint now);
  /// A member's metadata changed.
  void provider_updated(const Endpoint& provider, bool serves, TimePoint now);
  /// A member is dead or left.
  void provider_gone(const Endpoint& provider);
  /// A member's record was reclaimed (it returns, if ever, as a join).
  void provider_forgotten(const Endpoint& provider);

  /// How a policy's picks are ramped (see ramp_of in the .cpp).
  enum class Ramp { kNone, kEqual, kByWeight };

  struct BreakerView {
    Endpoint provider;
    std::string service;  ///< empty for the provider-wide breaker
    breaker::BreakerState state;
    std::uint64_t trips;
  };
  std::vector<BreakerView> breakers(TimePoint now) const;

  /// What this node knows of a provider it has called (the status page's
  /// route table).
  struct ProviderView {
    std::uint32_t outstanding = 0;  ///< calls from this node in flight now
    double latency_ewma_us = 0;     ///< 0: no answer yet
    breaker::BreakerState breaker = breaker::BreakerState::kClosed;  ///< provider-wide
    double warmth = 1.0;            ///< < 1 while in slow start
  };
  /// `provider`'s view (a default one when this node never called it),
  /// with the breaker of (provider, service) when that one is not closed.
  ProviderView provider_view(const Endpoint& provider, const std::string& service, TimePoint now);

 private:
  struct ProviderState {
    std::uint32_t outstanding = 0;
    double ewma_us = 0;
    breaker::CircuitBreaker breaker;
  };
  ProviderState& provider_locked(const Endpoint& e) BROACH_REQUIRES(mu_);
  breaker::CircuitBreaker& service_breaker_locked(const Endpoint& e, const std::string& service)
      BROACH_REQUIRES(mu_);
  lb::Policy& policy_for(const std::string& service);
  Ramp ramp_for(const std::string& service) const;
  /// 1 when warm; else slowStartMinPercent + the elapsed part of the window.
  double warmth_locked(const Endpoint& provider, TimePoint now) BROACH_REQUIRES(mu_);
  std::size_t pick_warming_locked(lb::Policy& policy, Ramp ramp, std::span<const lb::Candidate> c,
                                  const lb::PickContext& ctx) BROACH_REQUIRES(mu_);
  void start_ramp_locked(const Endpoint& provider, bool serves, TimePoint now) BROACH_REQUIRES(mu_);
  static constexpr std::size_t kMaxGone = 65536;
  static bool version_matches(const std::string& want, std::string_view have);

  breaker::BreakerOptions breaker_options_;
  int max_retries_;
  Duration hedge_delay_;
  std::set<std::string> idempotent_;
  std::unique_ptr<lb::Policy> default_policy_;
  std::map<std::string, std::unique_ptr<lb::Policy>> service_policies_;  // immutable after ctor
  std::string default_policy_name_;
  std::map<std::string, std::string> service_policy_names_;  // immutable after ctor
  Ramp default_ramp_ = Ramp::kNone;
  std::map<std::string, Ramp> service_ramps_;  // immutable after ctor
  const Duration slow_start_;
  const double slow_start_min_;

  mutable Mutex mu_;
  std::unordered_map<Endpoint, ProviderState> providers_ BROACH_GUARDED_BY(mu_);
  std::map<std::pair<Endpoint, std::string>, breaker::CircuitBreaker> service_breakers_ BROACH_GUARDED_BY(mu_);
  breaker::RetryBudget budget_ BROACH_GUARDED_BY(mu_);
  // Providers that answered not_found for a service the route table says
  // they offer (gossip not there yet): skipped until the next table.
  std::set<std::pair<Endpoint, std::string>> not_offered_ BROACH_GUARDED_BY(mu_);
  std::uint64_t not_offered_table_ BROACH_GUARDED_BY(mu_) = 0;  // route table version the set belongs to
  std::uint64_t last_table_ BROACH_GUARDED_BY(mu_) = 0;         // version of the table of the latest pick
  Rng rng_ BROACH_GUARDED_BY(mu_);
  std::unordered_map<Endpoint, TimePoint> warming_ BROACH_GUARDED_BY(mu_);  // slow start began then
  TimePoint warming_swept_ BROACH_GUARDED_BY(mu_){};  // when ended ramps were last dropped
  std::unordered_set<Endpoint> gone_ BROACH_GUARDED_BY(mu_);  // dead or left (a return starts a slow start)
  std::unordered_set<Endpoint> no_services_yet_ BROACH_GUARDED_BY(mu_);  // joined, ramp waits for a service
};

}  // namespace broach::api
