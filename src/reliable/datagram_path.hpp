// Internal header. The one datagram path of a node: every datagram the node
// sends leaves through DatagramPath::send / send_batch / send_from_any_thread,
// and every datagram it receives enters through DatagramPath::on_datagram,
// where the 56-byte header is decoded and checked before any body is looked
// at. Nothing else in the node touches the Transport.
//
// Layer: reliable (just below the Engine, which owns it). It knows the wire
// header and nothing of calls, services or membership.
//
// The two planned stages plug in here and nowhere else (docs/architecture.md,
// "The datagram path"):
//  - sealing: encode_into() and the fast path finish a datagram by sealing it
//    (AEAD over header + payload, tag appended, kFlagAuth set) just before
//    transport_.send*; on_datagram() opens it right after decode_datagram()
//    and drops what does not verify, counted in PathStats.
//  - coalescing: send() appends small datagrams for the same peer to a
//    per-peer buffer instead of sending them, and the loop's end-of-iteration
//    hook flushes each buffer as one datagram; on_datagram() splits a
//    coalesced datagram and delivers its parts one by one to the sink.
//
// Thread contract: on_datagram(), send() and send_batch() run on the loop
// thread (asserted in debug builds). send_from_any_thread() is safe from any
// thread when can_send_from_any_thread() is true. stats() counters that any
// thread may bump are atomics.
#pragma once

#include <atomic>
#include <memory>
#include <unordered_map>
#include <vector>
#include <cstdint>
#include <span>

#include "base/loop.hpp"
#include "base/scratch.hpp"
#include "base/thread_annotations.hpp"
#include "reliable/address_guard.hpp"
#include "reliable/keyring.hpp"
#include "reliable/replay_window.hpp"
#include "transport/transport.hpp"
#include "wire/header.hpp"

namespace broach::reliable {

/// Where a checked datagram goes next (the Engine). Loop thread.
class PacketSink {
 public:
  virtual ~PacketSink() = default;
  /// A datagram whose header decoded and passed every check. `payload` is
  /// valid only during the call.
  virtual void on_packet(const Endpoint& from, const wire::Header& h,
                         std::span<const std::byte> payload) = 0;
  /// A datagram whose header is sound but whose message exceeds the
  /// configured maximum (so the sender can be told instead of timing out).
  virtual void on_too_large(const Endpoint& from, const wire::Header& h) = 0;
  /// The host of `to` reported no socket listening there (ICMP port
  /// unreachable) for a datagram of ours with header `h` (as the ICMP quoted
  /// it: unauthenticated, to be checked against what was sent).
  virtual void on_unreachable(const Endpoint& to, const wire::Header& h) = 0;
};

/// How datagrams are sealed and checked (params.broach.security).
struct PathSecurity {
  std::shared_ptr<const Keyring> keyring;  ///< null or empty: plaintext
  bool seal_outgoing = true;               ///< seal what this node sends (needs a key)
  bool verify_incoming = true;             ///< drop plaintext datagrams (needs a key)
};

struct PathStats {
  /// Incoming datagrams dropped before any body was read, by reason
  /// (header checks, and for sealed datagrams: bad_auth, bad_key_id,
  /// replayed, unsealed, unauthenticated).
  std::uint64_t drops[static_cast<int>(wire::DecodeError::kCount_)] = {};
  std::uint64_t sealed_in = 0;  ///< datagrams that opened
  std::uint64_t datagrams_in = 0, bytes_in = 0;
  std::atomic<std::uint64_t> datagrams_out{0}, bytes_out{0};
  std::atomic<std::uint64_t> send_failures{0};  ///< refused locally (e.g. socket buffer full)
  std::uint64_t unreachable_in = 0;  ///< port-unreachable reports whose quote holds one of our headers
  std::uint64_t unreachable_bad = 0;  ///< port-unreachable reports ignored: no header of ours quoted
  // Coalescing (loop thread only).
  std::uint64_t bundles_out = 0, bundled_out = 0;  ///< Bundle datagrams sent, datagrams in them
  std::uint64_t bundles_in = 0, bundled_in = 0;    ///< Bundle datagrams received, datagrams in them
};

class DatagramPath final : public DatagramReceiver {
 public:
  /// `loop` and `transport` must outlive the path. Sets itself as the
  /// transport's receiver; `max_message` bounds total_len of incoming messages.
  DatagramPath(Loop& loop, Transport& transport, std::uint64_t max_message, PathSecurity security = {});
  ~DatagramPath() override;
  DatagramPath(const DatagramPath&) = delete;
  DatagramPath& operator=(const DatagramPath&) = delete;

  /// Non-owning; null drops everything that arrives (counted nowhere else).
  void set_sink(PacketSink* sink) { sink_ = sink; }

  /// Largest payload of one datagram of `max_datagram` bytes.
  static std::size_t max_payload(std::size_t max_datagram) {
    return max_datagram - wire::kHeaderSize - wire::kAuthTagSize;
  }

  /// Loop thread: one datagram, header `h` + `payload`. A reply that does
  /// not fit what its address may still be sent (AddressGuard) is not sent:
  /// false. With coalescing on, the datagram is queued for its peer and
  /// leaves at the end of this loop iteration, alone or in a Bundle with the
  /// others queued for that peer (never later: no timer).
  bool send(const Dest& to, const wire::Header& h, std::span<const std::byte> payload);
  /// Turns coalescing on (Bundles of at most `max_datagram` bytes; 65,000
  /// towards 127.0.0.0/8) or off (0). Installs the loop's idle hook. Loop
  /// thread, or before the loop runs.
  void set_coalescing(std::size_t max_datagram);
  /// Loop thread: sends everything queued (the idle hook).
  void flush();
  /// Loop thread: writes header + payload into `slot` (which must hold
  /// kHeaderSize + payload + kAuthTagSize bytes) and returns the datagram's
  /// length, for send_batch.
  std::size_t encode_into(const wire::Header& h, std::span<const std::byte> payload,
                          std::span<std::byte> slot);
  /// Loop thread: datagrams made by encode_into, to one peer (sendmmsg).
  /// For a reply, only the leading datagrams that fit its allowance go out;
  /// returns how many were not sent for that reason.
  std::size_t send_batch(const Dest& to, std::span<const std::span<const std::byte>> datagrams);
  /// The size on the wire of a datagram with `payload_len` bytes of payload.
  std::size_t wire_size(std::size_t payload_len) const {
    return wire::kHeaderSize + payload_len + (sealing() ? wire::kAuthTagSize : 0);
  }

  // Anti-amplification (loop thread; see AddressGuard).
  /// Bytes that may still be sent to `to` (AddressGuard::kUnlimited if free).
  std::uint64_t allowance(const Dest& to) { return guard_.allowance(to, loop_.now()); }
  /// Charges `bytes` ahead of sends that bypass the check (the any-thread
  /// fast path); false, nothing charged, if they do not fit.
  bool reserve(const Dest& to, std::size_t bytes) { return guard_.try_charge(to, bytes, loop_.now()); }
  void refund(const Endpoint& to, std::uint64_t bytes) { guard_.refund(to, bytes); }
  AddressGuard& guard() { return guard_; }
  const AddressGuard& guard() const { return guard_; }

  /// True when send_from_any_thread() may be used (a plain socket send).
  bool can_send_from_any_thread() const { return transport_.thread_safe_send(); }
  /// Any thread (when can_send_from_any_thread()): one datagram, encoded in
  /// the calling thread's own buffer. Returns false when the transport
  /// refused it locally.
  bool send_from_any_thread(const Endpoint& to, const wire::Header& h,
                            std::span<const std::byte> payload) {
    return send_prepared(to, prepare(h, payload));
  }
  /// The two halves of send_from_any_thread, for a caller that must do
  /// something between encoding and sending (register the call with the
  /// loop): prepare() finishes the datagram in this thread's own buffer,
  /// valid until this thread's next prepare(); send_prepared() sends it.
  std::span<const std::byte> prepare(const wire::Header& h, std::span<const std::byte> payload);
  bool send_prepared(const Endpoint& to, std::span<const std::byte> datagram);

  /// The incoming stage (transport callback, loop thread).
  void on_datagram(const Endpoint& from, std::span<const std::byte> data) override;
  /// The transport's ICMP port-unreachable report (loop thread): the quoted
  /// header goes to the sink, which checks it is one it sent.
  void on_unreachable(const Endpoint& to, std::span<const std::byte> sent) override;

  /// Any thread: replaces the keyring (key rotation). Null: plaintext.
  /// Rings are kept alive for the path's life (rotations are rare), so the
  /// per-datagram read is one atomic pointer load.
  void set_keyring(std::shared_ptr<const Keyring> ring);
  const Keyring* keyring() const { return ring_.load(std::memory_order_acquire); }
  /// True when this node seals what it sends.
  bool sealing() const;
  /// True when this node drops every datagram that is not sealed.
  bool verifying() const { return verify_incoming_ && keyring() != nullptr; }

  /// The address datagrams are received on.
  Endpoint local() const { return transport_.local(); }
  const PathStats& stats() const { return stats_; }

 private:
  bool transmit(const Endpoint& to, std::span<const std::byte> datagram);
  // Coalescing: per-peer queues of [len u16 LE][plaintext datagram] entries.
  struct Queue {
    std::vector<std::byte> entries;
    std::size_t count = 0;
    bool listed = false;  // in dirty_
  };
  std::size_t coalesce_limit(const Endpoint& to) const;
  void enqueue(const Endpoint& to, const wire::Header& h, std::span<const std::byte> payload, std::size_t limit);
  void flush_queue(const Endpoint& to, Queue& q);
  void deliver_bundle(const Endpoint& from, const wire::Header& outer, std::span<const std::byte> body);
  /// Checks and opens a sealed datagram in place in `buf`; the reason when it fails.
  wire::DecodeError open_sealed(const wire::Header& h, std::span<const std::byte> data,
                                std::span<const std::byte>& payload);
  void drop(wire::DecodeError why) { ++stats_.drops[static_cast<int>(why)]; }

  Loop& loop_;
  Transport& transport_;
  std::uint64_t max_message_;
  PacketSink* sink_ = nullptr;
  ScratchBuffer scratch_;  // loop thread: assembly buffer, reused
  ScratchBuffer opened_;   // loop thread: an incoming datagram, opened in place
  std::atomic<const Keyring*> ring_{nullptr};  // null or non-empty
  Mutex rings_mu_;
  std::vector<std::shared_ptr<const Keyring>> rings_ BROACH_GUARDED_BY(rings_mu_);  // every ring ever set
  const bool seal_outgoing_, verify_incoming_;
  std::atomic<std::uint64_t> counter_{0};  // the last counter used (per life)
  ReplayGuard replay_;                     // loop thread
  AddressGuard guard_;                     // loop thread
  std::size_t coalesce_max_ = 0;           // 0: off
  std::unordered_map<Endpoint, Queue> queues_;  // loop thread
  std::vector<Endpoint> dirty_;            // peers with something queued
  ScratchBuffer bundle_;                   // loop thread: a Bundle being finished
  std::uint64_t idle_hook_ = 0;            // the loop's hook that flushes
  PathStats stats_;
};

}  // namespace broach::reliable
