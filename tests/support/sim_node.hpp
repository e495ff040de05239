// Test support: whole nodes (the production NodeCore: serving, calls by
// name, breakers, retries, hedging, membership) on one simulated network,
// in virtual time, replayable by seed.
#pragma once

#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "api/node_core.hpp"
#include "base/clock.hpp"
#include "base/log.hpp"
#include "sim/sim_network.hpp"
#include "support/sim_rpc.hpp"
#include "support/sim_seeds.hpp"

namespace broach::testing {

/// The worker pool of a simulated node: runs each task `delay` of virtual
/// time after it was submitted, on the loop (one simulated thread), and
/// refuses work beyond `capacity` tasks waiting (-1: no limit).
class SimExecutor final : public Executor {
 public:
  explicit SimExecutor(Loop& loop) : loop_(loop) {}
  Errc try_submit(Task task) noexcept override {
    if (capacity >= 0 && waiting_ >= capacity) return Errc::kQueueFull;
    ++waiting_;
    loop_.run_after(delay, [this, task = std::move(task)] {
      --waiting_;
      task();
    });
    return Errc::kOk;
  }
  Duration delay{};
  int capacity = -1;

 private:
  Loop& loop_;
  int waiting_ = 0;
};

class SimNodes {
 public:
  struct Member {
    Endpoint addr;
    sim::SimNetwork::Node n{};
    std::unique_ptr<LoopClock> clock;
    std::unique_ptr<SimExecutor> executor;
    std::unique_ptr<api::NodeCore> core;
    int lives = 0;
    bool running() const { return core != nullptr; }
  };

  SimNodes(std::uint64_t seed, std::size_t n, Config config = default_config())
      : net(seed), config_(std::move(config)), seed_(seed) {
    net.set_describer(describe_datagram);
    const char* level = std::getenv("BROACH_LOG_LEVEL");
    log::set_level(level ? level : "warn");
    for (std::size_t i = 0; i < n; ++i) {
      auto m = std::make_unique<Member>();
      m->addr = address(i);
      m->n = net.add_node(m->addr);
      members.push_back(std::move(m));
    }
  }
  ~SimNodes() {
    for (auto& m : members) m->core.reset();
  }

  static Endpoint address(std::size_t i) {
    return Endpoint{0x0a000000u + static_cast<std::uint32_t>(i / 250) * 256 + static_cast<std::uint32_t>(i % 250) + 1,
                    7000};
  }
  Member& at(std::size_t i) { return *members[i]; }
  api::NodeCore& core(std::size_t i) { return *members[i]->core; }

  /// (Re)starts node i as a new process life, joining through node 0
  /// (node 0 itself starts alone); `setup` registers its services.
  void start(std::size_t i, const std::function<void(api::NodeCore&)>& setup = {}) {
    auto& m = *members[i];
    m.core.reset();
    m.clock = std::make_unique<LoopClock>(*m.n.loop);
    m.executor = std::make_unique<SimExecutor>(*m.n.loop);
    Config c = overrides.count(i) ? overrides.at(i) : config_;
    c.name = "node" + std::to_string(i);
    const auto life = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(net.now().time_since_epoch()).count() + 1);
    const std::uint64_t id = (seed_ << 24) + i * 256 + static_cast<std::uint64_t>(m.lives) + 1;
    m.core = std::make_unique<api::NodeCore>(
        c, api::NodeSeams{*m.n.loop, *m.n.transport, *m.executor, *m.clock, id, life, id * 7919});
    ++m.lives;
    if (setup) setup(*m.core);
    std::vector<Endpoint> seeds;
    if (i != 0) seeds.push_back(address(0));
    m.core->start(seeds);
  }
  void crash(std::size_t i) {
    net.crash(members[i]->addr);
    members[i]->core.reset();
  }
  void restart(std::size_t i, const std::function<void(api::NodeCore&)>& setup = {}) {
    net.restart(members[i]->addr);
    start(i, setup);
  }

  /// True when every running node sees every node in `alive` as alive.
  bool all_see_alive(const std::vector<std::size_t>& alive) {
    for (auto& m : members) {
      if (!m->running()) continue;
      const auto view = m->core->members();
      for (auto a : alive) {
        bool ok = false;
        for (const auto& mi : view) ok = ok || (mi.address == address(a) && mi.state == MemberState::kAlive);
        if (!ok) return false;
      }
    }
    return true;
  }
  /// True when node `viewer`'s route table lists `service` at every node of `providers`.
  bool routes_to(std::size_t viewer, const std::string& service, const std::vector<std::size_t>& providers) {
    const auto table = core(viewer).routes();
    const auto* e = table->find(service);
    if (e == nullptr) return providers.empty();
    for (auto p : providers) {
      bool found = false;
      for (const auto& pr : e->providers) found = found || pr.address == address(p);
      if (!found) return false;
    }
    return true;
  }

  struct Outcome {
    RawResult result = Error(Errc::kShutdown, "not finished");
    TimePoint started{}, ended{};
    bool finished = false;
  };
  /// Starts a call by name from node `from`; the outcome fills in later.
  std::shared_ptr<Outcome> call_async(std::size_t from, const std::string& service, Bytes args,
                                      const CallOptions& opts = {}) {
    auto o = std::make_shared<Outcome>();
    o->started = net.now();
    core(from).call_by_name(service, std::move(args), opts, [this, o](RawResult r) {
      if (o->finished) ++double_completions;
      o->finished = true;
      o->ended = net.now();
      o->result = std::move(r);
    });
    return o;
  }
  /// A call by name, run to its end (virtual time).
  std::shared_ptr<Outcome> call(std::size_t from, const std::string& service, Bytes args,
                                const CallOptions& opts = {}) {
    auto o = call_async(from, service, std::move(args), opts);
    net.run_until([&] { return o->finished; }, seconds(60));
    return o;
  }

  sim::SimNetwork net;
  std::vector<std::unique_ptr<Member>> members;
  std::map<std::size_t, Config> overrides;  ///< a node's own config (else the shared one)
  int double_completions = 0;  ///< completions after the first (must stay 0)

 private:
  Config config_;
  std::uint64_t seed_;
};

}  // namespace broach::testing
