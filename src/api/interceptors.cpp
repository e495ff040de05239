// Interceptor lists, the hooks' runners, the thread's current served
// request, and the interceptors that come with BroachRpc.
#include "api/interceptors.hpp"

#include <random>

#include "base/log.hpp"
#include "base/rng.hpp"
#include "wire/payload.hpp"

namespace broach {
namespace {
thread_local const ServerCall* t_current = nullptr;
}  // namespace

const ServerCall* current_server_call() noexcept { return t_current; }

}  // namespace broach

namespace broach::api {

static_assert(kMaxMetadataEntries == wire::kMaxMetadataEntries && kMaxMetadataBytes == wire::kMaxMetadataBytes,
              "the public bounds are the wire's");

namespace {
// Publishes `lists.back()` plus `i` as the new current list (the caller
// holds the chain's mutex); every list stays alive in `lists`.
template <class List, class Item>
void publish(std::vector<std::unique_ptr<const List>>& lists, std::atomic<const List*>& current, Item i) {
  if (!i) throw Error(Errc::kInvalidArgument, "add_interceptor: null interceptor");
  auto next = std::make_unique<List>(lists.empty() ? List{} : *lists.back());
  next->push_back(std::move(i));
  current.store(next.get(), std::memory_order_release);
  lists.push_back(std::move(next));
}
}  // namespace

void InterceptorChain::add(std::shared_ptr<ClientInterceptor> i) {
  MutexLock lock(mu_);
  publish(client_lists_, client_, std::move(i));
}

void InterceptorChain::add(std::shared_ptr<ServerInterceptor> i) {
  MutexLock lock(mu_);
  publish(server_lists_, server_, std::move(i));
}

std::optional<Error> pack_metadata(const Metadata& m, Bytes& out) {
  wire::MetadataView view;
  view.reserve(m.size());
  for (const auto& [k, v] : m) view.emplace_back(k, v);
  if (!wire::encode_metadata(view, out)) {
    out.clear();
    return Error(Errc::kInvalidArgument,
                 "call metadata breaks its bounds (at most 16 pairs, 1024 bytes packed, no empty key)");
  }
  return std::nullopt;
}

Metadata unpack_metadata(std::span<const std::byte> packed) {
  Metadata m;
  wire::MetadataView view;
  if (packed.empty() || !wire::decode_metadata(packed, view)) return m;
  for (const auto& [k, v] : view) m.insert_or_assign(std::string(k), std::string(v));
  return m;
}

TimePoint from_public(std::chrono::steady_clock::time_point t) {
  return TimePoint(std::chrono::duration_cast<Duration>(t.time_since_epoch()));
}

std::chrono::steady_clock::time_point to_public(TimePoint t) {
  return std::chrono::steady_clock::time_point(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(t.time_since_epoch()));
}

namespace {
template <class F>
std::optional<Error> guarded(const char* side, Errc on_throw, F&& f) {
  try {
    return f();
  } catch (const Error& e) {
    return Error(on_throw, std::string(side) + " interceptor threw: " + e.message());
  } catch (const std::exception& e) {
    return Error(on_throw, std::string(side) + " interceptor threw: " + e.what());
  } catch (...) {
    return Error(on_throw, std::string(side) + " interceptor threw");
  }
}

template <class F>
void ignoring_exceptions(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    BROACH_LOG_WARN("interceptor threw in an after hook (ignored): {}", e.what());
  } catch (...) {
    BROACH_LOG_WARN("interceptor threw in an after hook (ignored)");
  }
}
}  // namespace

std::optional<Error> run_before_call(const ClientList& list, ClientCall& call) {
  for (const auto& i : list) {
    if (auto e = guarded("client", Errc::kInvalidArgument, [&] { return i->before_call(call); })) return e;
  }
  return std::nullopt;
}

std::optional<Error> run_before_attempt(const ClientList& list, ClientCall& call, const Endpoint& provider) {
  for (const auto& i : list) {
    if (auto e = guarded("client", Errc::kInvalidArgument, [&] { return i->before_attempt(call, provider); })) {
      return e;
    }
  }
  return std::nullopt;
}

void run_after_attempt(const ClientList& list, const ClientCall& call, const Endpoint& provider,
                       const RawResult& r, Duration latency) {
  for (const auto& i : list) ignoring_exceptions([&] { i->after_attempt(call, provider, r, latency); });
}

void run_after_call(const ClientList& list, const ClientCall& call, const RawResult& r, Duration latency) {
  for (const auto& i : list) ignoring_exceptions([&] { i->after_call(call, r, latency); });
}

std::optional<Error> InterceptedCall::repack() {
  if (call.metadata == packed_from) return std::nullopt;
  Bytes fresh;
  if (auto e = pack_metadata(call.metadata, fresh)) return e;  // what was packed before stays
  packed = std::move(fresh);
  packed_from = call.metadata;
  return std::nullopt;
}

ServerCallScope::ServerCallScope(const ServerCall* call) noexcept : prev_(t_current) { t_current = call; }
ServerCallScope::~ServerCallScope() { t_current = prev_; }

std::optional<Error> run_before_handler(const ServerList& list, const ServerCall& call) {
  for (const auto& i : list) {
    if (auto e = guarded("server", Errc::kRemoteError, [&] { return i->before_handler(call); })) return e;
  }
  return std::nullopt;
}

void run_after_handler(const ServerList& list, const ServerCall& call, const RawResult& r, Duration latency) {
  for (const auto& i : list) ignoring_exceptions([&] { i->after_handler(call, r, latency); });
}

}  // namespace broach::api

namespace broach::interceptors {
namespace {

constexpr const char* kRequestIdKey = "x-request-id";

std::string new_request_id() {
  thread_local Rng rng(std::random_device{}() ^ (static_cast<std::uint64_t>(std::random_device{}()) << 32));
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(rng.next()),
                static_cast<unsigned long long>(rng.next()));
  return buf;
}

class RequestId final : public ClientInterceptor {
 public:
  std::optional<Error> before_call(ClientCall& call) override {
    if (call.metadata.count(kRequestIdKey)) return std::nullopt;  // set by the caller
    if (const ServerCall* parent = current_server_call()) {
      auto it = parent->metadata.find(kRequestIdKey);
      if (it != parent->metadata.end()) {
        call.metadata[kRequestIdKey] = it->second;
        return std::nullopt;
      }
    }
    call.metadata[kRequestIdKey] = new_request_id();
    return std::nullopt;
  }
};

class DeadlinePropagation final : public ClientInterceptor {
 public:
  std::optional<Error> before_call(ClientCall& call) override {
    const ServerCall* parent = current_server_call();
    if (parent == nullptr || parent->deadline == std::chrono::steady_clock::time_point::max()) return std::nullopt;
    // The call path fails a call whose deadline has passed at once
    // (call_timeout), on the node's own clock.
    if (parent->deadline < call.deadline) call.deadline = parent->deadline;
    return std::nullopt;
  }
};

std::string request_id_of(const Metadata& m) {
  auto it = m.find(kRequestIdKey);
  return it == m.end() ? std::string("-") : it->second;
}

std::string outcome(const RawResult& r) { return r.ok() ? std::string("ok") : std::string(errc_name(r.error().code())); }

class ClientAccessLog final : public ClientInterceptor {
 public:
  void after_call(const ClientCall& call, const RawResult& r, std::chrono::nanoseconds latency) override {
    if (!log::get().should_log(spdlog::level::debug)) return;
    BROACH_LOG_DEBUG("call {} to {} -> {} in {} us, {} attempt(s), request id {}", call.service,
                     call.to ? call.to->to_string() : std::string("(by name)"), outcome(r),
                     std::chrono::duration_cast<std::chrono::microseconds>(latency).count(), call.attempts,
                     request_id_of(call.metadata));
  }
};

class ServerAccessLog final : public ServerInterceptor {
 public:
  void after_handler(const ServerCall& call, const RawResult& r, std::chrono::nanoseconds latency) override {
    if (!log::get().should_log(spdlog::level::debug)) return;
    BROACH_LOG_DEBUG("served {} for {} -> {} in {} us, request id {}", call.service, call.caller.to_string(),
                     outcome(r), std::chrono::duration_cast<std::chrono::microseconds>(latency).count(),
                     request_id_of(call.metadata));
  }
};

}  // namespace

std::shared_ptr<ClientInterceptor> request_id() { return std::make_shared<RequestId>(); }
std::shared_ptr<ClientInterceptor> deadline_propagation() { return std::make_shared<DeadlinePropagation>(); }
std::shared_ptr<ClientInterceptor> client_access_log() { return std::make_shared<ClientAccessLog>(); }
std::shared_ptr<ServerInterceptor> server_access_log() { return std::make_shared<ServerAccessLog>(); }

}  // namespace broach::interceptors
