// Membership: applying alive / suspect / dead / left updates to the member
// table, Lifeguard suspicion, refutation, events and reclaiming old records.
//
// Ordering of news about one address: a newer process life (start time)
// always wins; within one life a higher incarnation wins; at equal
// incarnation dead/left beat suspect, which beats alive. Left is final for a
// life. Only the member itself raises its incarnation (to refute).
#include <algorithm>
#include <cmath>

#include "base/log.hpp"
#include "membership/membership.hpp"
#include "membership/meta_pool.hpp"

namespace broach::membership {

Membership::Membership(Loop& loop, reliable::Engine& engine, const MembershipOptions& options,
                       std::uint64_t life, MemberMeta meta, std::uint64_t rng_seed,
                       Listener* listener)
    : loop_(loop), engine_(engine), opt_(options), rng_(rng_seed), listener_(listener) {
  self_.address = engine.options().advertised;
  self_.life = life;
  self_.meta = intern_meta(meta);
  engine_.set_extension_receiver(this);
}

Membership::~Membership() {
  engine_.set_extension_receiver(nullptr);
  for (TimerId t : {probe_timer_, gossip_timer_, push_pull_timer_, reconnect_timer_,
                    reclaim_timer_, join_timer_}) {
    loop_.cancel(t);
  }
  for (auto& [seq, w] : acks_) loop_.cancel(w.timer);
  for (auto& [addr, s] : suspicions_) loop_.cancel(s.timer);
}

Update Membership::to_update(const Member& m, bool with_meta) const {
  Update u;
  u.state = m.state;
  u.addr = m.address;
  u.life = m.life;
  u.incarnation = m.incarnation;
  if (with_meta) u.meta = std::shared_ptr<const MemberMeta>(m.meta, &m.meta->meta);
  return u;
}

void Membership::broadcast(const Member& m, const Endpoint& from) {
  Update u = to_update(m, m.state == MemberState::kAlive);
  u.from = from;
  const std::size_t max =
      opt_.max_queued_updates != 0 ? opt_.max_queued_updates : std::max<std::size_t>(1024, 2 * alive_count());
  if (!queue_.push(m.address, encode_update(u), max)) ++stats_.updates_dropped;
}

namespace {
// A node-based hash container: each node holds the value, a next pointer
// and the cached hash, plus the allocator's header; one pointer per bucket.
template <class Map>
std::size_t node_map_bytes(const Map& m) {
  return m.size() * (sizeof(typename Map::value_type) + 2 * sizeof(void*) + 16) + m.bucket_count() * sizeof(void*);
}
}  // namespace

Membership::MemoryUse Membership::memory_use() const {
  MemoryUse u;
  u.table = members_.memory_bytes();
  u.lists = (candidates_.capacity() + gone_.capacity() + probe_order_.capacity()) * sizeof(Index);
  u.queue = queue_.memory_bytes();
  u.other = node_map_bytes(suspicions_) + node_map_bytes(acks_) + node_map_bytes(last_correction_) +
            node_map_bytes(syncing_) + seeds_.capacity() * sizeof(Endpoint);
  return u;
}

void Membership::emit(EventKind kind, const Member& m, bool self) {
  if (listener_ != nullptr) listener_->on_member_event(kind, m.snapshot(self));
}

void Membership::apply(const Update& u, bool from_push_pull, const Endpoint* source) {
  BROACH_ASSERT_IN_LOOP(loop_);
  if (source != nullptr && u.state != MemberState::kAlive && u.addr != self_.address) {
    // The sender accuses a member we know has since refuted: it missed the
    // refutation (gossip is probabilistic). Correct it directly, before its
    // own suspicion timer turns the stale news into a false death.
    const Record* r = members_.find(u.addr);
    if (r != nullptr && r->info.state == MemberState::kAlive && r->info.life == u.life &&
        r->info.incarnation > u.incarnation) {
      send_correction(*source, r->info);
    }
  }
  if (u.addr == self_.address) {
    // News about ourselves: refute anything but alive about this life.
    if (u.life == self_.life && u.state != MemberState::kAlive && !left_) {
      if (u.incarnation >= self_.incarnation) refute(u.incarnation);
      // Tell the accuser directly as well: gossip alone may miss it, and it
      // is the one whose suspicion timer is running. (An accusation older
      // than our incarnation means it missed an earlier refutation.)
      if (u.from.port != 0 && u.from != self_.address) send_correction(u.from, self_);
      if (source != nullptr && *source != u.from) send_correction(*source, self_);
    }
    return;
  }
  switch (u.state) {
    case MemberState::kAlive: on_alive(u); break;
    case MemberState::kSuspect: on_suspect(u); break;
    case MemberState::kDead:
      if (from_push_pull) {
        // A full-state exchange reports "dead" as suspect: the member then
        // gets a chance to refute if it is in fact alive (e.g. across a
        // healed partition).
        Update s = u;
        s.state = MemberState::kSuspect;
        on_suspect(s);
      } else {
        on_dead(u);
      }
      break;
    case MemberState::kLeft: on_dead(u); break;
  }
}

void Membership::on_alive(const Update& u) {
  Index idx = members_.index_of(u.addr);
  if (idx == members_.kNone || u.life > members_[idx].info.life) {
    // A new member, or a new life of a known address (a restart): it is not
    // shut out by its previous life's dead record.
    const bool rejoin = idx != members_.kNone;
    if (rejoin) {
      end_suspicion(u.addr);
    } else {
      Record fresh;
      fresh.info.address = u.addr;
      idx = members_.insert(std::move(fresh));
    }
    Record& r = members_[idx];
    if (r.tombstone) --tombstones_;
    r.tombstone = false;
    r.proven = false;
    r.info = Member{u.addr, MemberState::kAlive, u.incarnation, u.life,
                    intern_meta(u.meta ? *u.meta : MemberMeta{})};
    r.since = loop_.now();
    set_live(idx);
    add_to_probe_round(idx);
    ++stats_.joins;
    BROACH_LOG_INFO("member {} ({}) {}", u.addr.to_string(), r.info.meta->meta.name,
                    rejoin ? "rejoined (new life)" : "joined");
    emit(EventKind::kJoin, r.info);
    broadcast(r.info);
    return;
  }
  Record& r = members_[idx];
  if (u.life < r.info.life || r.info.state == MemberState::kLeft) return;
  if (u.incarnation <= r.info.incarnation) return;
  const MemberState prev = r.info.state;
  const bool revived = r.tombstone;  // its users were told it is gone: it joins again
  if (revived) {
    r.tombstone = false;
    --tombstones_;
    ++stats_.joins;
  }
  if (prev == MemberState::kDead || prev == MemberState::kLeft) add_to_probe_round(idx);
  r.info.state = MemberState::kAlive;
  r.info.incarnation = u.incarnation;
  if (u.meta && *u.meta != r.info.meta->meta) r.info.meta = intern_meta(*u.meta);
  set_live(idx);
  end_suspicion(u.addr);
  r.since = loop_.now();
  if (prev != MemberState::kAlive) {
    BROACH_LOG_INFO("member {} is alive again (incarnation {})", u.addr.to_string(), u.incarnation);
  }
  emit(revived ? EventKind::kJoin : prev == MemberState::kAlive ? EventKind::kUpdate : EventKind::kAlive, r.info);
  broadcast(r.info);
}

void Membership::on_suspect(const Update& u) {
  Record* found = members_.find(u.addr);
  if (found == nullptr) return;
  Record& r = *found;
  if (u.life != r.info.life || u.incarnation < r.info.incarnation) return;
  if (r.info.state == MemberState::kDead || r.info.state == MemberState::kLeft) return;
  if (r.info.state == MemberState::kSuspect && u.incarnation == r.info.incarnation) {
    // Another member suspects it too: an independent confirmation shortens
    // the suspicion timeout (Lifeguard).
    auto s = suspicions_.find(u.addr);
    if (s != suspicions_.end() && s->second.confirm(u.from)) {
      arm_suspicion(u.addr, s->second, r.info.life, r.info.incarnation);
      broadcast(r.info, u.from);
    }
    return;
  }
  r.info.state = MemberState::kSuspect;
  r.info.incarnation = u.incarnation;
  r.since = loop_.now();
  ++stats_.suspicions;
  start_suspicion(r, u.from);
  BROACH_LOG_INFO("member {} is suspect", u.addr.to_string());
  emit(EventKind::kSuspect, r.info);
  broadcast(r.info, u.from);
}

void Membership::start_suspicion(Record& r, const Endpoint& from) {
  const double n = static_cast<double>(std::max<std::size_t>(alive_count(), 1));
  const double scale = std::max(1.0, std::log10(n));
  const Duration min = seconds_f(opt_.suspicion_mult * scale * to_seconds(opt_.probe_interval));
  const Duration max = min * opt_.suspicion_max_mult;
  const int k = opt_.lifeguard ? std::min(opt_.suspicion_mult - 2, static_cast<int>(n) - 2) : 0;
  const Endpoint addr = r.info.address;
  end_suspicion(addr);
  Suspicion& s = suspicions_.try_emplace(addr, loop_.now(), min, max, k, from).first->second;
  // While the suspicion runs, ping the suspect ourselves every third of the
  // shortest window. The ping carries the suspicion (buddy system): a member
  // that is alive answers with its newer incarnation even if we missed its
  // refutation, so a lossy network does not turn a missed message into a
  // false death.
  s.reprobe_every = min / 3;
  s.next_reprobe = loop_.now() + s.reprobe_every;
  arm_suspicion(addr, s, r.info.life, r.info.incarnation);
}

void Membership::end_suspicion(const Endpoint& addr) {
  auto it = suspicions_.find(addr);
  if (it == suspicions_.end()) return;
  loop_.cancel(it->second.timer);
  suspicions_.erase(it);
}

void Membership::arm_suspicion(const Endpoint& addr, Suspicion& s, std::uint64_t life, std::uint32_t inc) {
  loop_.cancel(s.timer);
  s.timer = loop_.run_at(std::min(s.next_reprobe, s.due()),
                         [this, addr, life, inc] { suspicion_timer(addr, life, inc); });
}

void Membership::suspicion_timer(const Endpoint& addr, std::uint64_t life, std::uint32_t inc) {
  auto s = suspicions_.find(addr);
  if (s == suspicions_.end()) return;
  s->second.timer = kNoTimer;
  const Record* r = members_.find(addr);
  if (r == nullptr) return;
  const Member& info = r->info;
  if (info.life != life || info.incarnation != inc || info.state != MemberState::kSuspect) return;
  const TimePoint now = loop_.now();
  if (now >= s->second.due() && !suspicion_due(addr, s->second, life, inc)) return;  // declared dead
  if (now >= s->second.next_reprobe) {
    if (running_) send_probe(Kind::kPing, 0, addr);
    s->second.next_reprobe = now + s->second.reprobe_every;
  }
  arm_suspicion(addr, s->second, life, inc);
}

bool Membership::suspicion_due(const Endpoint& addr, Suspicion& s, std::uint64_t life, std::uint32_t inc) {
  // Lifeguard extension: read before judging. The suspect's refutation may
  // have arrived while this node could not run (the loop runs due timers
  // before it has read every waiting datagram): put the verdict off once,
  // by a few milliseconds, or by a probe timeout when the timer fired so
  // late that this node itself must have been stalled (which also counts
  // against its own health).
  if (opt_.lifeguard && opt_.read_before_judging && !s.deferred) {
    const bool stalled = loop_.now() - s.deadline() > kStalledLateness;
    if (stalled) adjust_awareness(+1);
    s.deferred = true;
    s.deferred_until = loop_.now() + (stalled ? scaled(opt_.probe_timeout) : milliseconds(10));
    return true;
  }
  Update d;
  d.state = MemberState::kDead;
  d.addr = addr;
  d.life = life;
  d.incarnation = inc;
  d.from = self_.address;
  on_dead(d);
  return false;
}

void Membership::on_dead(const Update& u) {
  const Index idx = members_.index_of(u.addr);
  if (idx == members_.kNone) return;  // never knew it: nothing to remove
  Record& r = members_[idx];
  if (u.life < r.info.life) return;
  if (u.life == r.info.life) {
    if (r.info.state == MemberState::kLeft) return;
    if (r.info.state == MemberState::kDead && u.state == MemberState::kDead) return;
    if (u.incarnation < r.info.incarnation) return;
  }
  if (u.life != r.info.life) r.proven = false;
  r.info.life = u.life;
  r.info.state = u.state;
  r.info.incarnation = u.incarnation;
  r.reconnect_misses = 0;
  set_gone(idx);
  end_suspicion(u.addr);
  if (r.tombstone) {
    // Already gone for this node's users: only the identity moves on.
    broadcast(r.info);
    return;
  }
  r.since = loop_.now();
  if (u.state == MemberState::kLeft) {
    ++stats_.leaves;
    BROACH_LOG_INFO("member {} left", u.addr.to_string());
    emit(EventKind::kLeft, r.info);
  } else {
    ++stats_.deaths;
    BROACH_LOG_INFO("member {} is dead", u.addr.to_string());
    emit(EventKind::kDead, r.info);
  }
  broadcast(r.info);
}

void Membership::send_correction(const Endpoint& to, const Member& m) {
  const TimePoint now = loop_.now();
  auto& last = last_correction_[to];
  if (last != TimePoint{} && now - last < opt_.gossip_interval) return;  // rate limit
  last = now;
  ProbeWriter w(Kind::kGossip, 0, std::nullopt);
  if (!w.try_add(encode_update(to_update(m, m.state == MemberState::kAlive)),
                 engine_.max_extension_payload())) {
    return;
  }
  const auto body = w.finish();
  stats_.gossip_bytes_sent += body.size() + wire::kHeaderSize;
  ++stats_.gossip_messages_sent;
  engine_.send_extension(wire::MsgType::kGossip, reliable::Dest::initiated(to), body);
}

void Membership::refute(std::uint32_t seen_incarnation) {
  self_.incarnation = std::max(self_.incarnation, seen_incarnation) + 1;
  ++stats_.refutes;
  // Being suspected while alive hints that we are slow: Lifeguard raises the
  // local health score so we probe (and accuse) less eagerly.
  adjust_awareness(+1);
  BROACH_LOG_INFO("refuting suspicion about {} (incarnation {})", self_.address.to_string(),
                  self_.incarnation);
  broadcast(self_);
}

void Membership::reclaim() {
  const TimePoint now = loop_.now();
  if (last_correction_.size() > 4 * (members_.size() + 1)) last_correction_.clear();
  if (gone_.empty()) return;  // nothing dead or left to forget
  std::vector<Endpoint> erase;
  for (const Index i : gone_) {
    Record& r = members_[i];
    if (r.tombstone) {
      if (now - r.since >= opt_.tombstone_keep) erase.push_back(r.info.address);
    } else if (now - r.since >= opt_.dead_reclaim) {
      emit(EventKind::kReclaim, r.info);
      if (tombstones_ >= opt_.max_tombstones) {
        erase.push_back(r.info.address);
        continue;
      }
      r.tombstone = true;
      r.info.meta = intern_meta(MemberMeta{});
      r.since = now;
      ++tombstones_;
    }
  }
  for (const auto& addr : erase) {
    const Index i = members_.index_of(addr);
    if (members_[i].tombstone) --tombstones_;
    forget(i);
  }
}

void Membership::unlist(Index i) {
  Record& r = members_[i];
  if (r.pos == kUnlisted) return;
  auto& from = r.live ? candidates_ : gone_;
  // Swap-remove: the list's last entry takes the leaver's place.
  if (r.pos + 1 != from.size()) {
    from[r.pos] = from.back();
    members_[from[r.pos]].pos = r.pos;
  }
  from.pop_back();
  r.pos = kUnlisted;
}

void Membership::list(Index i, bool live) {
  Record& r = members_[i];
  if (r.pos != kUnlisted && r.live == live) return;
  unlist(i);
  auto& to = live ? candidates_ : gone_;
  r.live = live;
  r.pos = static_cast<std::uint32_t>(to.size());
  to.push_back(i);
}

void Membership::forget(Index i) {
  unlist(i);
  members_.erase(i, [this](Record& moved, Index now_at) {
    if (moved.pos != kUnlisted) (moved.live ? candidates_ : gone_)[moved.pos] = now_at;
  });
}

void Membership::set_meta(MemberMeta meta) {
  BROACH_ASSERT_IN_LOOP(loop_);
  if (meta == self_.meta->meta) return;
  self_.meta = intern_meta(meta);
  ++self_.incarnation;
  broadcast(self_);
  emit(EventKind::kUpdate, self_, true);  // our own route-table entry changed too
}

std::vector<MemberInfo> Membership::members() const {
  std::vector<MemberInfo> out;
  out.reserve(members_.size() + 1);
  out.push_back(self_.snapshot(true));
  for (const Record& r : members_) {
    if (!r.tombstone) out.push_back(r.info.snapshot());
  }
  std::sort(out.begin(), out.end(),
            [](const MemberInfo& a, const MemberInfo& b) { return a.address < b.address; });
  return out;
}

std::array<std::size_t, 4> Membership::count_by_state() const {
  std::array<std::size_t, 4> n{};
  ++n[static_cast<std::size_t>(self_.state)];
  for (const Record& r : members_) {
    if (!r.tombstone) ++n[static_cast<std::size_t>(r.info.state)];
  }
  return n;
}

std::size_t Membership::alive_count() const {
  return candidates_.size() + (left_ ? 0 : 1);
}

std::optional<MemberInfo> Membership::find(const Endpoint& addr) const {
  if (addr == self_.address) return self_.snapshot(true);
  const Record* r = members_.find(addr);
  if (r == nullptr || r->tombstone) return std::nullopt;
  return r->info.snapshot();
}

std::optional<MemberState> Membership::state_of(const Endpoint& addr) const {
  if (addr == self_.address) return self_.state;
  const Record* r = members_.find(addr);
  if (r == nullptr || r->tombstone) return std::nullopt;
  return r->info.state;
}

bool Membership::known(const Endpoint& addr) const {
  const Record* r = members_.find(addr);
  return r != nullptr && !r->tombstone;
}

bool Membership::live_member_at(const Endpoint& host) const {
  if (self_.address.same_host(host)) return true;
  for (const Record& r : members_) {
    if (r.info.address.same_host(host) && (r.info.state == MemberState::kAlive || r.info.state == MemberState::kSuspect)) return true;
  }
  return false;
}

void Membership::adjust_awareness(int delta) {
  if (!opt_.lifeguard) return;
  awareness_ = std::clamp(awareness_ + delta, 0, opt_.awareness_max - 1);
  stats_.awareness = awareness_;
}

}  // namespace broach::membership
