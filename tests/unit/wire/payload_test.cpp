#include "wire/payload.hpp"

#include <gtest/gtest.h>

#include <msgpack.hpp>

#include <map>
#include <string>
#include <vector>
#include <tuple>

namespace broach::wire {
namespace {

template <class T>
Bytes pack(const T& v) {
  msgpack::sbuffer buf;
  msgpack::pack(buf, v);
  auto* p = reinterpret_cast<const std::byte*>(buf.data());
  return Bytes(p, p + buf.size());
}

TEST(Payload, RequestRoundTrips) {
  const auto args = pack(std::make_tuple(1, 2));
  for (std::string service : {std::string("add"), std::string(40, 's'), std::string(300, 'x'),
                              std::string(70000, 'y')}) {
    Bytes out;
    encode_request(service, args, out);
    RequestView rv;
    ASSERT_TRUE(decode_request(out, rv)) << service.size();
    EXPECT_EQ(rv.service, service);
    EXPECT_EQ(Bytes(rv.args.begin(), rv.args.end()), args);
    // The whole body is itself valid msgpack: [service, [1, 2]].
    auto oh = msgpack::unpack(reinterpret_cast<const char*>(out.data()), out.size());
    EXPECT_EQ(oh.get().via.array.size, 2u);
  }
}

TEST(Payload, RequestRejectsMalformedBodies) {
  RequestView rv;
  EXPECT_FALSE(decode_request({}, rv));
  Bytes out;
  encode_request("add", pack(std::make_tuple(1, 2)), out);
  for (std::size_t n = 0; n < out.size(); ++n) {
    EXPECT_FALSE(decode_request(std::span(out).first(n), rv)) << "truncated at " << n;
  }
  Bytes not_array;
  encode_request("add", pack(42), not_array);  // args must be an array
  EXPECT_FALSE(decode_request(not_array, rv));
  Bytes trailing = out;
  trailing.push_back(std::byte{0xc0});
  EXPECT_FALSE(decode_request(trailing, rv));
  Bytes wrong = pack(std::make_tuple(1, 2));  // first element not a string
  EXPECT_FALSE(decode_request(wrong, rv));
}

TEST(Payload, RequestCarriesMetadataAsAThirdElement) {
  const auto args = pack(std::make_tuple(1, 2));
  Bytes meta;
  ASSERT_TRUE(encode_metadata({{"x-request-id", "abc"}, {"zone", ""}}, meta));
  Bytes out;
  encode_request("add", args, out, meta);
  RequestView rv;
  ASSERT_TRUE(decode_request(out, rv));
  EXPECT_EQ(rv.service, "add");
  EXPECT_EQ(Bytes(rv.args.begin(), rv.args.end()), args);
  MetadataView m;
  ASSERT_TRUE(decode_metadata(rv.metadata, m));
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].first, "x-request-id");
  EXPECT_EQ(m[0].second, "abc");
  EXPECT_EQ(m[1].second, "");
  // Plain msgpack: [service, args, {key: value}] (a peer needs no special parser).
  auto oh = msgpack::unpack(reinterpret_cast<const char*>(out.data()), out.size());
  ASSERT_EQ(oh.get().via.array.size, 3u);
  using StringMap = std::map<std::string, std::string>;
  EXPECT_EQ(oh.get().via.array.ptr[2].as<StringMap>().at("x-request-id"), "abc");
  // No metadata: the two-element form, as before.
  Bytes plain;
  encode_request("add", args, plain);
  ASSERT_TRUE(decode_request(plain, rv));
  EXPECT_TRUE(rv.metadata.empty());
  EXPECT_EQ(static_cast<unsigned>(plain[0]), 0x92u);
  for (std::size_t n = 0; n < out.size(); ++n) {
    EXPECT_FALSE(decode_request(std::span(out).first(n), rv)) << "truncated at " << n;
  }
}

TEST(Payload, MetadataOutsideItsBoundsIsRefusedBothWays) {
  Bytes meta;
  MetadataView many;
  for (int i = 0; i < 17; ++i) many.emplace_back("k", "v");
  EXPECT_FALSE(encode_metadata(many, meta));
  const std::string big(kMaxMetadataBytes, 'v');
  EXPECT_FALSE(encode_metadata({{"k", big}}, meta));
  EXPECT_FALSE(encode_metadata({{"", "v"}}, meta));
  ASSERT_TRUE(encode_metadata({}, meta));
  EXPECT_TRUE(meta.empty());

  const auto args = pack(std::make_tuple(1));
  RequestView rv;
  auto request_with = [&](const Bytes& third) {
    Bytes out;
    encode_request("svc", args, out, third);
    return out;
  };
  // What a hostile peer may send instead of a map of strings.
  std::map<std::string, std::string> too_many;
  for (int i = 0; i < 17; ++i) too_many["k" + std::to_string(i)] = "v";
  EXPECT_FALSE(decode_request(request_with(pack(too_many)), rv));
  EXPECT_FALSE(decode_request(request_with(pack(std::map<std::string, std::string>{{"k", std::string(2000, 'v')}})), rv));
  EXPECT_FALSE(decode_request(request_with(pack(std::map<std::string, std::string>{{"", "v"}})), rv));
  EXPECT_FALSE(decode_request(request_with(pack(std::map<std::string, int>{{"k", 1}})), rv));
  EXPECT_FALSE(decode_request(request_with(pack(std::vector<std::string>{"k", "v"})), rv));
  EXPECT_FALSE(decode_request(request_with(pack(std::map<std::string, std::string>{})), rv));  // 3 elements, no pair
  Bytes trailing = request_with(pack(std::map<std::string, std::string>{{"k", "v"}}));
  ASSERT_TRUE(decode_request(trailing, rv));
  trailing.push_back(std::byte{0xc0});
  EXPECT_FALSE(decode_request(trailing, rv));
  // A two-element body with a map after it is not a request either.
  Bytes two = request_with(pack(std::map<std::string, std::string>{{"k", "v"}}));
  two[0] = std::byte{0x92};
  EXPECT_FALSE(decode_request(two, rv));
}

TEST(Payload, ResponseOkAndErrorRoundTrip) {
  Bytes ok;
  encode_response_ok(pack(std::string("hello")), ok);
  ResponseView rv;
  ASSERT_TRUE(decode_response(ok, rv));
  EXPECT_EQ(rv.code, Errc::kOk);
  EXPECT_EQ(msgpack::unpack(reinterpret_cast<const char*>(rv.body.data()), rv.body.size())
                .get()
                .as<std::string>(),
            "hello");
  Bytes err;
  encode_response_error(Errc::kNotFound, "work02", err);
  ASSERT_TRUE(decode_response(err, rv));
  EXPECT_EQ(rv.code, Errc::kNotFound);
  EXPECT_EQ(rv.message, "work02");
}

TEST(Payload, UnknownErrorCodeBecomesProtocolError) {
  Bytes err;
  encode_response_error(static_cast<Errc>(900), "future", err);
  ResponseView rv;
  ASSERT_TRUE(decode_response(err, rv));
  EXPECT_EQ(rv.code, Errc::kProtocolError);
}

TEST(Payload, ResponseRejectsTruncation) {
  Bytes ok;
  encode_response_ok(pack(std::vector<int>{1, 2, 3}), ok);
  ResponseView rv;
  for (std::size_t n = 0; n < ok.size(); ++n) EXPECT_FALSE(decode_response(std::span(ok).first(n), rv));
}

TEST(Payload, FragmentAckRoundTripsAndBoundsSack) {
  FragmentAck a;
  a.cumulative = 1000;
  a.set(1000);
  a.set(1255);
  a.set(1256);  // outside the window: ignored
  a.set(5);     // below cumulative: implied
  std::byte buf[FragmentAck::kSize];
  encode_fragment_ack(a, buf);
  FragmentAck b;
  ASSERT_TRUE(decode_fragment_ack(buf, b));
  EXPECT_EQ(b.cumulative, 1000u);
  EXPECT_TRUE(b.has(5));
  EXPECT_TRUE(b.has(1000));
  EXPECT_FALSE(b.has(1001));
  EXPECT_TRUE(b.has(1255));
  EXPECT_FALSE(b.has(1256));
  EXPECT_FALSE(decode_fragment_ack(std::span(buf).first(10), b));
}

TEST(Payload, NestingDeeperThan64IsRejected) {
  auto nested = [](int depth) {
    Bytes b(static_cast<std::size_t>(depth), std::byte{0x91});  // fixarray of 1, depth times
    b.push_back(std::byte{0x01});
    return b;
  };
  EXPECT_EQ(msgpack_object_size(nested(64)), 65u);
  EXPECT_EQ(msgpack_object_size(nested(65)), 0u);
  EXPECT_EQ(msgpack_object_size(nested(1000000)), 0u);  // would blow recursive consumers
  Bytes req;
  encode_request("svc", nested(100), req);
  RequestView rv;
  EXPECT_FALSE(decode_request(req, rv));
}

TEST(Payload, MsgpackObjectSizeRejectsLiesWithoutAllocating) {
  // An array header that claims 2^32-1 elements but holds none.
  Bytes lie{std::byte{0xdd}, std::byte{0xff}, std::byte{0xff}, std::byte{0xff}, std::byte{0xff}};
  EXPECT_EQ(msgpack_object_size(lie), 0u);
  Bytes str_lie{std::byte{0xdb}, std::byte{0x7f}, std::byte{0xff}, std::byte{0xff}, std::byte{0xff}};
  EXPECT_EQ(msgpack_object_size(str_lie), 0u);
  auto ok = pack(std::make_tuple(1, "two", 3.0));
  EXPECT_EQ(msgpack_object_size(ok), ok.size());
}

}  // namespace
}  // namespace broach::wire
