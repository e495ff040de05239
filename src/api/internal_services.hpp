// Internal header (api layer). The node's internal services, answered on
// the loop thread without the worker pool: __broach.pushpull (membership's
// full-state exchange), __broach.members, __broach.routes,
// __broach.stats and __broach.rpcz (what the CLI reads), __broach.keys (key rotation).
// Thread contract: loop thread only (asserted).
#pragma once

#include <functional>
#include <memory>

#include "api/server.hpp"
#include "api/tracing.hpp"
#include "membership/membership.hpp"
#include "routing/route_table.hpp"

namespace broach::api {

inline constexpr const char* kMembersService = "__broach.members";
inline constexpr const char* kRoutesService = "__broach.routes";
inline constexpr const char* kStatsService = "__broach.stats";
/// The traces this node holds: args [] or [{param: value}] with the
/// parameters of /rpcz.json (service, min_ms, errors, trace, limit); the
/// body is that JSON, packed as msgpack.
inline constexpr const char* kRpczService = "__broach.rpcz";
/// Keyring administration: args [op] or [op, key]; op is "list", "install"
/// (key: base64), "use" or "remove" (key: base64 or id as "0x1a2b"). Answers
/// the ring's ids, primary first. Only in a sealed cluster (only key holders
/// reach it); a plaintext node refuses.
inline constexpr const char* kKeysService = "__broach.keys";

class InternalServices final : public InternalHandler {
 public:
  struct Deps {
    Loop& loop;
    reliable::Engine& engine;
    std::function<membership::Membership*()> membership;
    std::function<std::shared_ptr<const routing::RouteTable>()> routes;
    std::function<Bytes()> stats_msgpack;  ///< loop thread
    std::function<Bytes(const TraceStore::Filter&)> rpcz_msgpack;
    std::string keyring_file;              ///< where a changed ring is written back ("" = inline keys)
    std::vector<Network> admin_networks;   ///< params.broach.security.adminNetworks
  };
  explicit InternalServices(Deps deps) : d_(std::move(deps)) {}

  bool handle(reliable::IncomingRequest& req) override;

  /// Who may call what (docs/security.md, "Internal services"): push-pull
  /// (joining) anyone; __broach.keys key holders (sealed requests) only;
  /// the read-only services key holders, hosts of live members (this one
  /// included, any port) and adminNetworks.
  bool allowed(const reliable::IncomingRequest& req) const;

  /// __broach.rpcz's arguments as a filter (kBadArguments when malformed).
  static TraceStore::Filter rpcz_filter(std::span<const std::byte> args);
  /// __broach.keys: applies `op` to the ring and returns its ids.
  Bytes keys(std::span<const std::byte> args);

  /// The bodies of __broach.members and __broach.routes (msgpack).
  static Bytes pack_members(const std::vector<MemberInfo>& members);
  static Bytes pack_routes(const routing::RouteTable& table);

 private:
  Deps d_;
};

}  // namespace broach::api
