// SeriesRecorder: rates from counters, gauges as values, windowed latency
// quantiles, errors by kind, the ring's bound and its JSON.
#include "api/series.hpp"

#include <gtest/gtest.h>

#include <cmath>

namespace broach::api {
namespace {

Sample counter(const char* prom, double v) { return Sample{"g", prom, prom, "help", v}; }
Sample gauge(const char* prom, double v) { return Sample{"g", prom, prom, "help", v, true}; }
Sample labelled(const char* prom, const char* key, const char* value, double v) {
  Sample s{"g", prom, prom, "help", v};
  s.label_key = key;
  s.label_value = value;
  s.nested = true;
  return s;
}

using Services = std::vector<std::pair<std::string, const ServiceMetrics*>>;

TEST(SeriesRecorder, CountersBecomeRatesPerSecondAndGaugesStayValues) {
  SeriesRecorder r;
  r.record(1000, {counter("c_total", 10), gauge("g", 5), labelled("d_total", "reason", "bad_magic", 0)}, {});
  EXPECT_TRUE(std::isnan(r.latest("c_total"))) << "no rate from a single point";
  EXPECT_EQ(r.latest("g"), 5);
  r.record(3000, {counter("c_total", 50), gauge("g", 7), labelled("d_total", "reason", "bad_magic", 4)}, {});
  EXPECT_DOUBLE_EQ(r.latest("c_total"), 20.0);  // 40 in 2 s
  EXPECT_EQ(r.latest("g"), 7);
  EXPECT_DOUBLE_EQ(r.latest("d_total{reason=\"bad_magic\"}"), 2.0);
  // A counter that went backwards (a restart) gives no rate, then resumes.
  r.record(4000, {counter("c_total", 5)}, {});
  EXPECT_TRUE(std::isnan(r.latest("c_total")));
  EXPECT_TRUE(std::isnan(r.latest("g"))) << "a series missing from this point is missing, not repeated";
  r.record(5000, {counter("c_total", 8)}, {});
  EXPECT_DOUBLE_EQ(r.latest("c_total"), 3.0);
  const auto g = r.values("g");
  ASSERT_EQ(g.size(), 4u);
  EXPECT_EQ(g[0], 5);
  EXPECT_EQ(g[1], 7);
  EXPECT_TRUE(std::isnan(g[2]) && std::isnan(g[3]));
}

TEST(SeriesRecorder, KeepsTheLastTenMinutesOnly) {
  SeriesRecorder r;
  for (int i = 0; i < 700; ++i) r.record(1000LL * i, {gauge("g", i)}, {});
  EXPECT_EQ(r.points(), SeriesRecorder::kPoints);
  const auto v = r.values("g");
  ASSERT_EQ(v.size(), SeriesRecorder::kPoints);
  EXPECT_EQ(v.front(), 100);  // oldest kept
  EXPECT_EQ(v.back(), 699);
  const auto j = r.to_json();
  ASSERT_EQ(j["times_ms"].size(), SeriesRecorder::kPoints);
  EXPECT_EQ(j["times_ms"][0], 100000);
  EXPECT_EQ(j["times_ms"][599], 699000);
  EXPECT_EQ(j["series"]["g"]["kind"], "gauge");
  EXPECT_EQ(j["series"]["g"]["values"][599], 699.0);
}

TEST(SeriesRecorder, BoundsTheNumberOfSeries) {
  SeriesRecorder r;
  std::vector<std::string> names;
  std::vector<Sample> samples;
  for (std::size_t i = 0; i < SeriesRecorder::kMaxSeries + 10; ++i) {
    names.push_back("g" + std::to_string(i));
  }
  for (const auto& n : names) samples.push_back(Sample{"g", n, n, "help", 1, true});
  r.record(0, samples, {});
  EXPECT_EQ(r.series_count(), SeriesRecorder::kMaxSeries);
  EXPECT_EQ(r.dropped_series(), 10u);
}

TEST(SeriesRecorder, LatencyQuantilesCoverOnlyTheLastSecond) {
  SeriesRecorder r;
  ServiceMetrics m;
  const Services services{{"add", &m}};
  for (int i = 0; i < 100; ++i) m.made_latency.record_ns(1'000'000);  // 1 ms
  m.made = 100;
  r.record(1000, {}, services);
  // The first point has no earlier snapshot: what the histogram holds.
  EXPECT_NEAR(r.latest("broach_calls_made_p50_us{service=\"add\"}"), 1000, 40);
  // The next second is slow: its quantiles show only it, not the mix.
  for (int i = 0; i < 10; ++i) m.made_latency.record_ns(50'000'000);  // 50 ms
  m.made = 110;
  m.made_errors.add(Errc::kCallTimeout);
  m.made_errors.add(Errc::kCallTimeout);
  r.record(2000, {}, services);
  EXPECT_NEAR(r.latest("broach_calls_made_p50_us{service=\"add\"}"), 50000, 2000);
  EXPECT_NEAR(r.latest("broach_calls_made_p99_us{service=\"add\"}"), 50000, 2000);
  EXPECT_DOUBLE_EQ(r.latest("broach_calls_made_total{service=\"add\"}"), 10.0);
  // A quiet second: no latency to report, zero calls per second.
  r.record(3000, {}, services);
  EXPECT_TRUE(std::isnan(r.latest("broach_calls_made_p50_us{service=\"add\"}")));
  EXPECT_DOUBLE_EQ(r.latest("broach_calls_made_total{service=\"add\"}"), 0.0);
  // Errors by kind, summed over services: 2 timeouts in the second second
  // (the series appears with the first error, which was zero before).
  const auto t = r.values("broach_calls_made_errors_total{error=\"call_timeout\"}");
  ASSERT_EQ(t.size(), 3u);
  EXPECT_TRUE(std::isnan(t[0]));
  EXPECT_DOUBLE_EQ(t[1], 2.0);
  EXPECT_DOUBLE_EQ(t[2], 0.0);
  const auto j = r.to_json("broach_calls_made_p");
  EXPECT_EQ(j["series"].size(), 2u);
  EXPECT_EQ(j["series"]["broach_calls_made_p50_us{service=\"add\"}"]["kind"], "quantile_us");
  EXPECT_TRUE(j["series"]["broach_calls_made_p50_us{service=\"add\"}"]["values"][2].is_null());
}

}  // namespace
}  // namespace broach::api
