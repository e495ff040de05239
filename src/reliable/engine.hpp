// Internal header. The reliable request/response protocol over a Transport.
//
// Layer: reliable. The Engine turns an unreliable datagram transport into
// calls that end, every time, with a response or a typed error in time:
//  - request/response where the response is the acknowledgement; the caller
//    retransmits on an adaptive per-peer timeout with exponential backoff;
//  - at-most-once execution: the provider remembers requests by (caller node
//    id, request id): a duplicate of a running request gets kInProgress, a
//    duplicate of a finished one gets the cached response again;
//  - messages larger than one datagram are fragmented, sent with a window,
//    selectively acknowledged (kFragmentAck) and selectively retransmitted;
//  - the caller's remaining deadline travels with the request.
// It knows nothing of services, threads or membership: a RequestHandler gets
// each new request and later calls respond() exactly once.
// Every datagram it sends or receives passes through its DatagramPath.
// Thread contract: owned by the loop thread; every method must be called on
// it (asserted in debug builds), except the three marked "any thread"
// (call_from_any_thread, respond_from_any_thread, request_payload). Every
// callback (Completion, RequestHandler, ExtensionReceiver) runs on the loop
// thread.
// docs/protocol.md describes the exchange in full.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <queue>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/loop.hpp"
#include "base/rng.hpp"
#include "broach/error.hpp"
#include "reliable/datagram_path.hpp"
#include "reliable/rtt_estimator.hpp"
#include "transport/transport.hpp"
#include "wire/header.hpp"
#include "wire/payload.hpp"

namespace broach::reliable {

using wire::Bytes;
using SharedBytes = std::shared_ptr<const Bytes>;

struct EngineOptions {
  std::uint64_t node_id = 1;           ///< this process life's id (random per start)
  Endpoint advertised;                 ///< address peers should use for us
  std::size_t max_datagram = 1472;     ///< UDP payload per datagram
  std::uint64_t max_message = 64u << 20;
  int send_window = 128;               ///< fragments beyond the lowest unacked one
  Duration rto_initial = std::chrono::milliseconds(20);
  Duration rto_min = std::chrono::milliseconds(10);
  Duration rto_max = std::chrono::seconds(1);
  Duration delivery_timeout = std::chrono::seconds(3);  ///< udpTimeOut: silence before giving up
  std::size_t dedup_max_entries = 100000;
  std::uint64_t dedup_max_bytes = 64u << 20;
  std::uint64_t reassembly_max_bytes_per_peer = 128u << 20;
  std::uint64_t reassembly_max_bytes_total = 512u << 20;
  PathSecurity security;               ///< sealing (params.broach.security)
  bool coalesce = true;                ///< Bundles (params.broach.transport.coalesce)
  bool loopback_large = true;          ///< 65,000-byte fragments to 127.0.0.0/8 (loopbackLargeDatagrams)
};

/// The outcome of a call, as seen by the caller.
struct CallResult {
  Errc code = Errc::kOk;
  Bytes body;           ///< packed result (msgpack) when code == kOk
  std::string message;  ///< error message otherwise
  std::uint32_t sends = 0;  ///< caller side: times the request was sent (1 + retransmissions)
};

/// Identifies a received request so that its response can be sent later.
struct RequestToken {
  std::uint64_t node_id = 0;  ///< caller's node id
  std::uint64_t message_id = 0;
  Endpoint reply_to;
  bool sealed = false;  ///< the request was sealed: its sender holds a key
  /// Reply bytes charged to the caller's address when the request arrived,
  /// so a response that fits may leave from any thread (kUnmetered: free).
  std::uint32_t reserved = 0;
  static constexpr std::uint32_t kUnmetered = ~std::uint32_t{0};
  Dest dest() const { return Dest::reply_to(reply_to, node_id, sealed); }
};

struct IncomingRequest {
  RequestToken token;
  std::string service;
  Bytes args;            ///< one packed msgpack array
  Bytes metadata;        ///< the call's metadata, a packed map (checked); empty: none
  TimePoint deadline;    ///< on this loop's clock; TimePoint::max() when none
  TimePoint received{};  ///< when the engine delivered it (its last fragment came)
};

class RequestHandler {
 public:
  virtual ~RequestHandler() = default;
  /// A new (not duplicate) request. Called on the loop thread; must not
  /// block. Exactly one Engine::respond() for the token must follow.
  virtual void on_request(IncomingRequest&& request) = 0;
};

// The engine's exported counters, each declared once: X(field, description).
#define BROACH_ENGINE_COUNTERS(X)                                                              \
  X(calls_started, "Calls this node started (each direct call or attempt of a call by name).") \
  X(calls_ok, "Calls that ended with a response.")                                            \
  X(calls_failed, "Calls that ended with an error.")                                          \
  X(requests_sent, "Request sends, retransmissions included.")                                \
  X(retransmits, "Requests sent again after a retransmission timeout.")                       \
  X(status_queries, "Status queries sent to a provider running a call.")                      \
  X(requests_received, "New requests taken in (duplicates excluded).")                        \
  X(duplicate_requests, "Duplicate requests answered from the at-most-once table.")           \
  X(in_progress_sent, "In-progress notes sent for duplicates of running requests.")           \
  X(responses_sent, "Responses sent.")                                                        \
  X(responses_resent, "Cached responses sent again to a caller that missed them.")            \
  X(late_responses, "Responses for calls that had already ended.")                            \
  X(fragments_sent, "Fragments of large messages sent.")                                      \
  X(fragments_resent, "Fragments sent again.")                                                \
  X(fragment_acks_sent, "Fragment acknowledgements sent.")                                    \
  X(fragment_acks_received, "Fragment acknowledgements received.")                            \
  X(reassembly_refused, "Fragmented messages refused: reassembly memory bound reached.")      \
  X(reassembly_expired, "Partial messages freed after udpTimeOut without a new fragment.")    \
  X(reassembly_evicted, "Partial messages evicted to make room (least recent progress first).") \
  X(dedup_evicted, "Finished at-most-once records forgotten early to respect the bounds.")    \
  X(unknown_call_replies, "Unknown-call replies sent for status queries about nothing held.") \
  X(amplification_limited, "Replies not sent: to an unproven address beyond 3x the bytes it sent, or to another address than the request's.") \
  X(challenges_sent, "Challenges sent to an unproven caller instead of a response that exceeded 3x its bytes.") \
  X(address_proofs, "Challenges answered: caller addresses proven.")                          \
  X(address_proofs_bad, "Address proofs that did not verify (forged, stale or for another address).") \
  X(port_unreachable, "ICMP port-unreachable reports for datagrams this node sent: no process at the peer's port.") \
  X(port_unreachable_foreign, "Port-unreachable reports ignored: the quoted datagram was not this node's.") \
  X(calls_peer_gone, "Calls failed at once (peer_gone): their provider's port was reported unreachable.")
// Gauges: X(field, description).
#define BROACH_ENGINE_GAUGES(X)                                          \
  X(dedup_entries, "Records in the at-most-once table.")                 \
  X(dedup_bytes, "Bytes of cached responses in the at-most-once table.") \
  X(peers_tracked, "Peers with an RTT estimate (as of the last sweep).") \
  X(reassembly_bytes, "Bytes charged to partial messages being reassembled.") \
  X(reassembly_partials, "Partial messages being reassembled.")

struct EngineStats {
  /// Bodies that did not decode (kBadPayload); header-level drops are in PathStats.
  std::uint64_t drops[static_cast<int>(wire::DecodeError::kCount_)] = {};
  std::uint64_t drops_unexpected = 0;     ///< well-formed but fits no state (e.g. wrong peer)
  std::uint64_t failures[32] = {};        ///< by Errc value
#define BROACH_X(field, help) std::uint64_t field = 0;
  BROACH_ENGINE_COUNTERS(BROACH_X)
  BROACH_ENGINE_GAUGES(BROACH_X)
#undef BROACH_X
};

/// Receives the datagram types the engine does not handle itself
/// (membership: kPing, kGossip). Called on the loop thread.
class ExtensionReceiver {
 public:
  virtual ~ExtensionReceiver() = default;
  virtual void on_extension(const Endpoint& from, const wire::Header& h,
                            std::span<const std::byte> payload) = 0;
};

/// An encoded request body ([service, args]) for Engine::call. Any thread.
/// A request body; `metadata`: a map packed by wire::encode_metadata, or empty.
Bytes request_payload(std::string_view service, std::span<const std::byte> args,
                      std::span<const std::byte> metadata = {});

class Engine final : public PacketSink {
 public:
  using Completion = std::function<void(CallResult&&)>;

  /// `loop`, `transport` and `handler` must outlive the engine. Sets itself
  /// as the transport's receiver.
  Engine(Loop& loop, Transport& transport, const EngineOptions& options, RequestHandler* handler);
  ~Engine() override;

  /// Starts a call. `payload` is an encoded request body ([service, args]).
  /// `done` runs exactly once, on the loop thread, with the response or an
  /// error no later than `deadline` (plus timer latency).
  void call(const Endpoint& to, Bytes payload, TimePoint deadline, Completion done);
  /// Sends the response for a request delivered by on_request. `payload` is
  /// an encoded response body. Caches it for duplicates. `already_sent`:
  /// respond_from_any_thread put it on the wire already.
  void respond(const RequestToken& token, Bytes payload, bool already_sent = false);
  // respond_from_any_thread's halves (any thread).
  void respond_now(const RequestToken& token, Bytes&& body);
  static void flush_outbox(void* engine);
  /// respond() with a result: the packed value when r.code is kOk, else the
  /// error code and message.
  void respond(const RequestToken& token, CallResult&& r);

  // The fast path. A caller or worker thread puts its own single-datagram
  // request or response on the wire through the DatagramPath (when the
  // transport allows sends from any thread), saving a wake-up of the loop
  // thread; the loop only does the bookkeeping. Anything larger, or a
  // transport without thread-safe sends, is posted to the loop instead. On
  // the loop thread both are plain call()/respond().

  /// Any thread: call() from any thread. `now` is the caller's clock reading
  /// (the clock the loop uses). `done` runs on the loop thread, also when the
  /// loop has stopped for good (then at once, with kShutdown, on this thread:
  /// the loop will never run again). `lazy`: the bookkeeping need not wake
  /// the loop (the response will, and the 25 ms housekeeping bounds it).
  void call_from_any_thread(const Endpoint& to, Bytes payload, TimePoint deadline, TimePoint now,
                            Completion done, bool lazy);
  /// Any thread: respond() from any thread. Dropped when the loop has
  /// stopped for good (the node is gone; callers see a timeout). On a pool
  /// worker in a burst (base/burst.hpp) with coalescing on, the response is
  /// held until the burst ends and leaves with the others.
  void respond_from_any_thread(const RequestToken& token, CallResult&& r);

  /// Tells reassembly which senders are members: under memory pressure their
  /// partial messages are kept over those of unknown senders. Loop thread.
  void set_known_peer_check(std::function<bool(const Endpoint&)> f) { known_peer_ = std::move(f); }
  /// Routes kPing/kGossip datagrams to `r` (non-owning; null to stop).
  void set_extension_receiver(ExtensionReceiver* r) { extension_ = r; }
  /// Sends one unreliable datagram of an extension type; `payload` must fit
  /// in one datagram (max_datagram - header - tag). Returns false if not, or
  /// when `to` is a reply that exceeds its allowance (counted).
  bool send_extension(wire::MsgType type, const Dest& to, std::span<const std::byte> payload);
  /// Bytes of payload an extension reply to `to` may carry now (at most
  /// max_extension_payload()).
  std::size_t extension_allowance(const Dest& to);
  /// `addr` with node id `node_id` proved it receives what is sent to it
  /// (it acked a ping that carried an unguessable sequence number).
  void mark_proven(const Endpoint& addr, std::uint64_t node_id);
  /// True when this node accepts sealed datagrams only (every sender holds a key).
  bool trusts_all_incoming() const { return path_.verifying(); }
  /// True when replies to `to` are not metered (sealed, proven, or not a reply).
  bool reply_free(const Dest& to) { return path_.allowance(to) == AddressGuard::kUnlimited; }
  /// Largest payload send_extension accepts.
  std::size_t max_extension_payload() const { return frag_payload(); }
  std::uint64_t node_id() const { return opt_.node_id; }
  /// Completes every pending call with `code` (used at shutdown).
  void fail_all(Errc code, const std::string& message);

  // PacketSink: datagrams that passed the path's checks.
  void on_packet(const Endpoint& from, const wire::Header& h,
                 std::span<const std::byte> payload) override;
  void on_too_large(const Endpoint& from, const wire::Header& h) override;
  /// Loop thread. A report that no process listens at `to`, quoting a
  /// datagram of a call of ours to `to` (this node's id, the call's id):
  /// that call ends at once with peer_gone (may have run: the process may
  /// have died after running it). Anything else is ignored (a quote with
  /// another node id is counted): forging one takes the call's id as well,
  /// which only the path between the two nodes sees.
  void on_unreachable(const Endpoint& to, const wire::Header& h) override;

  const EngineStats& stats() const { return stats_; }
  /// The node's one datagram path (its counters: drops before decoding).
  const DatagramPath& path() const { return path_; }
  /// Replaces the keyring (key rotation); takes effect for the next datagram.
  void set_keyring(std::shared_ptr<const Keyring> ring) { path_.set_keyring(std::move(ring)); }
  /// Tests and fuzzers feed datagrams here, as the transport would.
  DatagramPath& path() { return path_; }
  std::size_t pending_calls() const { return calls_.size(); }
  const EngineOptions& options() const { return opt_; }

 private:
  // Outgoing fragmented message (request or response), windowed, SACKed.
  struct Transfer {
    wire::MsgType type{};
    std::uint64_t message_id = 0;
    Endpoint to;
    Dest dest;  // `to`, and for a response the grounds of the reply (3x rule)
    SharedBytes data;
    std::uint32_t frag_size = 0, count = 0;
    std::vector<std::uint8_t> acked;
    std::vector<TimePoint> sent_at;
    std::uint32_t acked_count = 0, cum = 0, next_new = 0;
    std::uint32_t deadline_us = 0;
    TimePoint last_progress{};
    Duration rto{};
    TimerId timer = kNoTimer;
    bool done = false;     // every fragment acknowledged
    bool gave_up = false;  // silent receiver for delivery_timeout
    // A resend of a cached response, triggered by a duplicate or a status
    // query: one window goes out, but nothing is retransmitted until the
    // receiver acknowledges something (proof that it wants the bytes).
    bool await_ack = false;
  };
  // A call this node made.
  struct Call {
    std::uint64_t id = 0;
    Endpoint to;
    SharedBytes payload;
    TimePoint deadline{}, started{}, last_heard{};
    Duration interval{};  // current retransmit / poll interval
    int attempts = 0;
    bool in_progress = false;   // the provider said it is running
    bool request_delivered = false;  // provider holds the whole request
    std::unique_ptr<Transfer> transfer;  // fragmented request
    TimerId timer = kNoTimer;
    Completion done;
  };
  // A request this node received (the at-most-once record).
  struct DedupEntry {
    bool finished = false;
    SharedBytes response;    // null while running, after eviction, or once delivered
    bool delivered = false;  // every fragment of the response was acknowledged
    TimePoint deadline{};    // the caller's deadline on our clock
    Endpoint reply_to;
    bool sealed = false;     // the request was sealed
    bool awaiting_proof = false;  // a challenge went out instead of the response
    TimePoint expires{};     // valid once finished
    TimePoint last_resend{};
    std::unique_ptr<Transfer> transfer;  // fragmented response in flight
  };
  // A fragmented message being received. Its buffer is allocated without
  // being zero-filled, so memory is touched only as fragments arrive; what
  // it is charged against the reassembly budget is everything it holds.
  struct Partial {
    Endpoint from;
    std::unique_ptr<std::byte[]> data;
    std::uint32_t total = 0;
    std::vector<std::uint8_t> have;
    std::uint32_t count = 0, frag_size = 0, received = 0, since_ack = 0, cum = 0;
    std::uint32_t deadline_us = 0;
    std::uint64_t charge = 0;       // bytes charged: buffer + per-fragment bookkeeping + overhead
    bool known = false;             // from a known member (or authenticated)
    TimePoint last_activity{};      // when the last NEW fragment arrived
  };
  // A reassembled message.
  struct Whole {
    std::unique_ptr<std::byte[]> data;
    std::size_t size = 0;
    std::span<const std::byte> view() const { return {data.get(), size}; }
  };
  struct Key {
    std::uint64_t a, b;
    friend bool operator==(const Key&, const Key&) = default;
    friend auto operator<=>(const Key&, const Key&) = default;
  };
  struct KeyHash {
    std::size_t operator()(const Key& k) const noexcept {
      return std::hash<std::uint64_t>{}(k.a * 0x9e3779b97f4a7c15ULL ^ k.b);
    }
  };

  // engine_client.cpp
  Call& add_call(std::uint64_t id, const Endpoint& to, Bytes payload, TimePoint deadline,
                 TimePoint started, Completion done);
  void arm_call_timer(Call& c, TimePoint now);  // at the earliest of deadline, interval, silence
  void start_call(Call& c);
  void on_call_timer(std::uint64_t id);
  void finish_call(std::uint64_t id, CallResult&& r);
  void handle_response(const Endpoint& from, const wire::Header& h, std::span<const std::byte> p);
  void handle_in_progress(const Endpoint& from, const wire::Header& h);
  void handle_unknown_call(const Endpoint& from, const wire::Header& h);
  void complete_response(std::uint64_t id, std::span<const std::byte> payload);
  // engine_server.cpp
  void handle_request(const Endpoint& from, const wire::Header& h, std::span<const std::byte> p);
  void handle_status_query(const Endpoint& from, const wire::Header& h);
  void deliver_request(const Endpoint& from, const wire::Header& h, std::span<const std::byte> p);
  void resend_response(DedupEntry& e, const Key& key, bool force);
  /// Sends e.response (first time or again) if it fits the 3x rule, else a
  /// challenge; `resend`: a repeat for a duplicate or a status query.
  void send_response(DedupEntry& e, const Key& key, bool resend);
  void send_challenge(const Dest& to, std::uint64_t id);
  void handle_challenge(const Endpoint& from, const wire::Header& h, std::span<const std::byte> p);
  void handle_address_proof(const Endpoint& from, const wire::Header& h, std::span<const std::byte> p);
  static Dest dest_of(const DedupEntry& e, const Key& k) { return Dest::reply_to(e.reply_to, k.a, e.sealed); }
  static Dest reply_dest(const Endpoint& from, const wire::Header& h) {
    return Dest::reply_to(from, h.node_id, (h.flags & wire::kFlagAuth) != 0);
  }
  /// Bytes on the wire of `payload_len` bytes as one message to `to`.
  std::size_t message_wire_size(std::size_t payload_len, const Endpoint& to) const;
  void sweep_dedup();
  void evict_for_bytes();
  // engine_transfer.cpp
  void send_message(wire::MsgType type, std::uint64_t id, const Dest& to, const SharedBytes& data,
                    std::uint32_t deadline_us, std::unique_ptr<Transfer>* transfer_slot);
  void pump(Transfer& t);
  void send_fragment(Transfer& t, std::uint32_t index);
  void queue_fragment(Transfer& t, std::uint32_t index);  // into batch_
  void flush_fragments();                                 // one send_batch
  void on_transfer_timer(Transfer& t);
  void handle_fragment_ack(const Endpoint& from, const wire::Header& h, std::span<const std::byte> p);
  void apply_ack(Transfer& t, const wire::FragmentAck& ack);
  // Returns the completed message when `p` completes it; bounded memory.
  bool accept_fragment(const Endpoint& from, const wire::Header& h, std::span<const std::byte> p,
                       Whole& complete);
  // Makes room for a new partial of `charge` bytes from `from`; false when
  // the budget cannot be met without evicting what `known` may not evict.
  bool make_room(const Endpoint& from, std::uint64_t charge, bool known);
  void free_partial(bool request, const Key& key);
  void send_ack(const Dest& to, wire::MsgType acked_type, std::uint64_t id, const Partial& part);
  void send_complete_ack(const Dest& to, wire::MsgType acked_type, std::uint64_t id,
                         std::uint32_t count);
  void sweep_partials();
  void sweep_peers();
  // engine.cpp
  /// A header from this node about message `id`, for a single datagram of
  /// `payload_len` bytes (fragment fields filled in by the caller if not).
  wire::Header header_for(wire::MsgType type, std::uint64_t id, std::size_t payload_len) const;
  /// An error response sent at once, not cached (the request was not taken in).
  void send_error_response(const Dest& to, std::uint64_t id, Errc code, const std::string& message);
  void send_control(wire::MsgType type, std::uint64_t id, const Dest& to, std::uint16_t flags = 0);
  /// False (counted as amplification_limited) when a reply did not fit.
  bool send_datagram(const wire::Header& h, std::span<const std::byte> payload, const Dest& to);
  std::uint64_t allocate_id() { return next_id_.fetch_add(1, std::memory_order_relaxed); }
  Call& adopt_call(std::uint64_t id, const Endpoint& to, Bytes payload, TimePoint deadline,
                   TimePoint sent_at, Completion done);
  RttEstimator& rtt(const Endpoint& peer);
  std::uint32_t frag_payload() const;
  /// Payload per datagram towards `to`: loopback has a 64 KiB MTU, so
  /// messages to 127.0.0.0/8 travel in 64 KB datagrams.
  std::uint32_t frag_payload_for(const Endpoint& to) const;
  /// Fragments in flight for `frag_size`: sendWindow, and at most about
  /// 2 MiB so a window of large datagrams fits the socket buffers.
  std::uint32_t window_for(std::uint32_t frag_size) const;
  void schedule_housekeeping();
  void reject_too_large(const Endpoint& from, const wire::Header& h);

  Loop& loop_;
  EngineOptions opt_;
  DatagramPath path_;
  RequestHandler* handler_;
  ExtensionReceiver* extension_ = nullptr;
  EngineStats stats_;
  std::atomic<std::uint64_t> next_id_{1};
  // Fragments encoded back to back for one send_batch (sendmmsg) call: at
  // most 64 (one GSO send of 44 segments of 1472 bytes and some), at most
  // 2 MiB (32 fragments of 64 KB).
  static constexpr std::size_t kBatchMax = 64;
  static constexpr std::size_t kBatchBytes = std::size_t{2} << 20;
  // kBatchBytes, allocated on first use and never zeroed: only the pages a
  // batch has written are resident (a node that sends no large message
  // costs nothing; a simulation of 10,000 engines stays small).
  std::unique_ptr<std::byte[]> batch_;
  Dest batch_to_;
  std::array<std::span<const std::byte>, kBatchMax> batch_views_{};
  std::size_t batch_count_ = 0, batch_used_ = 0;
  std::uint64_t fragment_hook_ = 0;  // idle hook: flush_fragments() once per loop iteration

  std::unordered_map<std::uint64_t, Call> calls_;
  // Per-peer timing, forgotten after kPeerIdle without use so that a
  // provider talked to by many short-lived clients does not grow it forever.
  struct PeerTiming {
    RttEstimator rtt;
    TimePoint last_used{};
  };
  std::unordered_map<Endpoint, PeerTiming> rtt_;
  TimePoint next_peer_sweep_{};
  std::unordered_map<Key, DedupEntry, KeyHash> dedup_;
  // Finished entries by expiry time (min-heap), for expiry and eviction.
  std::priority_queue<std::pair<TimePoint, Key>, std::vector<std::pair<TimePoint, Key>>,
                      std::greater<>>
      dedup_expiry_;
  // Entries whose response bytes were evicted (memory bound), by expiry.
  std::priority_queue<std::pair<TimePoint, Key>, std::vector<std::pair<TimePoint, Key>>,
                      std::greater<>>
      tomb_expiry_;
  // Partially received fragmented messages, key (sender node id, message id).
  std::unordered_map<Key, Partial, KeyHash> partial_requests_;
  std::unordered_map<Key, Partial, KeyHash> partial_responses_;
  std::unordered_map<Endpoint, std::uint64_t> partial_bytes_by_peer_;
  std::uint64_t partial_bytes_ = 0;
  std::function<bool(const Endpoint&)> known_peer_;
  TimerId housekeeping_ = kNoTimer;
};

}  // namespace broach::reliable
