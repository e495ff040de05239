// The 3x reply rule's bookkeeping: allowance, charges, refunds, proofs and
// challenge tokens (reliable/address_guard.hpp).
#include <gtest/gtest.h>
#include <sodium.h>

#include "reliable/address_guard.hpp"

namespace broach::reliable {
namespace {

const Endpoint kA{0x0a000001, 7000}, kB{0x0a000002, 7000};

AddressGuard make_guard() {
  std::array<std::byte, 32> secret{};
  for (std::size_t i = 0; i < secret.size(); ++i) secret[i] = static_cast<std::byte>(i * 31 + 7);
  return AddressGuard(secret);
}

TEST(AddressGuard, RepliesToAnUnprovenAddressStayWithinThreeTimesWhatItSent) {
  auto g = make_guard();
  const TimePoint t0{};
  const Dest reply = Dest::reply_to(kA, 42, false);
  EXPECT_EQ(g.allowance(reply, t0), 0u);  // never heard from
  g.received(kA, 100, t0);
  EXPECT_EQ(g.allowance(reply, t0), 300u);
  EXPECT_TRUE(g.try_charge(reply, 200, t0));
  EXPECT_FALSE(g.try_charge(reply, 101, t0));  // nothing charged when it does not fit
  EXPECT_TRUE(g.try_charge(reply, 100, t0));
  EXPECT_EQ(g.allowance(reply, t0), 0u);
  g.refund(kA, 50);
  EXPECT_EQ(g.allowance(reply, t0), 50u);
  // Another address has its own credit; initiated and sealed sends are free.
  EXPECT_EQ(g.allowance(Dest::reply_to(kB, 42, false), t0), 0u);
  EXPECT_EQ(g.allowance(Dest::initiated(kB), t0), AddressGuard::kUnlimited);
  EXPECT_EQ(g.allowance(Dest::reply_to(kB, 42, true), t0), AddressGuard::kUnlimited);
  // Credit is forgotten with what was sent against it.
  g.sweep(t0 + AddressGuard::kCreditIdle + seconds(1));
  EXPECT_EQ(g.allowance(reply, t0), 0u);
}

TEST(AddressGuard, AProvenPairIsFreeUntilIdle) {
  auto g = make_guard();
  const TimePoint t0{};
  g.mark_proven(kA, 42, t0);
  EXPECT_EQ(g.allowance(Dest::reply_to(kA, 42, false), t0), AddressGuard::kUnlimited);
  EXPECT_EQ(g.allowance(Dest::reply_to(kA, 43, false), t0), 0u);  // another life at that address
  g.sweep(t0 + AddressGuard::kProvenIdle + seconds(1));
  EXPECT_EQ(g.allowance(Dest::reply_to(kA, 42, false), t0), 0u);
}

TEST(AddressGuard, TokensBindAddressSenderAndTime) {
  ASSERT_GE(sodium_init(), 0);
  auto g = make_guard();
  const TimePoint t0 = TimePoint{} + std::chrono::hours(1);
  const auto tok = g.token(kA, 42, t0);
  EXPECT_TRUE(g.check_token(kA, 42, tok, t0));
  EXPECT_TRUE(g.check_token(kA, 42, tok, t0 + AddressGuard::kEpoch));  // previous epoch still valid
  EXPECT_FALSE(g.check_token(kA, 42, tok, t0 + 2 * AddressGuard::kEpoch));
  EXPECT_FALSE(g.check_token(kB, 42, tok, t0));
  EXPECT_FALSE(g.check_token(Endpoint{kA.ip, 7001}, 42, tok, t0));
  EXPECT_FALSE(g.check_token(kA, 43, tok, t0));
  auto forged = tok;
  forged[3] ^= std::byte{1};
  EXPECT_FALSE(g.check_token(kA, 42, forged, t0));
  EXPECT_FALSE(g.check_token(kA, 42, std::span(tok).first(15), t0));
  // Another node's secret makes other tokens.
  std::array<std::byte, 32> other{};
  AddressGuard h(other);
  EXPECT_FALSE(h.check_token(kA, 42, tok, t0));
}

}  // namespace
}  // namespace broach::reliable
