// InternalServices: members, routes, stats and push-pull.
#include "api/internal_services.hpp"

#include <msgpack.hpp>

#include <cstdio>
#include <cstdlib>
#include <map>

#include "reliable/keyring.hpp"

namespace broach::api {

bool InternalServices::handle(reliable::IncomingRequest& req) {
  BROACH_ASSERT_IN_LOOP(d_.loop);
  auto* membership = d_.membership();
  reliable::CallResult r;
  try {
    if (!req.service.starts_with("__broach.")) return false;
    if (!allowed(req)) {
      throw Error(Errc::kPermissionDenied,
                  req.service == kKeysService
                      ? std::string("__broach.keys answers key holders only (sealed requests)")
                      : req.service + " answers key holders, hosts of members and params.broach.security.adminNetworks; " +
                            req.token.reply_to.ip_string() + " is none of them");
    }
    if (req.service == membership::kPushPullService && membership != nullptr) {
      r.body = membership->handle_push_pull(req.args);
    } else if (req.service == kMembersService && membership != nullptr) {
      r.body = pack_members(membership->members());
    } else if (req.service == kRoutesService) {
      r.body = pack_routes(*d_.routes());
    } else if (req.service == kStatsService) {
      r.body = d_.stats_msgpack();
    } else if (req.service == kRpczService && d_.rpcz_msgpack) {
      r.body = d_.rpcz_msgpack(rpcz_filter(req.args));
    } else if (req.service == kKeysService) {
      r.body = keys(req.args);
    } else {
      return false;
    }
  } catch (const Error& e) {
    r = reliable::CallResult{e.code(), {}, e.message()};
  }
  d_.engine.respond(req.token, std::move(r));
  return true;
}

bool InternalServices::allowed(const reliable::IncomingRequest& req) const {
  if (req.token.sealed || req.service == membership::kPushPullService) return true;
  if (req.service == kKeysService) return false;
  const Endpoint& from = req.token.reply_to;
  for (const auto& n : d_.admin_networks) {
    if (!from.v6 && n.contains(from.ip)) return true;
  }
  // IPv6 callers: adminNetworks are IPv4 networks; ::1 is admitted when
  // they admit IPv4 loopback (127.0.0.1), as they do by default.
  if (from.v6 && from.loopback()) {
    for (const auto& n : d_.admin_networks) {
      if (n.contains(0x7f000001u)) return true;
    }
  }
  // A host of the cluster: this node's own (a CLI on the same host) or a
  // live member's, whatever the port.
  if (from.same_host(d_.engine.options().advertised)) return true;
  const auto* membership = d_.membership();
  return membership != nullptr && membership->live_member_at(from);
}

TraceStore::Filter InternalServices::rpcz_filter(std::span<const std::byte> args) {
  std::map<std::string, std::string> params;
  try {
    auto oh = msgpack::unpack(reinterpret_cast<const char*>(args.data()), args.size());
    const auto& a = oh.get();
    if (a.type != msgpack::type::ARRAY || a.via.array.size > 1) throw Error(Errc::kBadArguments, "");
    if (a.via.array.size == 1) a.via.array.ptr[0].convert(params);
  } catch (const std::exception&) {
    throw Error(Errc::kBadArguments, "__broach.rpcz takes [] or [{parameter: value}]");
  }
  TraceStore::Filter f;
  if (auto bad = read_filter(params, f)) throw Error(Errc::kBadArguments, "__broach.rpcz: " + *bad);
  return f;
}

namespace {
std::string id_text(std::uint16_t id) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%04x", id);
  return buf;
}
}  // namespace

Bytes InternalServices::keys(std::span<const std::byte> args) {
  const auto* current = d_.engine.path().keyring();
  if (current == nullptr) throw Error(Errc::kInvalidArgument, "this node has no keyring (a plaintext node)");
  std::vector<std::string> a;
  try {
    a = detail::unpack_value<std::vector<std::string>>(args);
  } catch (const Error&) {
    throw Error(Errc::kBadArguments, "__broach.keys takes [op] or [op, key]");
  }
  if (a.empty()) throw Error(Errc::kBadArguments, "__broach.keys takes [op] or [op, key]");
  const std::string& op = a[0];
  reliable::Keyring ring = *current;
  auto key_arg = [&]() -> std::uint16_t {
    if (a.size() != 2) throw Error(Errc::kBadArguments, op + " takes a key (base64) or a key id (0x....)");
    // A key id is "0x" and four hex digits; a key is 44 characters of base64
    // (which may itself begin with "0x").
    if (a[1].size() == 6 && a[1].rfind("0x", 0) == 0) {
      return static_cast<std::uint16_t>(std::strtoul(a[1].c_str(), nullptr, 16));
    }
    auto k = reliable::key_from_base64(a[1]);
    if (!k) throw Error(Errc::kBadArguments, "not a key (base64 of 32 bytes)");
    return k->id;
  };
  if (op == "install") {
    if (a.size() != 2) throw Error(Errc::kBadArguments, "install takes a key (base64)");
    auto k = reliable::key_from_base64(a[1]);
    if (!k) throw Error(Errc::kBadArguments, "not a key (base64 of 32 bytes)");
    ring = ring.with(*k);
  } else if (op == "use") {
    ring = ring.with_primary(key_arg());
  } else if (op == "remove") {
    ring = ring.without(key_arg());
  } else if (op != "list") {
    throw Error(Errc::kBadArguments, "unknown op '" + op + "' (list, install, use, remove)");
  }
  if (op != "list") {
    if (!d_.keyring_file.empty()) ring.save(d_.keyring_file);  // survives a restart
    d_.engine.set_keyring(std::make_shared<const reliable::Keyring>(ring));
  }
  std::vector<std::string> ids;
  for (const auto& k : ring.keys()) ids.push_back(id_text(k.id));
  return detail::pack_value(ids);
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
