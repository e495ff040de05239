// Interceptors on nodes on real UDP sockets on loopback, in one process:
// order, short-circuits, exceptions, metadata on the wire and into nested
// calls, deadline propagation, the access log, calls by name and in-process.
#include "broach/interceptor.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "broach/node.hpp"

namespace broach {
namespace {

using namespace std::chrono_literals;

Config loopback_config() {
  Config c = default_config();
  c.rpc_ip = "127.0.0.1";
  c.rpc_port = 0;
  c.log_level = "warn";
  return c;
}

/// Records every hook it sees, by name, in a shared journal.
class Recorder final : public ClientInterceptor, public ServerInterceptor {
 public:
  Recorder(std::string name, std::shared_ptr<std::vector<std::string>> journal, std::shared_ptr<std::mutex> mu)
      : name_(std::move(name)), journal_(std::move(journal)), mu_(std::move(mu)) {}
  std::optional<Error> before_call(ClientCall& call) override {
    note("before_call " + call.service);
    if (refuse_call) return Error(Errc::kPermissionDenied, name_ + " says no");
    if (throw_call) throw std::runtime_error(name_ + " broke");
    call.metadata["x-" + name_] = "1";
    return std::nullopt;
  }
  std::optional<Error> before_attempt(ClientCall& call, const Endpoint& provider) override {
    note("before_attempt " + provider.to_string());
    (void)call;
    return std::nullopt;
  }
  void after_attempt(const ClientCall&, const Endpoint&, const RawResult& r, std::chrono::nanoseconds latency) override {
    note(std::string("after_attempt ") + (r.ok() ? "ok" : errc_name(r.error().code())));
    if (latency <= 0ns) note("after_attempt without latency");
    if (throw_after) throw std::runtime_error("after");
  }
  void after_call(const ClientCall&, const RawResult& r, std::chrono::nanoseconds) override {
    note(std::string("after_call ") + (r.ok() ? "ok" : errc_name(r.error().code())));
    if (throw_after) throw std::runtime_error("after");
  }
  std::optional<Error> before_handler(const ServerCall& call) override {
    auto it = call.metadata.find("x-client");
    note("before_handler " + call.service + (it != call.metadata.end() ? " with x-client" : ""));
    if (refuse_handler) return Error(Errc::kPermissionDenied, "not you");
    if (throw_handler) throw std::runtime_error("server side broke");
    return std::nullopt;
  }
  void after_handler(const ServerCall& call, const RawResult& r, std::chrono::nanoseconds) override {
    note("after_handler " + call.service + " " + (r.ok() ? "ok" : errc_name(r.error().code())));
  }
  bool refuse_call = false, throw_call = false, throw_after = false, refuse_handler = false,
       throw_handler = false;

 private:
  void note(const std::string& s) {
    std::lock_guard lock(*mu_);
    journal_->push_back(name_ + ": " + s);
  }
  std::string name_;
  std::shared_ptr<std::vector<std::string>> journal_;
  std::shared_ptr<std::mutex> mu_;
};

struct Journal {
  std::shared_ptr<std::vector<std::string>> lines = std::make_shared<std::vector<std::string>>();
  std::shared_ptr<std::mutex> mu = std::make_shared<std::mutex>();
  std::shared_ptr<Recorder> make(const std::string& name) { return std::make_shared<Recorder>(name, lines, mu); }
  std::vector<std::string> take() {
    std::lock_guard lock(*mu);
    auto out = *lines;
    lines->clear();
    return out;
  }
  /// Polls until `n` lines are there (after hooks run on the loop thread,
  /// just after the caller has its result).
  std::vector<std::string> wait_for(std::size_t n) {
    const auto until = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < until) {
      {
        std::lock_guard lock(*mu);
        if (lines->size() >= n) break;
      }
      std::this_thread::sleep_for(1ms);
    }
    return take();
  }
};

TEST(Interceptors, RunInRegistrationOrderAroundEachAttemptAndCarryMetadata) {
  Node server(loopback_config());
  Node client(loopback_config());
  Journal j;
  client.add_interceptor(std::static_pointer_cast<ClientInterceptor>(j.make("a")));
  client.add_interceptor(std::static_pointer_cast<ClientInterceptor>(j.make("client")));
  server.add_interceptor(std::static_pointer_cast<ServerInterceptor>(j.make("server")));
  server.provide("add", [](int a, int b) {
    const ServerCall* sc = current_server_call();
    if (sc == nullptr || sc->metadata.count("x-a") == 0) throw std::runtime_error("no metadata in the handler");
    return a + b;
  });
  EXPECT_EQ(client.call<int>(server.address(), "add", 2, 3), 5);
  const std::string to = server.address().to_string();
  const std::vector<std::string> want = {
      "a: before_call add",          "client: before_call add",     "a: before_attempt " + to,
      "client: before_attempt " + to, "server: before_handler add with x-client",
      "server: after_handler add ok", "a: after_attempt ok",         "client: after_attempt ok",
      "a: after_call ok",            "client: after_call ok"};
  EXPECT_EQ(j.wait_for(want.size()), want);
}

TEST(Interceptors, ShortCircuitAndExceptionsBecomeTypedErrors) {
  Node server(loopback_config());
  Node client(loopback_config());
  Journal j;
  auto first = j.make("first");
  auto second = j.make("second");
  auto third = j.make("third");
  auto srv = j.make("srv");
  client.add_interceptor(std::static_pointer_cast<ClientInterceptor>(first));
  client.add_interceptor(std::static_pointer_cast<ClientInterceptor>(second));
  client.add_interceptor(std::static_pointer_cast<ClientInterceptor>(third));
  server.add_interceptor(std::static_pointer_cast<ServerInterceptor>(srv));
  std::atomic<int> runs{0};
  server.provide("echo", [&](int x) {
    ++runs;
    return x;
  });
  const Endpoint to = server.address();

  // A "before" hook's Error ends the call: no later hook, no attempt.
  second->refuse_call = true;
  auto r = client.call_raw(to, "echo", detail::pack_args(1));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Errc::kPermissionDenied);
  auto lines = j.wait_for(5);
  EXPECT_EQ(lines.front(), "first: before_call echo");
  EXPECT_EQ(lines[1], "second: before_call echo");
  for (const auto& l : lines) {
    EXPECT_EQ(l.find("third: before"), std::string::npos) << l;
    EXPECT_EQ(l.find("attempt"), std::string::npos) << l;
  }
  EXPECT_EQ(runs.load(), 0);

  // An exception in a "before" hook is kInvalidArgument, never a crash.
  second->refuse_call = false;
  second->throw_call = true;
  r = client.call_raw(to, "echo", detail::pack_args(1));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Errc::kInvalidArgument);
  EXPECT_NE(r.error().message().find("second broke"), std::string::npos) << r.error().message();
  j.wait_for(5);

  // Exceptions in "after" hooks are ignored: the call still succeeds.
  second->throw_call = false;
  first->throw_after = true;
  EXPECT_EQ(client.call<int>(to, "echo", 7), 7);
  j.wait_for(14);  // 3 x 4 client hooks, 2 server hooks
  first->throw_after = false;

  // The provider's interceptor answers instead of the handler...
  srv->refuse_handler = true;
  r = client.call_raw(to, "echo", detail::pack_args(1));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Errc::kPermissionDenied);
  EXPECT_EQ(r.error().message(), "not you");
  // ...and its exception is kRemoteError, as a throwing handler's is.
  srv->refuse_handler = false;
  srv->throw_handler = true;
  r = client.call_raw(to, "echo", detail::pack_args(1));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), Errc::kRemoteError);
  EXPECT_NE(r.error().message().find("server side broke"), std::string::npos);
  EXPECT_EQ(runs.load(), 1);
}

/// Adds metadata of a given shape.
class Stuffer final : public ClientInterceptor {
 public:
  explicit Stuffer(std::function<void(Metadata&)> f) : f_(std::move(f)) {}
  std::optional<Error> before_call(ClientCall& call) override {
    f_(call.metadata);
    return std::nullopt;
  }

 private:
  std::function<void(Metadata&)> f_;
};

TEST(Interceptors, MetadataBeyondItsBoundsFailsTheCall) {
  Node server(loopback_config());
  server.provide("meta", [] {
    const ServerCall* sc = current_server_call();
    return sc ? sc->metadata : Metadata{};
  });
  auto check = [&](std::function<void(Metadata&)> f) {
    Node client(loopback_config());
    client.add_interceptor(std::make_shared<Stuffer>(std::move(f)));
    return client.call_raw(server.address(), "meta", detail::pack_args());
  };
  // At the bounds: 16 pairs, ~1 KiB, travels whole.
  auto ok = check([](Metadata& m) {
    for (int i = 0; i < 16; ++i) m["k" + std::to_string(i)] = std::string(50, 'v');
  });
  ASSERT_TRUE(ok.ok()) << ok.error().message();
  const auto seen = detail::unpack_value<Metadata>(ok.value());
  EXPECT_EQ(seen.size(), 16u);
  EXPECT_EQ(seen.at("k15"), std::string(50, 'v'));
  auto too_many = check([](Metadata& m) {
    for (int i = 0; i < 17; ++i) m["k" + std::to_string(i)] = "v";
  });
  ASSERT_FALSE(too_many.ok());
  EXPECT_EQ(too_many.error().code(), Errc::kInvalidArgument);
  auto too_big = check([](Metadata& m) { m["k"] = std::string(2000, 'v'); });
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.error().code(), Errc::kInvalidArgument);
  auto empty_key = check([](Metadata& m) { m[""] = "v"; });
  ASSERT_FALSE(empty_key.ok());
  EXPECT_EQ(empty_key.error().code(), Errc::kInvalidArgument);
}

TEST(Interceptors, RequestIdFlowsFromCallerToProviderAndIntoNestedCalls) {
  Config with_ids = loopback_config();
  with_ids.interceptors.request_id = true;
  Node back(with_ids);
  Node front(with_ids);
  Node caller(with_ids);
  auto id_here = [] {
    const ServerCall* sc = current_server_call();
    if (sc == nullptr || sc->metadata.count("x-request-id") == 0) return std::string();
    return sc->metadata.at("x-request-id");
  };
  back.provide("back", id_here);
  const Endpoint back_at = back.address();
  front.provide("front", [&] {
    // A nested call: it carries the id of the request being served.
    return std::vector<std::string>{id_here(), front.call<std::string>(back_at, "back")};
  });
  const auto ids = caller.call<std::vector<std::string>>(front.address(), "front");
  ASSERT_EQ(ids.size(), 2u);
  EXPECT_EQ(ids[0].size(), 32u) << ids[0];
  EXPECT_EQ(ids[0], ids[1]);
  // A call made outside any handler starts a new id.
  const auto again = caller.call<std::vector<std::string>>(front.address(), "front");
  EXPECT_NE(again[0], ids[0]);
  EXPECT_EQ(again[0], again[1]);
}

TEST(Interceptors, NestedCallNeverOutlivesItsParentsDeadline) {
  Config propagate = loopback_config();
  propagate.interceptors.propagate_deadline = true;
  Node slow(loopback_config());
  Node front(propagate);
  Node caller(loopback_config());
  std::atomic<bool> release{false};
  slow.provide("slow", [&] {
    const auto until = std::chrono::steady_clock::now() + 3s;
    while (!release.load() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(5ms);
    return 1;
  });
  const Endpoint slow_at = slow.address();
  std::promise<std::pair<Errc, double>> nested;
  front.provide("front", [&] {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = front.call_raw(slow_at, "slow", detail::pack_args());  // default timeout: rpcTimeOut, 6 s
    const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    nested.set_value({r.ok() ? Errc::kOk : r.error().code(), took});
    return 0;
  });
  CallOptions opts;
  opts.timeout = 300ms;
  // (The caller's own outcome races with front's answer, which leaves just
  // as the shared deadline passes: not what is tested here.)
  (void)caller.call_raw(front.address(), "front", detail::pack_args(), opts);
  auto fut = nested.get_future();
  ASSERT_EQ(fut.wait_for(10s), std::future_status::ready);
  const auto [code, took] = fut.get();
  release = true;
  EXPECT_EQ(code, Errc::kCallTimeout);
  // Ended with the parent's deadline (300 ms), long before the slow
  // provider's 3 s or the nested call's own 6 s.
  EXPECT_LT(took, 2.5) << "nested call took " << took << " s";
}

TEST(Interceptors, CallsByNameAndInProcessCallsAreInterceptedToo) {
  Config c = loopback_config();
  Node a(c);
  c.cluster_address = {a.address().to_string()};
  Node b(c);
  Journal j;
  b.add_interceptor(std::static_pointer_cast<ClientInterceptor>(j.make("client")));
  b.add_interceptor(std::static_pointer_cast<ServerInterceptor>(j.make("server")));
  a.provide("remote", [] { return 1; });
  b.provide("local", [] { return 2; });
  // Wait until b routes to a's service (gossip), then call both by name.
  const auto until = std::chrono::steady_clock::now() + 20s;
  bool routed = false;
  while (!routed && std::chrono::steady_clock::now() < until) {
    for (const auto& r : b.routes()) routed = routed || (r.service == "remote" && !r.providers.empty());
    for (const auto& r : b.routes()) routed = routed && (r.service != "local" || !r.providers.empty());
    if (!routed) std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(routed);
  bool local_routed = false;
  while (!local_routed && std::chrono::steady_clock::now() < until) {
    for (const auto& r : b.routes()) local_routed = local_routed || (r.service == "local" && !r.providers.empty());
    if (!local_routed) std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(local_routed);
  j.take();
  EXPECT_EQ(b.call<int>("remote"), 1);
  auto lines = j.wait_for(4);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0], "client: before_call remote");
  EXPECT_EQ(lines[1], "client: before_attempt " + a.address().to_string());
  EXPECT_EQ(lines[2], "client: after_attempt ok");
  EXPECT_EQ(lines[3], "client: after_call ok");
  // In process (loadBalance.localInProcess): the server side sees the
  // client side's metadata as a remote provider would.
  EXPECT_EQ(b.call<int>("local"), 2);
  lines = j.wait_for(6);
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_EQ(lines[2], "server: before_handler local with x-client");
  EXPECT_EQ(lines[3], "server: after_handler local ok");
}

TEST(Interceptors, AccessLogWritesOneDebugLinePerCallAndRequest) {
  // The node logs to stderr: capture it in a file for the test's length.
  char path[] = "/tmp/broach_access_logXXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  std::fflush(stderr);
  const int saved = dup(2);
  dup2(fd, 2);
  {
    Config c = loopback_config();
    c.log_level = "debug";
    c.interceptors.access_log = true;
    c.interceptors.request_id = true;
    Node server(c);
    Node client(c);
    server.provide("add", [](int a, int b) { return a + b; });
    EXPECT_EQ(client.call<int>(server.address(), "add", 1, 2), 3);
    auto r = client.call_raw(server.address(), "missing", detail::pack_args());
    EXPECT_FALSE(r.ok());
  }
  std::fflush(stderr);
  dup2(saved, 2);
  close(saved);
  close(fd);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::remove(path);
  const std::string log = text.str();
  EXPECT_NE(log.find("call add to 127.0.0.1:"), std::string::npos) << log;
  EXPECT_NE(log.find("served add for 127.0.0.1:"), std::string::npos) << log;
  EXPECT_NE(log.find("-> ok"), std::string::npos) << log;
  EXPECT_NE(log.find("call missing to 127.0.0.1:"), std::string::npos) << log;
  EXPECT_NE(log.find("-> not_found"), std::string::npos) << log;
  // The same request id on both sides of a call.
  const auto at = log.find("served add for");
  ASSERT_NE(at, std::string::npos);
  const auto id_at = log.find("request id ", at);
  ASSERT_NE(id_at, std::string::npos);
  const std::string id = log.substr(id_at + 11, 32);
  EXPECT_NE(log.find("1 attempt(s), request id " + id), std::string::npos) << log;
}

}  // namespace
}  // namespace broach
