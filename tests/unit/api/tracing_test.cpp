// The trace store's bounds and filters, and the query parameters.
#include "api/tracing.hpp"

#include <gtest/gtest.h>

namespace broach::api {
namespace {

Span span(std::uint64_t trace, std::string service, std::int64_t us, std::string outcome = "ok") {
  Span s;
  s.trace_id = trace;
  s.span_id = trace * 100 + 1;
  s.service = std::move(service);
  s.duration_us = us;
  s.outcome = std::move(outcome);
  return s;
}

TEST(TraceStore, KeepsTheNewestTracesAndBoundsSpansPerTrace) {
  TraceStore store(3);
  for (std::uint64_t t = 1; t <= 5; ++t) store.add(span(t, "a", 10));
  for (std::size_t i = 0; i < TraceStore::kMaxSpansPerTrace + 5; ++i) store.add(span(5, "a", 10));
  const auto st = store.stats();
  EXPECT_EQ(st.traces, 3u);
  EXPECT_EQ(st.traces_evicted, 2u);
  EXPECT_EQ(st.spans_dropped, 6u);  // trace 5 had one span already
  const auto all = store.query({});
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].id, 5u) << "newest first";
  EXPECT_EQ(all[2].id, 3u);
  EXPECT_EQ(all[0].spans.size(), TraceStore::kMaxSpansPerTrace);
}

TEST(TraceStore, FiltersByServiceLatencyErrorsAndId) {
  TraceStore store(10);
  store.add(span(1, "fast", 100));
  store.add(span(2, "slow", 50'000));
  store.add(span(3, "fast", 200, "remote_error"));
  store.add(span(3, "inner", 300));
  auto ids = [&](const TraceStore::Filter& f) {
    std::vector<std::uint64_t> out;
    for (const auto& t : store.query(f)) out.push_back(t.id);
    return out;
  };
  TraceStore::Filter f;
  f.service = "fast";
  EXPECT_EQ(ids(f), (std::vector<std::uint64_t>{3, 1}));
  f = {};
  f.min_ms = 10;
  EXPECT_EQ(ids(f), (std::vector<std::uint64_t>{2}));
  f = {};
  f.errors_only = true;
  EXPECT_EQ(ids(f), (std::vector<std::uint64_t>{3}));
  f = {};
  f.ids = {1, 2};
  f.limit = 1;
  EXPECT_EQ(ids(f), (std::vector<std::uint64_t>{2}));
}

TEST(TraceFilter, ReadsParametersAndNamesWhatIsWrong) {
  TraceStore::Filter f;
  EXPECT_EQ(read_filter({{"service", "add"}, {"min_ms", "2.5"}, {"errors", "1"}, {"trace", "00ff,1a"}, {"limit", "7"}}, f),
            std::nullopt);
  EXPECT_EQ(f.service, "add");
  EXPECT_DOUBLE_EQ(f.min_ms, 2.5);
  EXPECT_TRUE(f.errors_only);
  EXPECT_EQ(f.ids, (std::vector<std::uint64_t>{0xff, 0x1a}));
  EXPECT_EQ(f.limit, 7u);
  for (const auto& bad : std::vector<std::map<std::string, std::string>>{
           {{"min_ms", "-1"}}, {{"min_ms", "x"}}, {{"errors", "maybe"}}, {{"trace", "xyz"}},
           {{"trace", "12345678901234567"}}, {{"limit", "-3"}}, {{"colour", "red"}}}) {
    TraceStore::Filter g;
    const auto why = read_filter(bad, g);
    ASSERT_TRUE(why.has_value()) << bad.begin()->first;
    EXPECT_NE(why->find(bad.begin()->first), std::string::npos) << *why;
  }
}

TEST(TraceIds, HexRoundTrip) {
  std::uint64_t id = 0;
  ASSERT_TRUE(parse_trace_id(trace_id_hex(0x0123456789abcdefULL), id));
  EXPECT_EQ(id, 0x0123456789abcdefULL);
  EXPECT_EQ(trace_id_hex(1), "0000000000000001");
  EXPECT_FALSE(parse_trace_id("", id));
  EXPECT_NE(Tracer::serve_span_id(5, 1), Tracer::serve_span_id(5, 2)) << "one attempt, two nodes";
  EXPECT_NE(Tracer::serve_span_id(5, 1), 0u);
}

}  // namespace
}  // namespace broach::api
