// Per-call traces on nodes on real UDP sockets on loopback, in one process:
// a traced call's spans on every node it reaches, one trace id through a
// nested call, sampling, filters and the store's bound, read the way
// `broach trace` reads them (the __broach.rpcz internal service).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <map>
#include <string>
#include <thread>

#include "broach/node.hpp"

namespace broach {
namespace {

using namespace std::chrono_literals;
using Json = nlohmann::json;

Config loopback_config() {
  Config c = default_config();
  c.rpc_ip = "127.0.0.1";
  c.rpc_port = 0;
  c.log_level = "warn";
  return c;
}

// What a member's __broach.rpcz answers, asked by `from`.
Json rpcz(Node& from, const Node& member, std::map<std::string, std::string> params = {}) {
  auto r = from.call_raw(member.address(), "__broach.rpcz", detail::pack_args(params));
  if (!r.ok()) throw r.error();
  const auto& b = r.value();
  const auto* p = reinterpret_cast<const std::uint8_t*>(b.data());
  return Json::from_msgpack(p, p + b.size());
}

const Json* find_span(const Json& traces, const std::string& kind, const std::string& service) {
  for (const auto& t : traces["traces"]) {
    for (const auto& s : t["spans"]) {
      if (s["kind"] == kind && s["service"] == service) return &s;
    }
  }
  return nullptr;
}

TEST(Traces, OneTraceAcrossThreeMembersThroughANestedCall) {
  // Sampling off everywhere: only the call that asks is traced.
  Node back(loopback_config());
  Node front(loopback_config());
  Node caller(loopback_config());
  back.provide("back", [](std::string s) { return s + "!"; });
  const Endpoint back_at = back.address();
  front.provide("front", [&](std::string s) { return front.call<std::string>(back_at, "back", s); });

  // An ordinary call leaves no trace anywhere.
  EXPECT_EQ(caller.call<std::string>(front.address(), "front", std::string("a")), "a!");
  for (Node* n : {&caller, &front, &back}) {
    EXPECT_EQ(rpcz(caller, *n)["spans_recorded"], 0) << n->address().to_string();
  }

  CallOptions traced;
  traced.trace = true;
  EXPECT_EQ(caller.call_with<std::string>(front.address(), "front", traced, std::string("b")), "b!");

  const Json on_caller = rpcz(caller, caller), on_front = rpcz(caller, front), on_back = rpcz(caller, back);
  ASSERT_EQ(on_caller["traces"].size(), 1u) << on_caller.dump(1);
  ASSERT_EQ(on_front["traces"].size(), 1u) << on_front.dump(1);
  ASSERT_EQ(on_back["traces"].size(), 1u) << on_back.dump(1);
  const std::string id = on_caller["traces"][0]["trace_id"];
  EXPECT_EQ(on_front["traces"][0]["trace_id"], id);
  EXPECT_EQ(on_back["traces"][0]["trace_id"], id);

  // caller: call front -> attempt at front
  const Json* call = find_span(on_caller, "call", "front");
  const Json* attempt = find_span(on_caller, "attempt", "front");
  ASSERT_TRUE(call && attempt) << on_caller.dump(1);
  EXPECT_EQ((*call)["parent_id"], "");
  EXPECT_EQ((*call)["outcome"], "ok");
  EXPECT_EQ((*call)["attempts"], 1);
  EXPECT_EQ((*attempt)["parent_id"], (*call)["span_id"]);
  EXPECT_EQ((*attempt)["peer"], front.address().to_string());
  // front: serve front (child of the caller's attempt) -> call back -> attempt at back
  const Json* serve_front = find_span(on_front, "serve", "front");
  const Json* nested = find_span(on_front, "call", "back");
  const Json* nested_attempt = find_span(on_front, "attempt", "back");
  ASSERT_TRUE(serve_front && nested && nested_attempt) << on_front.dump(1);
  EXPECT_EQ((*serve_front)["parent_id"], (*attempt)["span_id"]);
  EXPECT_EQ((*serve_front)["peer"], caller.address().to_string());
  EXPECT_EQ((*nested)["parent_id"], (*serve_front)["span_id"]);
  EXPECT_EQ((*nested_attempt)["parent_id"], (*nested)["span_id"]);
  // back: serve back, child of front's attempt; queue wait and response size known
  const Json* serve_back = find_span(on_back, "serve", "back");
  ASSERT_TRUE(serve_back) << on_back.dump(1);
  EXPECT_EQ((*serve_back)["parent_id"], (*nested_attempt)["span_id"]);
  EXPECT_GE((*serve_back)["queue_us"].get<std::int64_t>(), 0);
  EXPECT_GT((*serve_back)["response_bytes"].get<std::int64_t>(), 0);
  EXPECT_EQ((*serve_back)["node"], back.address().to_string());
  // Durations nest: the caller's call spans front's service, which spans back's.
  EXPECT_GE((*call)["duration_us"].get<std::int64_t>(), (*serve_front)["duration_us"].get<std::int64_t>());
  EXPECT_GE((*serve_front)["duration_us"].get<std::int64_t>(), (*serve_back)["duration_us"].get<std::int64_t>());
}

// A call by name: its attempt says how the provider was picked (policy,
// candidates, none fused) and how many times the request was sent.
TEST(Traces, AnAttemptByNameRecordsThePickAndTheSends) {
  Node provider(loopback_config());
  Config c = loopback_config();
  c.cluster_address = {provider.address().to_string()};
  c.load_balance.local_in_process = false;
  Node caller(c);
  provider.provide("add", [](int a, int b) { return a + b; });
  const auto until = std::chrono::steady_clock::now() + 20s;
  bool routed = false;
  while (!routed && std::chrono::steady_clock::now() < until) {
    for (const auto& r : caller.routes()) routed = routed || (r.service == "add" && !r.providers.empty());
    if (!routed) std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(routed);
  CallOptions traced;
  traced.trace = true;
  EXPECT_EQ(caller.call_with<int>("add", traced, 1, 2), 3);
  const Json on_caller = rpcz(caller, caller);
  const Json* attempt = find_span(on_caller, "attempt", "add");
  ASSERT_NE(attempt, nullptr) << on_caller.dump(1);
  EXPECT_EQ((*attempt)["policy"], c.load_balance.policy);
  EXPECT_EQ((*attempt)["candidates"], 1);
  EXPECT_EQ((*attempt)["fused"], 0);
  EXPECT_EQ((*attempt)["probe"], false);
  EXPECT_GE((*attempt)["sends"].get<int>(), 1);
  const Json* call = find_span(on_caller, "call", "add");
  ASSERT_NE(call, nullptr);
  EXPECT_EQ((*call)["peer"], "") << "by name";
}

TEST(Traces, SamplingFiltersAndTheBound) {
  Config sampled = loopback_config();
  sampled.trace.sample_rate = 1;
  sampled.trace.keep = 4;
  Node provider(loopback_config());
  Node caller(sampled);
  provider.provide("quick", [] { return 1; });
  provider.provide("slow", [] {
    std::this_thread::sleep_for(30ms);
    return 2;
  });
  provider.provide("broken", []() -> int { throw Error(Errc::kBadArguments, "no such thing"); });
  EXPECT_EQ(caller.call<int>(provider.address(), "quick"), 1);
  EXPECT_EQ(caller.call<int>(provider.address(), "slow"), 2);
  EXPECT_FALSE(caller.call_raw(provider.address(), "broken", detail::pack_args()).ok());
  Json all = rpcz(caller, caller);
  EXPECT_EQ(all["traces"].size(), 3u) << "sample rate 1: every call traced";
  EXPECT_EQ(all["sample_rate"], 1.0);
  // The provider (sampling off) recorded its side of each.
  EXPECT_EQ(rpcz(caller, provider)["traces"].size(), 3u);

  Json slow = rpcz(caller, caller, {{"min_ms", "25"}});
  ASSERT_EQ(slow["traces"].size(), 1u);
  EXPECT_NE(find_span(slow, "call", "slow"), nullptr);
  Json errors = rpcz(caller, provider, {{"errors", "1"}});
  ASSERT_EQ(errors["traces"].size(), 1u);
  const Json* failed = find_span(errors, "serve", "broken");
  ASSERT_NE(failed, nullptr);
  EXPECT_EQ((*failed)["outcome"], "bad_arguments");
  EXPECT_EQ((*failed)["message"], "no such thing");
  Json quick = rpcz(caller, caller, {{"service", "quick"}});
  ASSERT_EQ(quick["traces"].size(), 1u);
  Json by_id = rpcz(caller, provider, {{"trace", quick["traces"][0]["trace_id"]}});
  ASSERT_EQ(by_id["traces"].size(), 1u);
  EXPECT_NE(find_span(by_id, "serve", "quick"), nullptr);

  // keep = 4: the oldest go.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(caller.call<int>(provider.address(), "quick"), 1);
  all = rpcz(caller, caller);
  EXPECT_EQ(all["traces"].size(), 4u);
  EXPECT_EQ(all["traces_evicted"], 2);
  // A malformed query is a typed error naming the parameter.
  auto bad = caller.call_raw(caller.address(), "__broach.rpcz",
                             detail::pack_args(std::map<std::string, std::string>{{"min_ms", "soon"}}));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code(), Errc::kBadArguments);
  EXPECT_NE(bad.error().message().find("min_ms"), std::string::npos);
}

}  // namespace
}  // namespace broach
