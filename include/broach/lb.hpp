// Public header. Load balancing: the policy interface (an extension point)
// and the registry of named policies.
//
// A policy picks one provider among the live, non-fused candidates of a
// service for each call. Built-in names: "round_robin", "random",
// "weighted", "least_outstanding", "p2c_ewma", "consistent_hash",
// "local_first". Register your own with register_policy() and select it by
// name in params.broach.loadBalance (docs/usage.md shows an example).
// Thread contract: the registry is thread-safe; Policy::pick may be called
// from many threads at once and must be thread-safe itself.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "broach/endpoint.hpp"

namespace broach::lb {

/// One provider a policy may choose, with what this node knows of it.
struct Candidate {
  Endpoint address;
  std::string_view name;       ///< the member's config "name"
  std::string_view version;    ///< the member's config "version"
  std::uint32_t weight = 100;  ///< advertised weight (params.broach.membership.weight)
  bool self = false;           ///< this very node
  std::uint32_t outstanding = 0;   ///< calls from this node to it, in flight now
  double latency_ewma_us = 0;      ///< smoothed latency of its answers; 0 = none yet
  /// Slow start (params.broach.loadBalance.slowStartMs): 1 when warm, else
  /// the fraction of its full share it should get now. The built-in
  /// policies that ramp get only warm candidates (the warming ones are
  /// drawn before them); a policy of your own sees every candidate with its
  /// warmth and may use it.
  double warmth = 1.0;
};

struct PickContext {
  std::string_view service;
  std::string_view routing_key;  ///< CallOptions::routing_key; empty when none
  std::uint64_t random = 0;      ///< a fresh random number for this pick
};

class Policy {
 public:
  virtual ~Policy() = default;
  /// Returns the index of the chosen candidate. `candidates` is never empty
  /// and is sorted by address. Must be thread-safe.
  virtual std::size_t pick(std::span<const Candidate> candidates, const PickContext& ctx) = 0;
};

using PolicyFactory = std::function<std::unique_ptr<Policy>()>;

/// Registers (or replaces) a named policy for the whole process.
void register_policy(const std::string& name, PolicyFactory factory);
/// A new instance of the named policy; nullptr when no such name exists.
std::unique_ptr<Policy> make_policy(const std::string& name);
/// Every registered name, sorted.
std::vector<std::string> policy_names();

}  // namespace broach::lb
