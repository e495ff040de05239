#include "sim/sim_network.hpp"

#include <algorithm>
#include <sstream>

#include "base/assert.hpp"

namespace broach::sim {
namespace {
constexpr std::size_t kTraceLines = 2000;
}

// --- SimLoop / SimTransport: thin views onto the network -------------------

TimePoint SimLoop::now() const { return net_.now_; }

TimerId SimLoop::run_at(TimePoint when, Task task) {
  // The timer's id is its event's sequence number: cancelling erases the
  // pending event, and an event whose entry is gone is skipped when popped.
  SimNetwork::Pending p;
  p.node = node_;
  p.epoch = net_.nodes_[node_]->epoch;
  p.timer = true;
  p.task = std::move(task);
  return net_.schedule(when < net_.now_ ? net_.now_ : when, std::move(p));
}

void SimLoop::cancel(TimerId id) {
  auto it = net_.pending_.find(id);
  if (it != net_.pending_.end() && it->second.timer && it->second.node == node_) net_.pending_.erase(it);
}

void SimLoop::post(Task task) {
  SimNetwork::Pending p;
  p.node = node_;
  p.epoch = net_.nodes_[node_]->epoch;
  p.task = std::move(task);
  net_.schedule(net_.now_, std::move(p));
}

bool SimTransport::send(const Endpoint& to, std::span<const std::byte> data) {
  return net_.send_from(node_, to, data);
}

// --- SimNetwork --------------------------------------------------------------

SimNetwork::SimNetwork(std::uint64_t seed) : seed_(seed), rng_(seed) {}
SimNetwork::~SimNetwork() = default;

SimNetwork::Node SimNetwork::add_node(const Endpoint& addr) {
  BROACH_ASSERT(!by_addr_.count(addr));
  const auto idx = static_cast<std::uint32_t>(nodes_.size());
  auto n = std::make_unique<NodeState>();
  n->addr = addr;
  n->loop.reset(new SimLoop(*this, idx));
  n->transport.reset(new SimTransport(*this, idx, addr));
  Node out{n->loop.get(), n->transport.get()};
  nodes_.push_back(std::move(n));
  by_addr_[addr] = idx;
  return out;
}

void SimNetwork::set_link(const Endpoint& from, const Endpoint& to, const LinkPolicy& p) {
  links_[{from.key(), to.key()}] = p;
}

void SimNetwork::partition(const std::vector<Endpoint>& a, const std::vector<Endpoint>& b) {
  for (auto& e : a) {
    auto it = by_addr_.find(e);
    if (it != by_addr_.end()) nodes_[it->second]->group = 1;
  }
  for (auto& e : b) {
    auto it = by_addr_.find(e);
    if (it != by_addr_.end()) nodes_[it->second]->group = 2;
  }
  trace("partition");
}

void SimNetwork::block(const Endpoint& from, const Endpoint& to) {
  blocked_[{from.key(), to.key()}] = true;
}

void SimNetwork::heal() {
  for (auto& n : nodes_) n->group = 0;
  blocked_.clear();
  trace("heal");
}

void SimNetwork::crash(const Endpoint& addr) {
  auto& n = *nodes_.at(by_addr_.at(addr));
  n.crashed = true;
  ++n.epoch;
  trace("crash " + addr.to_string());
}

void SimNetwork::restart(const Endpoint& addr) {
  auto& n = *nodes_.at(by_addr_.at(addr));
  n.crashed = false;
  ++n.epoch;
  trace("restart " + addr.to_string());
}

void SimNetwork::stall(const Endpoint& addr, Duration d) {
  auto& n = *nodes_.at(by_addr_.at(addr));
  n.stalled_until = std::max(n.stalled_until, now_ + d);
  trace("stall " + addr.to_string());
}

bool SimNetwork::stalled(const Endpoint& addr) const {
  return nodes_.at(by_addr_.at(addr))->stalled_until > now_;
}

const LinkPolicy& SimNetwork::policy(const Endpoint& from, const Endpoint& to) const {
  if (links_.empty()) return default_policy_;
  auto it = links_.find({from.key(), to.key()});
  return it == links_.end() ? default_policy_ : it->second;
}

std::uint64_t SimNetwork::schedule(TimePoint when, Pending p) {
  const auto seq = seq_++;
  pending_.emplace(seq, std::move(p));
  queue_.push(Event{when, seq});
  return seq;
}

bool SimNetwork::send_from(std::uint32_t node, const Endpoint& to, std::span<const std::byte> data) {
  auto& src = *nodes_[node];
  ++stats_.sent;
  stats_.bytes_sent += data.size();
  auto describe = [&] { return describe_ ? describe_(data) : std::to_string(data.size()) + "B"; };
  if (src.crashed) return false;
  if (on_send_ && on_send_(src.addr, to, data) == Verdict::kDrop) {
    ++stats_.lost;
    if (tracing_) trace("hook-drop " + src.addr.to_string() + "->" + to.to_string() + " " + describe());
    return true;
  }
  auto dst_it = by_addr_.find(to);
  if (dst_it != by_addr_.end()) {
    const auto& dst = *nodes_[dst_it->second];
    if ((src.group != 0 && dst.group != 0 && src.group != dst.group) ||
        (!blocked_.empty() && blocked_.count({src.addr.key(), to.key()}))) {
      ++stats_.partitioned;
      if (tracing_) trace("cut " + src.addr.to_string() + "->" + to.to_string() + " " + describe());
      return true;
    }
  }
  const auto& pol = policy(src.addr, to);
  if (rng_.chance(pol.loss)) {
    ++stats_.lost;
    if (tracing_) trace("lost " + src.addr.to_string() + "->" + to.to_string() + " " + describe());
    return true;
  }
  const int copies = rng_.chance(pol.duplicate) ? 2 : 1;
  if (copies == 2) ++stats_.duplicated;
  for (int c = 0; c < copies; ++c) {
    Duration d = pol.delay;
    if (pol.jitter.count() > 0) {
      d += Duration(static_cast<Duration::rep>(rng_.below(static_cast<std::uint64_t>(pol.jitter.count()) + 1)));
    }
    if (rng_.chance(pol.reorder)) {
      // Held back by up to three base delays: later datagrams overtake it.
      ++stats_.reordered;
      d += Duration(static_cast<Duration::rep>(
          rng_.below(static_cast<std::uint64_t>(3 * pol.delay.count()) + 1)));
    }
    if (dst_it == by_addr_.end()) continue;  // nobody there: vanishes like UDP
    Pending p;
    p.node = dst_it->second;
    p.epoch = nodes_[p.node]->epoch;
    p.from = src.addr;
    p.data.assign(data.begin(), data.end());
    schedule(now_ + d, std::move(p));
  }
  if (tracing_) trace("send " + src.addr.to_string() + "->" + to.to_string() + " " + describe());
  return true;
}

bool SimNetwork::step() {
  end_of_outside_events();
  return step_one();
}

void SimNetwork::end_of_outside_events() {
  for (std::uint32_t i = 0; i < nodes_.size(); ++i) end_of_event(i);
}

bool SimNetwork::step_one() {
  while (!queue_.empty()) {
    const Event ev = queue_.top();
    queue_.pop();
    auto it = pending_.find(ev.seq);
    if (it == pending_.end()) continue;  // a cancelled timer
    now_ = ev.when;
    auto& n = *nodes_[it->second.node];
    if (it->second.epoch != n.epoch) {  // belongs to a crashed life
      pending_.erase(it);
      continue;
    }
    if (n.stalled_until > now_) {
      // Stalled: timers and tasks run when the stall ends, datagrams just
      // after them (see stall()). The same sequence number, so a timer's
      // id stays valid.
      ++stats_.deferred;
      const bool datagram = !it->second.timer && !it->second.task;
      queue_.push(Event{n.stalled_until + (datagram ? Duration(1) : Duration(0)), ev.seq});
      continue;
    }
    Pending p = std::move(it->second);
    pending_.erase(it);
    if (p.timer || p.task) {
      p.task();
      end_of_event(p.node);
      return true;
    }
    if (n.crashed) {
      ++stats_.to_crashed;
      if (port_unreachable_ && !p.unreachable) bounce(p, n.addr);
      continue;
    }
    if (p.unreachable) {
      ++stats_.unreachable;
      if (n.transport->receiver_ != nullptr) n.transport->receiver_->on_unreachable(p.from, p.data);
    } else {
      ++stats_.delivered;
      if (n.transport->receiver_ != nullptr) n.transport->receiver_->on_datagram(p.from, p.data);
    }
    end_of_event(p.node);
    return true;
  }
  return false;
}

void SimNetwork::inject_unreachable(const Endpoint& at, const Endpoint& about, std::span<const std::byte> quote) {
  auto it = by_addr_.find(at);
  if (it == by_addr_.end()) return;
  auto& n = *nodes_[it->second];
  if (n.crashed || n.transport->receiver_ == nullptr) return;
  n.transport->receiver_->on_unreachable(about, quote);
  end_of_event(it->second);
}

void SimNetwork::bounce(const Pending& p, const Endpoint& dead) {
  auto it = by_addr_.find(p.from);
  if (it == by_addr_.end()) return;
  Pending back;
  back.node = it->second;
  back.epoch = nodes_[back.node]->epoch;
  back.from = dead;
  back.unreachable = true;
  back.data.assign(p.data.begin(), p.data.begin() + static_cast<std::ptrdiff_t>(std::min<std::size_t>(p.data.size(), 512)));
  if (tracing_) trace("port-unreachable " + dead.to_string() + "->" + p.from.to_string());
  schedule(now_ + policy(dead, p.from).delay, std::move(back));
}

void SimNetwork::end_of_event(std::uint32_t node) {
  auto& n = *nodes_[node];
  // The event may have crashed or replaced the node: only a live loop's hook.
  if (n.crashed || !n.loop) return;
  for (auto& [id, h] : n.loop->idle_hooks_) h();
}

void SimNetwork::run_for(Duration d) {
  const TimePoint end = now_ + d;
  end_of_outside_events();
  while (!queue_.empty() && queue_.top().when <= end) step_one();
  if (now_ < end) now_ = end;
}

bool SimNetwork::run_until(const std::function<bool()>& pred, Duration limit) {
  const TimePoint end = now_ + limit;
  end_of_outside_events();
  while (!pred()) {
    if (queue_.empty() || queue_.top().when > end) {
      if (now_ < end) now_ = end;
      return pred();
    }
    step_one();
  }
  return true;
}

void SimNetwork::trace(std::string line) {
  if (!tracing_) return;
  if (trace_.size() >= kTraceLines) trace_.pop_front();
  std::ostringstream os;
  os << std::chrono::duration_cast<std::chrono::microseconds>(now_.time_since_epoch()).count()
     << "us " << line;
  trace_.push_back(os.str());
}

std::string SimNetwork::trace_tail(std::size_t lines) const {
  std::ostringstream os;
  os << "sim seed=" << seed_ << ", last " << std::min(lines, trace_.size()) << " events:\n";
  const std::size_t start = trace_.size() > lines ? trace_.size() - lines : 0;
  for (std::size_t i = start; i < trace_.size(); ++i) os << "  " << trace_[i] << "\n";
  return os.str();
}

}  // namespace broach::sim
