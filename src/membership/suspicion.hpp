// Internal header. Lifeguard's suspicion timeout: it starts at `max` and
// shrinks towards `min` as independent members confirm the suspicion,
// timeout(c) = max - (max - min) * log(c + 1) / log(k + 1), so a member many
// others also find unreachable is declared dead sooner, and a member only one
// (perhaps overloaded) prober suspects gets the longest chance to refute.
// Layer: membership. Thread contract: loop thread only; pure arithmetic.
#pragma once

#include <algorithm>
#include <cmath>
#include <set>

#include "base/loop.hpp"
#include "base/time.hpp"
#include "broach/endpoint.hpp"

namespace broach::membership {

class Suspicion {
 public:
  Suspicion(TimePoint start, Duration min, Duration max, int k, const Endpoint& first)
      : start_(start), min_(min), max_(max), k_(std::max(k, 0)) {
    confirmers_.insert(first);
  }
  /// Adds a confirmation from `from`; true when it is new (and so shortens
  /// the timeout).
  bool confirm(const Endpoint& from) {
    if (static_cast<int>(confirmers_.size()) - 1 >= k_) return false;
    return confirmers_.insert(from).second;
  }
  /// Lifeguard extension: the expiry was put off once so that what arrived
  /// while this node could not run is read first (Membership::suspicion_expired).
  bool deferred = false;
  TimerId timer = kNoTimer;  ///< the expiry timer (Membership owns it)
  int confirmations() const { return static_cast<int>(confirmers_.size()) - 1; }
  TimePoint deadline() const {
    if (k_ == 0) return start_ + min_;
    const double frac = std::log(confirmations() + 1.0) / std::log(k_ + 1.0);
    const auto span = std::chrono::duration<double>(max_ - min_).count();
    const auto t = std::chrono::duration<double>(max_).count() - span * std::min(frac, 1.0);
    return start_ + std::max(min_, seconds_f(t));
  }

 private:
  TimePoint start_;
  Duration min_, max_;
  int k_;
  std::set<Endpoint> confirmers_;
};

}  // namespace broach::membership
