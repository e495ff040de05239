// Internal header. The member table: records kept in one dense array,
// found by address through an open-addressing index of 4-byte slots
// (linear probing, backward-shift deletion, load at most 3/4).
//
// Why not std::unordered_map: every node keeps a record of every member, so
// a process that simulates N members holds N^2 of them (10^8 at 10,000
// members). A node-based map costs a heap node per record (the record, a
// next pointer, the cached hash, the allocator's header) and a cache miss
// per lookup on the probe path; here a record costs its own bytes plus
// about 5 bytes of index, and a lookup touches one slot run and one record.
// The array grows by a quarter (not double) for the same reason, and an
// owner that knows how many records are coming (a full-state merge)
// reserves exactly that.
//
// Records are identified by their index while they stay in the table;
// erase() moves the last record into the hole and says so (`on_move`), so
// the owner can fix what refers to that index.
// `T` has `const Endpoint& key() const`.
// Layer: membership. Thread contract: none of its own (the owner's: the
// loop thread for Membership).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "base/assert.hpp"
#include "broach/endpoint.hpp"

namespace broach::membership {

template <class T>
class MemberTable {
 public:
  using Index = std::uint32_t;
  static constexpr Index kNone = 0xffffffffu;

  std::size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  T& operator[](Index i) { return items_[i]; }
  const T& operator[](Index i) const { return items_[i]; }
  auto begin() { return items_.begin(); }
  auto end() { return items_.end(); }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }

  /// The index of the record for `addr`, or kNone.
  Index index_of(const Endpoint& addr) const {
    if (items_.empty()) return kNone;
    for (std::size_t s = home(addr);; s = (s + 1) & mask_) {
      const Index i = slots_[s];
      if (i == kNone) return kNone;
      if (items_[i].key() == addr) return i;
    }
  }
  T* find(const Endpoint& addr) {
    const Index i = index_of(addr);
    return i == kNone ? nullptr : &items_[i];
  }
  const T* find(const Endpoint& addr) const {
    const Index i = index_of(addr);
    return i == kNone ? nullptr : &items_[i];
  }

  /// Adds `rec` (its key must not be in the table yet); returns its index.
  Index insert(T rec) {
    BROACH_ASSERT(index_of(rec.key()) == kNone);
    if (items_.size() == items_.capacity()) items_.reserve(items_.size() + items_.size() / 4 + 16);
    if ((items_.size() + 1) * 4 > slots_.size() * 3) grow_index(items_.size() + 1);
    const Index i = static_cast<Index>(items_.size());
    items_.push_back(std::move(rec));
    place(i);
    return i;
  }

  /// Makes room for `n` records in all (no effect when there is room).
  void reserve(std::size_t n) {
    if (n <= items_.capacity()) return;
    items_.reserve(n);
    if (n * 4 > slots_.size() * 3) grow_index(n);
  }

  /// Removes record `i`. The last record moves into its place (unless `i`
  /// was the last): on_move(moved_record, i) is then called.
  void erase(Index i, const std::function<void(T&, Index)>& on_move) {
    BROACH_ASSERT(i < items_.size());
    unplace(i);
    const Index last = static_cast<Index>(items_.size() - 1);
    if (i != last) {
      slots_[slot_of(last)] = i;
      items_[i] = std::move(items_[last]);
      items_.pop_back();
      on_move(items_[i], i);
    } else {
      items_.pop_back();
    }
  }

  /// Bytes held (records and index), for memory accounting.
  std::size_t memory_bytes() const { return items_.capacity() * sizeof(T) + slots_.capacity() * sizeof(Index); }

 private:
  std::size_t home(const Endpoint& addr) const {
    // std::hash<Endpoint> is salted for IPv6; Fibonacci hashing spreads
    // the IPv4 key (address and port side by side) over the top bits.
    const std::uint64_t h = static_cast<std::uint64_t>(std::hash<Endpoint>{}(addr)) * 0x9e3779b97f4a7c15ULL;
    return static_cast<std::size_t>(h >> shift_);
  }
  std::size_t slot_of(Index i) const {
    for (std::size_t s = home(items_[i].key());; s = (s + 1) & mask_) {
      if (slots_[s] == i) return s;
      BROACH_ASSERT(slots_[s] != kNone);
    }
  }
  void place(Index i) {
    std::size_t s = home(items_[i].key());
    while (slots_[s] != kNone) s = (s + 1) & mask_;
    slots_[s] = i;
  }
  /// Frees record i's slot; later slots of the run shift back so that no
  /// lookup stops early at the hole.
  void unplace(Index i) {
    std::size_t hole = slot_of(i);
    slots_[hole] = kNone;
    for (std::size_t s = (hole + 1) & mask_; slots_[s] != kNone; s = (s + 1) & mask_) {
      const std::size_t want = home(items_[slots_[s]].key());
      // The entry at s may move to the hole when its home is not in the
      // cyclic range (hole, s].
      const bool stays = hole <= s ? (want > hole && want <= s) : (want > hole || want <= s);
      if (stays) continue;
      slots_[hole] = slots_[s];
      slots_[s] = kNone;
      hole = s;
    }
  }
  /// Rebuilds the index with room for `want` records at load <= 3/4.
  void grow_index(std::size_t want) {
    std::size_t n = slots_.empty() ? 16 : slots_.size() * 2;
    while (want * 4 > n * 3) n *= 2;
    slots_.assign(n, kNone);
    mask_ = n - 1;
    shift_ = 64;
    while (n > 1) {
      n >>= 1;
      --shift_;
    }
    for (Index i = 0; i < items_.size(); ++i) place(i);
  }

  std::vector<T> items_;
  std::vector<Index> slots_;
  std::size_t mask_ = 0;
  int shift_ = 64;
};

}  // namespace broach::membership
