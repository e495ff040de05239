// Unit tests of the one "a.b.c.d:port" parser (Endpoint::parse) and its IPv4
// part (Endpoint::parse_ip): what is accepted, what is refused and why.
#include "broach/endpoint.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace broach {
namespace {

constexpr std::uint32_t ip4(std::uint32_t a, std::uint32_t b, std::uint32_t c, std::uint32_t d) {
  return (a << 24) | (b << 16) | (c << 8) | d;
}

/// The reason parse() gives for `text` ("" when it parses); `out` must be untouched on failure.
/// Checked as an address to send to (port 0 refused) unless allow_port_zero.
std::string why_not(std::string_view text, bool allow_port_zero = false) {
  const Endpoint sentinel{0xdeadbeef, 4242};
  Endpoint e = sentinel;
  std::string why = "unset";
  if (Endpoint::parse(text, e, &why, allow_port_zero)) return "";
  EXPECT_EQ(e, sentinel) << text;
  EXPECT_NE(why, "unset") << text;
  EXPECT_FALSE(why.empty()) << text;
  return why;
}

TEST(EndpointParse, Valid) {
  Endpoint e;
  ASSERT_TRUE(Endpoint::parse("1.2.3.4:80", e));
  EXPECT_EQ(e, (Endpoint{ip4(1, 2, 3, 4), 80}));
  ASSERT_TRUE(Endpoint::parse("127.0.0.1:18080", e));
  EXPECT_EQ(e, (Endpoint{ip4(127, 0, 0, 1), 18080}));
  ASSERT_TRUE(Endpoint::parse("0.0.0.0:1", e));
  EXPECT_EQ(e, (Endpoint{0, 1}));
  ASSERT_TRUE(Endpoint::parse("255.255.255.255:65535", e));
  EXPECT_EQ(e, (Endpoint{0xffffffffu, 65535}));
  ASSERT_TRUE(Endpoint::parse("10.0.0.10:100", e));  // zeros that are not leading
  EXPECT_EQ(e, (Endpoint{ip4(10, 0, 0, 10), 100}));
  std::string why = "untouched";
  EXPECT_TRUE(Endpoint::parse("1.2.3.4:80", e, &why));
  EXPECT_EQ(why, "untouched");  // written only on failure
}

TEST(EndpointParse, RoundTripsToString) {
  for (const char* text :
       {"1.2.3.4:80", "0.0.0.0:1", "255.255.255.255:65535", "192.168.10.1:7000"}) {
    Endpoint e;
    ASSERT_TRUE(Endpoint::parse(text, e)) << text;
    EXPECT_EQ(e.to_string(), text);
  }
}

TEST(EndpointParse, PortZeroOnlyWhenAllowed) {
  Endpoint e;
  ASSERT_TRUE(Endpoint::parse("127.0.0.1:0", e));  // the default: a bind address may say "any port"
  EXPECT_EQ(e, (Endpoint{ip4(127, 0, 0, 1), 0}));
  e = Endpoint{};
  ASSERT_TRUE(Endpoint::parse("127.0.0.1:0", e, nullptr, /*allow_port_zero=*/true));
  EXPECT_EQ(e, (Endpoint{ip4(127, 0, 0, 1), 0}));
  e = Endpoint{1, 1};
  std::string why;
  EXPECT_FALSE(Endpoint::parse("127.0.0.1:0", e, &why, /*allow_port_zero=*/false));
  EXPECT_EQ(why, "port 0 is not allowed here");
  EXPECT_EQ(e, (Endpoint{1, 1}));
  EXPECT_EQ(why_not("127.0.0.1:0"), "port 0 is not allowed here");
  EXPECT_EQ(why_not("127.0.0.1:0", true), "");
  EXPECT_EQ(why_not("127.0.0.1:00", true), "port has a leading zero: 00");
}

TEST(EndpointParse, MissingColon) {
  EXPECT_EQ(why_not("1.2.3.4"), "missing ':port'");
  EXPECT_EQ(why_not("localhost"), "missing ':port'");
  EXPECT_EQ(why_not("1.2.3.4:"), "missing port after ':'");
}

TEST(EndpointParse, EmptyIpOrText) {
  EXPECT_EQ(why_not(""), "empty address");
  EXPECT_EQ(why_not(":80"), "missing IP address before ':'");
  EXPECT_EQ(why_not(":"), "missing IP address before ':'");
}

TEST(EndpointParse, OctetAbove255) {
  EXPECT_EQ(why_not("1.2.3.256:80"), "not an IPv4 address: 1.2.3.256");
  EXPECT_EQ(why_not("300.1.1.1:80"), "not an IPv4 address: 300.1.1.1");
  EXPECT_EQ(why_not("1.2.3.1000:80"), "not an IPv4 address: 1.2.3.1000");
}

TEST(EndpointParse, WrongNumberOfOctets) {
  EXPECT_EQ(why_not("1.2.3.4.5:80"), "not an IPv4 address: 1.2.3.4.5");
  EXPECT_EQ(why_not("1.2.3:80"), "not an IPv4 address: 1.2.3");
  EXPECT_EQ(why_not("1..3.4:80"), "not an IPv4 address: 1..3.4");
  EXPECT_EQ(why_not("1.2.3.4.:80"), "not an IPv4 address: 1.2.3.4.");
  EXPECT_EQ(why_not(".1.2.3.4:80"), "not an IPv4 address: .1.2.3.4");
  EXPECT_EQ(why_not("1234:80"), "not an IPv4 address: 1234");
}

TEST(EndpointParse, LeadingZerosAreRefused) {
  // Some resolvers read 010 as octal; the config has always refused them.
  EXPECT_EQ(why_not("01.2.3.4:80"), "not an IPv4 address: 01.2.3.4");
  EXPECT_EQ(why_not("1.2.3.4:080"), "port has a leading zero: 080");
}

TEST(EndpointParse, TrailingGarbage) {
  EXPECT_EQ(why_not("1.2.3.4:80x"), "port is not a decimal number: 80x");
  EXPECT_EQ(why_not("1.2.3.4:80:81"), "port is not a decimal number: 80:81");
  EXPECT_EQ(why_not("1.2.3.4x:80"), "not an IPv4 address: 1.2.3.4x");
  EXPECT_EQ(why_not(std::string_view("1.2.3.4:80\0", 11)), "port is not a decimal number: " +
                                                               std::string("80\0", 3));
  EXPECT_EQ(why_not("localhost:80"), "not an IPv4 address: localhost");
}

TEST(EndpointParse, PortAbove65535) {
  EXPECT_EQ(why_not("1.2.3.4:65536"), "port out of range: 65536");
  EXPECT_EQ(why_not("1.2.3.4:70000"), "port out of range: 70000");
  EXPECT_EQ(why_not("1.2.3.4:123456"), "port out of range: 123456");
  EXPECT_EQ(why_not("1.2.3.4:99999999999999999999"), "port out of range: 99999999999999999999");
}

TEST(EndpointParse, SignsAreRefused) {
  EXPECT_EQ(why_not("1.2.3.4:+80"), "port is not a decimal number: +80");
  EXPECT_EQ(why_not("1.2.3.4:-80"), "port is not a decimal number: -80");
  EXPECT_EQ(why_not("1.2.3.4:-0", true), "port is not a decimal number: -0");
  EXPECT_EQ(why_not("+1.2.3.4:80"), "not an IPv4 address: +1.2.3.4");
  EXPECT_EQ(why_not("1.2.-3.4:80"), "not an IPv4 address: 1.2.-3.4");
  EXPECT_EQ(why_not("1.+2.3.4:80"), "not an IPv4 address: 1.+2.3.4");
}

TEST(EndpointParse, SpacesAreRefused) {
  EXPECT_EQ(why_not(" 1.2.3.4:80"), "address contains a space: ' 1.2.3.4:80'");
  EXPECT_EQ(why_not("1.2.3.4:80 "), "address contains a space: '1.2.3.4:80 '");
  EXPECT_EQ(why_not("1.2.3.4: 80"), "address contains a space: '1.2.3.4: 80'");
  EXPECT_EQ(why_not("1.2.3.4 :80"), "address contains a space: '1.2.3.4 :80'");
  EXPECT_EQ(why_not("1.2. 3.4:80"), "address contains a space: '1.2. 3.4:80'");
  EXPECT_EQ(why_not("1.2.3.4:80\n"), "address contains a space: '1.2.3.4:80\n'");
  EXPECT_EQ(why_not("1.2.3.4:\t80"), "address contains a space: '1.2.3.4:\t80'");
}

TEST(EndpointParse, Ipv6InBrackets) {
  Endpoint e;
  ASSERT_TRUE(Endpoint::parse("[::1]:18080", e));
  EXPECT_TRUE(e.v6);
  EXPECT_EQ(e.ip, 0u);
  EXPECT_EQ(e.port, 18080);
  EXPECT_TRUE(e.loopback());
  EXPECT_EQ(e.to_string(), "[::1]:18080");
  EXPECT_EQ(e.ip_string(), "::1");
  ASSERT_TRUE(Endpoint::parse("[2001:DB8:0:0:0:0:0:1]:80", e));
  EXPECT_EQ(e.to_string(), "[2001:db8::1]:80");  // RFC 5952 text
  EXPECT_FALSE(e.loopback());
  ASSERT_TRUE(Endpoint::parse("[::]:0", e));  // a wildcard bind address
  EXPECT_EQ(e.to_string(), "[::]:0");
  ASSERT_TRUE(Endpoint::parse("[::ffff:1.2.3.4]:80", e));  // IPv4-mapped: the IPv4 address
  EXPECT_FALSE(e.v6);
  EXPECT_EQ(e.to_string(), "1.2.3.4:80");
  ASSERT_TRUE(Endpoint::parse_host("::ffff:127.0.0.1", e));
  EXPECT_FALSE(e.v6);
  EXPECT_TRUE(e.loopback());
  // Text round trip, and the same address twice is one endpoint.
  Endpoint a, b;
  ASSERT_TRUE(Endpoint::parse("[fd00::1:2]:7000", a));
  ASSERT_TRUE(Endpoint::parse(a.to_string(), b));
  EXPECT_EQ(a, b);
  EXPECT_EQ(std::hash<Endpoint>{}(a), std::hash<Endpoint>{}(b));
  ASSERT_TRUE(Endpoint::parse("[fd00::1:2]:7001", b));
  EXPECT_NE(a, b);
  EXPECT_NE(a.key(), b.key());
  EXPECT_TRUE(a.same_host(b));
  Endpoint v4;
  ASSERT_TRUE(Endpoint::parse("127.0.0.1:7000", v4));
  EXPECT_NE(a, v4);
  EXPECT_FALSE(a.same_host(v4));
}

TEST(EndpointParse, MalformedIpv6HasAClearReason) {
  const std::string kBrackets = "an IPv6 address needs brackets, as in [::1]:18080: ";
  for (const char* text : {"::1", "::1:80", "fe80::1:80", "2001:db8::1", "::ffff:1.2.3.4:80", "::"}) {
    EXPECT_EQ(why_not(text), kBrackets + text) << text;
  }
  EXPECT_EQ(why_not("[fe80::1%eth0]:80"), "not an IPv6 address: fe80::1%eth0");  // zones: no
  EXPECT_EQ(why_not("[1.2.3.4]:80"), "not an IPv6 address: 1.2.3.4");
  EXPECT_EQ(why_not("[::g]:80"), "not an IPv6 address: ::g");
  EXPECT_EQ(why_not("[]:80"), "not an IPv6 address: ");
  EXPECT_EQ(why_not("[::1]"), "missing ':port' after ']'");
  EXPECT_EQ(why_not("[::1]80"), "missing ':port' after ']'");
  EXPECT_EQ(why_not("[::1:80"), "missing ']' after an IPv6 address: [::1:80");
  EXPECT_EQ(why_not("[::1]:"), "missing port after ':'");
  EXPECT_EQ(why_not("[::1]:65536"), "port out of range: 65536");
  EXPECT_EQ(why_not("[::1]:080"), "port has a leading zero: 080");
  EXPECT_EQ(why_not("[1:2:3:4:5:6:7:8:9]:80"), "not an IPv6 address: 1:2:3:4:5:6:7:8:9");
}

TEST(EndpointParseHost, Ipv4OrIpv6WithoutBrackets) {
  Endpoint e;
  e.port = 99;
  ASSERT_TRUE(Endpoint::parse_host("10.0.0.1", e));
  EXPECT_FALSE(e.v6);
  EXPECT_EQ(e.ip, ip4(10, 0, 0, 1));
  EXPECT_EQ(e.port, 99);  // untouched
  ASSERT_TRUE(Endpoint::parse_host("::1", e));
  EXPECT_TRUE(e.v6);
  EXPECT_EQ(e.ip, 0u);
  EXPECT_TRUE(e.loopback());
  for (const char* bad : {"", "[::1]", "::1%lo", "localhost", "1.2.3", "::g", "1.2.3.4:80"}) {
    Endpoint out{7, 7};
    EXPECT_FALSE(Endpoint::parse_host(bad, out)) << bad;
    EXPECT_EQ(out, (Endpoint{7, 7})) << bad;
  }
}

TEST(EndpointParse, NullWhyIsFine) {
  Endpoint e{7, 7};
  EXPECT_FALSE(Endpoint::parse("nonsense", e));
  EXPECT_FALSE(Endpoint::parse("1.2.3.4:0", e, nullptr, false));
  EXPECT_EQ(e, (Endpoint{7, 7}));
}

TEST(EndpointParseIp, SameRulesAsTheAddressPart) {
  std::uint32_t ip = 0;
  ASSERT_TRUE(Endpoint::parse_ip("10.20.30.40", ip));
  EXPECT_EQ(ip, ip4(10, 20, 30, 40));
  ASSERT_TRUE(Endpoint::parse_ip("0.0.0.0", ip));
  EXPECT_EQ(ip, 0u);
  ASSERT_TRUE(Endpoint::parse_ip("255.255.255.255", ip));
  EXPECT_EQ(ip, 0xffffffffu);
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "1.2.3.256", "01.2.3.4", "1.2.3.04", "+1.2.3.4",
                          "1.2.3.-4", " 1.2.3.4", "1.2.3.4 ", "1.2.3.4:80", "1..2.3", "1.2.3.4.",
                          "localhost", "::1", "a.b.c.d", "1.2.3.0x1"}) {
    std::uint32_t out = 0x12345678;
    EXPECT_FALSE(Endpoint::parse_ip(bad, out)) << bad;
    EXPECT_EQ(out, 0x12345678u) << bad;  // untouched on failure
  }
}

}  // namespace
}  // namespace broach
