// Membership: start, join through seeds (with backoff), periodic push-pull
// anti-entropy over the reliable transport, reconnecting to dead members
// (so partitions heal), reclaiming old records, and graceful leave.
#include <algorithm>
#include <cmath>

#include "base/log.hpp"
#include "broach/codec.hpp"
#include "membership/membership.hpp"

namespace broach::membership {

namespace {
constexpr Duration kReclaimPeriod = std::chrono::seconds(1);
/// A push-pull body travels as MessagePack bin (a vector<char> to the codec).
std::vector<char> as_bin(const wire::Bytes& b) {
  return std::vector<char>(reinterpret_cast<const char*>(b.data()), reinterpret_cast<const char*>(b.data()) + b.size());
}
constexpr Duration kFirstJoinBackoff = std::chrono::milliseconds(500);
/// Dead members pinged per reconnect interval (see reconnect()).
constexpr std::size_t kReconnectTries = 4;
}  // namespace

void Membership::start(std::vector<Endpoint> seeds) {
  BROACH_ASSERT_IN_LOOP(loop_);
  running_ = true;
  seeds_.clear();
  for (const auto& s : seeds) {
    if (s != self_.address && std::find(seeds_.begin(), seeds_.end(), s) == seeds_.end()) {
      seeds_.push_back(s);
    }
  }
  broadcast(self_);
  schedule_probe();
  gossip_timer_ = loop_.run_after(opt_.gossip_interval, [this] { gossip_tick(); });
  schedule_push_pull();
  reconnect_timer_ = loop_.run_after(opt_.reconnect_interval, [this] { reconnect(); });
  reclaim_timer_ = loop_.run_after(kReclaimPeriod, [this] { reclaim_tick(); });
  join_backoff_ = kFirstJoinBackoff;
  try_join();
}

void Membership::gossip_tick() {
  gossip_timer_ = kNoTimer;
  if (!running_) return;
  gossip();
  gossip_timer_ = loop_.run_after(opt_.gossip_interval, [this] { gossip_tick(); });
}

void Membership::reclaim_tick() {
  reclaim();
  reclaim_timer_ = loop_.run_after(kReclaimPeriod, [this] { reclaim_tick(); });
}

void Membership::try_join() {
  join_timer_ = kNoTimer;
  if (!running_) return;
  if (seeds_.empty()) {
    joined_ = true;  // the first member of a new cluster
    return;
  }
  auto pending = std::make_shared<std::size_t>(seeds_.size());
  auto any = std::make_shared<bool>(false);
  for (const auto& seed : seeds_) {
    push_pull(seed, true, [this, pending, any, seed](bool ok) {
      if (ok && !*any) {
        *any = true;
        if (!joined_) BROACH_LOG_INFO("joined the cluster through {}", seed.to_string());
        joined_ = true;
      }
      if (--*pending > 0 || *any || !running_) return;
      // Every seed is down: run alone and keep trying, backing off.
      BROACH_LOG_WARN("no seed answered; retrying in {} ms",
                      std::chrono::duration_cast<milliseconds>(join_backoff_).count());
      join_timer_ = loop_.run_after(join_backoff_, [this] { try_join(); });
      join_backoff_ = std::min(join_backoff_ * 2, opt_.join_retry_max);
    });
  }
}

void Membership::push_pull(const Endpoint& peer, bool join, std::function<void(bool)> done) {
  ++stats_.push_pulls;
  const wire::Bytes state = local_state(join);
  wire::Bytes payload;
  wire::encode_request(kPushPullService, detail::pack_args(as_bin(state)), payload);
  std::weak_ptr<bool> token = alive_token_;
  engine_.call(peer, std::move(payload), loop_.now() + opt_.call_timeout,
               [this, token, done = std::move(done)](reliable::CallResult&& r) {
                 if (token.expired()) return;
                 bool ok = false;
                 if (r.code == Errc::kOk) {
                   try {
                     const auto remote_bin = detail::unpack_value<std::vector<char>>(r.body);
                     bool j = false;
                     std::vector<Update> remote;
                     if (decode_push_pull(std::as_bytes(std::span(remote_bin)), j, remote,
                                          [this](const Update& u) { return old_news(u); })) {
                       merge_remote(remote);
                       ok = true;
                     }
                   } catch (const Error&) {
                   }
                 }
                 if (!ok) ++stats_.push_pull_failures;
                 done(ok);
               });
}

void Membership::sync_periodic(const Endpoint& peer, std::function<void(bool)> done) {
  ++stats_.digests;
  const wire::Bytes query = encode_digest(digest());
  wire::Bytes payload;
  wire::encode_request(kPushPullService, detail::pack_args(as_bin(query)), payload);
  std::weak_ptr<bool> token = alive_token_;
  engine_.call(peer, std::move(payload), loop_.now() + opt_.call_timeout,
               [this, token, peer, done = std::move(done)](reliable::CallResult&& r) {
                 if (token.expired()) return;
                 if (!running_) return done(false);
                 if (r.code == Errc::kBadArguments) {
                   // A peer that predates digests refuses the query: exchange in full.
                   return push_pull(peer, false, done);
                 }
                 StateDigest theirs;
                 bool decoded = false;
                 if (r.code == Errc::kOk) {
                   try {
                     const auto bin = detail::unpack_value<std::vector<char>>(r.body);
                     decoded = decode_digest(std::as_bytes(std::span(bin)), theirs);
                   } catch (const Error&) {
                   }
                 }
                 if (!decoded) {
                   ++stats_.push_pull_failures;
                   return done(false);
                 }
                 // Compared now, not when the query left: what changed meanwhile counts.
                 if (theirs == digest()) {
                   ++stats_.digests_equal;
                   return done(true);
                 }
                 push_pull(peer, false, done);
               });
}

StateDigest Membership::digest() const {
  StateDigest d;
  if (self_.state == MemberState::kAlive || self_.state == MemberState::kSuspect) {
    d.add(self_.address, self_.life, self_.incarnation);
  }
  for (const Index i : candidates_) {
    const Member& m = members_[i].info;
    d.add(m.address, m.life, m.incarnation);
  }
  return d;
}

wire::Bytes Membership::handle_push_pull(std::span<const std::byte> args) {
  BROACH_ASSERT_IN_LOOP(loop_);
  std::vector<char> bin;
  try {
    auto oh = msgpack::unpack(reinterpret_cast<const char*>(args.data()), args.size());
    const auto& a = oh.get();
    if (a.type != msgpack::type::ARRAY || a.via.array.size != 1) throw Error(Errc::kBadArguments, "");
    a.via.array.ptr[0].convert(bin);
  } catch (const std::exception&) {
    ++stats_.bad_messages;
    throw Error(Errc::kBadArguments, "malformed push-pull state");
  }
  // A digest query is answered with this node's digest; nothing is merged.
  if (StateDigest theirs; decode_digest(std::as_bytes(std::span(bin)), theirs)) {
    return detail::pack_value(as_bin(encode_digest(digest())));
  }
  bool join = false;
  std::vector<Update> remote;
  if (!decode_push_pull(std::as_bytes(std::span(bin)), join, remote,
                        [this](const Update& u) { return old_news(u); })) {
    ++stats_.bad_messages;
    throw Error(Errc::kBadArguments, "malformed push-pull state");
  }
  merge_remote(remote);
  return detail::pack_value(as_bin(local_state(false)));
}

void Membership::merge_remote(const std::vector<Update>& state) {
  // Room for the sender's view at once (a joiner's first merge is most of
  // the cluster): grown one by one, the table would end up to a quarter
  // larger than needed, and a simulation holds N tables.
  if (!state.empty()) members_.reserve(std::max(members_.size(), state.size() - 1));
  for (const auto& u : state) apply(u, true);
}

bool Membership::old_news(const Update& u) const {
  // An alive record that on_alive would ignore: same or older life, and
  // not a newer incarnation of ours (or a life that left).
  if (u.state != MemberState::kAlive || u.addr == self_.address) return false;
  const Record* r = members_.find(u.addr);
  if (r == nullptr || u.life > r->info.life) return false;
  return u.life < r->info.life || r->info.state == MemberState::kLeft || u.incarnation <= r->info.incarnation;
}

wire::Bytes Membership::local_state(bool join) const {
  PushPullWriter w;
  w.begin(join, members_.size() + 1);
  w.add_packed(self_.state, self_.address, self_.life, self_.incarnation, self_.meta->packed);
  // Tombstones go as bare "dead" records: the receiver cannot revive them
  // from stale news, and one alive across a healed partition refutes.
  for (const Record& r : members_) {
    if (r.tombstone) {
      w.add(r.info.state, r.info.address, r.info.life, r.info.incarnation, nullptr);
    } else {
      w.add_packed(r.info.state, r.info.address, r.info.life, r.info.incarnation, r.info.meta->packed);
    }
  }
  return w.take();
}

void Membership::push_pull_next(std::shared_ptr<std::vector<Endpoint>> peers) {
  if (peers->empty() || !running_) return;
  const Endpoint peer = peers->back();
  peers->pop_back();
  // (push_pull calls back only while this Membership lives.)
  sync_periodic(peer, [this, peers](bool ok) {
    if (!ok) push_pull_next(peers);
  });
}

void Membership::schedule_push_pull() {
  // Scale the interval with cluster size beyond 32 members: while views
  // differ (a join storm, a heal) every exchange carries the full state,
  // and that traffic per node should not grow with N. (In a settled
  // cluster an exchange is a digest round trip whatever N.)
  const double n = static_cast<double>(alive_count());
  const double scale = n > 32 ? std::ceil(std::log2(n) - std::log2(32.0)) + 1 : 1;
  // Each wait is drawn uniformly from half to one and a half intervals (the
  // mean is the interval). Without it, members that started together (a
  // cluster brought up at once, a mass join) kept exchanging in lockstep:
  // every member's full state at the same instant, then nothing for a whole
  // interval.
  const auto wait = std::chrono::duration_cast<Duration>(opt_.push_pull_interval * scale * (0.5 + rng_.uniform()));
  push_pull_timer_ = loop_.run_after(wait, [this] {
    push_pull_timer_ = kNoTimer;
    if (!running_) return;
    // Only with a member that proved its address (the request carries our
    // whole state): the first proven one of a few drawn at random. Drawing
    // one and skipping the round when it was unproven halved the repair
    // rate while a new cluster was still proving its members, and a member
    // that missed an update's gossip could wait tens of seconds for it.
    // A failed exchange (the peer is gone, or behind a partition: on the
    // small side of one most members are) tries the next one at once, up to
    // three in all, so that anti-entropy keeps working where it is needed most.
    auto peers = std::make_shared<std::vector<Endpoint>>();
    for (const auto& peer : random_members(8, {}, false)) {
      if (proven(peer)) peers->push_back(peer);
      if (peers->size() == 3) break;
    }
    std::reverse(peers->begin(), peers->end());  // taken from the back
    push_pull_next(std::move(peers));
    schedule_push_pull();
  });
}

void Membership::reconnect() {
  reconnect_timer_ = kNoTimer;
  if (!running_) return;
  if (alive_count() <= 1 && !seeds_.empty() && join_timer_ == kNoTimer) {
    // Alone (every other member gone or never reached): go back to the seeds.
    try_join();
  } else {
    // Reach out to a few dead (not left) members: one that is in fact alive
    // on the other side of a healed partition answers. A bare ping first,
    // our whole state only once it answers: while a partition lasts, every
    // member on the large side does this every interval, and a full state
    // sent into the void each time is ~100 bytes per member known, per
    // member, per interval (at 10,000 members, ~300 KB/s from each member).
    //
    // The first to answer gets a full exchange, which merges both views (the
    // bulk of a heal). The others get only their own dead record: a member
    // that reads of its death refutes and sends its current record straight
    // back, which revives it here in one round trip. Several per interval,
    // because after a heal a member that missed a refutation holds that
    // member dead among others that are gone for good (crashed), and one
    // random pick per interval left it so for a minute at 3,000 members.
    // So the ones tried are those that missed the fewest reconnect pings
    // since they died (ties drawn at random): members that crashed for good
    // sink to the back, one just declared dead (or not yet tried) goes first.
    std::vector<Index> dead;
    for (const Index i : gone_) {
      if (members_[i].info.state == MemberState::kDead) dead.push_back(i);
    }
    std::sort(dead.begin(), dead.end(),
              [this](Index a, Index b) { return members_[a].info.address < members_[b].info.address; });
    for (std::size_t t = dead.size(); t > 1; --t) std::swap(dead[t - 1], dead[rng_.below(t)]);
    const std::size_t tries = std::min(dead.size(), kReconnectTries);
    std::partial_sort(dead.begin(), dead.begin() + static_cast<std::ptrdiff_t>(tries), dead.end(),
                      [this](Index a, Index b) { return members_[a].reconnect_misses < members_[b].reconnect_misses; });
    auto exchanged = std::make_shared<bool>(false);
    for (std::size_t t = 0; t < tries; ++t) {
      const Endpoint target = members_[dead[t]].info.address;
      const std::uint32_t seq = expect_ack(
          target, scaled(opt_.probe_timeout),
          [this, target, exchanged](bool nack) {
            if (nack) return;
            if (!*exchanged) {
              *exchanged = true;
              push_pull(target, false, [](bool) {});
            } else if (const Record* r = members_.find(target); r != nullptr && r->info.state == MemberState::kDead) {
              send_correction(target, r->info);
            }
          },
          [this, target] {
            Record* r = members_.find(target);
            if (r != nullptr && r->info.state == MemberState::kDead && r->reconnect_misses < 255) {
              ++r->reconnect_misses;
            }
          });
      // A bare ping: the gossip it would carry would count as sent to a
      // member that is most likely gone (each update is sent a fixed number
      // of times), so it carries none.
      ProbeWriter w(Kind::kPing, seq, std::nullopt);
      const auto body = w.finish();
      stats_.gossip_bytes_sent += body.size() + wire::kHeaderSize;
      ++stats_.gossip_messages_sent;
      engine_.send_extension(wire::MsgType::kPing, reliable::Dest::initiated(target), body);
    }
  }
  reconnect_timer_ = loop_.run_after(opt_.reconnect_interval, [this] { reconnect(); });
}

void Membership::leave() {
  BROACH_ASSERT_IN_LOOP(loop_);
  if (!running_ || left_) return;
  self_.state = MemberState::kLeft;
  ++self_.incarnation;
  broadcast(self_);
  // Tell a few members at once; gossip carries it to the rest.
  for (const auto& to : random_members(static_cast<std::size_t>(opt_.gossip_nodes * 2), {}, false)) {
    send_probe(Kind::kGossip, 0, to);
  }
  left_ = true;
  running_ = false;
  for (TimerId* t : {&probe_timer_, &gossip_timer_, &push_pull_timer_, &reconnect_timer_, &join_timer_}) {
    loop_.cancel(*t);
    *t = kNoTimer;
  }
  BROACH_LOG_INFO("left the cluster");
}

}  // namespace broach::membership
