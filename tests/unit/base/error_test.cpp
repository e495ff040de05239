#include "broach/error.hpp"

#include <gtest/gtest.h>

namespace broach {
namespace {

TEST(Errc, NamesRoundTripForEveryCode) {
  for (std::uint16_t v = 0; errc_known(v); ++v) {
    auto code = static_cast<Errc>(v);
    Errc back{};
    ASSERT_TRUE(errc_from_name(errc_name(code), back)) << v;
    EXPECT_EQ(back, code);
    EXPECT_STRNE(errc_advice(code), "");
  }
  EXPECT_FALSE(errc_known(1000));
}

TEST(Errc, WireValuesAreStable) {
  // These numbers travel on the wire; changing one breaks compatibility.
  EXPECT_EQ(static_cast<int>(Errc::kQueueFull), 1);
  EXPECT_EQ(static_cast<int>(Errc::kNotFound), 5);
  EXPECT_EQ(static_cast<int>(Errc::kCircuitOpen), 6);
  EXPECT_EQ(static_cast<int>(Errc::kOverloaded), 9);
  EXPECT_EQ(static_cast<int>(Errc::kProtocolError), 17);
}

TEST(Errc, RetryClassesSeparateSafeFromUnsafe) {
  EXPECT_EQ(retry_class(Errc::kNotFound), RetryClass::kNotExecuted);
  EXPECT_EQ(retry_class(Errc::kOverloaded), RetryClass::kOverloaded);
  EXPECT_EQ(retry_class(Errc::kCallTimeout), RetryClass::kMaybeExecuted);
  EXPECT_EQ(retry_class(Errc::kPeerGone), RetryClass::kMaybeExecuted);
  EXPECT_EQ(retry_class(Errc::kRemoteError), RetryClass::kPermanent);
}

TEST(Error, WhatCarriesNameAndMessage) {
  Error e(Errc::kNotFound, "work02");
  EXPECT_STREQ(e.what(), "not_found: work02");
  EXPECT_EQ(e.message(), "work02");
  EXPECT_EQ(e.code(), Errc::kNotFound);
}

TEST(Result, HoldsValueOrThrowsError) {
  Result<int> good(3);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(good.value(), 3);
  Result<int> bad(Error(Errc::kCallTimeout, "late"));
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code(), Errc::kCallTimeout);
  EXPECT_THROW(bad.value(), Error);
  Result<void> v;
  EXPECT_TRUE(v.ok());
  Result<void> ve(Error(Errc::kShutdown, "x"));
  EXPECT_THROW(ve.value(), Error);
}

}  // namespace
}  // namespace broach
