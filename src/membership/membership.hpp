// Internal header. Registry-free cluster membership: SWIM failure detection
// with the Lifeguard refinements, gossip dissemination, push-pull
// anti-entropy, join through any live member, graceful leave.
//
// Layer: membership (over reliable: probe messages are kPing/kGossip
// datagrams sent through the Engine; push-pull is a reliable call to the
// internal service "__broach.pushpull"). It publishes member events to a
// listener and knows nothing about routing or services beyond carrying each
// member's metadata. docs/membership.md is the full description.
// Thread contract: owned by the loop thread; every method runs there (the
// entry points assert it: BROACH_ASSERT_IN_LOOP).
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/loop.hpp"
#include "base/rng.hpp"
#include "broach/member.hpp"
#include "membership/broadcast_queue.hpp"
#include "membership/member_table.hpp"
#include "membership/messages.hpp"
#include "membership/meta_pool.hpp"
#include "membership/suspicion.hpp"
#include "reliable/engine.hpp"

namespace broach::membership {

inline constexpr const char* kPushPullService = "__broach.pushpull";

struct MembershipOptions {
  Duration probe_interval = milliseconds(500);  ///< one member probed per interval
  Duration probe_timeout = milliseconds(200);   ///< wait for a direct ack before indirect probes
  int indirect_checks = 3;                      ///< k members asked to probe on our behalf
  int suspicion_mult = 4;                       ///< min suspicion = mult * log10(N) * probe_interval
  int suspicion_max_mult = 3;                   ///< max suspicion = max_mult * min
  Duration gossip_interval = milliseconds(200);
  int gossip_nodes = 3;                         ///< members gossiped to per interval
  int retransmit_mult = 4;                      ///< each update sent mult * log10(N+1) times
  /// Updates waiting to be piggybacked, at most (there is at most one per
  /// member anyway). Past it the most-sent is dropped (counted:
  /// updates_dropped) and push-pull repairs, which is slow in a large
  /// cluster (its interval grows with size). 0: twice the live members, at
  /// least 1024 (never reached: news is only lost to memory limits chosen
  /// on purpose). A fixed bound is for simulations of thousands of members,
  /// where N nodes x N queued updates is what needs the memory.
  std::size_t max_queued_updates = 0;
  Duration push_pull_interval = seconds(15);    ///< full-state exchange with one member
  Duration reconnect_interval = seconds(3);     ///< retry seeds when alone; a dead member, to heal partitions
  Duration dead_reclaim = seconds(30);          ///< how long dead/left records are kept whole
  /// Then kept as a tombstone (address, life, incarnation; no metadata) for
  /// this long: a stale "alive" from a member that missed the death cannot
  /// bring it back, push-pull still reports it dead (so a member on the far
  /// side of a long partition refutes), and reconnect still tries it.
  Duration tombstone_keep = std::chrono::hours(1);
  std::size_t max_tombstones = 8192;            ///< beyond this, records are forgotten at once
  Duration join_retry_max = seconds(10);        ///< join backoff cap
  int awareness_max = 8;                        ///< Lifeguard local health score ceiling
  /// false: plain SWIM, for measuring what Lifeguard buys (docs/membership.md):
  /// no local health (timeouts never stretched), a fixed suspicion timeout
  /// (the minimum, no confirmations), no buddy system (pings do not carry
  /// the suspicion to the suspect).
  bool lifeguard = true;
  /// Our extension to Lifeguard (needs `lifeguard`): a verdict (suspect,
  /// dead) whose timer fired long after it was due, or a death that falls
  /// due, is put off briefly so that what arrived while this node could not
  /// run is read first. false: measure without it.
  bool read_before_judging = true;
  Duration call_timeout = seconds(3);           ///< push-pull call deadline
};

enum class EventKind { kJoin, kUpdate, kSuspect, kAlive, kDead, kLeft, kReclaim };

class Listener {
 public:
  virtual ~Listener() = default;
  /// A member changed; `m` is its new record. Called on the loop thread.
  virtual void on_member_event(EventKind kind, const MemberInfo& m) = 0;
};

// Membership's exported counters, each declared once: X(field, description).
#define BROACH_MEMBERSHIP_COUNTERS(X)                                                  \
  X(probes, "Direct probes sent.")                                                    \
  X(probe_failures, "Probes that got no ack, direct or indirect.")                    \
  X(indirect_probes, "Indirect probes asked of other members.")                       \
  X(suspicions, "Members this node started to suspect.")                              \
  X(refutes, "Suspicions of this node it refuted.")                                   \
  X(deaths, "Members declared dead.")                                                 \
  X(joins, "Members that joined.")                                                    \
  X(leaves, "Members that left gracefully.")                                          \
  X(push_pulls, "Full-state exchanges done.")                                         \
  X(push_pull_failures, "Full-state exchanges that failed.")                          \
  X(digests, "Periodic exchanges that compared state digests first.")                 \
  X(digests_equal, "Of those, digests that were equal: no full state was sent.")     \
  X(bad_messages, "Membership datagrams or push-pull bodies dropped as malformed.")   \
  X(ping_req_refused, "Indirect probe requests refused: the target is not a member.") \
  X(gossip_bytes_sent, "Bytes of probe and gossip datagrams sent.")                   \
  X(gossip_messages_sent, "Probe and gossip datagrams sent.")                          \
  X(updates_dropped, "Queued gossip updates dropped because the queue was full.")     \
  X(syncs_skipped, "Full-state exchanges with unknown senders not made: too many pending.")

struct MembershipStats {
#define BROACH_X(field, help) std::uint64_t field = 0;
  BROACH_MEMBERSHIP_COUNTERS(BROACH_X)
#undef BROACH_X
  int awareness = 0;  ///< Lifeguard local health score (gauge)
};

class Membership final : public reliable::ExtensionReceiver {
 public:
  /// `loop`, `engine` and `listener` (may be null) must outlive this.
  /// `life` orders process lives at one address (start time in ms).
  Membership(Loop& loop, reliable::Engine& engine, const MembershipOptions& options,
             std::uint64_t life, MemberMeta meta, std::uint64_t rng_seed, Listener* listener);
  ~Membership() override;

  /// Starts probing and joins through `seeds` (retried with backoff until one
  /// answers; the node runs alone meanwhile).
  void start(std::vector<Endpoint> seeds);
  /// Announces a graceful leave and stops probing.
  void leave();
  /// Replaces this node's metadata (e.g. a new service) and gossips it.
  void set_meta(MemberMeta meta);

  /// Handles a push-pull request (the "__broach.pushpull" service body);
  /// returns this node's state as the response body.
  wire::Bytes handle_push_pull(std::span<const std::byte> args);

  void on_extension(const Endpoint& from, const wire::Header& h,
                    std::span<const std::byte> payload) override;

  std::vector<MemberInfo> members() const;
  std::size_t alive_count() const;  ///< alive + suspect, self included
  /// Members by state (indexed by MemberState), self included, as members()
  /// would list them, without copying any (the status page's 1 s tick).
  std::array<std::size_t, 4> count_by_state() const;
  /// A copy of what this node knows of `addr` (nullopt: unknown or
  /// forgotten). state_of is the cheap form for hot paths.
  std::optional<MemberInfo> find(const Endpoint& addr) const;
  std::optional<MemberState> state_of(const Endpoint& addr) const;
  /// Records held, tombstones included, self excluded (memory accounting).
  std::size_t record_count() const { return members_.size(); }
  /// Bytes held, by structure (node-based containers estimated: their
  /// nodes, pointers and the allocator's header), for memory accounting.
  struct MemoryUse {
    std::size_t table = 0;  ///< member records and their index
    std::size_t lists = 0;  ///< candidate, gone and probe-round lists
    std::size_t queue = 0;  ///< gossip queue, encoded updates included
    std::size_t other = 0;  ///< suspicions, pending acks, rate limits, syncs
    std::size_t total() const { return table + lists + queue + other; }
  };
  MemoryUse memory_use() const;
  /// True when a live (alive or suspect) member, self included, has IP `ip`.
  bool live_member_at(const Endpoint& host) const;
  /// The summary of this node's live members that periodic push-pull
  /// compares (messages.hpp: StateDigest): equal on two nodes that hold
  /// the same live members at the same lives and incarnations. O(N).
  StateDigest digest() const;
  const MembershipStats& stats() const { return stats_; }
  bool joined() const { return joined_; }
  const Endpoint& self() const { return self_.address; }

 private:
  /// A member as this node holds it. Compact, because every node holds one
  /// for every member (a simulation of N members holds N^2 of them): the
  /// metadata is shared (meta_pool.hpp), MemberInfo is built on demand.
  struct Member {
    Endpoint address;
    MemberState state = MemberState::kAlive;
    std::uint32_t incarnation = 0;
    std::uint64_t life = 0;
    std::shared_ptr<const InternedMeta> meta;  // never null
    MemberInfo snapshot(bool self = false) const {
      return MemberInfo{address, state, life, incarnation, meta->meta, self};
    }
  };
  using Index = std::uint32_t;  // a record's place in members_
  static constexpr std::uint32_t kUnlisted = 0xffffffffu;
  /// 72 bytes (16 of them the IPv6 address an Endpoint has room for), plus
  /// about 5 bytes of index in the member table and 4 in one of the two
  /// lists; a running suspicion lives apart, in suspicions_.
  struct Record {
    Member info;
    TimePoint since{};
    /// Position in candidates_ (live: alive or suspect) or in gone_ (dead,
    /// left, tombstones); kUnlisted only while a record is being added.
    std::uint32_t pos = kUnlisted;
    bool live = false;
    /// Reclaimed (dead or left for dead_reclaim): only its identity is
    /// kept; invisible to members()/find(); reported dead in push-pull.
    bool tombstone = false;
    /// This life of the member acked one of our pings (random sequence
    /// number): until then it may be a spoofed address, and what we send it
    /// stays small (the 3x rule: pings without piggyback, no gossip, no
    /// push-pull). Cleared whenever info.life changes.
    bool proven = false;
    /// Reconnect pings it left unanswered since it was last declared dead
    /// (saturating): reconnect() tries the least-missed dead members first.
    std::uint8_t reconnect_misses = 0;
    const Endpoint& key() const { return info.address; }
  };
  static_assert(sizeof(void*) != 8 || sizeof(Record) <= 72, "a member record grew: N^2 of them in a simulation");
  /// True when `addr` has a record that is not a tombstone.
  bool known(const Endpoint& addr) const;
  /// True when datagrams to member `addr` need not be kept small: it proved
  /// its address, or every datagram this node accepts is sealed.
  bool proven(const Endpoint& addr) const;
  struct AckWait {
    Endpoint target;
    std::function<void(bool nack)> on_ack;
    std::function<void()> on_timeout;
    TimePoint due{};
    bool deferred = false;  // the timeout was put off once (this node had stalled)
    TimerId timer = kNoTimer;
  };
  /// A timer that fires this much after its due time means this node's loop
  /// was stalled (stopped, starved of CPU, a paused VM).
  static constexpr Duration kStalledLateness = milliseconds(100);

  // membership_state.cpp: applying updates
  /// `source`: the datagram's sender when the update came by gossip.
  void apply(const Update& u, bool from_push_pull, const Endpoint* source = nullptr);
  void on_alive(const Update& u);
  void on_suspect(const Update& u);
  void on_dead(const Update& u);
  void refute(std::uint32_t seen_incarnation);
  void send_correction(const Endpoint& to, const Member& m);
  void start_suspicion(Record& r, const Endpoint& from);
  /// Cancels and forgets `addr`'s running suspicion, if any.
  void end_suspicion(const Endpoint& addr);
  /// (Re)arms `s`'s one timer: the next reprobe or the expiry, whichever is first.
  void arm_suspicion(const Endpoint& addr, Suspicion& s, std::uint64_t life, std::uint32_t inc);
  void suspicion_timer(const Endpoint& addr, std::uint64_t life, std::uint32_t inc);
  /// The suspicion of `addr` (life, inc) expired: put off once (read before
  /// judging; true, still running) or declared dead (false: `s` is gone).
  bool suspicion_due(const Endpoint& addr, Suspicion& s, std::uint64_t life, std::uint32_t inc);
  void broadcast(const Member& m, const Endpoint& from = {});
  void emit(EventKind kind, const Member& m, bool self = false);
  void reclaim();
  void set_live(Index i) { list(i, true); }   // alive or suspect
  void set_gone(Index i) { list(i, false); }  // dead or left
  /// Puts record i in candidates_ (live) or gone_, out of the other.
  void list(Index i, bool live);
  void unlist(Index i);
  /// Erases record i (and its list entry); the table's last record takes
  /// index i.
  void forget(Index i);
  Update to_update(const Member& m, bool with_meta) const;
  // membership_probe.cpp: failure detection and gossip
  void schedule_probe();
  void probe();
  void probe_node(const Endpoint& target);
  /// A member that has just become live (joined, or a new life) goes at a
  /// random place in the rest of this probe round: a round covers the
  /// members known when it began and lasts N probe intervals (500 s at
  /// 1,000 members), so a late joiner would otherwise go unprobed by
  /// everyone who started their round before it joined.
  void add_to_probe_round(Index i);
  void handle_probe(const reliable::Dest& reply, ProbeMessage& msg);
  void send_probe(Kind kind, std::uint32_t seq, const Endpoint& to,
                  const std::optional<Endpoint>& target = std::nullopt);
  /// `dest.reply`: an ack or nack, metered by the 3x rule.
  void send_probe(Kind kind, std::uint32_t seq, const reliable::Dest& dest,
                  const std::optional<Endpoint>& target = std::nullopt);
  std::uint32_t expect_ack(const Endpoint& target, Duration timeout,
                           std::function<void(bool)> on_ack, std::function<void()> on_timeout);
  void ack_timed_out(std::uint32_t seq);
  void gossip();
  /// `reply.addr` sent us a message but is not a member we know: a full-
  /// state exchange with it, unless gossip about it arrives first.
  void sync_with_unknown(const reliable::Dest& reply);
  std::vector<Endpoint> random_members(std::size_t k, const std::vector<Endpoint>& exclude,
                                       bool include_suspect);
  Duration scaled(Duration d) const { return d * (awareness_ + 1); }
  void adjust_awareness(int delta);
  // membership_sync.cpp: push-pull, join, reconnect
  void push_pull(const Endpoint& peer, bool join, std::function<void(bool)> done);
  /// The periodic exchange: digests first, the full state only when they
  /// differ (or the peer does not know digests).
  void sync_periodic(const Endpoint& peer, std::function<void(bool)> done);
  void merge_remote(const std::vector<Update>& state);
  /// True when applying `u` (its metadata not read yet) would change
  /// nothing: push-pull skips decoding it.
  bool old_news(const Update& u) const;
  wire::Bytes local_state(bool join) const;
  void try_join();
  void gossip_tick();
  void reclaim_tick();
  void schedule_push_pull();
  /// Push-pull with the last of `peers`; on failure, the next.
  void push_pull_next(std::shared_ptr<std::vector<Endpoint>> peers);
  void reconnect();

  Loop& loop_;
  reliable::Engine& engine_;
  MembershipOptions opt_;
  Rng rng_;
  Listener* listener_;
  Member self_;
  MemberTable<Record> members_;  // others only
  std::unordered_map<Endpoint, Suspicion> suspicions_;  // running ones (suspect members)
  BroadcastQueue queue_;
  std::unordered_map<std::uint32_t, AckWait> acks_;
  /// This probe round's order: record indices (a record erased meanwhile
  /// may make the round skip or repeat one member; the next round is whole).
  std::vector<Index> probe_order_;
  // Kept in step with every state change (list/unlist/forget), so counting
  // members and drawing random ones is O(1) whatever the cluster size:
  // recounting on each change made a 10,000-member join O(N^2). Record
  // indices (4 bytes, not 24-byte addresses: a simulation holds N^2).
  std::vector<Index> candidates_;  // alive + suspect others
  std::vector<Index> gone_;        // dead or left (tombstones too)
  std::size_t tombstones_ = 0;
  std::size_t probe_index_ = 0;
  std::vector<Endpoint> seeds_;
  std::unordered_map<Endpoint, TimePoint> last_correction_;  // rate limit per accuser
  /// Unknown senders waiting for (or in) a full-state exchange with us;
  /// bounded, as any address can send a datagram.
  std::unordered_set<Endpoint> syncing_;
  static constexpr std::size_t kMaxSyncing = 256;
  /// Of those, exchanges running (each carries our whole state).
  int exchanges_with_unknown_ = 0;
  static constexpr int kMaxUnknownExchanges = 2;
  Duration join_backoff_{};
  bool joined_ = false;
  bool running_ = false;
  bool left_ = false;
  int awareness_ = 0;
  TimerId probe_timer_ = kNoTimer, gossip_timer_ = kNoTimer, push_pull_timer_ = kNoTimer,
          reconnect_timer_ = kNoTimer, reclaim_timer_ = kNoTimer, join_timer_ = kNoTimer;
  std::shared_ptr<bool> alive_token_ = std::make_shared<bool>(true);  // guards call callbacks
  MembershipStats stats_;
};

}  // namespace broach::membership
