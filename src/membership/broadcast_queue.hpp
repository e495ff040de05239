// Internal header. The transmit-limited queue of membership updates that are
// piggybacked on probe traffic (SWIM dissemination): each update is sent
// about retransmit_mult * log10(N+1) times, the least-sent first; a newer
// update about the same member replaces the older one. Bounded: past the
// `max` given to push, the most-sent entry (oldest among equals) is dropped;
// push-pull anti-entropy repairs what a dropped update did not reach.
// Layer: membership. Thread contract: loop thread only.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <set>
#include <unordered_map>
#include <vector>

#include "broach/endpoint.hpp"
#include "wire/payload.hpp"

namespace broach::membership {

class BroadcastQueue {
 public:
  BroadcastQueue() = default;
  /// Queues `encoded` as the latest news about `about`, keeping at most
  /// `max` entries. Returns false when another update had to be dropped to
  /// make room.
  bool push(const Endpoint& about, wire::Bytes encoded, std::size_t max = ~std::size_t{0}) {
    remove(about);
    bool dropped = false;
    if (order_.size() >= std::max<std::size_t>(max, 1)) {
      Entry* last = *std::prev(order_.end());  // most transmitted, oldest among equals
      order_.erase(std::prev(order_.end()));
      by_member_.erase(last->about);
      delete last;
      dropped = true;
    }
    auto* e = new Entry{about, std::move(encoded), 0, next_id_++};
    by_member_[about] = e;
    order_.insert(e);
    return !dropped;
  }
  /// Picks updates that fit in `budget` bytes (each costs its size), least
  /// transmitted first; counts a transmission for each and drops those that
  /// reached `limit` transmissions. `take` is called for each picked update
  /// and returns false when it did not fit after all.
  template <class Take>
  void pick(std::size_t budget, int limit, Take&& take) {
    std::vector<Entry*> used;
    int misses = 0;
    for (auto* e : order_) {
      // Bounded scan: past a few entries that do not fit, the rest waits
      // for the next message.
      if (e->data.size() > budget) {
        if (++misses > 16) break;
        continue;
      }
      if (!take(e->data)) continue;
      budget -= e->data.size();
      used.push_back(e);
      if (budget < 16) break;
    }
    for (auto* e : used) {
      order_.erase(e);
      if (++e->transmits >= limit) {
        by_member_.erase(e->about);
        delete e;
      } else {
        order_.insert(e);
      }
    }
  }
  std::size_t size() const { return order_.size(); }
  bool empty() const { return order_.empty(); }
  ~BroadcastQueue() {
    for (auto* e : order_) delete e;
  }
  BroadcastQueue(const BroadcastQueue&) = delete;
  BroadcastQueue& operator=(const BroadcastQueue&) = delete;

  /// How many times each update is sent for a cluster of n members.
  static int transmit_limit(int retransmit_mult, std::size_t n) {
    return retransmit_mult * static_cast<int>(std::ceil(std::log10(static_cast<double>(n) + 1)));
  }

 private:
  struct Entry {
    Endpoint about;
    wire::Bytes data;
    int transmits;
    std::uint64_t id;
  };
  struct Less {
    bool operator()(const Entry* a, const Entry* b) const {
      if (a->transmits != b->transmits) return a->transmits < b->transmits;
      return a->id > b->id;  // newer first among equals
    }
  };
  void remove(const Endpoint& about) {
    auto it = by_member_.find(about);
    if (it == by_member_.end()) return;
    order_.erase(it->second);
    delete it->second;
    by_member_.erase(it);
  }
  std::set<Entry*, Less> order_;
  std::unordered_map<Endpoint, Entry*> by_member_;
  std::uint64_t next_id_ = 0;
};

}  // namespace broach::membership
