// Public header. Interceptors: code that wraps every call a node makes and
// every request it serves, as gRPC's and brpc's do. Install them with
// Node::add_interceptor; they run in registration order.
//
// A client interceptor sees a call before its provider is picked (it may add
// metadata, shorten the deadline, or end the call at once with an Error),
// before and after each attempt (retries and hedges included), and once when
// the call has ended, with the result and the latency. A server interceptor
// sees each served request before its handler runs (it may answer with an
// Error instead) and after, with the result and the handler's time. An
// exception thrown by an interceptor becomes a typed error, never a crash:
// kInvalidArgument on the caller's side, kRemoteError on the provider's (the
// same as a throwing handler); from an "after" hook it is ignored.
//
// Metadata is a small map of strings that travels with the call on the wire
// (docs/protocol.md, "Call metadata"): at most 16 pairs, 1 KiB packed, no
// empty key. A call whose metadata breaks the bounds fails with
// kInvalidArgument. Keys are case-sensitive; names starting with "broach-"
// are kept for the framework.
//
// Thread contract: hooks may run on any of the node's threads and on the
// calling thread, at the same time for different calls, so an interceptor
// must be thread-safe. before_call runs on the thread that started the call;
// before_attempt on that thread for the first attempt and on the loop thread
// after; after_attempt and after_call on the loop thread (they must not
// block; after a node has stopped, on the calling thread). after_call runs
// when the call's result is known: a losing hedge's after_attempt may come
// later. Server hooks run on the thread that runs the handler (a worker, or
// the loop for run_on_loop handlers); for a coroutine handler
// before_handler runs on the loop and after_handler on whichever thread the
// coroutine finishes on.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "broach/codec.hpp"
#include "broach/endpoint.hpp"
#include "broach/error.hpp"

namespace broach {

/// The raw outcome of a call: a packed result or an error.
using RawResult = Result<Bytes>;

using Metadata = std::map<std::string, std::string>;
inline constexpr std::size_t kMaxMetadataEntries = 16;
inline constexpr std::size_t kMaxMetadataBytes = 1024;

/// An outgoing call, as client interceptors see it.
struct ClientCall {
  std::string service;
  /// The address the call was made to; empty for a call by name.
  std::optional<Endpoint> to;
  /// When the call gives up (retries included); an interceptor may make it
  /// earlier, never later.
  std::chrono::steady_clock::time_point deadline;
  /// Sent with every attempt; changes made before an attempt go with it and
  /// the attempts after it.
  Metadata metadata;
  int attempts = 0;  ///< attempts started so far
  /// CallOptions::trace: the caller asked for this call to be traced
  /// whatever the sample rate; also set by the tracer when it traces the
  /// call (sampled, or nested in a traced request).
  bool trace = false;
};

/// A request being served, as server interceptors and handlers see it.
struct ServerCall {
  std::string service;
  /// Where the request came from (this node's own address for an
  /// in-process call).
  Endpoint caller;
  /// The caller's deadline, on this node's clock (time_point::max(): none).
  std::chrono::steady_clock::time_point deadline;
  Metadata metadata;  ///< as the caller sent it
  /// When the request arrived at this node (before it waited for a worker);
  /// for an in-process call, when it was started.
  std::chrono::steady_clock::time_point received;
};

class ClientInterceptor {
 public:
  virtual ~ClientInterceptor() = default;
  /// Before the provider is picked, once per call. An Error ends the call
  /// with it (no attempt is made, later interceptors do not run).
  virtual std::optional<Error> before_call(ClientCall& call) { (void)call; return std::nullopt; }
  /// Before each attempt, with the provider picked. An Error ends the call
  /// with it (no attempt is made, later interceptors do not run).
  virtual std::optional<Error> before_attempt(ClientCall& call, const Endpoint& provider) {
    (void)call, (void)provider;
    return std::nullopt;
  }
  /// After each attempt (that before_attempt let through).
  virtual void after_attempt(const ClientCall& call, const Endpoint& provider, const RawResult& result,
                             std::chrono::nanoseconds latency) {
    (void)call, (void)provider, (void)result, (void)latency;
  }
  /// Once, when the call has ended (also when before_call ended it).
  virtual void after_call(const ClientCall& call, const RawResult& result, std::chrono::nanoseconds latency) {
    (void)call, (void)result, (void)latency;
  }
};

class ServerInterceptor {
 public:
  virtual ~ServerInterceptor() = default;
  /// Before the handler. An Error is the answer instead (the handler does
  /// not run, later interceptors do not run).
  virtual std::optional<Error> before_handler(const ServerCall& call) { (void)call; return std::nullopt; }
  /// After the handler (or after before_handler answered), with the result
  /// and the time since before_handler.
  virtual void after_handler(const ServerCall& call, const RawResult& result, std::chrono::nanoseconds latency) {
    (void)call, (void)result, (void)latency;
  }
};

/// The request the calling thread is serving: set while a handler runs on
/// a worker or the loop (for a coroutine handler, until it first
/// suspends), null elsewhere; set only on a node with an interceptor
/// installed, or for a request that carries metadata (a node without
/// either pays nothing for it). Nested calls read it to carry on the
/// parent's metadata and deadline.
const ServerCall* current_server_call() noexcept;

/// Interceptors that come with BroachRpc (also enabled by config keys,
/// docs/usage.md "Interceptors").
namespace interceptors {
/// Gives every call a request id in metadata "x-request-id": the id of the
/// request being served when the call is nested in a handler, a new random
/// one otherwise (params.broach.requestId).
std::shared_ptr<ClientInterceptor> request_id();
/// A nested call never outlives its parent: its deadline is cut to the
/// served request's, and it fails at once with kCallTimeout when that has
/// passed (params.broach.propagateDeadline).
std::shared_ptr<ClientInterceptor> deadline_propagation();
/// One line per call made and per request served, at debug level, with the
/// service, peer, result and latency (params.broach.accessLog).
std::shared_ptr<ClientInterceptor> client_access_log();
std::shared_ptr<ServerInterceptor> server_access_log();
}  // namespace interceptors

}  // namespace broach
