// Internal header. Replay protection for sealed datagrams.
//
// Every sealed datagram carries its sender's per-life counter (authenticated
// with it). ReplayGuard keeps, per sender life (node id), a sliding window
// of kWindow counters below the highest one seen: a counter seen before, or
// older than the window, is a replay. Retransmissions are new datagrams with
// new counters, so reliability is untouched; a restarted sender has a new
// node id and starts a new window. Windows are made only for datagrams that
// opened (key holders), and at most kMaxSenders are kept: the one updated
// longest ago is forgotten first. A forgotten sender starts a fresh window,
// so its old datagrams could be replayed once more; that needs more than
// kMaxSenders sender lives active at once (only key holders create windows).
// Thread contract: loop thread only (the DatagramPath's incoming stage).
#pragma once

#include <array>
#include <cstdint>
#include <list>
#include <unordered_map>

namespace broach::reliable {

class ReplayWindow {
 public:
  static constexpr std::uint64_t kWindow = 4096;
  /// True (and recorded) when `counter` is new; false for a replay or a
  /// counter more than kWindow below the highest seen. Counter 0 is never valid.
  bool accept(std::uint64_t counter) {
    if (counter == 0) return false;
    if (counter > highest_) {
      const std::uint64_t shift = counter - highest_;
      if (shift >= kWindow) {
        bits_.fill(0);
      } else {
        for (std::uint64_t c = highest_ + 1; c <= counter; ++c) clear(c);
      }
      highest_ = counter;
      set(counter);
      return true;
    }
    if (highest_ - counter >= kWindow) return false;  // too old
    if (test(counter)) return false;                  // seen
    set(counter);
    return true;
  }
  std::uint64_t highest() const { return highest_; }

 private:
  void set(std::uint64_t c) { bits_[(c % kWindow) / 64] |= (1ull << (c % 64)); }
  void clear(std::uint64_t c) { bits_[(c % kWindow) / 64] &= ~(1ull << (c % 64)); }
  bool test(std::uint64_t c) const { return bits_[(c % kWindow) / 64] & (1ull << (c % 64)); }
  std::array<std::uint64_t, kWindow / 64> bits_{};
  std::uint64_t highest_ = 0;
};

class ReplayGuard {
 public:
  static constexpr std::size_t kMaxSenders = 8192;  // 8192 x ~560 B: under 5 MiB
  /// True when (node_id, counter) is new.
  bool accept(std::uint64_t node_id, std::uint64_t counter) {
    auto it = senders_.find(node_id);
    if (it == senders_.end()) {
      if (senders_.size() >= kMaxSenders) {
        senders_.erase(lru_.back());
        lru_.pop_back();
      }
      lru_.push_front(node_id);
      it = senders_.emplace(node_id, Entry{{}, lru_.begin()}).first;
    } else {
      lru_.splice(lru_.begin(), lru_, it->second.pos);
    }
    return it->second.window.accept(counter);
  }
  std::size_t senders() const { return senders_.size(); }

 private:
  struct Entry {
    ReplayWindow window;
    std::list<std::uint64_t>::iterator pos;
  };
  std::unordered_map<std::uint64_t, Entry> senders_;
  std::list<std::uint64_t> lru_;  // most recent first
};

}  // namespace broach::reliable
