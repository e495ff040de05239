// NodeCore: the parts of a node wired over injected seams.
#include "api/node_core.hpp"

#include "api/status.hpp"

namespace broach::api {
namespace {

// The keyring of params.broach.security (file or inline keys); null when
// none is configured. Errors name the file and the key.
std::shared_ptr<const reliable::Keyring> keyring_of(const Config& c) {
  const auto& s = c.security;
  if (!s.keyring.empty()) return std::make_shared<const reliable::Keyring>(reliable::Keyring::load(s.keyring));
  if (!s.keys.empty()) {
    return std::make_shared<const reliable::Keyring>(
        reliable::Keyring::from_base64(s.keys, c.source + ": params.broach.security.keys"));
  }
  return nullptr;
}

constexpr std::size_t kIpv6ExtraHeader = 20;  // 40-byte IPv6 header vs 20-byte IPv4

reliable::EngineOptions engine_options(const Config& c, std::uint64_t node_id, const Endpoint& advertised) {
  reliable::EngineOptions o;
  o.security.keyring = keyring_of(c);
  o.security.seal_outgoing = c.security.seal_outgoing;
  o.security.verify_incoming = c.security.verify_incoming;
  o.node_id = node_id;
  o.advertised = advertised;
  o.max_datagram = static_cast<std::size_t>(c.transport.max_datagram_bytes);
  // maxDatagramBytes counts an IPv4 header (1472 = 1500 - 20 - 8); IPv6's
  // is 20 bytes longer, so an IPv6 node sends 20 bytes less per datagram
  // (1452 by default) and a full datagram still fits the same MTU.
  if (advertised.v6) o.max_datagram = std::max<std::size_t>(o.max_datagram - kIpv6ExtraHeader, 512);
  o.max_message = c.transport.max_message_bytes;
  o.send_window = c.transport.send_window;
  o.rto_initial = seconds_f(c.transport.rto_initial_ms / 1000.0);
  o.rto_min = seconds_f(c.transport.rto_min_ms / 1000.0);
  o.rto_max = seconds_f(c.transport.rto_max_ms / 1000.0);
  o.delivery_timeout = seconds_f(c.udp_timeout);
  o.dedup_max_entries = static_cast<std::size_t>(c.transport.dedup_max_entries);
  o.dedup_max_bytes = c.transport.dedup_max_bytes;
  o.reassembly_max_bytes_per_peer = c.transport.reassembly_max_bytes_per_peer;
  o.reassembly_max_bytes_total = c.transport.reassembly_max_bytes_total;
  o.coalesce = c.transport.coalesce;
  o.loopback_large = c.transport.loopback_large_datagrams;
  return o;
}

membership::MembershipOptions membership_options(const Config& c) {
  const auto& m = c.membership;
  membership::MembershipOptions o;
  o.probe_interval = seconds_f(m.probe_interval_ms / 1000.0);
  o.probe_timeout = seconds_f(m.probe_timeout_ms / 1000.0);
  o.indirect_checks = m.indirect_checks;
  o.suspicion_mult = m.suspicion_mult;
  o.suspicion_max_mult = m.suspicion_max_mult;
  o.gossip_interval = seconds_f(m.gossip_interval_ms / 1000.0);
  o.gossip_nodes = m.gossip_nodes;
  o.retransmit_mult = m.retransmit_mult;
  o.push_pull_interval = seconds_f(m.push_pull_interval_ms / 1000.0);
  o.reconnect_interval = seconds_f(m.reconnect_interval_ms / 1000.0);
  o.dead_reclaim = seconds_f(m.dead_reclaim_ms / 1000.0);
  o.call_timeout = seconds_f(c.udp_timeout);
  return o;
}

std::vector<Network> admin_networks(const SecurityConfig& s) {
  std::vector<Network> out;
  for (const auto& text : s.admin_networks) {
    Network n;
    if (Network::parse(text, n)) out.push_back(n);  // validated with the config
  }
  return out;
}

}  // namespace

NodeCore::NodeCore(Config config, const NodeSeams& seams)
    : config_(std::move(config)),
      seams_(seams),
      address_(seams.transport.local()),
      tracer_(std::make_shared<Tracer>(address_.to_string(), config_.trace.sample_rate,
                                       static_cast<std::size_t>(config_.trace.keep), interceptors_, seams.clock)),
      router_(config_, seams.rng_seed ^ 0x5bd1e995u),
      engine_(seams.loop, seams.transport, engine_options(config_, seams.node_id, address_), &server_),
      internal_(InternalServices::Deps{
          seams.loop, engine_, [this] { return membership_.get(); }, [this] { return routes_.load(); },
          [this] { return status_->stats_msgpack(); },
          [this](const TraceStore::Filter& f) {
            const auto j = status_->rpcz_json(f);
            const auto packed = nlohmann::json::to_msgpack(j);
            return Bytes(reinterpret_cast<const std::byte*>(packed.data()),
                         reinterpret_cast<const std::byte*>(packed.data()) + packed.size());
          },
          config_.security.keyring,
          admin_networks(config_.security)}),
      server_(Server::Deps{seams.loop, seams.clock, seams.executor, services_, counters_, metrics_, stopping_,
                           interceptors_, config_.max_concurrency, [this] { tracer_->ensure_installed(); }},
              engine_, internal_),
      direct_(DirectCalls::Deps{seams.loop, seams.clock, engine_, metrics_, stopping_}),
      local_(LocalCalls::Deps{seams.loop, seams.executor, services_, server_, counters_}),
      named_(NamedCalls::Deps{seams.loop, seams.clock, config_, router_, [this] { return routes_.load(); },
                              direct_, local_, counters_, stopping_, interceptors_, *tracer_}) {
  // The built-in interceptors the config asks for, before any of the
  // application's: the request id first (the others may log it), the access
  // log last (it sees what the others did).
  if (config_.interceptors.request_id) interceptors_.add(interceptors::request_id());
  if (config_.interceptors.propagate_deadline) interceptors_.add(interceptors::deadline_propagation());
  if (config_.interceptors.access_log) {
    interceptors_.add(interceptors::client_access_log());
    interceptors_.add(interceptors::server_access_log());
  }
  // Sampling on: the tracer from the start (after the built-in ones, so
  // that a traced call's spans see the request id they set).
  if (config_.trace.sample_rate > 0) tracer_->ensure_installed();
  membership_ = std::make_unique<membership::Membership>(seams.loop, engine_, membership_options(config_),
                                                         seams.life, meta(), seams.rng_seed, this);
  routes_.store(routing::RouteTable::build(membership_->members()));
  // Under reassembly memory pressure, members' transfers outlive strangers'.
  engine_.set_known_peer_check([this](const Endpoint& from) {
    const auto s = membership_ ? membership_->state_of(from) : std::nullopt;
    return s == MemberState::kAlive || s == MemberState::kSuspect;
  });
  status_ = std::make_unique<Status>(*this);
}

NodeCore::~NodeCore() {
  // Membership holds timers on the loop and calls into the engine: it goes
  // first (the loop is not running any more, so this thread owns it).
  membership_.reset();
}

void NodeCore::start(const std::vector<Endpoint>& seeds) {
  BROACH_ASSERT_IN_LOOP(seams_.loop);
  membership_->start(seeds);
}

void NodeCore::leave() {
  BROACH_ASSERT_IN_LOOP(seams_.loop);
  membership_->leave();
}

void NodeCore::fail_pending(Errc code, const std::string& message) {
  BROACH_ASSERT_IN_LOOP(seams_.loop);
  engine_.fail_all(code, message);
}

std::vector<MemberInfo> NodeCore::members() const {
  BROACH_ASSERT_IN_LOOP(seams_.loop);
  return membership_->members();
}

// Dead and left members leave the route table at once; a burst of events
// (a join storm) is folded into one rebuild.
void NodeCore::on_member_event(membership::EventKind kind, const MemberInfo& m) {
  BROACH_ASSERT_IN_LOOP(seams_.loop);
  {
    using membership::EventKind;
    const char* what = kind == EventKind::kJoin      ? "joined"
                       : kind == EventKind::kSuspect ? "suspect"
                       : kind == EventKind::kAlive   ? "alive (refuted)"
                       : kind == EventKind::kDead    ? "dead"
                       : kind == EventKind::kLeft    ? "left"
                       : kind == EventKind::kUpdate  ? "updated"
                                                     : nullptr;  // reclaimed: bookkeeping only
    if (what != nullptr) metrics_.record_event(MemberEvent{unix_now_ms(), what, m.address.to_string(), m.meta.name});
  }
  // Slow start: a provider that joins a cluster this node is part of, or
  // comes back from dead, is ramped up; the members this node finds as it
  // joins (before its join completes) are the cluster as it is: warm.
  if (m.address != address_ && membership_) {
    using membership::EventKind;
    if (kind == EventKind::kDead || kind == EventKind::kLeft) {
      router_.provider_gone(m.address);
    } else if (kind == EventKind::kReclaim) {
      router_.provider_forgotten(m.address);  // a return is a kJoin now
    } else if (membership_->joined() && kind == EventKind::kJoin) {
      router_.provider_joined(m.address, !m.meta.services.empty(), seams_.clock.now());
    } else if (membership_->joined() && kind == EventKind::kAlive) {
      router_.provider_alive(m.address, !m.meta.services.empty(), seams_.clock.now());
    } else if (kind == EventKind::kUpdate) {
      router_.provider_updated(m.address, !m.meta.services.empty(), seams_.clock.now());
    }
  }
  if (rebuild_pending_) return;
  rebuild_pending_ = true;
  seams_.loop.post([this] {
    rebuild_pending_ = false;
    if (membership_) routes_.store(routing::RouteTable::build(membership_->members(), routes_.load().get()));
  });
}

MemberMeta NodeCore::meta() const {
  MemberMeta m;
  m.name = config_.name;
  m.version = config_.version;
  m.weight = static_cast<std::uint32_t>(config_.membership.weight);
  m.services = services_.advertised();
  return m;
}

void NodeCore::publish_services() {
  seams_.loop.try_post([this, m = meta()]() mutable {
    if (membership_) membership_->set_meta(std::move(m));
  });
}

void NodeCore::provide(std::string name, RawHandler handler, ServiceOptions options) {
  services_.add(std::move(name), Service{std::move(handler), {}, options});
  publish_services();
}

void NodeCore::provide_async(std::string name, RawAsyncHandler handler, ServiceOptions options) {
  options.run_on_loop = true;  // started on the loop; it holds no thread while it awaits
  services_.add(std::move(name), Service{{}, std::move(handler), options});
  publish_services();
}

bool NodeCore::withdraw(const std::string& name) {
  const bool removed = services_.remove(name);
  if (removed) publish_services();
  return removed;
}

void NodeCore::call_to(const Endpoint& to, const std::string& service, Bytes args, const CallOptions& opts,
                       Done done) {
  const TimePoint now = seams_.clock.now();
  TimePoint deadline = call_deadline(config_, opts, now);
  if (opts.trace) tracer_->ensure_installed();
  const ClientList* list = interceptors_.client();
  if (list == nullptr) {
    direct_.call(to, service, args, deadline, std::move(done));
    return;
  }
  // A call to one address is one attempt: before_call, before_attempt, the
  // attempt, after_attempt, after_call.
  auto ic = std::make_shared<InterceptedCall>();
  ic->list = list;
  ic->call.service = service;
  ic->call.to = to;
  ic->call.trace = opts.trace;
  ic->call.deadline = to_public(deadline);
  ic->started = now;
  std::optional<Error> refused = run_before_call(*list, ic->call);
  if (!refused) {
    ++ic->call.attempts;
    refused = run_before_attempt(*list, ic->call, to);
  }
  if (!refused) refused = ic->repack();
  deadline = std::min(deadline, from_public(ic->call.deadline));
  ic->call.deadline = to_public(deadline);  // an interceptor may shorten it, never extend it
  if (!refused && now >= deadline) refused = Error(Errc::kCallTimeout, "no time left for " + service);
  auto finish = [ic, to, clock = &seams_.clock, done = std::move(done)](RawResult r, bool attempted) mutable {
    const Duration took = clock->now() - ic->started;
    if (attempted) run_after_attempt(*ic->list, ic->call, to, r, took);
    run_after_call(*ic->list, ic->call, r, took);
    done(std::move(r));
  };
  if (refused) {
    complete_on_loop(seams_.loop,
                     [finish = std::move(finish)](RawResult r) mutable { finish(std::move(r), false); },
                     std::move(*refused));
    return;
  }
  direct_.call(
      to, service, args, deadline, [finish = std::move(finish)](RawResult r) mutable { finish(std::move(r), true); },
      ic->packed,
      ic->call.trace ? std::function<void(std::uint32_t)>([tracer = tracer_.get(), ic, to](std::uint32_t sends) {
        tracer->note_sends(ic->call, to, sends);
      })
                     : std::function<void(std::uint32_t)>());
}

void NodeCore::add_interceptor(std::shared_ptr<ClientInterceptor> i) { interceptors_.add(std::move(i)); }
void NodeCore::add_interceptor(std::shared_ptr<ServerInterceptor> i) { interceptors_.add(std::move(i)); }

void NodeCore::call_by_name(const std::string& service, Bytes args, const CallOptions& opts, Done done) {
  if (opts.trace) tracer_->ensure_installed();
  named_.start(service, std::move(args), opts, std::move(done));
}

}  // namespace broach::api
