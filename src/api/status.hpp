// Internal header (api layer). What a node shows about itself: every counter
// as a Sample (the one source for stats(), `broach stats`, /status.json, the
// status page and /metrics), per-service call metrics, breakers, members and
// routes.
// Thread contract: loop thread (asserted), except routes_json() (any
// thread). HTTP threads reach it through Loop::post (see http_endpoint.hpp).
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <vector>

#include "api/counters.hpp"
#include "api/series.hpp"
#include "api/tracing.hpp"
#include "broach/codec.hpp"

namespace broach::api {

class NodeCore;

class Status {
 public:
  using SampleSource = std::function<void(std::vector<Sample>&)>;
  explicit Status(NodeCore& core) : core_(core) {}

  /// Adds samples from outside the core (the worker pool's gauges). Set
  /// before the loop runs.
  void add_source(SampleSource s) { sources_.push_back(std::move(s)); }

  /// Every counter and gauge of the node, in a stable order.
  std::vector<Sample> samples() const;
  /// Everything `broach stats` shows, as one JSON object.
  nlohmann::json snapshot() const;
  /// snapshot() packed as msgpack (the __broach.stats body).
  Bytes stats_msgpack() const;
  /// The Prometheus text exposition (version 0.0.4).
  std::string prometheus() const;
  nlohmann::json members_json() const;
  /// Any thread.
  nlohmann::json routes_json() const;

  /// Adds one point (at `unix_ms`) to every series of the node's recent
  /// history (series.hpp). The HTTP endpoint calls it once a second.
  void record_series(std::int64_t unix_ms);
  /// The history as /series.json serves it (`prefix`: a filter on names).
  nlohmann::json series_json(const std::string& prefix = "", std::size_t last = 0) const;
  const SeriesRecorder& series() const { return series_; }
  /// The traces this node holds that match `f` (/rpcz.json; any thread).
  nlohmann::json rpcz_json(const TraceStore::Filter& f) const;

 private:
  NodeCore& core_;
  std::vector<SampleSource> sources_;
  SeriesRecorder series_;
};

}  // namespace broach::api
