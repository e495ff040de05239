// Membership: SWIM failure detection (direct probe, indirect probes through
// k members, suspicion on failure), Lifeguard nacks and local health, and
// gossip of queued updates piggybacked on every probe message.
#include <algorithm>

#include "base/log.hpp"
#include "membership/membership.hpp"

namespace broach::membership {

namespace {
struct ProbeState {
  bool done = false;
  int nacks = 0;
  int expected_nacks = 0;
};
}  // namespace

void Membership::schedule_probe() {
  probe_timer_ = loop_.run_after(scaled(opt_.probe_interval), [this] {
    probe_timer_ = kNoTimer;
    if (!running_) return;
    probe();
    schedule_probe();
  });
}

void Membership::probe() {
  BROACH_ASSERT_IN_LOOP(loop_);
  // Randomised round robin: every member is probed once per round, in an
  // order reshuffled each round, so a failure is detected within one round.
  for (int tries = 0; tries < 2; ++tries) {
    while (probe_index_ < probe_order_.size()) {
      const Index i = probe_order_[probe_index_++];
      if (i >= members_.size()) continue;
      const auto st = members_[i].info.state;
      if (st != MemberState::kAlive && st != MemberState::kSuspect) continue;
      const Endpoint target = members_[i].info.address;
      probe_node(target);
      return;
    }
    probe_order_ = candidates_;  // alive and suspect ones
    for (std::size_t i = probe_order_.size(); i > 1; --i) {
      std::swap(probe_order_[i - 1], probe_order_[rng_.below(i)]);
    }
    probe_index_ = 0;
  }
}

void Membership::add_to_probe_round(Index i) {
  probe_order_.push_back(i);
  const std::size_t rest = probe_order_.size() - probe_index_;
  if (rest > 1) std::swap(probe_order_.back(), probe_order_[probe_index_ + rng_.below(rest)]);
}

void Membership::probe_node(const Endpoint& target) {
  ++stats_.probes;
  auto st = std::make_shared<ProbeState>();
  const std::uint32_t seq = expect_ack(
      target, scaled(opt_.probe_interval),
      [this, st](bool nack) {
        if (nack) {
          ++st->nacks;
          return;
        }
        st->done = true;
        adjust_awareness(-1);
      },
      [this, st, target] {
        if (st->done || !running_) return;
        ++stats_.probe_failures;
        // Lifeguard: indirect probers that did not even nack suggest the
        // problem may be ours, so slow down.
        adjust_awareness(st->nacks < st->expected_nacks ? +1 : 0);
        const Record* r = members_.find(target);
        if (r == nullptr) return;
        Update s = to_update(r->info, false);
        s.state = MemberState::kSuspect;
        s.from = self_.address;
        on_suspect(s);
      });
  send_probe(Kind::kPing, seq, target);
  // No direct ack within the probe timeout: ask k others to try.
  loop_.run_after(scaled(opt_.probe_timeout), [this, st, seq, target] {
    if (st->done || !acks_.count(seq)) return;
    const auto helpers = random_members(static_cast<std::size_t>(opt_.indirect_checks), {target}, false);
    st->expected_nacks = static_cast<int>(helpers.size());
    for (const auto& h : helpers) {
      ++stats_.indirect_probes;
      send_probe(Kind::kPingReq, seq, h, target);
    }
  });
}

void Membership::ack_timed_out(std::uint32_t seq) {
  auto it = acks_.find(seq);
  if (it == acks_.end()) return;
  AckWait& w = it->second;
  // Lifeguard extension: a timeout that fires long after it was due means
  // this node was stalled; the ack may be waiting unread in the socket
  // (the loop runs due timers before it has read everything). Read first:
  // wait one more probe timeout, once, and count the stall against our
  // own health (longer timeouts while it lasts).
  if (opt_.lifeguard && opt_.read_before_judging && !w.deferred && loop_.now() - w.due > kStalledLateness) {
    w.deferred = true;
    adjust_awareness(+1);
    w.timer = loop_.run_after(scaled(opt_.probe_timeout), [this, seq] { ack_timed_out(seq); });
    return;
  }
  auto on_timeout = std::move(w.on_timeout);
  acks_.erase(it);
  on_timeout();
}

std::uint32_t Membership::expect_ack(const Endpoint& target, Duration timeout,
                                     std::function<void(bool)> on_ack,
                                     std::function<void()> on_timeout) {
  // Random, so that an ack from the pinged address proves it receives what
  // is sent to it (the 3x reply rule, reliable/address_guard.hpp); 0 means
  // "no ack expected".
  std::uint32_t seq = 0;
  while (seq == 0 || acks_.count(seq)) seq = static_cast<std::uint32_t>(rng_.next());
  AckWait w;
  w.target = target;
  w.on_ack = std::move(on_ack);
  w.on_timeout = std::move(on_timeout);
  w.due = loop_.now() + timeout;
  w.timer = loop_.run_after(timeout, [this, seq] { ack_timed_out(seq); });
  acks_.emplace(seq, std::move(w));
  return seq;
}

void Membership::send_probe(Kind kind, std::uint32_t seq, const Endpoint& to,
                            const std::optional<Endpoint>& target) {
  send_probe(kind, seq, reliable::Dest::initiated(to), target);
}

void Membership::send_probe(Kind kind, std::uint32_t seq, const reliable::Dest& dest,
                            const std::optional<Endpoint>& target) {
  const Endpoint& to = dest.addr;
  ProbeWriter w(kind, seq, target);
  // A reply (ack, nack) to an unproven address carries no more than 3x what
  // that address sent: fewer piggybacked updates.
  const std::size_t limit = dest.reply ? engine_.extension_allowance(dest) : engine_.max_extension_payload();
  if (kind == Kind::kPing && opt_.lifeguard) {
    // Lifeguard's buddy system: a ping to a member we suspect always carries
    // that suspicion, so the member learns of it and can refute in time even
    // when gossip happened to miss it.
    const Record* r = members_.find(to);
    if (r != nullptr && r->info.state == MemberState::kSuspect) {
      Update u = to_update(r->info, false);
      u.from = self_.address;
      w.try_add(encode_update(u), limit);
    }
  }
  const int transmit_limit = BroadcastQueue::transmit_limit(opt_.retransmit_mult, alive_count());
  if (w.size() < limit) {
    queue_.pick(limit - w.size(), transmit_limit,
                [&](std::span<const std::byte> u) { return w.try_add(u, limit); });
  }
  const auto body = w.finish();
  stats_.gossip_bytes_sent += body.size() + wire::kHeaderSize;
  ++stats_.gossip_messages_sent;
  engine_.send_extension(kind == Kind::kGossip ? wire::MsgType::kGossip : wire::MsgType::kPing, dest,
                         body);
}

void Membership::on_extension(const Endpoint& from, const wire::Header& h,
                              std::span<const std::byte> payload) {
  BROACH_ASSERT_IN_LOOP(loop_);
  ProbeMessage msg;
  if (h.fragment_count != 1 || !decode_probe(payload, msg)) {
    ++stats_.bad_messages;
    return;
  }
  if (left_) return;
  handle_probe(reliable::Dest::reply_to(from, h.node_id, (h.flags & wire::kFlagAuth) != 0), msg);
}

void Membership::sync_with_unknown(const reliable::Dest& reply) {
  // A member we have never heard of is talking to us: gossip about its join
  // may have missed us, and one full-state exchange with it repairs that
  // long before the next periodic push-pull. But first give the gossip
  // time to arrive: during a mass join (a cluster starting, a partition
  // healing) nearly every sender is news still on its way, and exchanging
  // at once cost ~6 full states per joining member (each N records, both
  // ways). Wait as long as one holder keeps gossiping a piece of news; if
  // the sender is still unknown then, exchange.
  if (syncing_.size() >= kMaxSyncing) {
    ++stats_.syncs_skipped;
    return;
  }
  const Endpoint from = reply.addr;
  syncing_.insert(from);
  const int transmits = BroadcastQueue::transmit_limit(opt_.retransmit_mult, alive_count());
  const Duration wait = opt_.gossip_interval * std::max(1, transmits / std::max(1, opt_.gossip_nodes));
  std::weak_ptr<bool> token = alive_token_;
  loop_.run_after(wait, [this, token, reply, from] {
    if (token.expired()) return;
    if (!running_ || known(from) || exchanges_with_unknown_ >= kMaxUnknownExchanges) {
      if (running_ && !known(from)) ++stats_.syncs_skipped;
      syncing_.erase(from);
      return;
    }
    ++exchanges_with_unknown_;
    auto finished = [this, from](bool) {
      --exchanges_with_unknown_;
      syncing_.erase(from);
    };
    // The request carries our whole state, so a sender that is neither a
    // key holder nor proven must first ack a bare ping (sent as a reply,
    // within the 3x rule).
    if (engine_.reply_free(reply)) {
      push_pull(from, false, finished);
      return;
    }
    const std::uint32_t seq = expect_ack(
        from, scaled(opt_.probe_timeout),
        [this, from, finished](bool nack) {
          if (!nack) push_pull(from, false, finished);  // (a nack is followed by the timeout)
        },
        [finished] { finished(false); });
    ProbeWriter w(Kind::kPing, seq, std::nullopt);
    const auto body = w.finish();
    engine_.send_extension(wire::MsgType::kPing, reply, body);
  });
}

void Membership::handle_probe(const reliable::Dest& reply, ProbeMessage& msg) {
  const Endpoint& from = reply.addr;
  for (const auto& u : msg.updates) apply(u, false, &from);
  if (from != self_.address && !known(from) && !syncing_.count(from)) sync_with_unknown(reply);
  if (const Record* r = members_.find(from); r != nullptr && !r->tombstone && r->info.state == MemberState::kDead) {
    // A member we hold dead is talking to us: it is alive after all, and we
    // missed its refutation (or it never heard of its death). Our record of
    // it, sent to it, makes it refute if it has to and send its current
    // record straight back (apply: news about ourselves). Seen in the scale
    // benchmark: after a heal, one member that had missed one refutation
    // held that member dead for 30 s, until its own reconnect happened to
    // pick it among the dead.
    send_correction(from, r->info);
  }
  switch (msg.kind) {
    case Kind::kPing:
      send_probe(Kind::kAck, msg.seq, reply);
      break;
    case Kind::kAck:
    case Kind::kNack: {
      auto it = acks_.find(msg.seq);
      if (it == acks_.end()) break;
      if (msg.kind == Kind::kNack) {
        it->second.on_ack(true);
        break;
      }
      // Our random sequence number came back from the address we pinged:
      // it receives what we send (later replies to it are not metered).
      if (it->second.target == from) {
        engine_.mark_proven(from, reply.node_id);
        if (Record* m = members_.find(from)) m->proven = true;
      }
      auto cb = std::move(it->second.on_ack);
      loop_.cancel(it->second.timer);
      acks_.erase(it);
      cb(false);
      break;
    }
    case Kind::kPingReq: {
      if (!msg.target) break;
      // Only members are probed for others: a ping-req must not make this
      // node send to an address of the requester's choosing.
      const Record* t = members_.find(*msg.target);
      if (t == nullptr || (t->info.state != MemberState::kAlive && t->info.state != MemberState::kSuspect)) {
        ++stats_.ping_req_refused;
        break;
      }
      // Probe the target for the requester; relay its ack, or a nack when
      // the target stays silent (Lifeguard), so the requester knows that we
      // at least are reachable.
      const reliable::Dest requester = reply;
      const std::uint32_t their_seq = msg.seq;
      const std::uint32_t seq = expect_ack(
          *msg.target, scaled(opt_.probe_timeout),
          [this, requester, their_seq](bool nack) {
            if (!nack) send_probe(Kind::kAck, their_seq, requester);
          },
          [this, requester, their_seq] { send_probe(Kind::kNack, their_seq, requester); });
      send_probe(Kind::kPing, seq, *msg.target);
      break;
    }
    case Kind::kGossip:
      break;
  }
}

bool Membership::proven(const Endpoint& addr) const {
  if (engine_.trusts_all_incoming()) return true;
  const Record* r = members_.find(addr);
  if (r == nullptr) return true;  // seeds: configured by the operator
  return r->proven;
}

void Membership::gossip() {
  BROACH_ASSERT_IN_LOOP(loop_);
  if (queue_.empty()) return;
  for (const auto& to : random_members(static_cast<std::size_t>(opt_.gossip_nodes), {}, true)) {
    if (queue_.empty()) break;
    send_probe(Kind::kGossip, 0, to);
  }
}

std::vector<Endpoint> Membership::random_members(std::size_t k, const std::vector<Endpoint>& exclude,
                                                 bool include_suspect) {
  std::vector<Endpoint> out;
  const std::size_t n = candidates_.size();
  // Sample without replacement by rejection: k is small next to n.
  for (std::size_t tries = 0; out.size() < k && tries < 4 * k + 8 && n > 0; ++tries) {
    const Record& r = members_[candidates_[rng_.below(n)]];
    const Endpoint& c = r.info.address;
    if (std::find(out.begin(), out.end(), c) != out.end()) continue;
    if (std::find(exclude.begin(), exclude.end(), c) != exclude.end()) continue;
    if (!include_suspect && r.info.state != MemberState::kAlive) continue;
    out.push_back(c);
  }
  return out;
}

}  // namespace broach::membership
