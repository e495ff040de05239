#include "membership/meta_pool.hpp"

#include "membership/messages.hpp"

#include <functional>
#include <mutex>
#include <unordered_map>

namespace broach::membership {

namespace {

struct MetaHash {
  std::size_t operator()(const MemberMeta& m) const noexcept {
    std::size_t h = std::hash<std::string>{}(m.name);
    auto mix = [&h](std::size_t v) { h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2); };
    mix(std::hash<std::string>{}(m.version));
    for (const auto& s : m.services) mix(std::hash<std::string>{}(s));
    mix(m.weight);
    for (const auto& [k, v] : m.tags) {
      mix(std::hash<std::string>{}(k));
      mix(std::hash<std::string>{}(v));
    }
    return h;
  }
};

struct Pool {
  std::mutex mu;
  std::unordered_map<MemberMeta, std::weak_ptr<const InternedMeta>, MetaHash> entries;
  std::size_t purge_at = 1024;  // size at which expired entries are swept (amortised O(1))
};

Pool& pool() {
  static Pool* p = new Pool;  // never destroyed: records may outlive static destruction order
  return *p;
}

}  // namespace

std::shared_ptr<const InternedMeta> intern_meta(const MemberMeta& meta) {
  Pool& p = pool();
  std::lock_guard lock(p.mu);
  auto [it, inserted] = p.entries.try_emplace(meta);
  if (!inserted) {
    if (auto e = it->second.lock()) return e;
  }
  auto e = std::make_shared<const InternedMeta>(InternedMeta{meta, pack_member_meta(meta)});
  it->second = e;
  if (p.entries.size() >= p.purge_at) {
    std::erase_if(p.entries, [](const auto& kv) { return kv.second.expired(); });
    p.purge_at = std::max<std::size_t>(1024, 2 * p.entries.size());
  }
  return e;
}

std::size_t interned_meta_count() {
  Pool& p = pool();
  std::lock_guard lock(p.mu);
  std::size_t n = 0;
  for (const auto& e : p.entries) n += e.second.expired() ? 0 : 1;
  return n;
}

}  // namespace broach::membership
