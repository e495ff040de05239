#include "broach/error.hpp"

#include <array>

namespace broach {
namespace {

struct ErrcInfo {
  Errc code;
  const char* name;
  RetryClass retry;
  const char* advice;
};

constexpr std::array<ErrcInfo, 20> kInfo{{
    {Errc::kOk, "ok", RetryClass::kPermanent, "no error"},
    {Errc::kQueueFull, "queue_full", RetryClass::kOverloaded,
     "the thread pool's queue and threads are full; raise threadPool.queueMax/threadMax or slow down"},
    {Errc::kPoolShutdown, "pool_shutdown", RetryClass::kNotExecuted,
     "the thread pool is shutting down and accepts no more tasks"},
    {Errc::kDeliveryTimeout, "delivery_timeout", RetryClass::kMaybeExecuted,
     "the peer did not answer within udpTimeOut; it may be down or unreachable"},
    {Errc::kCallTimeout, "call_timeout", RetryClass::kMaybeExecuted,
     "the call did not finish within rpcTimeOut (or its own deadline)"},
    {Errc::kNotFound, "not_found", RetryClass::kNotExecuted,
     "no function with this name is registered at the provider"},
    {Errc::kCircuitOpen, "circuit_open", RetryClass::kNotExecuted,
     "every provider of this service is fused after recent failures; retry later"},
    {Errc::kRemoteError, "remote_error", RetryClass::kPermanent,
     "the remote handler threw an exception; see the message"},
    {Errc::kNoProvider, "no_provider", RetryClass::kNotExecuted,
     "no live member of the cluster offers this service"},
    {Errc::kOverloaded, "overloaded", RetryClass::kOverloaded,
     "the provider's thread pool refused the work; back off or add providers"},
    {Errc::kBadConfig, "bad_config", RetryClass::kPermanent,
     "the configuration is invalid; fix the named file and key"},
    {Errc::kInvalidArgument, "invalid_argument", RetryClass::kPermanent,
     "the API was called with an invalid value"},
    {Errc::kMessageTooLarge, "message_too_large", RetryClass::kPermanent,
     "the message exceeds maxMessageBytes; raise it on both sides or send less"},
    {Errc::kDeadlineExpired, "deadline_expired", RetryClass::kNotExecuted,
     "the provider dropped the request unrun because its deadline passed while queued"},
    {Errc::kBadArguments, "bad_arguments", RetryClass::kPermanent,
     "arguments or result do not match the declared types"},
    {Errc::kShutdown, "shutdown", RetryClass::kMaybeExecuted,
     "the local node is stopping; the call was abandoned"},
    {Errc::kIoError, "io_error", RetryClass::kPermanent, "a system call failed"},
    {Errc::kProtocolError, "protocol_error", RetryClass::kPermanent,
     "the peer sent a message that violates the protocol"},
    {Errc::kPermissionDenied, "permission_denied", RetryClass::kPermanent,
     "the provider does not serve this caller: internal services answer key holders, the hosts of "
     "members and params.broach.security.adminNetworks; __broach.keys answers key holders only"},
    {Errc::kPeerGone, "peer_gone", RetryClass::kMaybeExecuted,
     "no process listens at the provider's address any more (its host answered ICMP port unreachable): "
     "it stopped or crashed, maybe after running the call; idempotent calls are retried elsewhere"},
}};

const ErrcInfo& info(Errc code) noexcept {
  auto i = static_cast<std::size_t>(code);
  return i < kInfo.size() ? kInfo[i] : kInfo[static_cast<std::size_t>(Errc::kProtocolError)];
}

}  // namespace

const char* errc_name(Errc code) noexcept { return info(code).name; }

bool errc_from_name(std::string_view name, Errc& out) noexcept {
  for (const auto& i : kInfo) {
    if (name == i.name) {
      out = i.code;
      return true;
    }
  }
  return false;
}

bool errc_known(std::uint16_t value) noexcept { return value < kInfo.size(); }
RetryClass retry_class(Errc code) noexcept { return info(code).retry; }
const char* errc_advice(Errc code) noexcept { return info(code).advice; }

Error::Error(Errc code, std::string message)
    : std::runtime_error(std::string(errc_name(code)) + ": " + message),
      code_(code),
      message_(std::move(message)) {}

}  // namespace broach
