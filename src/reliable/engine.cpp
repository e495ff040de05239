// Engine: construction, datagram dispatch, shared send helpers.
#include "reliable/engine.hpp"

#include "base/assert.hpp"
#include "base/log.hpp"

namespace broach::reliable {

using wire::Header;
using wire::MsgType;

namespace {
// Also bounds how long lazily posted bookkeeping (Loop::try_post_lazy) waits.
constexpr Duration kHousekeepingPeriod = std::chrono::milliseconds(25);
// A peer's RTT estimate is forgotten after this long unused (a new call to
// it starts again from rtoInitialMs).
constexpr Duration kPeerIdle = std::chrono::minutes(5);
}

Engine::Engine(Loop& loop, Transport& transport, const EngineOptions& options,
               RequestHandler* handler)
    : loop_(loop), opt_(options), path_(loop, transport, options.max_message, options.security), handler_(handler) {
  BROACH_REQUIRE(opt_.max_datagram > wire::kHeaderSize + wire::kAuthTagSize + 64 &&
                     opt_.max_datagram <= 65507,
                 "max_datagram out of range");
  if (opt_.send_window < 8) opt_.send_window = 8;
  path_.set_sink(this);
  if (opt_.coalesce) path_.set_coalescing(opt_.max_datagram);
  fragment_hook_ = loop_.add_idle_hook([this] { flush_fragments(); });
  schedule_housekeeping();
}

Engine::~Engine() {
  path_.set_sink(nullptr);
  loop_.remove_idle_hook(fragment_hook_);
  loop_.cancel(housekeeping_);
  for (auto& [id, c] : calls_) {
    loop_.cancel(c.timer);
    if (c.transfer) loop_.cancel(c.transfer->timer);
  }
  for (auto& [k, e] : dedup_) {
    if (e.transfer) loop_.cancel(e.transfer->timer);
  }
}

std::uint32_t Engine::frag_payload() const {
  return static_cast<std::uint32_t>(DatagramPath::max_payload(opt_.max_datagram));
}

std::uint32_t Engine::frag_payload_for(const Endpoint& to) const {
  constexpr std::uint32_t kLoopbackDatagram = 65000;
  if (opt_.loopback_large && to.loopback() && opt_.max_datagram < kLoopbackDatagram) {
    return kLoopbackDatagram - static_cast<std::uint32_t>(wire::kHeaderSize + wire::kAuthTagSize);
  }
  return frag_payload();
}

std::uint32_t Engine::window_for(std::uint32_t frag_size) const {
  constexpr std::uint64_t kWindowBytes = 1u << 20;
  const auto by_bytes = static_cast<std::uint32_t>(std::max<std::uint64_t>(8, kWindowBytes / frag_size));
  return std::min(static_cast<std::uint32_t>(opt_.send_window), by_bytes);
}

RttEstimator& Engine::rtt(const Endpoint& peer) {
  auto it = rtt_.find(peer);
  if (it == rtt_.end()) {
    it = rtt_.emplace(peer, PeerTiming{RttEstimator(opt_.rto_initial, opt_.rto_min, opt_.rto_max), {}}).first;
  }
  it->second.last_used = loop_.now();
  return it->second.rtt;
}

bool Engine::send_datagram(const Header& h, std::span<const std::byte> payload, const Dest& to) {
  if (path_.send(to, h, payload)) return true;
  ++stats_.amplification_limited;
  return false;
}

std::size_t Engine::message_wire_size(std::size_t payload_len, const Endpoint& to) const {
  const std::size_t fp = frag_payload_for(to);
  const std::size_t count = payload_len <= fp ? 1 : (payload_len + fp - 1) / fp;
  return count * path_.wire_size(0) + payload_len;
}

Header Engine::header_for(MsgType type, std::uint64_t id, std::size_t payload_len) const {
  Header h;
  h.type = type;
  h.node_id = opt_.node_id;
  h.sender_ip = opt_.advertised.ip;  // 0 for an IPv6 node (informational only)
  h.sender_port = opt_.advertised.port;
  h.message_id = id;
  h.total_len = static_cast<std::uint32_t>(payload_len);
  h.payload_len = static_cast<std::uint16_t>(payload_len);
  return h;
}

void Engine::send_error_response(const Dest& to, std::uint64_t id, Errc code, const std::string& message) {
  Bytes body;
  wire::encode_response_error(code, message, body);
  send_datagram(header_for(MsgType::kResponse, id, body.size()), body, to);
}

void Engine::send_control(MsgType type, std::uint64_t id, const Dest& to, std::uint16_t flags) {
  Header h = header_for(type, id, 0);
  h.flags = flags;
  send_datagram(h, {}, to);
}

bool Engine::send_extension(MsgType type, const Dest& to, std::span<const std::byte> payload) {
  BROACH_ASSERT_IN_LOOP(loop_);
  if (payload.size() > frag_payload()) return false;
  return send_datagram(header_for(type, 0, payload.size()), payload, to);
}

std::size_t Engine::extension_allowance(const Dest& to) {
  BROACH_ASSERT_IN_LOOP(loop_);
  const std::uint64_t a = path_.allowance(to);
  const std::size_t overhead = path_.wire_size(0);
  if (a <= overhead) return 0;
  return static_cast<std::size_t>(std::min<std::uint64_t>(a - overhead, frag_payload()));
}

void Engine::mark_proven(const Endpoint& addr, std::uint64_t node_id) {
  BROACH_ASSERT_IN_LOOP(loop_);
  path_.guard().mark_proven(addr, node_id, loop_.now());
}

void Engine::on_packet(const Endpoint& from, const Header& h, std::span<const std::byte> payload) {
  BROACH_ASSERT_IN_LOOP(loop_);
  switch (h.type) {
    case MsgType::kRequest: handle_request(from, h, payload); break;
    case MsgType::kResponse: handle_response(from, h, payload); break;
    case MsgType::kInProgress: handle_in_progress(from, h); break;
    case MsgType::kFragmentAck: handle_fragment_ack(from, h, payload); break;
    case MsgType::kStatusQuery: handle_status_query(from, h); break;
    case MsgType::kUnknownCall: handle_unknown_call(from, h); break;
    case MsgType::kChallenge: handle_challenge(from, h, payload); break;
    case MsgType::kAddressProof: handle_address_proof(from, h, payload); break;
    case MsgType::kBundle: ++stats_.drops_unexpected; break;  // opened by the path, never passed on
    case MsgType::kPing:
    case MsgType::kGossip:
      if (extension_ != nullptr) {
        extension_->on_extension(from, h, payload);
      } else {
        ++stats_.drops_unexpected;
      }
      break;
  }
}

void Engine::on_too_large(const Endpoint& from, const Header& h) { reject_too_large(from, h); }

void Engine::reject_too_large(const Endpoint& from, const Header& h) {
  const std::string what = std::to_string(h.total_len) + " bytes exceeds maxMessageBytes " +
                           std::to_string(opt_.max_message) + " of " +
                           opt_.advertised.to_string();
  if (h.type == MsgType::kRequest && h.fragment_index == 0) {
    send_error_response(reply_dest(from, h), h.message_id, Errc::kMessageTooLarge, "request of " + what);
  } else if (h.type == MsgType::kResponse) {
    auto it = calls_.find(h.message_id);
    if (it != calls_.end() && it->second.to == from) {
      send_complete_ack(Dest::initiated(from), MsgType::kResponse, h.message_id, h.fragment_count);
      finish_call(h.message_id, CallResult{Errc::kMessageTooLarge, {}, "response of " + what});
    }
  }
}

void Engine::sweep_peers() {
  const TimePoint now = loop_.now();
  if (now < next_peer_sweep_) return;
  next_peer_sweep_ = now + std::chrono::seconds(10);
  path_.guard().sweep(now);
  for (auto it = rtt_.begin(); it != rtt_.end();) {
    it = now - it->second.last_used > kPeerIdle ? rtt_.erase(it) : std::next(it);
  }
  stats_.peers_tracked = rtt_.size();
}

void Engine::schedule_housekeeping() {
  housekeeping_ = loop_.run_after(kHousekeepingPeriod, [this] {
    sweep_dedup();
    sweep_partials();
    sweep_peers();
    schedule_housekeeping();
  });
}

}  // namespace broach::reliable
