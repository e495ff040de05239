// Internal header (api layer). The inside of a Node, built only from seams:
// a Loop, a Transport, an Executor and a Clock (plus the ids and seed a
// process life draws at random). The same code runs a real node (EpollLoop,
// UdpTransport, ThreadPool, SteadyClock: node.cpp) and a simulated one
// (SimLoop, SimTransport, InlineExecutor, LoopClock: tests/sim).
//
// NodeCore wires small parts that each own one concern:
//   reliable::Engine   the reliable protocol and the one DatagramPath
//   Membership         SWIM gossip; its events rebuild the route table
//   Server             requests to services (pool or loop), responses
//   InternalServices   __broach.* services
//   DirectCalls        calls to one address
//   LocalCalls         in-process calls to this node's own services
//   NamedCalls         calls by name: pick, retry, hedge (with CallRouter)
//   Status             every counter, for stats, /metrics and the page
// Thread contract: methods marked "loop thread" run on the loop thread
// (asserted); "any thread" ones are safe anywhere. Completions follow
// calls.hpp: on the loop thread, never before the starting call returns.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "api/call_router.hpp"
#include "api/calls.hpp"
#include "api/counters.hpp"
#include "api/interceptors.hpp"
#include "api/internal_services.hpp"
#include "api/metrics.hpp"
#include "api/named_calls.hpp"
#include "api/server.hpp"
#include "api/service_registry.hpp"
#include "api/tracing.hpp"
#include "base/clock.hpp"
#include "base/executor.hpp"
#include "membership/membership.hpp"
#include "reliable/engine.hpp"
#include "routing/route_table.hpp"
#include "transport/transport.hpp"

namespace broach::api {

class Status;

struct NodeSeams {
  Loop& loop;
  Transport& transport;
  Executor& executor;
  const Clock& clock;
  std::uint64_t node_id;   ///< random per process life, never 0
  std::uint64_t life;      ///< orders lives at one address (start time, ms)
  std::uint64_t rng_seed;  ///< membership's and the router's randomness
};

class NodeCore final : public membership::Listener {
 public:
  /// Constructing thread, before the loop runs (or on the loop thread of a
  /// simulation). Throws Error{kBadConfig} for an unknown policy name.
  NodeCore(Config config, const NodeSeams& seams);
  ~NodeCore() override;
  NodeCore(const NodeCore&) = delete;
  NodeCore& operator=(const NodeCore&) = delete;

  // Loop thread.
  /// Starts gossip and joins through `seeds` (retried until one answers).
  void start(const std::vector<Endpoint>& seeds);
  /// Announces a graceful leave and stops gossip.
  void leave();
  /// Ends every pending call with `code` (shutdown).
  void fail_pending(Errc code, const std::string& message);
  std::vector<MemberInfo> members() const;
  const reliable::Engine& engine() const { return engine_; }
  const membership::Membership& membership() const { return *membership_; }
  Status& status() { return *status_; }
  const Tracer& tracer() const { return *tracer_; }
  void on_member_event(membership::EventKind kind, const MemberInfo& m) override;

  // Any thread.
  /// From now on requests are answered kShutdown and new calls fail with it.
  void set_stopping() { stopping_.store(true); }
  bool stopping() const { return stopping_.load(); }
  Endpoint address() const { return address_; }
  const Config& config() const { return config_; }
  void provide(std::string name, RawHandler handler, ServiceOptions options);
  void provide_async(std::string name, RawAsyncHandler handler, ServiceOptions options);
  bool withdraw(const std::string& name);
  void call_to(const Endpoint& to, const std::string& service, Bytes args, const CallOptions& opts, Done done);
  void call_by_name(const std::string& service, Bytes args, const CallOptions& opts, Done done);
  /// Installs an interceptor for the calls and requests that start from now on.
  void add_interceptor(std::shared_ptr<ClientInterceptor> i);
  void add_interceptor(std::shared_ptr<ServerInterceptor> i);
  std::shared_ptr<const routing::RouteTable> routes() const { return routes_.load(); }
  const NodeCounters& counters() const { return counters_; }
  const Metrics& metrics() const { return metrics_; }
  CallRouter& router() { return router_; }
  const Server& server() const { return server_; }
  Loop& loop() { return seams_.loop; }
  const Clock& clock() const { return seams_.clock; }

 private:
  MemberMeta meta() const;
  void publish_services();

  const Config config_;
  const NodeSeams seams_;
  const Endpoint address_;
  std::atomic<bool> stopping_{false};
  NodeCounters counters_;
  Metrics metrics_;
  ServiceRegistry services_;
  InterceptorChain interceptors_;
  /// Installs itself in interceptors_ when first needed (api/tracing.hpp).
  std::shared_ptr<Tracer> tracer_;
  CallRouter router_;
  std::atomic<std::shared_ptr<const routing::RouteTable>> routes_;
  bool rebuild_pending_ = false;  // loop thread
  // The engine hands requests to server_ (declared below): none arrives
  // before the loop runs, by which time every member is constructed.
  reliable::Engine engine_;
  InternalServices internal_;
  Server server_;
  DirectCalls direct_;
  LocalCalls local_;
  NamedCalls named_;
  std::unique_ptr<membership::Membership> membership_;  // loop thread
  std::unique_ptr<Status> status_;
};

}  // namespace broach::api
