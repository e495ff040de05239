// Public header. The one error hierarchy of BroachRpc.
//
// Every failure the library reports carries an `Errc`: a stable number that
// also travels on the wire in responses, so values are append-only. Each code
// has a retry class that the retry and circuit-breaking logic read (never the
// message text). Thread contract: all types here are immutable values.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace broach {

/// Error codes. WARNING: append only; the numeric values are on the wire.
enum class Errc : std::uint16_t {
  kOk = 0,
  kQueueFull = 1,          ///< thread pool queue and threads full, isExcInfo=true
  kPoolShutdown = 2,       ///< task submitted to a pool that is shutting down
  kDeliveryTimeout = 3,    ///< transport heard nothing from the peer for udpTimeOut
  kCallTimeout = 4,        ///< the whole call exceeded its deadline (rpcTimeOut)
  kNotFound = 5,           ///< no function of that name at the provider
  kCircuitOpen = 6,        ///< every candidate provider is fused (circuit open)
  kRemoteError = 7,        ///< the remote handler threw; message is its what()
  kNoProvider = 8,         ///< no live member offers the service
  kOverloaded = 9,         ///< the provider refused the work at once, unrun (pool full, or stopping)
  kBadConfig = 10,         ///< configuration file or flag is invalid
  kInvalidArgument = 11,   ///< API misuse by the caller (bad address, bad value)
  kMessageTooLarge = 12,   ///< message exceeds maxMessageBytes on either side
  kDeadlineExpired = 13,   ///< provider dropped the request: caller's deadline passed in queue
  kBadArguments = 14,      ///< arguments or result could not be (un)packed to the declared types
  kShutdown = 15,          ///< the local node is stopping; the call was abandoned
  kIoError = 16,           ///< a system call failed (bind, socket)
  kProtocolError = 17,     ///< the peer sent something that violates the protocol
  kPermissionDenied = 18,  ///< the provider does not serve this caller (internal service, no key)
  kPeerGone = 19,          ///< no process listens at the provider's address (ICMP port unreachable)
};

/// How a failed call may be retried. Read by the retry and breaker logic.
enum class RetryClass : std::uint8_t {
  kNotExecuted,    ///< provably did not run at the provider: safe to retry elsewhere
  kMaybeExecuted,  ///< may have run: retry only idempotent services
  kOverloaded,     ///< did not run, provider is saturated: back off, try another
  kPermanent,      ///< retrying cannot help (bad arguments, bad config, remote threw)
};

/// Stable short name of a code, e.g. "not_found". Never null.
const char* errc_name(Errc code) noexcept;
/// Parses a name produced by errc_name; returns false when unknown.
bool errc_from_name(std::string_view name, Errc& out) noexcept;
/// True when `value` is a code this build knows (for decoding wire values).
bool errc_known(std::uint16_t value) noexcept;
/// The retry class of a code.
RetryClass retry_class(Errc code) noexcept;
/// A sentence telling the user what the code means and what to do about it.
const char* errc_advice(Errc code) noexcept;

/// The exception thrown by synchronous APIs. what() is "<name>: <message>".
class Error : public std::runtime_error {
 public:
  Error(Errc code, std::string message);
  Errc code() const noexcept { return code_; }
  /// The message without the code prefix.
  const std::string& message() const noexcept { return message_; }
  RetryClass retry() const noexcept { return retry_class(code_); }

 private:
  Errc code_;
  std::string message_;
};

/// A value or an Error, for asynchronous APIs and non-throwing variants.
template <class T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT
  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  /// The value; throws the Error when there is none.
  T& value() & {
    if (!ok()) throw std::get<1>(v_);
    return std::get<0>(v_);
  }
  const T& value() const& {
    if (!ok()) throw std::get<1>(v_);
    return std::get<0>(v_);
  }
  T&& value() && {
    if (!ok()) throw std::get<1>(v_);
    return std::get<0>(std::move(v_));
  }
  /// The error; precondition: !ok().
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class Result<void> {
 public:
  Result() = default;
  Result(Error error) : err_(std::move(error)), has_err_(true) {}  // NOLINT
  bool ok() const noexcept { return !has_err_; }
  explicit operator bool() const noexcept { return ok(); }
  void value() const {
    if (has_err_) throw err_;
  }
  const Error& error() const { return err_; }

 private:
  Error err_{Errc::kOk, ""};
  bool has_err_ = false;
};

}  // namespace broach
