// Internal header. Per-peer retransmission timeout (RFC 6298 style:
// smoothed RTT and its variance, Karn's rule applied by the caller: only
// first-attempt exchanges are sampled). Thread contract: loop thread only.
#pragma once

#include <algorithm>

#include "base/time.hpp"

namespace broach::reliable {

class RttEstimator {
 public:
  RttEstimator(Duration initial, Duration min, Duration max)
      : rto_(initial), min_(min), max_(max) {}

  void sample(Duration rtt) {
    if (!have_) {
      srtt_ = rtt;
      rttvar_ = rtt / 2;
      have_ = true;
    } else {
      const Duration err = srtt_ > rtt ? srtt_ - rtt : rtt - srtt_;
      rttvar_ = (3 * rttvar_ + err) / 4;
      srtt_ = (7 * srtt_ + rtt) / 8;
    }
    rto_ = std::clamp(srtt_ + std::max<Duration>(4 * rttvar_, min_ / 2), min_, max_);
  }
  Duration rto() const { return rto_; }
  Duration srtt() const { return have_ ? srtt_ : rto_ / 2; }
  bool has_sample() const { return have_; }

 private:
  Duration srtt_{};
  Duration rttvar_{};
  Duration rto_;
  Duration min_, max_;
  bool have_ = false;
};

}  // namespace broach::reliable
