// Nodes on real UDP sockets on loopback, in one process: typed calls,
// async forms, errors, overload and expired-deadline handling.
#include "broach/node.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coroutine>
#include <mutex>
#include <exception>
#include <vector>
#include <future>
#include <map>
#include <thread>

namespace broach {
namespace {

struct Point {
  int x = 0;
  int y = 0;
  std::string label;
  MSGPACK_DEFINE(x, y, label)
  friend bool operator==(const Point&, const Point&) = default;
};

Config loopback_config() {
  Config c = default_config();
  c.rpc_ip = "127.0.0.1";
  c.rpc_port = 0;
  c.log_level = "warn";
  return c;
}

TEST(Node, TypedCallsRoundTripCommonTypes) {
  Node server(loopback_config());
  Node client(loopback_config());
  server.provide("add", [](int a, int b) { return a + b; });
  server.provide("concat", [](const std::string& a, const std::string& b) { return a + b; });
  server.provide("sum", [](const std::vector<double>& v) {
    double s = 0;
    for (double d : v) s += d;
    return s;
  });
  server.provide("invert", [](const std::map<std::string, int>& m) {
    std::map<int, std::string> out;
    for (auto& [k, v] : m) out[v] = k;
    return out;
  });
  server.provide("mirror", [](Point p) { return Point{p.y, p.x, p.label + "!"}; });
  server.provide("nothing", [] {});
  const Endpoint to = server.address();
  EXPECT_EQ(client.call<int>(to, "add", 1, 2), 3);
  EXPECT_EQ(client.call<std::string>(to, "concat", std::string("ab"), std::string("cd")), "abcd");
  EXPECT_DOUBLE_EQ(client.call<double>(to, "sum", std::vector<double>{1.5, 2.5}), 4.0);
  auto inv = client.call<std::map<int, std::string>>(to, "invert", std::map<std::string, int>{{"a", 1}});
  EXPECT_EQ(inv.at(1), "a");
  EXPECT_EQ(client.call<Point>(to, "mirror", Point{1, 2, "p"}), (Point{2, 1, "p!"}));
  client.call<void>(to, "nothing");
}

TEST(Node, AsyncFutureAndCallback) {
  Node server(loopback_config());
  Node client(loopback_config());
  server.provide("add", [](int a, int b) { return a + b; });
  auto fut = client.call_async<int>(server.address(), "add", 20, 22);
  auto r = fut.get();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value(), 42);
  std::promise<int> got;
  client.call_then<int>(server.address(), "add", [&](Result<int> res) { got.set_value(res.value()); }, 1, 1);
  EXPECT_EQ(got.get_future().get(), 2);
}

// The smallest coroutine type: starts at once, nothing to await it.
struct Detached {
  struct promise_type {
    Detached get_return_object() { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() {}
    void unhandled_exception() { std::terminate(); }
  };
};

struct CoroOutcome {
  int first = 0, second = 0, third = 0;
  std::thread::id started_on, resumed_on, resumed_via_on;
  int posts = 0;
};

Detached chain(Node& client, Endpoint to, CoroOutcome& out, std::promise<void>& done) {
  out.started_on = std::this_thread::get_id();
  // Resumes on the client's loop thread. ("gated" answers only when the
  // test opens its gate, so the coroutine is surely suspended by then.)
  Result<int> a = co_await client.call_async<int>(to, "gated", 0, 1, 2);
  out.first = a.value();
  out.resumed_on = std::this_thread::get_id();
  // Resumes through our own "executor": a new thread per resumption.
  Result<int> b = co_await client.call_async<int>(to, "gated", 1, a.value(), 10).resume_via([&](std::function<void()> f) {
    ++out.posts;
    std::thread(std::move(f)).detach();  // the coroutine ends on it, after done.set_value()
  });
  out.second = b.value();
  out.resumed_via_on = std::this_thread::get_id();
  // Already finished before co_await: does not suspend at all.
  auto f = client.call_async<int>(to, "add", b.value(), 100);
  f.wait();
  out.third = (co_await std::move(f)).value();
  done.set_value();
}

TEST(Node, CoroutinesAwaitCallsWithoutBlockingAThread) {
  std::promise<void> gate[2];
  std::shared_future<void> opened[2] = {gate[0].get_future().share(), gate[1].get_future().share()};
  std::atomic<int> arrived[2] = {0, 0};
  Node server(loopback_config());
  Node client(loopback_config());
  server.provide("add", [](int a, int b) { return a + b; });
  server.provide("gated", [&](int g, int a, int b) {
    arrived[g].fetch_add(1);
    opened[g].wait();
    return a + b;
  });
  CoroOutcome out;
  std::promise<void> done;
  chain(client, server.address(), out, done);  // returns at the first co_await
  gate[0].set_value();
  // The second call reaches the provider only after the coroutine has
  // suspended on it (the request leaves at the end of the loop iteration
  // that resumed the coroutine): then open its gate.
  for (int i = 0; i < 2000 && arrived[1].load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(arrived[1].load(), 1);
  gate[1].set_value();
  ASSERT_EQ(done.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
  EXPECT_EQ(out.first, 3);
  EXPECT_EQ(out.second, 13);
  EXPECT_EQ(out.third, 113);
  EXPECT_EQ(out.started_on, std::this_thread::get_id());
  EXPECT_NE(out.resumed_on, std::this_thread::get_id()) << "resumed on the node's loop thread";
  EXPECT_EQ(out.posts, 1);
  EXPECT_NE(out.resumed_via_on, out.resumed_on);
  EXPECT_NE(out.resumed_via_on, std::this_thread::get_id());
}

TEST(Node, CoroutineHandlersAwaitOtherCallsAndReportErrors) {
  Node server(loopback_config());
  Node client(loopback_config());
  server.provide("square", [](int x) { return x * x; });
  const Endpoint self = server.address();
  server.provide("sum_of_squares", [&server, self](int a, int b) -> Async<int> {
    Result<int> x = co_await server.call_async<int>(self, "square", a);
    Result<int> y = co_await server.call_async<int>(self, "square", b);
    co_return x.value() + y.value();
  });
  server.provide("fails", [](int) -> Async<int> {
    throw Error(Errc::kNotFound, "nothing here");
    co_return 0;
  });
  server.provide("note", [](std::string) -> Async<void> { co_return; });
  EXPECT_EQ(client.call<int>(self, "sum_of_squares", 3, 4), 25);
  client.call<void>(self, "note", std::string("x"));
  auto r = client.call_raw(self, "fails", detail::pack_args(1));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Errc::kRemoteError);
  EXPECT_NE(r.error().message().find("nothing here"), std::string::npos);
  auto bad = client.call_raw(self, "sum_of_squares", detail::pack_args(std::string("no")));
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code(), Errc::kBadArguments);
}

TEST(Node, CoroutineHandlersHoldNoThreadWhileTheyAwait) {
  // 20 coroutine handlers on a provider whose pool has one thread all wait
  // at once on a third node, which answers only when all 20 have arrived:
  // that can only happen if awaiting holds neither the loop nor a worker.
  constexpr int kConcurrent = 20;
  Config pc = loopback_config();
  pc.thread_pool = ThreadPoolConfig{1, 1, 1, 1, true, 0};
  Node provider(pc);
  Config hc = loopback_config();
  hc.thread_pool = ThreadPoolConfig{kConcurrent + 2, kConcurrent + 4, 100, 100, true, 60};
  Node holder(hc);
  Node client(loopback_config());
  std::mutex mu;
  std::condition_variable cv;
  int arrived = 0;
  holder.provide("hold", [&](int i) {
    std::unique_lock lock(mu);
    ++arrived;
    cv.notify_all();
    cv.wait_for(lock, std::chrono::seconds(20), [&] { return arrived >= kConcurrent; });
    return arrived >= kConcurrent ? i : -1;
  });
  const Endpoint h = holder.address();
  provider.provide("relay", [&provider, h](int i) -> Async<int> {
    Result<int> r = co_await provider.call_async<int>(h, "hold", i);
    co_return r.value();
  });
  std::vector<CallFuture<int>> calls;
  for (int i = 0; i < kConcurrent; ++i) calls.push_back(client.call_async<int>(provider.address(), "relay", i));
  for (int i = 0; i < kConcurrent; ++i) {
    Result<int> r = calls[static_cast<std::size_t>(i)].get();
    ASSERT_TRUE(r.ok()) << errc_name(r.error().code()) << " " << r.error().message();
    EXPECT_EQ(r.value(), i);
  }
}

TEST(Node, ManyCallsInFlightOnThePoolEachGetTheirOwnAnswer) {
  // Requests reach the pool in batches and a worker's responses leave
  // together at the end of its burst: each call must still get its own
  // answer, fast handlers and slow ones mixed.
  Node server(loopback_config());
  Node client(loopback_config());
  server.provide("square", [](int x) {
    if (x % 97 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));  // a slow one now and then
    return x * x;
  });
  constexpr int kCalls = 3000;
  std::atomic<int> right{0}, wrong{0}, done{0};
  std::promise<void> all;
  for (int i = 0; i < kCalls; ++i) {
    client.call_then<int>(server.address(), "square", [&, i](Result<int> r) {
      (r.ok() && r.value() == i * i ? right : wrong).fetch_add(1);
      if (done.fetch_add(1) + 1 == kCalls) all.set_value();
    }, i);
  }
  ASSERT_EQ(all.get_future().wait_for(std::chrono::seconds(60)), std::future_status::ready);
  EXPECT_EQ(right.load(), kCalls);
  EXPECT_EQ(wrong.load(), 0);
}

TEST(Node, BusyPollingNodesAnswerCallsAndStillKeepTime) {
  // Low-latency mode (busyPollMicros): calls work in both directions, and
  // timers still fire while the loop spins (a call to a silent address
  // ends with delivery_timeout within its bound).
  Config c = loopback_config();
  c.transport.busy_poll_micros = 200;
  c.udp_timeout = 0.3;
  Node server(c);
  Node client(c);
  Node silent(loopback_config());  // a bound socket that never answers
  const Endpoint nowhere = silent.address();
  silent.stop();
  server.provide("add", [](int a, int b) { return a + b; });
  server.provide("add_loop", [](int a, int b) { return a + b; }, ServiceOptions{true});
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(client.call<int>(server.address(), "add", i, 1), i + 1);
    ASSERT_EQ(client.call<int>(server.address(), "add_loop", i, 2), i + 2);
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto r = client.call_raw(nowhere, "add", detail::pack_args(1, 2));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.error().code() == Errc::kDeliveryTimeout || r.error().code() == Errc::kCallTimeout)
      << errc_name(r.error().code());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

TEST(Node, LargeMessagesCrossA1500BytePathWithAndWithoutGso) {
  // loopbackLargeDatagrams false: loopback is a 1472-byte path, so 3 MiB
  // travels in ~2,150 fragments per direction; with gso they leave in GSO
  // sends (and arrive through GRO), without it one datagram per message.
  std::string big(3u << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 131 + i / 4096) & 0xff);
  for (const bool gso : {true, false}) {
    SCOPED_TRACE(gso ? "gso" : "no gso");
    Config c = loopback_config();
    c.transport.loopback_large_datagrams = false;
    c.transport.gso = gso;
    Node server(c);
    Node client(c);
    server.provide("echo", [](std::string s) { return s; });
    std::vector<CallFuture<std::string>> calls;
    for (int i = 0; i < 4; ++i) calls.push_back(client.call_async<std::string>(server.address(), "echo", big));
    for (auto& f : calls) {
      auto r = f.get();
      ASSERT_TRUE(r.ok()) << r.error().what();
      EXPECT_TRUE(r.value() == big);
    }
    const auto stats = nlohmann::json::parse(client.stats_json());
    const auto& udp = stats.at("udp");
    if (!gso) {
      EXPECT_EQ(udp.at("gso_active").get<double>(), 0.0);
      EXPECT_EQ(udp.at("gso_sends").get<double>(), 0.0);
    } else if (udp.at("gso_active").get<double>() == 1.0) {
      // 4 x 3 MiB in 1,458-byte fragments: at least 8,600 datagrams, at most
      // 44 per GSO send.
      EXPECT_GE(udp.at("gso_datagrams").get<double>(), 8600.0);
      EXPECT_GE(udp.at("gso_sends").get<double>(), 8600.0 / 44);
    }
  }
}

TEST(Node, ErrorsAreTyped) {
  Node server(loopback_config());
  Node client(loopback_config());
  server.provide("boom", []() -> int { throw std::runtime_error("kaput"); });
  server.provide("add", [](int a, int b) { return a + b; });
  try {
    client.call<int>(server.address(), "boom");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kRemoteError);
    EXPECT_EQ(e.message(), "kaput");
  }
  try {
    client.call<int>(server.address(), "work02", 1, 2);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kNotFound);
  }
  try {
    client.call<int>(server.address(), "add", std::string("x"), 2);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kBadArguments);
  }
  try {
    client.call<int>(server.address(), "add", 1);  // wrong arity
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kBadArguments);
  }
  try {
    client.call<std::string>(server.address(), "add", 1, 2);  // wrong result type
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kBadArguments);
  }
}

TEST(Node, CallToSilentAddressEndsWithinTimeout) {
  Config c = loopback_config();
  c.udp_timeout = 0.5;
  Node client(c);
  // A bound socket that never answers.
  Node silent(loopback_config());
  Endpoint nowhere = silent.address();
  silent.stop();
  const auto t0 = std::chrono::steady_clock::now();
  try {
    client.call<int>(nowhere, "add", 1, 2);
    FAIL();
  } catch (const Error& e) {
    EXPECT_TRUE(e.code() == Errc::kDeliveryTimeout || e.code() == Errc::kCallTimeout) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

TEST(Node, FullPoolWithIsExcInfoAnswersOverloadedAtOnce) {
  Config sc = loopback_config();
  sc.thread_pool = ThreadPoolConfig{1, 1, 1, 1, true, 0};
  Node server(sc);
  std::promise<void> release;
  auto released = release.get_future().share();
  std::atomic<int> ran{0};
  server.provide("block", [released, &ran] {
    ++ran;
    released.wait();
    return 1;
  });
  Node client(loopback_config());
  // One running, one queued: the pool is full.
  auto f1 = client.call_async<int>(server.address(), "block");
  for (int i = 0; i < 2000 && ran.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto f2 = client.call_async<int>(server.address(), "block");
  for (int i = 0; i < 2000 && server.stats().requests_received < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto r3 = client.call_async<int>(server.address(), "block").get();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));  // not a timeout
  ASSERT_FALSE(r3.ok());
  EXPECT_EQ(r3.error().code(), Errc::kOverloaded);
  release.set_value();
  EXPECT_TRUE(f1.get().ok());
  EXPECT_TRUE(f2.get().ok());
  EXPECT_EQ(ran.load(), 2);
  EXPECT_EQ(server.stats().rejected_overloaded, 1u);
}

// params.broach.maxConcurrency: a fixed limit of 2 on "block". Two run,
// the third is answered overloaded at once (not queued), other services are
// not limited, and finished requests leave room again.
TEST(Node, ConcurrencyLimitRefusesBeyondItAtOnce) {
  Config sc = loopback_config();
  sc.max_concurrency["block"] = ConcurrencyLimitConfig{false, 2};
  Node server(sc);
  std::promise<void> release;
  auto released = release.get_future().share();
  std::atomic<int> ran{0};
  server.provide("block", [released, &ran] {
    ++ran;
    released.wait();
    return 1;
  });
  server.provide("add", [](int a, int b) { return a + b; });
  Node client(loopback_config());
  auto f1 = client.call_async<int>(server.address(), "block");
  auto f2 = client.call_async<int>(server.address(), "block");
  for (int i = 0; i < 2000 && ran.load() < 2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(ran.load(), 2);
  const auto t0 = std::chrono::steady_clock::now();
  auto r3 = client.call_async<int>(server.address(), "block").get();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));  // not a timeout
  ASSERT_FALSE(r3.ok());
  EXPECT_EQ(r3.error().code(), Errc::kOverloaded);
  EXPECT_NE(r3.error().message().find("concurrency limit (2 in flight)"), std::string::npos) << r3.error().message();
  EXPECT_EQ(client.call<int>(server.address(), "add", 2, 3), 5);  // no limit on "add"
  EXPECT_EQ(server.stats().rejected_concurrency_limit, 1u);
  release.set_value();
  EXPECT_TRUE(f1.get().ok());
  EXPECT_TRUE(f2.get().ok());
  // Both finished: room for two again.
  auto f4 = client.call_async<int>(server.address(), "block");
  auto f5 = client.call_async<int>(server.address(), "block");
  EXPECT_TRUE(f4.get().ok());
  EXPECT_TRUE(f5.get().ok());
  EXPECT_EQ(ran.load(), 4);
  EXPECT_EQ(server.stats().rejected_concurrency_limit, 1u);
}

// An admitted request leaves the concurrency limit exactly once, whatever
// its handler does with its completion: drop it uncalled, or call it twice.
TEST(Node, ConcurrencyLimitSlotsAreReleasedOnceByAnyHandler) {
  Config sc = loopback_config();
  sc.max_concurrency["*"] = ConcurrencyLimitConfig{false, 1};
  Node server(sc);
  server.provide_raw_async("drop", [](std::span<const std::byte>, std::function<void(RawResult)>) {
    // never answers: the completion is destroyed uncalled
  });
  server.provide_raw_async("twice", [](std::span<const std::byte>, std::function<void(RawResult)> done) {
    done(detail::pack_value(1));
    done(detail::pack_value(2));
  });
  server.provide("one", [] { return 1; });
  Node client(loopback_config());
  CallOptions quick;
  quick.timeout = std::chrono::milliseconds(300);
  for (int i = 0; i < 3; ++i) {  // each dropped request freed its slot: the next is admitted, not refused
    auto r = client.call_raw(server.address(), "drop", detail::pack_args(), quick);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.error().code(), Errc::kOverloaded) << r.error().message();
  }
  for (int i = 0; i < 3; ++i) {
    auto r = client.call_raw(server.address(), "twice", detail::pack_args());
    ASSERT_TRUE(r.ok()) << r.error().message();
  }
  // Still exactly one slot: never negative (which would let two in), never leaked.
  EXPECT_EQ(client.call<int>(server.address(), "one"), 1);
  EXPECT_EQ(server.stats().rejected_concurrency_limit, 0u);
}

TEST(Node, RequestWhoseCallerGaveUpIsNotRun) {
  Config sc = loopback_config();
  sc.thread_pool = ThreadPoolConfig{1, 1, 1, 100, false, 100};
  Node server(sc);
  std::promise<void> release;
  auto released = release.get_future().share();
  std::atomic<int> started{0};
  std::atomic<int> late_runs{0};
  server.provide("block", [released, &started] {
    ++started;
    released.wait();
    return 1;
  });
  server.provide("late", [&late_runs] {
    ++late_runs;
    return 2;
  });
  Node client(loopback_config());
  auto f1 = client.call_async<int>(server.address(), "block");
  for (int i = 0; i < 2000 && started.load() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  CallOptions quick;
  quick.timeout = std::chrono::milliseconds(200);
  auto r = client.call_raw(server.address(), "late", detail::pack_args(), quick);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Errc::kCallTimeout);
  // The provider's copy of the deadline ends one transit later than the
  // caller's (the remaining time travels with the request): let that pass
  // too, or a worker freed within microseconds could still run the request.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  release.set_value();  // the worker frees up after the caller gave up
  EXPECT_TRUE(f1.get().ok());
  for (int i = 0; i < 2000 && server.stats().expired_in_queue == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(server.stats().expired_in_queue, 1u);
  EXPECT_EQ(late_runs.load(), 0);
}

TEST(Node, HandlerCanCallOtherServices) {
  Node server(loopback_config());
  Node client(loopback_config());
  server.provide("add", [](int a, int b) { return a + b; });
  // A handler may itself call other services (it runs on a worker thread).
  server.provide("add3", [&client, to = server.address()](int a, int b, int c) {
    return client.call<int>(to, "add", client.call<int>(to, "add", a, b), c);
  });
  EXPECT_EQ(client.call<int>(server.address(), "add3", 1, 2, 3), 6);
}

TEST(Node, StopFailsPendingCallsWithShutdown) {
  Node server(loopback_config());
  std::promise<void> release;
  auto released = release.get_future().share();
  server.provide("block", [released] {
    released.wait_for(std::chrono::seconds(10));
    return 1;
  });
  auto client = std::make_unique<Node>(loopback_config());
  auto f = client->call_async<int>(server.address(), "block");
  client->stop();
  auto r = f.get();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Errc::kShutdown);
  release.set_value();
}

}  // namespace
}  // namespace broach
