// Public header. Typed arguments and results <-> MessagePack (msgpack-cxx).
//
// Arguments travel as one msgpack array, results as one msgpack object, so a
// dynamic client (the CLI with JSON arguments) can call any typed service.
// Any type msgpack-cxx can pack works: numbers, strings, vectors, maps,
// tuples, and user structs with MSGPACK_DEFINE.
// Thread contract: stateless functions.
#pragma once

#include <msgpack.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "broach/error.hpp"

namespace broach {

using Bytes = std::vector<std::byte>;

/// A handler on packed bytes: gets the packed argument array, returns the
/// packed result. Throwing Error(kBadArguments) reports a type mismatch; any
/// other exception reaches the caller as kRemoteError with its what().
using RawHandler = std::function<Bytes(std::span<const std::byte> args)>;

namespace detail {

inline Bytes to_bytes(const msgpack::sbuffer& buf) {
  auto* p = reinterpret_cast<const std::byte*>(buf.data());
  return Bytes(p, p + buf.size());
}

// Packing goes through msgpack's sbuffer and one copy into Bytes. Packing
// straight into an exactly reserved Bytes was tried and measured slower for
// 1 MiB values (docs/performance.md, "Bulk"): with exact sizes, glibc's
// dynamic mmap threshold settles just below the sizes in use, so every large
// buffer is a fresh mapping whose pages fault on first touch.
template <class... A>
Bytes pack_args(const A&... args) {
  msgpack::sbuffer buf;
  msgpack::pack(buf, std::forward_as_tuple(args...));
  return to_bytes(buf);
}

template <class T>
Bytes pack_value(const T& v) {
  msgpack::sbuffer buf;
  msgpack::pack(buf, v);
  return to_bytes(buf);
}

template <class T>
T unpack_value(std::span<const std::byte> data) {
  try {
    auto oh = msgpack::unpack(reinterpret_cast<const char*>(data.data()), data.size());
    if constexpr (std::is_void_v<T>) {
      return;
    } else {
      return oh.get().as<T>();
    }
  } catch (const std::exception& e) {
    throw Error(Errc::kBadArguments, std::string("cannot unpack value: ") + e.what());
  }
}

// Function traits: the argument list of a free function, function pointer,
// or lambda / functor with one non-template operator().
template <class F>
struct fn_traits : fn_traits<decltype(&std::decay_t<F>::operator())> {};
template <class R, class... A>
struct fn_traits<R (*)(A...)> {
  using result = R;
  using args = std::tuple<std::decay_t<A>...>;
  /// True when every parameter is taken by value.
  static constexpr bool by_value = (!std::is_reference_v<A> && ...);
};
template <class R, class... A>
struct fn_traits<R(A...)> : fn_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct fn_traits<R (C::*)(A...) const> : fn_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct fn_traits<R (C::*)(A...)> : fn_traits<R (*)(A...)> {};

/// A packed argument array as the tuple a handler takes. Throws
/// Error(kBadArguments) when the count or a type does not match.
template <class Args>
Args unpack_args(std::span<const std::byte> packed) {
  Args args;
  try {
    auto oh = msgpack::unpack(reinterpret_cast<const char*>(packed.data()), packed.size());
    const auto& obj = oh.get();
    if (obj.type != msgpack::type::ARRAY || obj.via.array.size != std::tuple_size_v<Args>) {
      throw Error(Errc::kBadArguments,
                  "expected " + std::to_string(std::tuple_size_v<Args>) + " arguments, got " +
                      (obj.type == msgpack::type::ARRAY ? std::to_string(obj.via.array.size)
                                                        : std::string("a non-array")));
    }
    obj.convert(args);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(Errc::kBadArguments, std::string("arguments do not match: ") + e.what());
  }
  return args;
}

template <class F>
RawHandler make_raw_handler(F fn) {
  using Traits = fn_traits<F>;
  using Args = typename Traits::args;
  using R = typename Traits::result;
  return [fn = std::move(fn)](std::span<const std::byte> packed) mutable -> Bytes {
    Args args = unpack_args<Args>(packed);
    if constexpr (std::is_void_v<R>) {
      std::apply(fn, std::move(args));
      return pack_value(msgpack::type::nil_t{});
    } else {
      return pack_value(std::apply(fn, std::move(args)));
    }
  };
}

}  // namespace detail
}  // namespace broach
