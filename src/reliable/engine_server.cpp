// Engine, provider side: at-most-once delivery of requests to the handler,
// the dedup record, responses and their cache, status queries.
#include <algorithm>

#include "base/burst.hpp"
#include "base/log.hpp"
#include "reliable/engine.hpp"

namespace broach::reliable {

using wire::Header;
using wire::MsgType;

namespace {
// How long a finished record outlives the caller's deadline. The caller never
// sends after its deadline, so past this no duplicate can arrive; the margin
// covers datagrams still in flight.
constexpr Duration kNoDeadlineKeep = std::chrono::seconds(60);
}  // namespace

void Engine::handle_request(const Endpoint& from, const Header& h, std::span<const std::byte> p) {
  const Key k{h.node_id, h.message_id};
  auto it = dedup_.find(k);
  if (it != dedup_.end()) {
    ++stats_.duplicate_requests;
    DedupEntry& e = it->second;
    if (from != e.reply_to) {
      // Only the address the request came from is answered: a copy from
      // elsewhere must not make this node send to someone else.
      ++stats_.amplification_limited;
      return;
    }
    if (h.fragment_count > 1) {
      // A retransmitted fragment of a request we hold whole: the caller
      // missed our final ack.
      send_complete_ack(reply_dest(from, h), MsgType::kRequest, h.message_id, h.fragment_count);
      return;
    }
    if (!e.finished) {
      ++stats_.in_progress_sent;
      send_control(MsgType::kInProgress, h.message_id, reply_dest(from, h));
    } else {
      resend_response(e, k, false);
    }
    return;
  }
  if (h.fragment_count == 1) {
    deliver_request(from, h, p);
    return;
  }
  Whole whole;
  if (accept_fragment(from, h, p, whole)) deliver_request(from, h, whole.view());
}

void Engine::deliver_request(const Endpoint& from, const Header& h, std::span<const std::byte> p) {
  const Key k{h.node_id, h.message_id};
  const TimePoint now = loop_.now();
  // Keep the at-most-once table bounded: make room by forgetting the
  // finished records that expire first.
  while (dedup_.size() >= opt_.dedup_max_entries &&
         (!dedup_expiry_.empty() || !tomb_expiry_.empty())) {
    auto& heap = !dedup_expiry_.empty() ? dedup_expiry_ : tomb_expiry_;
    const Key victim = heap.top().second;
    heap.pop();
    auto v = dedup_.find(victim);
    if (v == dedup_.end() || !v->second.finished) continue;
    if (v->second.response) stats_.dedup_bytes -= v->second.response->size();
    if (v->second.transfer) loop_.cancel(v->second.transfer->timer);
    dedup_.erase(v);
    ++stats_.dedup_evicted;
  }
  if (dedup_.size() >= opt_.dedup_max_entries) {
    // Every record is a running call: refuse rather than forget one.
    send_error_response(reply_dest(from, h), h.message_id, Errc::kOverloaded, "too many calls in progress");
    return;
  }
  ++stats_.requests_received;
  DedupEntry& e = dedup_[k];
  e.reply_to = from;
  e.sealed = (h.flags & wire::kFlagAuth) != 0;
  e.deadline = h.deadline_us ? now + std::chrono::microseconds(h.deadline_us) : TimePoint::max();
  stats_.dedup_entries = dedup_.size();

  wire::RequestView rv;
  RequestToken token{h.node_id, h.message_id, from, e.sealed, 0};
  // Reserve the reply bytes one response datagram may need (or what is left
  // of the caller's 3x allowance), so that a response that fits can leave
  // from a worker thread without asking the loop.
  const std::uint64_t allowed = path_.allowance(token.dest());
  if (allowed == AddressGuard::kUnlimited) {
    token.reserved = RequestToken::kUnmetered;
  } else {
    token.reserved = static_cast<std::uint32_t>(std::min<std::uint64_t>(allowed, path_.wire_size(frag_payload_for(from))));
    path_.reserve(token.dest(), token.reserved);
  }
  if (!wire::decode_request(p, rv)) {
    ++stats_.drops[static_cast<int>(wire::DecodeError::kBadPayload)];
    Bytes body;
    wire::encode_response_error(Errc::kProtocolError, "malformed request body", body);
    respond(token, std::move(body));
    return;
  }
  if (handler_ == nullptr) {
    Bytes body;
    wire::encode_response_error(Errc::kNotFound, std::string(rv.service), body);
    respond(token, std::move(body));
    return;
  }
  IncomingRequest req;
  req.token = token;
  req.service.assign(rv.service);
  req.args.assign(rv.args.begin(), rv.args.end());
  req.metadata.assign(rv.metadata.begin(), rv.metadata.end());
  req.deadline = e.deadline;
  req.received = loop_.now();
  handler_->on_request(std::move(req));
}

Bytes request_payload(std::string_view service, std::span<const std::byte> args,
                      std::span<const std::byte> metadata) {
  Bytes out;
  wire::encode_request(service, args, out, metadata);
  return out;
}

namespace {
Bytes response_payload(CallResult&& r) {
  Bytes body;
  if (r.code == Errc::kOk) {
    wire::encode_response_ok(r.body, body);
  } else {
    wire::encode_response_error(r.code, r.message, body);
  }
  return body;
}
}  // namespace

void Engine::respond(const RequestToken& token, CallResult&& r) {
  respond(token, response_payload(std::move(r)));
}

// A pool worker's responses held back until the end of its burst
// (base/burst.hpp): per thread, for one engine at a time.
namespace {
struct Outbox {
  Engine* engine = nullptr;
  std::vector<std::pair<RequestToken, Bytes>> items;
};
thread_local Outbox tls_outbox;
}  // namespace

void Engine::respond_from_any_thread(const RequestToken& token, CallResult&& r) {
  Bytes body = response_payload(std::move(r));
  if (loop_.in_loop_thread()) {
    respond(token, std::move(body));
    return;
  }
  if (opt_.coalesce && burst::active()) {
    Outbox& o = tls_outbox;
    if (o.engine != this && !o.items.empty()) flush_outbox(o.engine);
    o.engine = this;
    o.items.emplace_back(token, std::move(body));
    burst::defer(&Engine::flush_outbox, this);
    return;
  }
  respond_now(token, std::move(body));
}

// The calling thread's held responses for `engine`: one goes out from this
// thread at once; several go to the loop in one task, which sends them
// coalesced (a Bundle per peer) at the end of its iteration.
void Engine::flush_outbox(void* engine) {
  Outbox& o = tls_outbox;
  auto* e = static_cast<Engine*>(engine);
  if (o.engine != e || o.items.empty()) return;
  if (o.items.size() == 1) {
    auto [token, body] = std::move(o.items.front());
    o.items.clear();
    e->respond_now(token, std::move(body));
    return;
  }
  auto items = std::move(o.items);
  o.items.clear();
  e->loop_.try_post([e, items = std::move(items)]() mutable {
    for (auto& [token, body] : items) e->respond(token, std::move(body));
  });
}

void Engine::respond_now(const RequestToken& token, Bytes&& body) {
  // A single-datagram response goes out from this thread at once; caching it
  // for duplicates can wait for the loop's next wake-up instead of waking it
  // now. A duplicate that slips in between gets "in progress", which is
  // harmless.
  if (path_.can_send_from_any_thread() && body.size() <= frag_payload() &&
      path_.wire_size(body.size()) <= token.reserved) {
    path_.send_from_any_thread(token.reply_to, header_for(MsgType::kResponse, token.message_id, body.size()), body);
    loop_.try_post_lazy([this, token, body = std::move(body)]() mutable { respond(token, std::move(body), true); });
    return;
  }
  loop_.try_post([this, token, body = std::move(body)]() mutable { respond(token, std::move(body)); });
}

void Engine::respond(const RequestToken& token, Bytes payload, bool already_sent) {
  BROACH_ASSERT_IN_LOOP(loop_);
  const Key k{token.node_id, token.message_id};
  if (payload.size() > opt_.max_message) {
    const std::string what = "response of " + std::to_string(payload.size()) +
                             " bytes exceeds maxMessageBytes " + std::to_string(opt_.max_message);
    payload.clear();
    wire::encode_response_error(Errc::kMessageTooLarge, what, payload);
  }
  auto it = dedup_.find(k);
  auto shared = std::make_shared<const Bytes>(std::move(payload));
  ++stats_.responses_sent;
  if (!already_sent && token.reserved != RequestToken::kUnmetered) {
    path_.refund(token.reply_to, token.reserved);  // charged again as it is sent
  }
  if (it == dedup_.end()) {
    // The record was dropped (cannot happen for running calls, which are
    // never evicted); answer anyway.
    if (!already_sent) send_message(MsgType::kResponse, token.message_id, token.dest(), shared, 0, nullptr);
    return;
  }
  DedupEntry& e = it->second;
  const TimePoint now = loop_.now();
  e.finished = true;
  e.response = shared;
  e.last_resend = now;
  e.expires = (e.deadline == TimePoint::max() ? now + kNoDeadlineKeep : std::max(e.deadline, now)) +
              opt_.delivery_timeout;
  stats_.dedup_bytes += shared->size();
  dedup_expiry_.emplace(e.expires, k);
  if (!already_sent) send_response(e, k, false);
  // A caller that is not proven yet is asked, once, to prove its address
  // after its first response: its later responses then go unmetered (and
  // may share Bundles).
  const Dest d = dest_of(e, k);
  if (!e.awaiting_proof && path_.allowance(d) != AddressGuard::kUnlimited &&
      path_.allowance(d) >= path_.wire_size(AddressGuard::kTokenSize) && path_.guard().challenge_due(d.addr, loop_.now())) {
    send_challenge(d, k.b);
  }
  evict_for_bytes();
}

void Engine::resend_response(DedupEntry& e, const Key& key, bool force) {
  const TimePoint now = loop_.now();
  if (e.transfer && !e.transfer->done && !e.transfer->gave_up) return;  // still sending it
  if (e.delivered) return;  // the caller acknowledged all of it: a stale duplicate
  // Rate limit: a burst of duplicates must not turn into a burst of
  // (possibly large) responses.
  if (!force && now - e.last_resend < rtt(e.reply_to).rto() / 2) return;
  e.last_resend = now;
  ++stats_.responses_resent;
  if (!e.response) {
    Bytes body;
    wire::encode_response_error(Errc::kDeliveryTimeout,
                                "the provider ran the call but no longer holds its response "
                                "(response cache full)",
                                body);
    send_message(MsgType::kResponse, key.b, dest_of(e, key), std::make_shared<const Bytes>(std::move(body)),
                 0, nullptr);
    return;
  }
  send_response(e, key, true);
}

void Engine::send_response(DedupEntry& e, const Key& key, bool resend) {
  const Dest d = dest_of(e, key);
  if (path_.allowance(d) < message_wire_size(e.response->size(), e.reply_to)) {
    // More than 3x what this unproven address sent: ask it to prove that it
    // receives what is sent to it first (docs/protocol.md, "Amplification").
    e.awaiting_proof = true;
    send_challenge(d, key.b);
    return;
  }
  e.awaiting_proof = false;
  send_message(MsgType::kResponse, key.b, d, e.response, 0, &e.transfer);
  if (resend && e.transfer) e.transfer->await_ack = true;
}

void Engine::send_challenge(const Dest& to, std::uint64_t id) {
  const AddressGuard::Token t = path_.guard().token(to.addr, to.node_id, loop_.now());
  if (send_datagram(header_for(MsgType::kChallenge, id, t.size()), t, to)) ++stats_.challenges_sent;
}

void Engine::handle_address_proof(const Endpoint& from, const Header& h, std::span<const std::byte> p) {
  const TimePoint now = loop_.now();
  if (!path_.guard().check_token(from, h.node_id, p, now)) {
    ++stats_.address_proofs_bad;
    return;
  }
  ++stats_.address_proofs;
  path_.guard().mark_proven(from, h.node_id, now);
  const Key k{h.node_id, h.message_id};
  auto it = dedup_.find(k);
  if (it == dedup_.end() || it->second.reply_to != from || !it->second.finished || !it->second.awaiting_proof) {
    return;  // nothing held back: later replies to this address are free now
  }
  if (it->second.response) {
    send_response(it->second, k, false);
  } else {
    resend_response(it->second, k, true);
  }
}

void Engine::handle_status_query(const Endpoint& from, const Header& h) {
  const Key k{h.node_id, h.message_id};
  auto it = dedup_.find(k);
  if (it != dedup_.end()) {
    if (from != it->second.reply_to) {
      ++stats_.amplification_limited;  // answered only to the request's own address
      return;
    }
    if (!it->second.finished) {
      ++stats_.in_progress_sent;
      send_control(MsgType::kInProgress, h.message_id, reply_dest(from, h));
    } else {
      resend_response(it->second, k, false);
    }
    return;
  }
  auto p = partial_requests_.find(k);
  if (p != partial_requests_.end()) {
    send_ack(reply_dest(from, h), MsgType::kRequest, h.message_id, p->second);
    return;
  }
  ++stats_.unknown_call_replies;
  send_control(MsgType::kUnknownCall, h.message_id, reply_dest(from, h));
}

void Engine::evict_for_bytes() {
  while (stats_.dedup_bytes > opt_.dedup_max_bytes && !dedup_expiry_.empty()) {
    const auto [when, key] = dedup_expiry_.top();
    dedup_expiry_.pop();
    auto it = dedup_.find(key);
    if (it == dedup_.end() || !it->second.response) continue;
    DedupEntry& e = it->second;
    if (e.transfer && !e.transfer->done && !e.transfer->gave_up) {
      // Still being sent; the transfer holds its own reference, but keep the
      // record whole until then. Re-queue it slightly later.
      dedup_expiry_.emplace(when, key);
      break;
    }
    stats_.dedup_bytes -= e.response->size();
    e.response.reset();
    ++stats_.dedup_evicted;
    tomb_expiry_.emplace(when, key);
  }
}

void Engine::sweep_dedup() {
  const TimePoint now = loop_.now();
  for (auto* heap : {&dedup_expiry_, &tomb_expiry_}) {
    while (!heap->empty() && heap->top().first <= now) {
      const auto [when, key] = heap->top();
      heap->pop();
      auto it = dedup_.find(key);
      if (it == dedup_.end() || !it->second.finished || it->second.expires != when) continue;
      if (heap == &dedup_expiry_ && !it->second.response && !it->second.delivered) {
        continue;  // evicted: owned by the tomb heap
      }
      DedupEntry& e = it->second;
      if (e.transfer) loop_.cancel(e.transfer->timer);
      if (e.response) stats_.dedup_bytes -= e.response->size();
      dedup_.erase(it);
    }
  }
  stats_.dedup_entries = dedup_.size();
}

}  // namespace broach::reliable
