// Engine, caller side: starting calls, retransmission and polling, and
// completing calls from responses, in-progress notes and unknown-call replies.
#include <algorithm>

#include "base/log.hpp"
#include "reliable/engine.hpp"

namespace broach::reliable {

using wire::Header;
using wire::MsgType;

namespace {

std::uint32_t remaining_us(TimePoint deadline, TimePoint now) {
  if (deadline == TimePoint::max()) return 0;
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(deadline - now).count();
  if (us <= 0) return 1;
  return us > 0xffffffffLL ? 0xffffffffu : static_cast<std::uint32_t>(us);
}

std::string ms_text(Duration d) { return std::to_string(static_cast<long long>(to_ms(d))) + " ms"; }

}  // namespace

void Engine::call(const Endpoint& to, Bytes payload, TimePoint deadline, Completion done) {
  BROACH_ASSERT_IN_LOOP(loop_);
  ++stats_.calls_started;
  const TimePoint now = loop_.now();
  if (payload.size() > opt_.max_message) {
    ++stats_.calls_failed;
    ++stats_.failures[static_cast<int>(Errc::kMessageTooLarge)];
    done(CallResult{Errc::kMessageTooLarge, {},
                    "request of " + std::to_string(payload.size()) +
                        " bytes exceeds maxMessageBytes " + std::to_string(opt_.max_message)});
    return;
  }
  if (deadline <= now) {
    ++stats_.calls_failed;
    ++stats_.failures[static_cast<int>(Errc::kCallTimeout)];
    done(CallResult{Errc::kCallTimeout, {}, "deadline already passed"});
    return;
  }
  start_call(add_call(allocate_id(), to, std::move(payload), deadline, now, std::move(done)));
}

Engine::Call& Engine::add_call(std::uint64_t id, const Endpoint& to, Bytes payload,
                               TimePoint deadline, TimePoint started, Completion done) {
  Call c;
  c.id = id;
  c.to = to;
  c.payload = std::make_shared<const Bytes>(std::move(payload));
  c.deadline = deadline;
  c.started = started;
  c.last_heard = started;
  c.interval = rtt(to).rto();
  c.done = std::move(done);
  return calls_.emplace(id, std::move(c)).first->second;
}

void Engine::arm_call_timer(Call& c, TimePoint now) {
  loop_.cancel(c.timer);
  const TimePoint next = std::min({c.deadline, now + c.interval, c.last_heard + opt_.delivery_timeout});
  const std::uint64_t id = c.id;
  c.timer = loop_.run_at(next, [this, id] { on_call_timer(id); });
}

Engine::Call& Engine::adopt_call(std::uint64_t id, const Endpoint& to, Bytes payload,
                                 TimePoint deadline, TimePoint sent_at, Completion done) {
  ++stats_.calls_started;
  ++stats_.requests_sent;
  Call& c = add_call(id, to, std::move(payload), deadline, sent_at, std::move(done));
  c.attempts = 1;
  arm_call_timer(c, sent_at);
  return c;
}

void Engine::call_from_any_thread(const Endpoint& to, Bytes payload, TimePoint deadline,
                                  TimePoint now, Completion done, bool lazy) {
  if (loop_.in_loop_thread()) {
    call(to, std::move(payload), deadline, std::move(done));
    return;
  }
  auto shared_done = std::make_shared<Completion>(std::move(done));
  auto stopped = [&shared_done] { (*shared_done)(CallResult{Errc::kShutdown, {}, "node is stopping"}); };
  if (!path_.can_send_from_any_thread() || payload.size() > frag_payload() || deadline <= now) {
    if (!loop_.try_post([this, to, payload = std::move(payload), deadline, shared_done]() mutable {
          call(to, std::move(payload), deadline, std::move(*shared_done));
        })) {
      stopped();
    }
    return;
  }
  // This thread sends the one datagram itself; the loop adopts the call.
  // The adoption is posted before the send, and the loop runs posted tasks
  // before it reads datagrams, so the response always finds the call.
  const std::uint64_t id = allocate_id();
  Header h = header_for(MsgType::kRequest, id, payload.size());
  h.deadline_us = remaining_us(deadline, now);
  const auto datagram = path_.prepare(h, payload);  // before `payload` moves into the call
  auto adopt = [this, id, to, payload = std::move(payload), deadline, now, shared_done]() mutable {
    adopt_call(id, to, std::move(payload), deadline, now, std::move(*shared_done));
  };
  if (!(lazy ? loop_.try_post_lazy(std::move(adopt)) : loop_.try_post(std::move(adopt)))) {
    stopped();
    return;
  }
  path_.send_prepared(to, datagram);
}

void Engine::start_call(Call& c) {
  const TimePoint now = loop_.now();
  ++c.attempts;
  ++stats_.requests_sent;
  send_message(MsgType::kRequest, c.id, Dest::initiated(c.to), c.payload, remaining_us(c.deadline, now),
               &c.transfer);
  arm_call_timer(c, now);
}

void Engine::on_call_timer(std::uint64_t id) {
  BROACH_ASSERT_IN_LOOP(loop_);
  auto it = calls_.find(id);
  if (it == calls_.end()) return;
  Call& c = it->second;
  c.timer = kNoTimer;
  const TimePoint now = loop_.now();
  if (now >= c.deadline) {
    finish_call(id, CallResult{Errc::kCallTimeout, {},
                               "no response from " + c.to.to_string() + " within " +
                                   ms_text(c.deadline - c.started) + " (" +
                                   std::to_string(c.attempts) + " sends)"});
    return;
  }
  if (now - c.last_heard >= opt_.delivery_timeout) {
    finish_call(id, CallResult{Errc::kDeliveryTimeout, {},
                               "no answer from " + c.to.to_string() + " for " +
                                   ms_text(opt_.delivery_timeout) + " (udpTimeOut)"});
    return;
  }
  // The provider's pace is unknown while it runs the handler: poll, but
  // often enough that a silent provider is noticed within udpTimeOut.
  // Backoff is capped at a twentieth of udpTimeOut: on a lossy (not
  // congested) LAN a call then gets over twenty tries before it gives up.
  const Duration poll_cap = std::max<Duration>(opt_.rto_min, opt_.delivery_timeout / 20);
  if (c.transfer && !c.transfer->done) {
    // The fragmented request is still being delivered; its own timer
    // retransmits. Only the deadline and silence checks above apply.
  } else if (!c.request_delivered && !c.in_progress) {
    ++stats_.retransmits;
    ++c.attempts;
    ++stats_.requests_sent;
    send_message(MsgType::kRequest, c.id, Dest::initiated(c.to), c.payload, remaining_us(c.deadline, now),
                 nullptr);
    c.interval = std::min(c.interval * 2, std::min(opt_.rto_max, poll_cap));
  } else {
    ++stats_.status_queries;
    send_control(MsgType::kStatusQuery, c.id, Dest::initiated(c.to));
    c.interval = std::min(c.interval * 2, poll_cap);
  }
  arm_call_timer(c, now);
}

void Engine::finish_call(std::uint64_t id, CallResult&& r) {
  auto it = calls_.find(id);
  if (it == calls_.end()) return;
  Call c = std::move(it->second);
  calls_.erase(it);
  loop_.cancel(c.timer);
  if (c.transfer) loop_.cancel(c.transfer->timer);
  r.sends = static_cast<std::uint32_t>(c.attempts);
  if (r.code == Errc::kOk) {
    ++stats_.calls_ok;
  } else {
    ++stats_.calls_failed;
    const auto code = static_cast<std::size_t>(r.code);
    if (code < std::size(stats_.failures)) ++stats_.failures[code];
  }
  c.done(std::move(r));
}

void Engine::handle_response(const Endpoint& from, const Header& h, std::span<const std::byte> p) {
  auto it = calls_.find(h.message_id);
  if (it == calls_.end() || it->second.to != from) {
    ++stats_.late_responses;
    // Tell the provider to stop sending the rest of a big late response.
    if (h.fragment_count > 1) {
      send_complete_ack(Dest::initiated(from), MsgType::kResponse, h.message_id, h.fragment_count);
    }
    return;
  }
  Call& c = it->second;
  const TimePoint now = loop_.now();
  c.last_heard = now;
  if (h.fragment_count == 1) {
    // Karn's rule: only an exchange that was sent once gives an RTT sample.
    if (c.attempts == 1 && !c.in_progress && !c.transfer) rtt(c.to).sample(now - c.started);
    complete_response(h.message_id, p);
    return;
  }
  c.request_delivered = true;
  Whole whole;
  if (accept_fragment(from, h, p, whole)) complete_response(h.message_id, whole.view());
}

void Engine::complete_response(std::uint64_t id, std::span<const std::byte> payload) {
  wire::ResponseView rv;
  if (!wire::decode_response(payload, rv)) {
    ++stats_.drops[static_cast<int>(wire::DecodeError::kBadPayload)];
    finish_call(id, CallResult{Errc::kProtocolError, {}, "malformed response body"});
    return;
  }
  CallResult r;
  r.code = rv.code;
  if (rv.code == Errc::kOk) {
    r.body.assign(rv.body.begin(), rv.body.end());
  } else {
    r.message = std::move(rv.message);
  }
  finish_call(id, std::move(r));
}

void Engine::handle_in_progress(const Endpoint& from, const Header& h) {
  auto it = calls_.find(h.message_id);
  if (it == calls_.end() || it->second.to != from) {
    ++stats_.drops_unexpected;
    return;
  }
  Call& c = it->second;
  const TimePoint now = loop_.now();
  c.last_heard = now;
  c.in_progress = true;
  c.request_delivered = true;
  // Stop retransmitting; poll at the current interval to recover a lost
  // response and to notice a provider that dies while running the call.
  arm_call_timer(c, now);
}

// The provider holds our response but has not seen proof that this address
// receives what is sent to it (the 3x rule): echo its token. The response
// follows the proof; if either is lost, the next status query brings a new
// challenge.
void Engine::handle_challenge(const Endpoint& from, const Header& h, std::span<const std::byte> p) {
  auto it = calls_.find(h.message_id);
  const bool in_flight = it != calls_.end() && it->second.to == from;
  // Answered for a call in flight, or (a provider asking after a response)
  // for a peer this node calls: never for a stranger, so no reflection.
  if (p.size() != AddressGuard::kTokenSize || (!in_flight && !rtt_.count(from))) {
    ++stats_.drops_unexpected;
    return;
  }
  send_datagram(header_for(MsgType::kAddressProof, h.message_id, p.size()), p, Dest::initiated(from));
  if (in_flight) handle_in_progress(from, h);  // it ran: poll as for a running call
}

void Engine::handle_unknown_call(const Endpoint& from, const Header& h) {
  auto it = calls_.find(h.message_id);
  if (it == calls_.end() || it->second.to != from) {
    ++stats_.drops_unexpected;
    return;
  }
  Call& c = it->second;
  if (c.in_progress) {
    // The provider had the call and no longer knows it: it restarted. The
    // handler may or may not have run, so the call cannot simply be resent.
    finish_call(c.id, CallResult{Errc::kDeliveryTimeout, {},
                                 "provider " + c.to.to_string() +
                                     " lost the call while running it (restarted?)"});
    return;
  }
  c.last_heard = loop_.now();
  c.request_delivered = false;
  ++stats_.retransmits;
  start_call(c);
}

void Engine::fail_all(Errc code, const std::string& message) {
  BROACH_ASSERT_IN_LOOP(loop_);
  std::vector<std::uint64_t> ids;
  ids.reserve(calls_.size());
  for (const auto& [id, c] : calls_) ids.push_back(id);
  for (auto id : ids) finish_call(id, CallResult{code, {}, message});
}

void Engine::on_unreachable(const Endpoint& to, const wire::Header& h) {
  BROACH_ASSERT_IN_LOOP(loop_);
  if (h.node_id != opt_.node_id) {
    ++stats_.port_unreachable_foreign;
    return;
  }
  ++stats_.port_unreachable;
  // Only the call whose own datagram bounced: a request (any fragment), a
  // status query, an address proof or an ack of its response's fragments,
  // with its id, sent to this address. Other calls to the address learn it
  // from their next retransmission or poll (RTO-bounded); the router opens
  // the provider's breaker on this one, so new calls go elsewhere. A quote
  // of a datagram that is not a call's (a response we served, a ping) ends
  // nothing.
  const bool about_a_call = h.type == MsgType::kRequest || h.type == MsgType::kStatusQuery ||
                            h.type == MsgType::kAddressProof ||
                            (h.type == MsgType::kFragmentAck && (h.flags & wire::kFlagForResponse) != 0);
  if (!about_a_call) return;
  auto it = calls_.find(h.message_id);
  if (it == calls_.end() || it->second.to != to) return;
  ++stats_.calls_peer_gone;
  finish_call(h.message_id,
              CallResult{Errc::kPeerGone, {}, "no process listens at " + to.to_string() + " (ICMP port unreachable)"});
}

}  // namespace broach::reliable
