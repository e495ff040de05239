// Test support: N members (engine + membership) on one simulated network.
#pragma once

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "membership/membership.hpp"
#include "sim/sim_network.hpp"
#include "support/sim_rpc.hpp"

namespace broach::testing {

class ClusterNode : public reliable::RequestHandler {
 public:
  void on_request(reliable::IncomingRequest&& r) override {
    wire::Bytes body;
    if (r.service == membership::kPushPullService && membership) {
      try {
        wire::encode_response_ok(membership->handle_push_pull(r.args), body);
      } catch (const Error& e) {
        wire::encode_response_error(e.code(), e.message(), body);
      }
    } else {
      wire::encode_response_error(Errc::kNotFound, r.service, body);
    }
    engine->respond(r.token, std::move(body));
  }
  Endpoint addr;
  sim::SimNetwork::Node n{};
  std::unique_ptr<reliable::Engine> engine;
  std::unique_ptr<membership::Membership> membership;
  int lives = 0;
};

class SimCluster {
 public:
  SimCluster(std::uint64_t seed, std::size_t n, membership::MembershipOptions opt = {})
      : net(seed), opt_(opt), seed_(seed) {
    net.set_describer(describe_datagram);
    // Thousands of members joining would flood the output; BROACH_LOG_LEVEL
    // turns it back on when a scenario needs reading.
    const char* level = std::getenv("BROACH_LOG_LEVEL");
    log::set_level(level ? level : "warn");
    for (std::size_t i = 0; i < n; ++i) {
      auto node = std::make_unique<ClusterNode>();
      node->addr = address(i);
      node->n = net.add_node(node->addr);
      nodes.push_back(std::move(node));
    }
  }
  static Endpoint address(std::size_t i) {
    return Endpoint{0x0a000000u + static_cast<std::uint32_t>(i / 250) * 256 +
                        static_cast<std::uint32_t>(i % 250) + 1,
                    7946};
  }
  /// (Re)creates node i's engine and membership (a new process life) and
  /// starts it with `seeds`.
  void start(std::size_t i, const std::vector<Endpoint>& seeds,
             std::vector<std::string> services = {"svc"}) {
    auto& c = *nodes[i];
    c.membership.reset();
    c.engine.reset();
    reliable::EngineOptions eo;
    eo.node_id = (seed_ << 20) + i * 64 + static_cast<std::uint64_t>(c.lives) + 1;
    eo.advertised = c.addr;
    c.engine = std::make_unique<reliable::Engine>(*c.n.loop, *c.n.transport, eo, &c);
    MemberMeta meta;
    meta.name = "node" + std::to_string(i);
    meta.version = "1.0.0";
    meta.services = std::move(services);
    // A restart has a later life (start time): here virtual ms since epoch.
    const auto life = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(net.now().time_since_epoch()).count() + 1);
    c.membership = std::make_unique<membership::Membership>(
        *c.n.loop, *c.engine, opt_, life, meta, seed_ * 7919 + i * 31 + static_cast<std::uint64_t>(c.lives),
        listener_factory ? listener_factory(i) : nullptr);
    ++c.lives;
    c.membership->start(seeds);
  }
  /// Crashes node i: no more traffic or timers; its objects are dropped.
  void crash(std::size_t i) {
    net.crash(nodes[i]->addr);
    nodes[i]->membership.reset();
    nodes[i]->engine.reset();
  }
  void restart(std::size_t i, const std::vector<Endpoint>& seeds) {
    net.restart(nodes[i]->addr);
    start(i, seeds);
  }
  bool running(std::size_t i) const { return nodes[i]->membership != nullptr; }
  /// State of `about` as seen by node `viewer` (nullopt: unknown).
  std::optional<MemberState> view(std::size_t viewer, std::size_t about) const {
    return nodes[viewer]->membership->state_of(address(about));
  }
  /// True when every running node sees every node in `alive` as alive and
  /// every node in `dead` as dead (or forgotten).
  bool converged(const std::vector<std::size_t>& alive, const std::vector<std::size_t>& dead = {}) const {
    for (std::size_t v = 0; v < nodes.size(); ++v) {
      if (!running(v)) continue;
      for (auto a : alive) {
        if (view(v, a) != MemberState::kAlive) return false;
      }
      for (auto d : dead) {
        auto s = view(v, d);
        if (s && *s != MemberState::kDead && *s != MemberState::kLeft) return false;
      }
    }
    return true;
  }
  std::vector<std::size_t> all() const {
    std::vector<std::size_t> v(nodes.size());
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = i;
    return v;
  }

  sim::SimNetwork net;
  std::vector<std::unique_ptr<ClusterNode>> nodes;
  /// Optional: a listener for node i's membership events.
  std::function<membership::Listener*(std::size_t)> listener_factory;

 private:
  membership::MembershipOptions opt_;
  std::uint64_t seed_;
};

}  // namespace broach::testing
