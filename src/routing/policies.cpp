// The built-in load-balancing policies and the process-wide registry.
#include <algorithm>
#include <atomic>
#include <map>

#include "base/thread_annotations.hpp"
#include "broach/lb.hpp"

namespace broach::lb {
namespace {

std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  return x ^ (x >> 33);
}

std::uint64_t hash_bytes(std::string_view s, std::uint64_t seed = 0xcbf29ce484222325ULL) {
  std::uint64_t h = seed;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ULL;
  return mix(h);
}

class RoundRobin final : public Policy {
 public:
  std::size_t pick(std::span<const Candidate> c, const PickContext&) override {
    return next_.fetch_add(1, std::memory_order_relaxed) % c.size();
  }

 private:
  std::atomic<std::uint64_t> next_{0};
};

class Random final : public Policy {
 public:
  std::size_t pick(std::span<const Candidate> c, const PickContext& ctx) override {
    return ctx.random % c.size();
  }
};

// Weighted random: probability proportional to the advertised weight.
class Weighted final : public Policy {
 public:
  std::size_t pick(std::span<const Candidate> c, const PickContext& ctx) override {
    std::uint64_t total = 0;
    for (const auto& x : c) total += x.weight;
    if (total == 0) return ctx.random % c.size();
    std::uint64_t r = ctx.random % total;
    for (std::size_t i = 0; i < c.size(); ++i) {
      if (r < c[i].weight) return i;
      r -= c[i].weight;
    }
    return c.size() - 1;
  }
};

// Fewest calls in flight from this node (what the seed's request counter
// approximated); ties broken at random so equal providers share the load.
class LeastOutstanding final : public Policy {
 public:
  std::size_t pick(std::span<const Candidate> c, const PickContext& ctx) override {
    std::uint32_t best = UINT32_MAX;
    std::size_t ties = 0, chosen = 0;
    for (std::size_t i = 0; i < c.size(); ++i) {
      if (c[i].outstanding < best) {
        best = c[i].outstanding;
        ties = 1;
        chosen = i;
      } else if (c[i].outstanding == best) {
        ++ties;
        if (mix(ctx.random + i) % ties == 0) chosen = i;  // reservoir sampling
      }
    }
    return chosen;
  }
};

// Power of two choices on latency x load: two random candidates, the one with
// the lower ewma x (outstanding + 1) wins. An unmeasured one wins (explore).
class P2cEwma final : public Policy {
 public:
  std::size_t pick(std::span<const Candidate> c, const PickContext& ctx) override {
    if (c.size() == 1) return 0;
    const std::size_t a = ctx.random % c.size();
    std::size_t b = mix(ctx.random) % (c.size() - 1);
    if (b >= a) ++b;
    return score(c[a]) <= score(c[b]) ? a : b;
  }

 private:
  static double score(const Candidate& x) { return x.latency_ewma_us * (x.outstanding + 1.0); }
};

// Consistent hashing on the routing key: a ring with kVnodes points per
// provider, so when providers come and go only the keys of the changed
// provider move. Calls without a key are spread at random.
class ConsistentHash final : public Policy {
 public:
  std::size_t pick(std::span<const Candidate> c, const PickContext& ctx) override {
    if (ctx.routing_key.empty()) return ctx.random % c.size();
    const std::uint64_t key = hash_bytes(ctx.routing_key);
    std::uint64_t ring_id = 0;
    for (const auto& x : c) ring_id = mix(ring_id ^ x.address.key());
    std::shared_ptr<const Ring> ring;
    {
      MutexLock lock(mu_);
      if (ring_ && ring_id_ == ring_id) ring = ring_;
    }
    if (!ring) {
      auto fresh = std::make_shared<Ring>();
      for (std::size_t i = 0; i < c.size(); ++i) {
        for (std::uint64_t v = 0; v < kVnodes; ++v) {
          fresh->points.emplace_back(mix(c[i].address.key() * 1315423911ULL + v), c[i].address);
        }
      }
      std::sort(fresh->points.begin(), fresh->points.end());
      MutexLock lock(mu_);
      ring_ = fresh;
      ring_id_ = ring_id;
      ring = fresh;
    }
    auto it = std::lower_bound(ring->points.begin(), ring->points.end(),
                               std::make_pair(key, Endpoint{}));
    if (it == ring->points.end()) it = ring->points.begin();
    for (std::size_t i = 0; i < c.size(); ++i) {
      if (c[i].address == it->second) return i;
    }
    return 0;
  }

 private:
  static constexpr std::uint64_t kVnodes = 160;
  struct Ring {
    std::vector<std::pair<std::uint64_t, Endpoint>> points;
  };
  Mutex mu_;
  std::shared_ptr<const Ring> ring_ BROACH_GUARDED_BY(mu_);
  std::uint64_t ring_id_ BROACH_GUARDED_BY(mu_) = 0;
};

// This node when it provides the service (no network at all), else round robin.
class LocalFirst final : public Policy {
 public:
  std::size_t pick(std::span<const Candidate> c, const PickContext& ctx) override {
    for (std::size_t i = 0; i < c.size(); ++i) {
      if (c[i].self) return i;
    }
    return rr_.pick(c, ctx);
  }

 private:
  RoundRobin rr_;
};

struct Registry {
  SharedMutex mu;
  std::map<std::string, PolicyFactory> factories BROACH_GUARDED_BY(mu);
  Registry() {
    factories["round_robin"] = [] { return std::make_unique<RoundRobin>(); };
    factories["random"] = [] { return std::make_unique<Random>(); };
    factories["weighted"] = [] { return std::make_unique<Weighted>(); };
    factories["least_outstanding"] = [] { return std::make_unique<LeastOutstanding>(); };
    factories["p2c_ewma"] = [] { return std::make_unique<P2cEwma>(); };
    factories["consistent_hash"] = [] { return std::make_unique<ConsistentHash>(); };
    factories["local_first"] = [] { return std::make_unique<LocalFirst>(); };
  }
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

void register_policy(const std::string& name, PolicyFactory factory) {
  auto& r = registry();
  WriterLock lock(r.mu);
  r.factories[name] = std::move(factory);
}

std::unique_ptr<Policy> make_policy(const std::string& name) {
  auto& r = registry();
  ReaderLock lock(r.mu);
  auto it = r.factories.find(name);
  return it == r.factories.end() ? nullptr : it->second();
}

std::vector<std::string> policy_names() {
  auto& r = registry();
  ReaderLock lock(r.mu);
  std::vector<std::string> out;
  for (const auto& [name, f] : r.factories) out.push_back(name);
  return out;
}

}  // namespace broach::lb
