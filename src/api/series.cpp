// SeriesRecorder: the node's last ten minutes, one point per second.
#include "api/series.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "broach/error.hpp"

namespace broach::api {

std::pair<double, double> window_quantiles_us(const LatencyHistogram& h, std::vector<std::uint64_t>& prev,
                                              double q1, double q2) {
  const bool had = !prev.empty();
  prev.resize(LatencyHistogram::kBuckets, 0);
  std::vector<std::uint64_t> delta(LatencyHistogram::kBuckets);
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < LatencyHistogram::kBuckets; ++i) {
    const std::uint64_t now = h.bucket_count(i);
    delta[i] = had && now >= prev[i] ? now - prev[i] : (had ? 0 : now);
    prev[i] = now;
    total += delta[i];
  }
  if (total == 0) return {SeriesRecorder::kMissing, SeriesRecorder::kMissing};
  auto at = [&](double q) {
    const auto rank = static_cast<std::uint64_t>(std::clamp(q, 0.0, 1.0) * static_cast<double>(total - 1)) + 1;
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < LatencyHistogram::kBuckets; ++i) {
      seen += delta[i];
      if (seen >= rank) {
        const double mid = static_cast<double>(LatencyHistogram::lower_bound(i)) +
                           static_cast<double>(LatencyHistogram::width(i)) / 2;
        return mid / 1000.0;
      }
    }
    return SeriesRecorder::kMissing;
  };
  return {at(q1), at(q2)};
}

namespace {

std::string labelled(const std::string& name, const char* key, const std::string& value) {
  std::string v;
  for (char c : value) {
    if (c == '\\' || c == '"') v += '\\';
    v += c == '\n' ? ' ' : c;
  }
  return name + "{" + key + "=\"" + v + "\"}";
}

std::string float_text(float v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.7g", static_cast<double>(v));
  return buf;
}

const char* kind_name(SeriesRecorder::Kind k) {
  switch (k) {
    case SeriesRecorder::Kind::kRate: return "rate";
    case SeriesRecorder::Kind::kGauge: return "gauge";
    case SeriesRecorder::Kind::kQuantileUs: return "quantile_us";
  }
  return "rate";
}

}  // namespace

SeriesRecorder::Series* SeriesRecorder::series(const std::string& name, Kind kind) {
  auto it = index_.find(name);
  if (it != index_.end()) return &series_[it->second];
  if (series_.size() >= kMaxSeries) {
    ++dropped_series_;
    return nullptr;
  }
  index_.emplace(name, series_.size());
  Series s;
  s.name = name;
  s.kind = kind;
  s.ring.assign(kPoints, static_cast<float>(kMissing));
  series_.push_back(std::move(s));
  return &series_.back();
}

void SeriesRecorder::put(const std::string& name, Kind kind, double value) {
  if (Series* s = series(name, kind)) s->ring[(head_ + kPoints - 1) % kPoints] = static_cast<float>(value);
}

void SeriesRecorder::counter(const std::string& name, double raw, double dt_s, bool zero_before) {
  const bool fresh = index_.find(name) == index_.end();
  Series* s = series(name, Kind::kRate);
  if (s == nullptr) return;
  if (fresh && zero_before && filled_ > 1) s->last_raw = 0;
  // No rate for a first point or a counter that went backwards.
  const bool ok = !std::isnan(s->last_raw) && raw >= s->last_raw && dt_s > 0;
  s->ring[(head_ + kPoints - 1) % kPoints] = static_cast<float>(ok ? (raw - s->last_raw) / dt_s : kMissing);
  s->last_raw = raw;
}

void SeriesRecorder::latency(const std::string& service, const char* side, const LatencyHistogram& h,
                             std::vector<std::uint64_t>& prev) {
  const auto [p50, p99] = window_quantiles_us(h, prev, 0.50, 0.99);
  const std::string base = std::string("broach_calls_") + side;
  put(labelled(base + "_p50_us", "service", service), Kind::kQuantileUs, p50);
  put(labelled(base + "_p99_us", "service", service), Kind::kQuantileUs, p99);
}

void SeriesRecorder::record(std::int64_t unix_ms, const std::vector<Sample>& samples,
                            const std::vector<std::pair<std::string, const ServiceMetrics*>>& services) {
  const double dt_s = filled_ > 0 ? static_cast<double>(unix_ms - last_ms_) / 1000.0 : 0.0;
  // Advance: the new slot starts missing in every series.
  times_[head_] = unix_ms;
  for (auto& s : series_) s.ring[head_] = static_cast<float>(kMissing);
  head_ = (head_ + 1) % kPoints;
  filled_ = std::min(filled_ + 1, kPoints);
  last_ms_ = unix_ms;

  for (const auto& smp : samples) {
    const std::string name = smp.label_key != nullptr ? labelled(smp.prom, smp.label_key, smp.label_value) : smp.prom;
    if (smp.gauge) {
      put(name, Kind::kGauge, smp.value);
    } else {
      counter(name, smp.value, dt_s, false);
    }
  }
  std::vector<std::uint64_t> errors[2];
  for (auto& e : errors) e.assign(CodeCounters{}.by_code.size(), 0);
  for (const auto& [name, m] : services) {
    // A service (or an error kind) first seen now was at zero at the
    // previous point: its first second has a rate.
    counter(labelled("broach_calls_served_total", "service", name), static_cast<double>(m->served.load()), dt_s, true);
    counter(labelled("broach_calls_made_total", "service", name), static_cast<double>(m->made.load()), dt_s, true);
    for (std::size_t i = 0; i < errors[0].size(); ++i) {
      errors[0][i] += m->served_errors.by_code[i].load(std::memory_order_relaxed);
      errors[1][i] += m->made_errors.by_code[i].load(std::memory_order_relaxed);
    }
    auto w = windows_.find(name);
    if (w == windows_.end()) {
      if (windows_.size() >= kMaxLatencyServices) continue;
      w = windows_.emplace(name, std::pair<std::vector<std::uint64_t>, std::vector<std::uint64_t>>{}).first;
    }
    latency(name, "served", m->served_latency, w->second.first);
    latency(name, "made", m->made_latency, w->second.second);
  }
  // Errors by kind: only codes seen at least once get a series.
  for (int side = 0; side < 2; ++side) {
    const std::string base = side == 0 ? "broach_calls_served_errors_total" : "broach_calls_made_errors_total";
    for (std::size_t i = 1; i < errors[side].size(); ++i) {
      if (errors[side][i] == 0 || !errc_known(static_cast<std::uint16_t>(i))) continue;
      counter(labelled(base, "error", errc_name(static_cast<Errc>(i))), static_cast<double>(errors[side][i]), dt_s,
              true);
    }
  }
}

double SeriesRecorder::latest(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end() || filled_ == 0) return kMissing;
  return series_[it->second].ring[(head_ + kPoints - 1) % kPoints];
}

std::vector<double> SeriesRecorder::values(const std::string& name) const {
  std::vector<double> out;
  auto it = index_.find(name);
  if (it == index_.end()) return out;
  const auto& ring = series_[it->second].ring;
  for (std::size_t k = 0; k < filled_; ++k) out.push_back(ring[(head_ + kPoints - filled_ + k) % kPoints]);
  return out;
}

nlohmann::json SeriesRecorder::to_json(const std::string& prefix, std::size_t last) const {
  nlohmann::json j;
  j["interval_ms"] = 1000;
  auto& times = j["times_ms"] = nlohmann::json::array();
  const std::size_t first = last == 0 || last >= filled_ ? 0 : filled_ - last;
  for (std::size_t k = first; k < filled_; ++k) times.push_back(times_[(head_ + kPoints - filled_ + k) % kPoints]);
  auto& out = j["series"] = nlohmann::json::object();
  for (const auto& s : series_) {
    if (s.name.compare(0, prefix.size(), prefix) != 0) continue;
    nlohmann::json values = nlohmann::json::array();
    for (std::size_t k = first; k < filled_; ++k) {
      const float v = s.ring[(head_ + kPoints - filled_ + k) % kPoints];
      // Points are floats: printed to their precision (7 digits), not a
      // double's 17 (0.488 rather than 0.4880000054836273).
      values.push_back(std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(std::stod(float_text(v))));
    }
    out[s.name] = {{"kind", kind_name(s.kind)}, {"values", std::move(values)}};
  }
  if (dropped_series_ > 0) j["dropped_series"] = dropped_series_;
  return j;
}

}  // namespace broach::api
