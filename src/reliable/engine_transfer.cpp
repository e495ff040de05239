// Engine, fragmentation: windowed sending of messages larger than one
// datagram with selective acknowledgement and retransmission, and bounded
// reassembly on the receiving side.
#include <algorithm>
#include <cstring>

#include "base/log.hpp"
#include "reliable/engine.hpp"
#include "reliable/keyring.hpp"

namespace broach::reliable {

using wire::FragmentAck;
using wire::Header;
using wire::MsgType;

namespace {
// The receiver acknowledges every 8 fragments, or every ~48 KB of small
// fragments (at most every 32: a quarter of the default window of 1472-byte
// fragments, so the window keeps moving), and every 2 once it has seen a
// hole, so losses are repaired about one RTT after they happen.
constexpr std::uint32_t kAckEvery = 8;
constexpr std::uint32_t kAckEveryMax = 32;
constexpr std::uint32_t kAckBytes = 48u << 10;
constexpr std::uint32_t kAckEveryWithHole = 2;

std::uint32_t ack_every(std::uint32_t frag_size) {
  return std::clamp(kAckBytes / std::max<std::uint32_t>(frag_size, 1), kAckEvery, kAckEveryMax);
}
// Fragments resent at once when the retransmission timer fires.
constexpr std::uint32_t kTimeoutBurst = 32;
}  // namespace

void Engine::send_message(MsgType type, std::uint64_t id, const Dest& to,
                          const SharedBytes& data, std::uint32_t deadline_us,
                          std::unique_ptr<Transfer>* slot) {
  BROACH_ASSERT_IN_LOOP(loop_);
  const std::uint32_t fp = frag_payload_for(to.addr);
  if (data->size() <= fp) {
    Header h = header_for(type, id, data->size());
    h.deadline_us = deadline_us;
    send_datagram(h, *data, to);
    return;
  }
  if (slot == nullptr) return;  // callers only pass null for single datagrams
  if (*slot) loop_.cancel((*slot)->timer);
  auto t = std::make_unique<Transfer>();
  t->type = type;
  t->message_id = id;
  t->to = to.addr;
  t->dest = to;
  t->data = data;
  t->frag_size = fp;
  t->count = static_cast<std::uint32_t>((data->size() + fp - 1) / fp);
  t->acked.assign(t->count, 0);
  t->sent_at.assign(t->count, TimePoint{});
  t->deadline_us = deadline_us;
  t->last_progress = loop_.now();
  t->rto = rtt(to.addr).rto();
  *slot = std::move(t);
  pump(**slot);
}

void Engine::send_fragment(Transfer& t, std::uint32_t i) {
  // Through the batch, flushed at once: one code path for both.
  queue_fragment(t, i);
  flush_fragments();
}

void Engine::queue_fragment(Transfer& t, std::uint32_t i) {
  const std::size_t off = static_cast<std::size_t>(i) * t.frag_size;
  const std::size_t len = std::min<std::size_t>(t.frag_size, t.data->size() - off);
  Header h = header_for(t.type, t.message_id, len);
  h.fragment_index = i;
  h.fragment_count = t.count;
  h.total_len = static_cast<std::uint32_t>(t.data->size());
  h.payload_len = static_cast<std::uint16_t>(len);
  h.deadline_us = t.deadline_us;
  if (t.sent_at[i] != TimePoint{}) ++stats_.fragments_resent;
  t.sent_at[i] = loop_.now();
  ++stats_.fragments_sent;
  // Encoded back to back: this fragment's datagram (header, payload, a
  // seal's tag) fits the room left, or the batch leaves first. Only the
  // pages the batch's datagrams reach are ever touched: a node that sends
  // 1400-byte fragments uses ~100 KB of it.
  const std::size_t room = wire::kHeaderSize + len + kTagSize;
  if (batch_count_ > 0 && (batch_to_ != t.dest || batch_used_ + room > kBatchBytes)) flush_fragments();
  batch_to_ = t.dest;
  if (!batch_) batch_.reset(new std::byte[kBatchBytes]);  // default-initialised: untouched
  const std::size_t n = path_.encode_into(h, std::span<const std::byte>(t.data->data() + off, len),
                                          std::span<std::byte>(batch_.get() + batch_used_, room));
  batch_views_[batch_count_++] = std::span<const std::byte>(batch_.get() + batch_used_, n);
  batch_used_ += n;
  if (batch_count_ == kBatchMax) flush_fragments();
}

void Engine::flush_fragments() {
  if (batch_count_ == 0) return;
  // A response to an unproven address: what exceeds its allowance stays
  // unsent (the transfer treats it as lost).
  stats_.amplification_limited +=
      path_.send_batch(batch_to_, std::span<const std::span<const std::byte>>(batch_views_.data(), batch_count_));
  batch_count_ = 0;
  batch_used_ = 0;
}

void Engine::pump(Transfer& t) {
  const std::uint32_t window = window_for(t.frag_size);
  // Queued, not sent: the batch leaves when full or when the loop finishes
  // this iteration (the idle hook), so the fragments that several acks of
  // one receive batch release leave together, in one GSO send where the
  // kernel has it. No timer: nothing waits past the current iteration.
  while (t.next_new < t.count && t.next_new < t.cum + window) queue_fragment(t, t.next_new++);
  if (t.timer == kNoTimer && !t.done) {
    Transfer* tp = &t;  // owned by a Call or DedupEntry, which cancel this timer
    t.timer = loop_.run_after(t.rto, [this, tp] { on_transfer_timer(*tp); });
  }
}

void Engine::on_transfer_timer(Transfer& t) {
  t.timer = kNoTimer;
  if (t.done || t.gave_up) return;
  const TimePoint now = loop_.now();
  if (t.await_ack || now - t.last_progress >= opt_.delivery_timeout) {
    // The receiver went silent (or, for a resend nobody acknowledged, never
    // showed it wants the bytes: no retransmission to an unproven receiver). A request's call fails on its own timer; a
    // response stays cached for a later status query to restart it.
    t.gave_up = true;
    return;
  }
  std::uint32_t resent = 0;
  for (std::uint32_t i = t.cum; i < t.next_new && resent < kTimeoutBurst; ++i) {
    if (!t.acked[i]) {
      queue_fragment(t, i);
      ++resent;
    }
  }
  flush_fragments();
  t.rto = std::min(t.rto * 2, opt_.rto_max);
  Transfer* tp = &t;
  t.timer = loop_.run_after(t.rto, [this, tp] { on_transfer_timer(*tp); });
}

void Engine::handle_fragment_ack(const Endpoint& from, const Header& h, std::span<const std::byte> p) {
  FragmentAck ack;
  if (!wire::decode_fragment_ack(p, ack)) {
    ++stats_.drops[static_cast<int>(wire::DecodeError::kBadPayload)];
    return;
  }
  ++stats_.fragment_acks_received;
  if (h.flags & wire::kFlagForResponse) {
    auto it = dedup_.find(Key{h.node_id, h.message_id});
    if (it == dedup_.end() || !it->second.transfer || it->second.reply_to != from) {
      ++stats_.drops_unexpected;
      return;
    }
    DedupEntry& e = it->second;
    apply_ack(*e.transfer, ack);
    if (e.transfer->done && e.response) {
      // Every fragment acknowledged: the caller holds the whole response,
      // so the cached body has no further use. Freeing it now, not when
      // the record expires, keeps a stream of large responses from holding
      // dedupMaxBytes of memory (and the allocator from walking through
      // fresh pages for every one).
      stats_.dedup_bytes -= e.response->size();
      e.response.reset();
      e.transfer->data.reset();
      e.delivered = true;
    }
    return;
  }
  auto it = calls_.find(h.message_id);
  if (it == calls_.end() || it->second.to != from || !it->second.transfer) {
    ++stats_.drops_unexpected;
    return;
  }
  Call& c = it->second;
  c.last_heard = loop_.now();
  apply_ack(*c.transfer, ack);
  if (c.transfer->done) c.request_delivered = true;
}

void Engine::apply_ack(Transfer& t, const FragmentAck& ack) {
  if (t.done) return;
  t.await_ack = false;  // the receiver is there and wants the rest
  const TimePoint now = loop_.now();
  const std::uint32_t upto =
      static_cast<std::uint32_t>(std::min<std::uint64_t>(t.count, std::uint64_t{ack.cumulative} + FragmentAck::kSackBits));
  bool progress = false;
  std::uint32_t highest = 0;
  for (std::uint32_t i = t.cum; i < upto; ++i) {
    if (ack.has(i)) {
      highest = i + 1;
      if (!t.acked[i]) {
        t.acked[i] = 1;
        ++t.acked_count;
        progress = true;
      }
    }
  }
  while (t.cum < t.count && t.acked[t.cum]) ++t.cum;
  if (progress) {
    t.last_progress = now;
    t.rto = rtt(t.to).rto();
  }
  if (t.acked_count == t.count) {
    t.done = true;
    loop_.cancel(t.timer);
    t.timer = kNoTimer;
    return;
  }
  // Fast retransmit: a hole below a fragment the receiver has is lost,
  // unless it was (re)sent too recently for its ack to have come back.
  const Duration fresh = std::max(rtt(t.to).srtt(), opt_.rto_min);
  for (std::uint32_t i = t.cum; i + 1 < highest && i < t.next_new; ++i) {
    if (!t.acked[i] && now - t.sent_at[i] >= fresh) queue_fragment(t, i);
  }
  if (progress) {
    loop_.cancel(t.timer);
    t.timer = kNoTimer;
  }
  pump(t);
}

namespace {
// What a partial message costs beyond its buffer: its map node, record and
// per-fragment bookkeeping (one byte per fragment).
constexpr std::uint64_t kPartialOverhead = 256;
// Partial messages at once, in total and per sender: bounds the bookkeeping
// of floods of tiny claims and the cost of choosing an eviction victim.
constexpr std::size_t kMaxPartials = 4096;
constexpr std::size_t kMaxPartialsPerPeer = 256;
}  // namespace

void Engine::free_partial(bool request, const Key& key) {
  auto& map = request ? partial_requests_ : partial_responses_;
  auto it = map.find(key);
  if (it == map.end()) return;
  partial_bytes_ -= it->second.charge;
  auto pb = partial_bytes_by_peer_.find(it->second.from);
  if (pb != partial_bytes_by_peer_.end() && (pb->second -= it->second.charge) == 0) partial_bytes_by_peer_.erase(pb);
  map.erase(it);
  stats_.reassembly_bytes = partial_bytes_;
  stats_.reassembly_partials = partial_requests_.size() + partial_responses_.size();
}

// Evicts the partials that made the least recent progress (no new fragment
// for the longest time), unknown senders' first, until `charge` more bytes
// fit in the sender's and the total budget. A sender that is not known may
// evict only unknown senders' partials, so a flood of fake claims cannot push
// out a member's transfer, while a member's new transfer can push out fakes.
bool Engine::make_room(const Endpoint& from, std::uint64_t charge, bool known) {
  auto peer_used = [&] {
    auto it = partial_bytes_by_peer_.find(from);
    return it == partial_bytes_by_peer_.end() ? std::uint64_t{0} : it->second;
  };
  auto peer_count = [&] {
    std::size_t n = 0;
    for (const auto* map : {&partial_requests_, &partial_responses_}) {
      for (const auto& [k, p] : *map) n += p.from == from;
    }
    return n;
  };
  if (charge > opt_.reassembly_max_bytes_per_peer || charge > opt_.reassembly_max_bytes_total) return false;
  for (;;) {
    const std::size_t count = partial_requests_.size() + partial_responses_.size();
    const bool peer_full = peer_used() + charge > opt_.reassembly_max_bytes_per_peer ||
                           (count > 0 && peer_count() >= kMaxPartialsPerPeer);
    const bool total_full = partial_bytes_ + charge > opt_.reassembly_max_bytes_total || count >= kMaxPartials;
    if (!peer_full && !total_full) return true;
    // The victim: over the sender's own budget, its own stalest partial;
    // else the stalest partial of an unknown sender, then (for a known
    // sender only) of a known one.
    const Partial* victim = nullptr;
    bool victim_request = false;
    Key victim_key{};
    for (const bool request : {true, false}) {
      for (const auto& [k, p] : request ? partial_requests_ : partial_responses_) {
        if (peer_full ? p.from != from : (p.known && (!known || (victim && !victim->known)))) continue;
        if (victim == nullptr || (victim->known && !p.known) ||
            (victim->known == p.known && p.last_activity < victim->last_activity)) {
          victim = &p;
          victim_request = request;
          victim_key = k;
        }
      }
    }
    if (victim == nullptr) return false;
    ++stats_.reassembly_evicted;
    free_partial(victim_request, victim_key);
  }
}

bool Engine::accept_fragment(const Endpoint& from, const Header& h, std::span<const std::byte> p,
                             Whole& complete) {
  const bool request = h.type == MsgType::kRequest;
  auto& map = request ? partial_requests_ : partial_responses_;
  const Key k{h.node_id, h.message_id};
  const TimePoint now = loop_.now();
  auto it = map.find(k);
  if (it == map.end()) {
    Partial part;
    part.from = from;
    part.count = h.fragment_count;
    part.frag_size = h.fragment_index + 1 < h.fragment_count
                         ? h.payload_len
                         : (h.total_len - h.payload_len) / (h.fragment_count - 1);
    if (static_cast<std::uint64_t>(part.frag_size) * (part.count - 1) >= h.total_len) {
      ++stats_.drops[static_cast<int>(wire::DecodeError::kBadTotalLength)];
      return false;
    }
    // Memory bound: everything the partial will hold is charged now, per
    // sender and in total; the buffer itself is only touched as fragments
    // arrive (no zero-fill of the claimed size on the loop thread).
    part.charge = h.total_len + part.count + kPartialOverhead;
    part.known = (path_.keyring() != nullptr) || (known_peer_ && known_peer_(from));
    if (!make_room(from, part.charge, part.known)) {
      ++stats_.reassembly_refused;
      return false;
    }
    part.total = h.total_len;
    part.data.reset(new std::byte[h.total_len]);  // default-initialised: not zero-filled
    part.have.assign(part.count, 0);
    part.deadline_us = h.deadline_us;
    part.last_activity = now;
    partial_bytes_by_peer_[from] += part.charge;
    partial_bytes_ += part.charge;
    it = map.emplace(k, std::move(part)).first;
    stats_.reassembly_bytes = partial_bytes_;
    stats_.reassembly_partials = partial_requests_.size() + partial_responses_.size();
  }
  Partial& part = it->second;
  // Acks of a request's fragments are replies (3x rule); acks of a
  // response's fragments go to a provider this node called.
  const Dest ack_dest = request ? reply_dest(from, h) : Dest::initiated(from);
  const std::uint32_t i = h.fragment_index;
  const std::size_t off = static_cast<std::size_t>(i) * part.frag_size;
  const std::size_t expect =
      i + 1 < part.count ? part.frag_size : part.total - static_cast<std::size_t>(part.frag_size) * (part.count - 1);
  if (h.fragment_count != part.count || h.total_len != part.total || part.from != from ||
      h.payload_len != expect) {
    ++stats_.drops[static_cast<int>(wire::DecodeError::kBadFragment)];
    return false;
  }
  if (part.have[i]) {
    // A repeat: the sender has not seen our acks. Tell it what we hold. A
    // repeat is not progress: it does not keep the partial alive.
    send_ack(ack_dest, h.type, h.message_id, part);
    return false;
  }
  part.last_activity = now;
  std::memcpy(part.data.get() + off, p.data(), expect);
  part.have[i] = 1;
  ++part.received;
  ++part.since_ack;
  while (part.cum < part.count && part.have[part.cum]) ++part.cum;
  if (part.received == part.count) {
    complete.data = std::move(part.data);
    complete.size = part.total;
    const std::uint32_t count = part.count;
    free_partial(request, k);
    send_complete_ack(ack_dest, h.type, h.message_id, count);
    return true;
  }
  const bool hole = i > part.cum;
  if (part.since_ack >= ack_every(part.frag_size) || (hole && part.since_ack >= kAckEveryWithHole)) {
    send_ack(ack_dest, h.type, h.message_id, part);
  }
  return false;
}

void Engine::send_ack(const Dest& to, MsgType acked_type, std::uint64_t id, const Partial& part) {
  FragmentAck ack;
  ack.cumulative = part.cum;
  for (std::uint32_t j = 0; j < FragmentAck::kSackBits && part.cum + j < part.count; ++j) {
    if (part.have[part.cum + j]) ack.set(part.cum + j);
  }
  const_cast<Partial&>(part).since_ack = 0;
  std::byte body[FragmentAck::kSize];
  wire::encode_fragment_ack(ack, body);
  Header h = header_for(MsgType::kFragmentAck, id, FragmentAck::kSize);
  h.flags = acked_type == MsgType::kResponse ? wire::kFlagForResponse : 0;
  ++stats_.fragment_acks_sent;
  send_datagram(h, body, to);
}

void Engine::send_complete_ack(const Dest& to, MsgType acked_type, std::uint64_t id,
                               std::uint32_t count) {
  Partial done;
  done.count = count;
  done.cum = count;
  send_ack(to, acked_type, id, done);
}

void Engine::sweep_partials() {
  const TimePoint now = loop_.now();
  std::vector<std::pair<bool, Key>> expired;
  for (const bool request : {true, false}) {
    for (const auto& [k, p] : request ? partial_requests_ : partial_responses_) {
      if (now - p.last_activity >= opt_.delivery_timeout) expired.emplace_back(request, k);
    }
  }
  for (const auto& [request, k] : expired) {
    ++stats_.reassembly_expired;
    free_partial(request, k);
  }
}

}  // namespace broach::reliable
