// Internal header (api layer). The interceptors installed on a node, and
// the helpers the call paths and the server use to run them
// (include/broach/interceptor.hpp is the public side).
//
// Lists are published copy-on-write: add() builds a new immutable list and
// publishes it with one atomic store; every list ever published is kept
// until the node goes, so a call path reads the current one with one
// atomic load and no lock, and a node with no interceptor sees null and
// does nothing more (the cost of the feature when unused).
// Thread contract: every method is safe from any thread.
#pragma once

#include <atomic>
#include <memory>
#include <span>
#include <vector>

#include "base/thread_annotations.hpp"
#include "base/time.hpp"
#include "broach/interceptor.hpp"
#include "reliable/engine.hpp"

namespace broach::api {

using ClientList = std::vector<std::shared_ptr<ClientInterceptor>>;
using ServerList = std::vector<std::shared_ptr<ServerInterceptor>>;

class InterceptorChain {
 public:
  void add(std::shared_ptr<ClientInterceptor> i);
  void add(std::shared_ptr<ServerInterceptor> i);
  /// Null while none is installed.
  const ClientList* client() const noexcept { return client_.load(std::memory_order_acquire); }
  const ServerList* server() const noexcept { return server_.load(std::memory_order_acquire); }
  /// True once any interceptor is installed: served requests then set
  /// current_server_call() for the handler's nested calls (as they do for
  /// any request that carries metadata).
  bool any() const noexcept { return client() != nullptr || server() != nullptr; }

 private:
  Mutex mu_;
  std::vector<std::unique_ptr<const ClientList>> client_lists_ BROACH_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<const ServerList>> server_lists_ BROACH_GUARDED_BY(mu_);
  std::atomic<const ClientList*> client_{nullptr};
  std::atomic<const ServerList*> server_{nullptr};
};

/// Packs `m` for the wire; kInvalidArgument when it breaks the bounds.
std::optional<Error> pack_metadata(const Metadata& m, Bytes& out);
/// Unpacks metadata that the wire layer has already checked.
Metadata unpack_metadata(std::span<const std::byte> packed);

TimePoint from_public(std::chrono::steady_clock::time_point t);
std::chrono::steady_clock::time_point to_public(TimePoint t);

// Running the client hooks in order. The "before" ones stop at the first
// Error; an exception is an Error(kInvalidArgument). The "after" ones run
// them all and swallow exceptions.
std::optional<Error> run_before_call(const ClientList& list, ClientCall& call);
std::optional<Error> run_before_attempt(const ClientList& list, ClientCall& call, const Endpoint& provider);
void run_after_attempt(const ClientList& list, const ClientCall& call, const Endpoint& provider,
                       const RawResult& r, Duration latency);
void run_after_call(const ClientList& list, const ClientCall& call, const RawResult& r, Duration latency);

/// A client call's interception state, carried by the call from before_call
/// to after_call.
struct InterceptedCall {
  const ClientList* list = nullptr;
  ClientCall call;
  TimePoint started{};
  /// The metadata as last packed, and the map it was packed from (repacked
  /// only when an interceptor changed it).
  Bytes packed;
  Metadata packed_from;
  /// Packs call.metadata if it changed; an Error when it breaks the bounds.
  std::optional<Error> repack();
};

/// Sets current_server_call() for the lifetime of the scope (restoring the
/// previous one after: a run_on_loop handler's context must not leak).
class ServerCallScope {
 public:
  explicit ServerCallScope(const ServerCall* call) noexcept;
  ~ServerCallScope();
  ServerCallScope(const ServerCallScope&) = delete;
  ServerCallScope& operator=(const ServerCallScope&) = delete;

 private:
  const ServerCall* prev_;
};

/// The server hooks: before_handler in order (the first Error answers; an
/// exception is Error(kRemoteError)), after_handler all (exceptions ignored).
std::optional<Error> run_before_handler(const ServerList& list, const ServerCall& call);
void run_after_handler(const ServerList& list, const ServerCall& call, const RawResult& r, Duration latency);

}  // namespace broach::api
