// Internal header. Lifeguard's suspicion timeout: it starts at `max` and
// shrinks towards `min` as independent members confirm the suspicion,
// timeout(c) = max - (max - min) * log(c + 1) / log(k + 1), so a member many
// others also find unreachable is declared dead sooner, and a member only one
// (perhaps overloaded) prober suspects gets the longest chance to refute.
// k is at most kMaxConfirmations (a suspicion_mult past 9 reaches the
// minimum after 7 confirmations): the confirmers are kept inline and short, because
// during a partition every member holds a suspicion of every member on the
// other side (a simulation of N members holds up to N^2/5 of them).
// Layer: membership. Thread contract: loop thread only; pure arithmetic.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>

#include "base/loop.hpp"
#include "base/time.hpp"
#include "broach/endpoint.hpp"

namespace broach::membership {

class Suspicion {
 public:
  Suspicion(TimePoint start, Duration min, Duration max, int k, const Endpoint& first)
      : start_(start), min_(min), max_(max), k_(std::clamp(k, 0, kMaxConfirmations)) {
    confirmers_[0] = first.key();
  }
  static constexpr int kMaxConfirmations = 7;
  /// Adds a confirmation from `from`; true when it is new (and so shortens
  /// the timeout).
  bool confirm(const Endpoint& from) {
    if (confirmations() >= k_) return false;
    const auto end = confirmers_.begin() + count_;
    if (std::find(confirmers_.begin(), end, from.key()) != end) return false;
    confirmers_[count_++] = from.key();
    return true;
  }
  /// Lifeguard extension: the expiry was put off once, until
  /// `deferred_until`, so that what arrived while this node could not run is
  /// read first (Membership::suspicion_due).
  bool deferred = false;
  TimePoint deferred_until{};
  /// While it runs the suspect is pinged every `reprobe_every` (buddy
  /// system); the next one is due then.
  TimePoint next_reprobe{};
  Duration reprobe_every{};
  /// One timer per suspicion (Membership owns it), due at the earlier of
  /// the next reprobe and the expiry.
  TimerId timer = kNoTimer;
  /// When the suspect is declared dead, unless refuted.
  TimePoint due() const { return deferred ? deferred_until : deadline(); }
  int confirmations() const { return count_ - 1; }
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
  std::uint8_t count_ = 1;  // confirmers_ in use: the first suspecter, then confirmations
  /// Endpoint::key() of each: exact for IPv4, a 64-bit hash for IPv6 (a
  /// collision would only count two confirmers as one). 8 bytes, not the
  /// 24 of an Endpoint.
  std::array<std::uint64_t, kMaxConfirmations + 1> confirmers_{};
};

}  // namespace broach::membership
