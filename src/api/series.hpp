// Internal header (api layer). The node's recent history, for the status
// page's charts and /series.json: one point per second for the last ten
// minutes, in a ring buffer per series.
//
// What is recorded, each second:
// - every counter of Status::samples() as a rate per second (the change
//   since the previous point divided by the time between them), every
//   gauge as its value; named as in /metrics (name{label="value"});
// - per service: calls served and made per second, and the p50 and p99 of
//   the latencies recorded during that second (served: handler run time;
//   made: the caller's round trip), computed from the difference of two
//   snapshots of the service's histogram;
// - errors per second by kind (label error="code", as in /metrics), served
//   and made, summed over the services.
// A point that could not be computed (the first point of a counter, a
// second without calls for a latency) is NaN, null in JSON.
//
// Bounds: kMaxSeries series of kPoints floats (~1.2 MB at most), latency
// windows for at most kMaxLatencyServices services (7.8 KiB each twice).
// Past them, new series are not recorded (counted: dropped_series()).
// Thread contract: none of its own; the node calls it on its loop thread.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "api/counters.hpp"
#include "api/metrics.hpp"

namespace broach::api {

class SeriesRecorder {
 public:
  static constexpr std::size_t kPoints = 600;  ///< ten minutes at one point per second
  static constexpr std::size_t kMaxSeries = 512;
  static constexpr std::size_t kMaxLatencyServices = 32;
  static constexpr double kMissing = std::numeric_limits<double>::quiet_NaN();

  enum class Kind { kRate, kGauge, kQuantileUs };

  /// Records one point of every series, taken at `unix_ms` (wall clock, for
  /// the JSON's time axis; rates use the difference between two calls).
  void record(std::int64_t unix_ms, const std::vector<Sample>& samples,
              const std::vector<std::pair<std::string, const ServiceMetrics*>>& services);

  /// {"interval_ms": 1000, "times_ms": [...], "series": {name: {"kind": k,
  /// "values": [...]}}}, oldest point first; `prefix`: only series whose
  /// name starts with it; `last`: only the newest `last` points (0: all).
  nlohmann::json to_json(const std::string& prefix = "", std::size_t last = 0) const;

  std::size_t points() const { return filled_; }
  std::size_t series_count() const { return series_.size(); }
  std::uint64_t dropped_series() const { return dropped_series_; }
  /// The newest point of `name` (kMissing when unknown or not computed).
  double latest(const std::string& name) const;
  /// Every point of `name`, oldest first (empty when unknown).
  std::vector<double> values(const std::string& name) const;

 private:
  struct Series {
    std::string name;
    Kind kind = Kind::kRate;
    std::vector<float> ring;  // kPoints; slot (head_ - 1) is the newest point
    double last_raw = kMissing;  // counters: the previous raw value
  };
  /// The series called `name` (created on first use, its past points
  /// missing); null past kMaxSeries.
  Series* series(const std::string& name, Kind kind);
  void put(const std::string& name, Kind kind, double value);
  /// `zero_before`: a series created now was at zero at the previous point
  /// (per-service counts, error kinds), so its first point has a rate.
  void counter(const std::string& name, double raw, double dt_s, bool zero_before);
  void latency(const std::string& service, const char* side, const LatencyHistogram& h,
               std::vector<std::uint64_t>& prev);

  std::vector<Series> series_;
  std::unordered_map<std::string, std::size_t> index_;
  std::vector<std::int64_t> times_ = std::vector<std::int64_t>(kPoints, 0);
  std::size_t head_ = 0;    // the slot the next point goes to
  std::size_t filled_ = 0;  // points recorded, at most kPoints
  std::int64_t last_ms_ = 0;
  std::uint64_t dropped_series_ = 0;
  // Per service: the served and made histograms' bucket counts at the
  // previous point.
  std::unordered_map<std::string, std::pair<std::vector<std::uint64_t>, std::vector<std::uint64_t>>> windows_;
};

/// The quantiles q1 and q2 (0..1), in microseconds, of the samples a
/// histogram gained since `prev` (its bucket counts then, updated to now;
/// empty: none before). {kMissing, kMissing} when it gained none.
std::pair<double, double> window_quantiles_us(const LatencyHistogram& h, std::vector<std::uint64_t>& prev,
                                              double q1, double q2);

}  // namespace broach::api
