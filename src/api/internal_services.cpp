// InternalServices: members, routes, stats and push-pull.
#include "api/internal_services.hpp"

#include <msgpack.hpp>

namespace broach::api {

bool InternalServices::handle(reliable::IncomingRequest& req) {
  BROACH_ASSERT_IN_LOOP(d_.loop);
  auto* membership = d_.membership();
  reliable::CallResult r;
  try {
    if (req.service == membership::kPushPullService && membership != nullptr) {
      r.body = membership->handle_push_pull(req.args);
    } else if (req.service == kMembersService && membership != nullptr) {
      r.body = pack_members(membership->members());
    } else if (req.service == kRoutesService) {
      r.body = pack_routes(*d_.routes());
    } else if (req.service == kStatsService) {
      r.body = d_.stats_msgpack();
    } else {
      return false;
    }
  } catch (const Error& e) {
    r = reliable::CallResult{e.code(), {}, e.message()};
  }
  d_.engine.respond(req.token, std::move(r));
  return true;
}

Bytes InternalServices::pack_members(const std::vector<MemberInfo>& members) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_array(static_cast<std::uint32_t>(members.size()));
  for (const auto& m : members) {
    pk.pack_map(8);
    pk.pack(std::string("address"));
    pk.pack(m.address.to_string());
    pk.pack(std::string("name"));
    pk.pack(m.meta.name);
    pk.pack(std::string("version"));
    pk.pack(m.meta.version);
    pk.pack(std::string("state"));
    pk.pack(std::string(member_state_name(m.state)));
    pk.pack(std::string("incarnation"));
    pk.pack(m.incarnation);
    pk.pack(std::string("life"));
    pk.pack(m.life);
    pk.pack(std::string("services"));
    pk.pack(m.meta.services);
    pk.pack(std::string("weight"));
    pk.pack(m.meta.weight);
  }
  return detail::to_bytes(buf);
}

Bytes InternalServices::pack_routes(const routing::RouteTable& table) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_map(static_cast<std::uint32_t>(table.services().size()));
  for (const auto& [name, e] : table.services()) {
    pk.pack(name);
    pk.pack_array(static_cast<std::uint32_t>(e.providers.size()));
    for (const auto& p : e.providers) {
      pk.pack_map(4);
      pk.pack(std::string("address"));
      pk.pack(p.address.to_string());
      pk.pack(std::string("state"));
      pk.pack(std::string(member_state_name(p.state)));
      pk.pack(std::string("name"));
      pk.pack(p.name);
      pk.pack(std::string("version"));
      pk.pack(p.version);
    }
  }
  return detail::to_bytes(buf);
}

}  // namespace broach::api
