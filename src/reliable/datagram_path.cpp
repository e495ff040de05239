// DatagramPath: the one outgoing and the one incoming stage of a node.
#include "reliable/datagram_path.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/assert.hpp"
#include "base/log.hpp"

#include <sodium.h>

namespace broach::reliable {

namespace {
std::array<std::byte, 32> random_secret() {
  std::array<std::byte, 32> s;
  randombytes_buf(s.data(), s.size());
  return s;
}
}  // namespace

DatagramPath::DatagramPath(Loop& loop, Transport& transport, std::uint64_t max_message, PathSecurity security)
    : loop_(loop),
      transport_(transport),
      max_message_(max_message),
      scratch_(65536),
      opened_(65536),
      seal_outgoing_(security.seal_outgoing),
      verify_incoming_(security.verify_incoming),
      guard_(random_secret()) {
  set_keyring(std::move(security.keyring));
  transport_.set_receiver(this);
}

void DatagramPath::set_keyring(std::shared_ptr<const Keyring> ring) {
  MutexLock lock(rings_mu_);
  const Keyring* p = ring && !ring->empty() ? ring.get() : nullptr;
  if (ring) rings_.push_back(std::move(ring));
  ring_.store(p, std::memory_order_release);
}

bool DatagramPath::sealing() const {
  return seal_outgoing_ && keyring() != nullptr;
}

DatagramPath::~DatagramPath() {
  // The loop has stopped (owners destroy the path after it); what is still
  // queued is dropped like any datagram of a node that stops.
  if (idle_hook_ != 0) loop_.remove_idle_hook(idle_hook_);
  transport_.set_receiver(nullptr);
}

void DatagramPath::set_coalescing(std::size_t max_datagram) {
  coalesce_max_ = max_datagram;
  bundle_.resize(65536);
  if (max_datagram > 0 && idle_hook_ == 0) idle_hook_ = loop_.add_idle_hook([this] { flush(); });
}

std::size_t DatagramPath::coalesce_limit(const Endpoint& to) const {
  if (coalesce_max_ == 0) return 0;
  constexpr std::size_t kLoopbackDatagram = 65000;  // as the engine's fragments
  return to.loopback() ? std::max(coalesce_max_, kLoopbackDatagram) : coalesce_max_;
}

bool DatagramPath::transmit(const Endpoint& to, std::span<const std::byte> datagram) {
  stats_.datagrams_out.fetch_add(1, std::memory_order_relaxed);
  stats_.bytes_out.fetch_add(datagram.size(), std::memory_order_relaxed);
  if (transport_.send(to, datagram)) return true;
  stats_.send_failures.fetch_add(1, std::memory_order_relaxed);
  return false;
}

// Every outgoing datagram is finished here: header, payload and, when this
// node seals, the seal (the header with kFlagAuth, key id and counter is
// the associated data; the payload is encrypted in place; the tag follows).
std::size_t DatagramPath::encode_into(const wire::Header& h, std::span<const std::byte> payload,
                                      std::span<std::byte> slot) {
  const std::size_t n = wire::kHeaderSize + payload.size();
  const Keyring* ring = seal_outgoing_ ? keyring() : nullptr;
  if (ring == nullptr) {
    BROACH_ASSERT(n <= slot.size());
    wire::encode_header(h, slot);
    if (!payload.empty()) std::memcpy(slot.data() + wire::kHeaderSize, payload.data(), payload.size());
    return n;
  }
  BROACH_ASSERT(n + kTagSize <= slot.size());
  wire::Header sealed = h;
  const Key& key = ring->primary();
  sealed.flags |= wire::kFlagAuth;
  sealed.key_id = key.id;
  sealed.counter = counter_.fetch_add(1, std::memory_order_relaxed) + 1;
  wire::encode_header(sealed, slot);
  if (!payload.empty()) std::memcpy(slot.data() + wire::kHeaderSize, payload.data(), payload.size());
  seal(key, sealed.node_id, sealed.counter, std::span<const std::byte>(slot.data(), wire::kHeaderSize),
       slot.subspan(wire::kHeaderSize, payload.size()),
       std::span<std::byte, kTagSize>(slot.data() + n, kTagSize));
  return n + kTagSize;
}

bool DatagramPath::send(const Dest& to, const wire::Header& h, std::span<const std::byte> payload) {
  BROACH_ASSERT_IN_LOOP(loop_);
  // A metered reply goes alone, charged exactly what it costs (in a Bundle
  // it would share a header nobody was charged for).
  const bool metered = guard_.allowance(to, loop_.now()) != AddressGuard::kUnlimited;
  if (metered && !guard_.try_charge(to, wire_size(payload.size()), loop_.now())) return false;
  const std::size_t limit = metered ? 0 : coalesce_limit(to.addr);
  if (limit > 0 && 2 + wire_size(payload.size()) + wire::kHeaderSize <= limit) {
    enqueue(to.addr, h, payload, limit);
    return true;
  }
  const std::size_t n = encode_into(h, payload, scratch_);
  transmit(to.addr, std::span<const std::byte>(scratch_.data(), n));
  return true;
}

void DatagramPath::enqueue(const Endpoint& to, const wire::Header& h, std::span<const std::byte> payload,
                           std::size_t limit) {
  Queue& q = queues_[to];
  const std::size_t entry = 2 + wire::kHeaderSize + payload.size();
  // A Bundle: header, entries, tag.
  if (q.count > 0 && wire::kHeaderSize + q.entries.size() + entry + wire::kAuthTagSize > limit) flush_queue(to, q);
  if (!q.listed) {
    q.listed = true;
    dirty_.push_back(to);
  }
  const std::size_t off = q.entries.size();
  q.entries.resize(off + entry);
  const std::size_t len = entry - 2;
  q.entries[off] = static_cast<std::byte>(len & 0xff);
  q.entries[off + 1] = static_cast<std::byte>(len >> 8);
  wire::encode_header(h, std::span<std::byte>(q.entries.data() + off + 2, wire::kHeaderSize));
  if (!payload.empty()) std::memcpy(q.entries.data() + off + 2 + wire::kHeaderSize, payload.data(), payload.size());
  ++q.count;
}

void DatagramPath::flush_queue(const Endpoint& to, Queue& q) {
  if (q.count == 0) return;
  const std::span<const std::byte> entries(q.entries);
  // Our own encoding: the first entry's header decodes.
  wire::Header first;
  std::span<const std::byte> first_payload;
  const std::size_t first_len = static_cast<std::size_t>(entries[0]) | (static_cast<std::size_t>(entries[1]) << 8);
  wire::decode_datagram(entries.subspan(2, first_len), ~std::uint64_t{0}, first, first_payload);
  std::size_t n = 0;
  if (q.count == 1) {
    n = encode_into(first, first_payload, bundle_);  // alone: an ordinary datagram
  } else {
    wire::Header b;
    b.type = wire::MsgType::kBundle;
    b.node_id = first.node_id;
    b.sender_ip = first.sender_ip;
    b.sender_port = first.sender_port;
    b.total_len = static_cast<std::uint32_t>(entries.size());
    b.payload_len = static_cast<std::uint16_t>(entries.size());
    n = encode_into(b, entries, bundle_);
    ++stats_.bundles_out;
    stats_.bundled_out += q.count;
  }
  transmit(to, std::span<const std::byte>(bundle_.data(), n));
  q.entries.clear();
  q.count = 0;
}

void DatagramPath::flush() {
  BROACH_ASSERT_IN_LOOP(loop_);
  if (dirty_.empty()) return;
  for (const auto& to : dirty_) {
    auto it = queues_.find(to);
    if (it == queues_.end()) continue;
    flush_queue(to, it->second);
    it->second.listed = false;
  }
  dirty_.clear();
  // Keep the buffers of the peers of the moment, not of every peer ever.
  if (queues_.size() > 256) queues_.clear();
}

std::size_t DatagramPath::send_batch(const Dest& to, std::span<const std::span<const std::byte>> datagrams) {
  BROACH_ASSERT_IN_LOOP(loop_);
  std::size_t fit = 0, bytes = 0;
  const TimePoint now = loop_.now();
  while (fit < datagrams.size() && guard_.try_charge(to, datagrams[fit].size(), now)) {
    bytes += datagrams[fit++].size();
  }
  if (fit == 0) return datagrams.size();
  stats_.datagrams_out.fetch_add(fit, std::memory_order_relaxed);
  stats_.bytes_out.fetch_add(bytes, std::memory_order_relaxed);
  const std::size_t sent = transport_.send_batch(to.addr, datagrams.first(fit));
  if (sent < fit) stats_.send_failures.fetch_add(fit - sent, std::memory_order_relaxed);
  return datagrams.size() - fit;
}

std::span<const std::byte> DatagramPath::prepare(const wire::Header& h, std::span<const std::byte> payload) {
  // One buffer per thread: callers and workers encode without sharing.
  thread_local std::vector<std::byte> buf;
  const std::size_t n = wire::kHeaderSize + payload.size() + wire::kAuthTagSize;
  if (buf.size() < n) buf.resize(std::max<std::size_t>(n, 2048));
  return std::span<const std::byte>(buf.data(), encode_into(h, payload, buf));
}

bool DatagramPath::send_prepared(const Endpoint& to, std::span<const std::byte> datagram) {
  BROACH_ASSERT(can_send_from_any_thread());
  return transmit(to, datagram);
}

wire::DecodeError DatagramPath::open_sealed(const wire::Header& h, std::span<const std::byte> data,
                                           std::span<const std::byte>& payload) {
  const Keyring* ring = keyring();
  if (ring == nullptr) return wire::DecodeError::kUnauthenticated;
  const Key* key = ring->find(h.key_id);
  if (key == nullptr) return wire::DecodeError::kBadKeyId;
  // Open a copy: the transport's buffer is read-only, and a datagram that
  // fails must leave nothing behind.
  std::memcpy(opened_.data(), data.data(), data.size());
  const std::span<std::byte> body(opened_.data() + wire::kHeaderSize, h.payload_len);
  const std::span<const std::byte, kTagSize> tag(opened_.data() + wire::kHeaderSize + h.payload_len, kTagSize);
  if (!open(*key, h.node_id, h.counter, std::span<const std::byte>(opened_.data(), wire::kHeaderSize), body, tag)) {
    return wire::DecodeError::kBadAuth;
  }
  // Only now, with the counter authenticated, may it move the window.
  if (!replay_.accept(h.node_id, h.counter)) return wire::DecodeError::kReplayed;
  ++stats_.sealed_in;
  payload = body;
  return wire::DecodeError::kOk;
}

// A Bundle's entries are checked like datagrams of their own; they inherit
// the Bundle's seal (their own flags may not claim one) and must come from
// the same sender.
void DatagramPath::deliver_bundle(const Endpoint& from, const wire::Header& outer, std::span<const std::byte> body) {
  if (outer.fragment_count != 1) {
    drop(wire::DecodeError::kBadFragment);
    return;
  }
  ++stats_.bundles_in;
  const bool sealed = (outer.flags & wire::kFlagAuth) != 0;
  while (!body.empty()) {
    if (body.size() < 2) {
      drop(wire::DecodeError::kBadPayload);
      return;
    }
    const std::size_t len = static_cast<std::size_t>(body[0]) | (static_cast<std::size_t>(body[1]) << 8);
    body = body.subspan(2);
    if (len > body.size()) {
      drop(wire::DecodeError::kBadPayload);
      return;
    }
    const auto d = body.first(len);
    body = body.subspan(len);
    wire::Header h;
    std::span<const std::byte> payload;
    const auto err = wire::decode_datagram(d, max_message_, h, payload);
    if (err != wire::DecodeError::kOk && err != wire::DecodeError::kTooLarge) {
      drop(err);
      continue;
    }
    if (h.type == wire::MsgType::kBundle || (h.flags & wire::kFlagAuth) || h.node_id != outer.node_id) {
      drop(wire::DecodeError::kBadPayload);
      continue;
    }
    ++stats_.bundled_in;
    if (sealed) h.flags |= wire::kFlagAuth;
    if (sink_ == nullptr) continue;
    if (err == wire::DecodeError::kTooLarge) {
      drop(err);
      sink_->on_too_large(from, h);
    } else {
      sink_->on_packet(from, h, payload);
    }
  }
}

void DatagramPath::on_unreachable(const Endpoint& to, std::span<const std::byte> sent) {
  BROACH_ASSERT_IN_LOOP(loop_);
  wire::Header h;
  if (wire::decode_header(sent, h) != wire::DecodeError::kOk) {
    ++stats_.unreachable_bad;
    return;
  }
  ++stats_.unreachable_in;
  if (sink_ == nullptr) return;
  if (h.type != wire::MsgType::kBundle || (h.flags & wire::kFlagAuth) != 0) {
    sink_->on_unreachable(to, h);  // a sealed Bundle's parts are encrypted: the next retransmission tells
    return;
  }
  // A plaintext Bundle: each part whose header the quote holds.
  auto body = sent.subspan(wire::kHeaderSize);
  while (body.size() >= 2 + wire::kHeaderSize) {
    const std::size_t len = static_cast<std::size_t>(body[0]) | (static_cast<std::size_t>(body[1]) << 8);
    wire::Header part;
    if (wire::decode_header(body.subspan(2), part) != wire::DecodeError::kOk || part.node_id != h.node_id) return;
    sink_->on_unreachable(to, part);
    if (len + 2 > body.size()) return;
    body = body.subspan(2 + len);
  }
}

void DatagramPath::on_datagram(const Endpoint& from, std::span<const std::byte> data) {
  BROACH_ASSERT_IN_LOOP(loop_);
  ++stats_.datagrams_in;
  stats_.bytes_in += data.size();
  wire::Header h;
  std::span<const std::byte> payload;
  auto err = wire::decode_datagram(data, max_message_, h, payload);
  const bool too_large = err == wire::DecodeError::kTooLarge;
  if (err != wire::DecodeError::kOk && !too_large) {
    drop(err);
    BROACH_LOG_DEBUG("drop datagram from {}: {}", from.to_string(), wire::decode_error_name(err));
    return;
  }
  if (h.flags & wire::kFlagAuth) {
    // A too-large datagram's lengths were checked before the size limit.
    err = open_sealed(h, data, payload);
    if (err != wire::DecodeError::kOk) {
      drop(err);
      return;
    }
  } else if (verify_incoming_ && keyring() != nullptr) {
    drop(wire::DecodeError::kUnsealed);
    return;
  } else {
    // Unauthenticated bytes: the credit for replies to this address.
    guard_.received(from, data.size(), loop_.now());
  }
  if (h.type == wire::MsgType::kBundle) {
    deliver_bundle(from, h, payload);
    return;
  }
  if (too_large) {
    // The header is sound (and authentic when sealed): the sink tells the
    // other side clearly instead of letting it time out.
    drop(wire::DecodeError::kTooLarge);
    if (sink_ != nullptr) sink_->on_too_large(from, h);
    return;
  }
  if (sink_ != nullptr) sink_->on_packet(from, h, payload);
}

}  // namespace broach::reliable
