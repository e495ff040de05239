// The services every `broach node` offers, dynamic over msgpack objects so
// that JSON arguments of any numeric type work.
#include <chrono>
#include <thread>

#include "cli.hpp"

namespace broach::cli {
namespace {

msgpack::object_handle unpack_args(std::span<const std::byte> args) {
  return msgpack::unpack(reinterpret_cast<const char*>(args.data()), args.size());
}

void expect_arity(const msgpack::object& o, std::uint32_t n, const char* name) {
  if (o.type != msgpack::type::ARRAY || o.via.array.size != n) {
    throw Error(Errc::kBadArguments, std::string(name) + " takes " + std::to_string(n) + " argument(s)");
  }
}

bool is_int(const msgpack::object& o) {
  return o.type == msgpack::type::POSITIVE_INTEGER || o.type == msgpack::type::NEGATIVE_INTEGER;
}

}  // namespace

void provide_demo_services(Node& node) {
  node.provide_raw("echo", [](std::span<const std::byte> args) {
    auto oh = unpack_args(args);
    expect_arity(oh.get(), 1, "echo");
    return detail::pack_value(oh.get().via.array.ptr[0]);
  });
  node.provide_raw("add", [](std::span<const std::byte> args) {
    auto oh = unpack_args(args);
    const auto& a = oh.get();
    expect_arity(a, 2, "add");
    const auto& x = a.via.array.ptr[0];
    const auto& y = a.via.array.ptr[1];
    try {
      if (is_int(x) && is_int(y)) return detail::pack_value(x.as<std::int64_t>() + y.as<std::int64_t>());
      return detail::pack_value(x.as<double>() + y.as<double>());
    } catch (const msgpack::type_error&) {
      throw Error(Errc::kBadArguments, "add takes two numbers");
    }
  });
  node.provide("sleep", [](std::int64_t ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return std::string("ok");
  });
  const std::string me = node.address().to_string();
  node.provide("whoami", [me] { return me; });
}

}  // namespace broach::cli
