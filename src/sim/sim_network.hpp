// Internal header (test support, also usable by library users for their own
// tests). A deterministic simulated network on virtual time.
//
// Layer: sim. SimNetwork owns one event queue ordered by (virtual time,
// sequence number), so ties are deterministic and a run replays exactly from
// its seed. Each simulated node gets a SimLoop (the Loop seam: virtual now,
// timers, post) and a SimTransport (the Transport seam). Links apply loss,
// duplication, reordering, delay with jitter, and partitions, all drawn from
// one Rng. Every send/drop/delivery is kept in a bounded trace ring for
// failure reports.
// Thread contract: single-threaded; everything runs on the thread that calls
// step()/run_for(). SimLoop::post is therefore not thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <functional>
#include <memory>
#include <queue>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/loop.hpp"
#include "base/rng.hpp"
#include "transport/transport.hpp"

namespace broach::sim {

struct LinkPolicy {
  double loss = 0;        ///< probability a datagram is dropped
  double duplicate = 0;   ///< probability a datagram is delivered twice
  double reorder = 0;     ///< probability a datagram is held back (arrives after later ones)
  Duration delay = std::chrono::microseconds(50);  ///< one-way base delay
  Duration jitter = std::chrono::microseconds(10); ///< uniform extra delay in [0, jitter]
};

class SimNetwork;

class SimLoop final : public Loop {
 public:
  TimePoint now() const override;
  TimerId run_at(TimePoint when, Task task) override;
  void cancel(TimerId id) override;
  void post(Task task) override;
  bool in_loop_thread() const override { return true; }
  /// Hooks run after each event of this node (a timer, a posted task, a datagram).
  std::uint64_t add_idle_hook(Task hook) override {
    idle_hooks_.emplace_back(++last_hook_, std::move(hook));
    return last_hook_;
  }
  void remove_idle_hook(std::uint64_t id) override {
    std::erase_if(idle_hooks_, [id](const auto& h) { return h.first == id; });
  }

 private:
  friend class SimNetwork;
  SimLoop(SimNetwork& net, std::uint32_t node) : net_(net), node_(node) {}
  SimNetwork& net_;
  std::uint32_t node_;
  std::vector<std::pair<std::uint64_t, Task>> idle_hooks_;
  std::uint64_t last_hook_ = 0;
};

class SimTransport final : public Transport {
 public:
  Endpoint local() const override { return addr_; }
  bool send(const Endpoint& to, std::span<const std::byte> data) override;
  void set_receiver(DatagramReceiver* r) override { receiver_ = r; }

 private:
  friend class SimNetwork;
  SimTransport(SimNetwork& net, std::uint32_t node, Endpoint addr)
      : net_(net), node_(node), addr_(addr) {}
  SimNetwork& net_;
  std::uint32_t node_;
  Endpoint addr_;
  DatagramReceiver* receiver_ = nullptr;
};

enum class Verdict { kDeliver, kDrop };

class SimNetwork {
 public:
  explicit SimNetwork(std::uint64_t seed);
  ~SimNetwork();
  SimNetwork(const SimNetwork&) = delete;
  SimNetwork& operator=(const SimNetwork&) = delete;

  /// Adds a node at `addr`; the returned loop and transport live as long as
  /// the network.
  struct Node {
    SimLoop* loop;
    SimTransport* transport;
  };
  Node add_node(const Endpoint& addr);

  void set_default_policy(const LinkPolicy& p) { default_policy_ = p; }
  /// Policy of the directed link from -> to (overrides the default).
  void set_link(const Endpoint& from, const Endpoint& to, const LinkPolicy& p);
  /// Cuts every link between a member of `a` and a member of `b`, both ways.
  void partition(const std::vector<Endpoint>& a, const std::vector<Endpoint>& b);
  /// Drops every datagram from -> to (one way) until heal().
  void block(const Endpoint& from, const Endpoint& to);
  void heal();
  /// A crashed node receives nothing and its pending timers never fire;
  /// restart() revives it (its old timers stay dead: a new life).
  void crash(const Endpoint& addr);
  void restart(const Endpoint& addr);
  /// When on, a datagram that reaches a crashed node is answered as a live
  /// host answers one for a port nobody listens on (ICMP port unreachable):
  /// after the reverse link's delay the sender's receiver gets
  /// on_unreachable with the datagram's first 512 bytes. Off by default (a
  /// host that is down answers nothing; partitions and loss never answer).
  void set_port_unreachable(bool on) { port_unreachable_ = on; }
  /// Hands node `at` a port-unreachable report about `about` quoting
  /// `quote`, now, as a forger could (tests of what a node believes).
  void inject_unreachable(const Endpoint& at, const Endpoint& about, std::span<const std::byte> quote);
  /// Stalls node `addr` for `d` (a process stopped or starved of CPU): it
  /// runs nothing meanwhile; datagrams sent to it wait as in a socket
  /// buffer. When the stall ends, every timer that came due during it fires
  /// first, then the waiting datagrams are delivered in arrival order (the
  /// worst order for the stalled node: its probes time out before it reads
  /// the acks that did arrive).
  void stall(const Endpoint& addr, Duration d);
  bool stalled(const Endpoint& addr) const;
  /// Test hook consulted for every datagram before the link policy.
  void set_on_send(std::function<Verdict(const Endpoint&, const Endpoint&,
                                         std::span<const std::byte>)> hook) {
    on_send_ = std::move(hook);
  }
  /// Formats a datagram for the trace (e.g. a decoded header); optional.
  void set_describer(std::function<std::string(std::span<const std::byte>)> d) {
    describe_ = std::move(d);
  }
  /// Turns the trace ring off (large simulations) or on.
  void set_tracing(bool on) { tracing_ = on; }

  TimePoint now() const { return now_; }
  std::uint64_t seed() const { return seed_; }
  /// Runs the next event; false when none is left. What test code did on
  /// a node outside any event (a call made from the test body) counts as an
  /// event of its own: the nodes' idle hooks run first (run_for and
  /// run_until do the same once).
  bool step();
  void run_for(Duration d);
  /// Runs until pred() holds (checked after each event) or `limit` of virtual
  /// time passes; returns pred().
  bool run_until(const std::function<bool()>& pred, Duration limit);

  struct Stats {
    std::uint64_t bytes_sent = 0;
    std::uint64_t sent = 0, lost = 0, duplicated = 0, reordered = 0, partitioned = 0,
                  delivered = 0, to_crashed = 0, deferred = 0, unreachable = 0;
  };
  const Stats& stats() const { return stats_; }
  /// Events (timers, tasks, datagrams in flight) waiting to run.
  std::size_t pending_events() const { return pending_.size(); }
  /// The last trace lines (bounded ring), oldest first, with the seed.
  std::string trace_tail(std::size_t lines = 40) const;

 private:
  friend class SimLoop;
  friend class SimTransport;
  struct NodeState {
    Endpoint addr;
    std::unique_ptr<SimLoop> loop;
    std::unique_ptr<SimTransport> transport;
    std::uint32_t epoch = 0;
    bool crashed = false;
    int group = 0;  // partition group; 0 = reaches everyone
    TimePoint stalled_until{};  // events before this are deferred to it
  };
  struct Event {
    TimePoint when;
    std::uint64_t seq;
    bool operator>(const Event& o) const { return when != o.when ? when > o.when : seq > o.seq; }
  };
  struct Pending {
    std::uint32_t node;
    std::uint32_t epoch;
    bool timer = false;              // a timer (cancellable: its id is the event's seq)
    Task task;                       // timer or posted task
    Endpoint from;                   // datagram event otherwise
    std::vector<std::byte> data;
    bool unreachable = false;        // an ICMP port unreachable about `from`, to `node`
  };

  std::uint64_t schedule(TimePoint when, Pending p);  // returns the event's seq
  bool send_from(std::uint32_t node, const Endpoint& to, std::span<const std::byte> data);
  const LinkPolicy& policy(const Endpoint& from, const Endpoint& to) const;
  void trace(std::string line);
  void end_of_event(std::uint32_t node);  // the node's loop idle hooks
  void end_of_outside_events();           // every node's, once
  bool step_one();
  void bounce(const Pending& p, const Endpoint& dead);  // the port-unreachable answer to p

  std::uint64_t seed_;
  Rng rng_;
  TimePoint now_{};
  std::uint64_t seq_ = 1;  // 0 is kNoTimer
  std::priority_queue<Event, std::vector<Event>, std::greater<>> queue_;
  std::unordered_map<std::uint64_t, Pending> pending_;
  std::vector<std::unique_ptr<NodeState>> nodes_;
  std::unordered_map<Endpoint, std::uint32_t> by_addr_;
  bool port_unreachable_ = false;
  LinkPolicy default_policy_;
  std::map<std::pair<std::uint64_t, std::uint64_t>, LinkPolicy> links_;  // (from, to) keys
  std::map<std::pair<std::uint64_t, std::uint64_t>, bool> blocked_;      // one-way blocks
  std::function<Verdict(const Endpoint&, const Endpoint&, std::span<const std::byte>)> on_send_;
  std::function<std::string(std::span<const std::byte>)> describe_;
  std::deque<std::string> trace_;
  bool tracing_ = true;
  Stats stats_;
};

}  // namespace broach::sim
