// Internal header. The transmit-limited queue of membership updates that are
// piggybacked on probe traffic (SWIM dissemination): each update is sent
// about retransmit_mult * log10(N+1) times, the least-sent first; a newer
// update about the same member replaces the older one. Bounded: past the
// `max` given to push, the most-sent entry (oldest among equals) is dropped;
// push-pull anti-entropy repairs what a dropped update did not reach.
//
// Compact, because a simulation of N members holds N queues: entries live
// in a MemberTable (one array, found by address through a 4-byte-slot
// index), and are ordered by one doubly linked list of entry indices per
// transmit count, the most recently queued (or promoted) first. An entry
// costs 48 bytes plus its encoded update; a std::set plus an unordered_map
// of heap nodes cost ~370 bytes (3.8 GB across 10,000 simulated members).
// Among entries sent equally often, the one that reached that count last
// goes first; an update is never sent more often than one sent less.
// Layer: membership. Thread contract: loop thread only.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "broach/endpoint.hpp"
#include "membership/member_table.hpp"
#include "wire/payload.hpp"

namespace broach::membership {

class BroadcastQueue {
  using Index = std::uint32_t;
  static constexpr Index kNil = 0xffffffffu;

 public:
  BroadcastQueue() = default;
  BroadcastQueue(const BroadcastQueue&) = delete;
  BroadcastQueue& operator=(const BroadcastQueue&) = delete;

  /// Queues `encoded` as the latest news about `about`, keeping at most
  /// `max` entries. Returns false when another update had to be dropped to
  /// make room.
  bool push(const Endpoint& about, std::span<const std::byte> encoded, std::size_t max = ~std::size_t{0}) {
    if (const Index old = entries_.index_of(about); old != MemberTable<Entry>::kNone) erase(old);
    bool dropped = false;
    if (entries_.size() >= (max == 0 ? 1 : max)) {
      // The most transmitted, oldest among equals: the tail of the highest
      // non-empty level.
      for (std::size_t t = levels_.size(); t-- > 0;) {
        if (levels_[t].tail != kNil) {
          erase(levels_[t].tail);
          dropped = true;
          break;
        }
      }
    }
    Entry e;
    e.about = about;
    e.size = static_cast<std::uint32_t>(encoded.size());
    e.data = std::make_unique_for_overwrite<std::byte[]>(encoded.size());
    if (!encoded.empty()) std::memcpy(e.data.get(), encoded.data(), encoded.size());
    link_front(entries_.insert(std::move(e)), 0);
    return !dropped;
  }

  /// Picks updates that fit in `budget` bytes (each costs its size), least
  /// transmitted first; counts a transmission for each and drops those that
  /// reached `limit` transmissions. `take` is called for each picked update
  /// and returns false when it did not fit after all.
  template <class Take>
  void pick(std::size_t budget, int limit, Take&& take) {
    picked_.clear();
    int misses = 0;
    bool full = false;
    for (std::size_t t = 0; t < levels_.size() && !full; ++t) {
      for (Index i = levels_[t].head; i != kNil; i = entries_[i].next) {
        const Entry& e = entries_[i];
        // Bounded scan: past a few entries that do not fit, the rest waits
        // for the next message.
        if (e.size > budget) {
          if (++misses > 16) {
            full = true;
            break;
          }
          continue;
        }
        if (!take(std::span<const std::byte>(e.data.get(), e.size))) continue;
        budget -= e.size;
        picked_.push_back(i);
        if (budget < 16) {
          full = true;
          break;
        }
      }
    }
    // Unlink every picked entry first (indices stay valid: nothing is erased
    // yet), then promote the survivors, keeping their order (pushed to the
    // front in reverse), then erase the finished ones from the highest
    // index down (erase moves the last entry into the hole; the last is
    // never one still to be erased).
    for (Index i : picked_) unlink(i);
    for (std::size_t k = picked_.size(); k-- > 0;) {
      const Index i = picked_[k];
      if (static_cast<int>(++entries_[i].transmits) < limit) {
        link_front(i, entries_[i].transmits);
        picked_[k] = kNil;
      }
    }
    std::sort(picked_.begin(), picked_.end(), [](Index a, Index b) { return a > b; });
    for (Index i : picked_) {
      if (i != kNil) remove_unlinked(i);
    }
  }

  std::size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }

  /// Bytes held (entries, index, encoded updates), for memory accounting.
  std::size_t memory_bytes() const {
    std::size_t n = entries_.memory_bytes() + levels_.capacity() * sizeof(Level) + picked_.capacity() * sizeof(Index);
    for (const Entry& e : entries_) n += e.size;
    return n;
  }

  /// How many times each update is sent for a cluster of n members.
  static int transmit_limit(int retransmit_mult, std::size_t n) {
    return retransmit_mult * static_cast<int>(std::ceil(std::log10(static_cast<double>(n) + 1)));
  }

 private:
  struct Entry {
    Endpoint about;
    Index prev = kNil, next = kNil;  // neighbours in its level (same transmit count)
    std::uint32_t transmits = 0;
    std::uint32_t size = 0;
    std::unique_ptr<std::byte[]> data;
    const Endpoint& key() const { return about; }
  };
  static_assert(sizeof(void*) != 8 || sizeof(Entry) <= 48, "a queue entry grew: N queues in a simulation");
  struct Level {
    Index head = kNil, tail = kNil;
  };

  void link_front(Index i, std::uint32_t level) {
    if (levels_.size() <= level) levels_.resize(level + 1);
    Level& l = levels_[level];
    Entry& e = entries_[i];
    e.prev = kNil;
    e.next = l.head;
    if (l.head != kNil) entries_[l.head].prev = i;
    else l.tail = i;
    l.head = i;
  }
  void unlink(Index i) {
    Entry& e = entries_[i];
    Level& l = levels_[e.transmits];
    if (e.prev != kNil) entries_[e.prev].next = e.next;
    else l.head = e.next;
    if (e.next != kNil) entries_[e.next].prev = e.prev;
    else l.tail = e.prev;
    e.prev = e.next = kNil;
  }
  void erase(Index i) {
    unlink(i);
    remove_unlinked(i);
  }
  /// Erases unlinked entry i; the entry that moves into its place keeps
  /// its neighbours' links right.
  void remove_unlinked(Index i) {
    entries_.erase(i, [this](Entry& moved, Index to) {
      Level& l = levels_[moved.transmits];
      if (moved.prev != kNil) entries_[moved.prev].next = to;
      else l.head = to;
      if (moved.next != kNil) entries_[moved.next].prev = to;
      else l.tail = to;
    });
  }

  MemberTable<Entry> entries_;
  std::vector<Level> levels_;  // by transmit count
  std::vector<Index> picked_;  // scratch for pick()
};

}  // namespace broach::membership
