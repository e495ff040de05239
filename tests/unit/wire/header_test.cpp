#include "wire/header.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace broach::wire {
namespace {

std::vector<std::byte> make(const Header& h, std::size_t payload, std::size_t extra = 0) {
  std::vector<std::byte> d(kHeaderSize + payload + extra, std::byte{0x5a});
  encode_header(h, d);
  return d;
}

Header sample() {
  Header h;
  h.type = MsgType::kRequest;
  h.flags = 0;
  h.key_id = 7;
  h.node_id = 0x1122334455667788ULL;
  h.sender_ip = 0x7f000001;
  h.sender_port = 18080;
  h.message_id = 0xdeadbeefcafeULL;
  h.total_len = 10;
  h.payload_len = 10;
  h.deadline_us = 6'000'000;
  return h;
}

TEST(Header, RoundTripsEveryField) {
  const Header h = sample();
  auto d = make(h, 10);
  Header out;
  std::span<const std::byte> payload;
  ASSERT_EQ(decode_datagram(d, 1 << 20, out, payload), DecodeError::kOk);
  EXPECT_EQ(out.type, h.type);
  EXPECT_EQ(out.key_id, 7);
  EXPECT_EQ(out.node_id, h.node_id);
  EXPECT_EQ(out.sender_ip, h.sender_ip);
  EXPECT_EQ(out.sender_port, h.sender_port);
  EXPECT_EQ(out.message_id, h.message_id);
  EXPECT_EQ(out.deadline_us, h.deadline_us);
  EXPECT_EQ(payload.size(), 10u);
  EXPECT_EQ(payload.data(), d.data() + kHeaderSize);
}

TEST(Header, LayoutIsLittleEndianAndFixed) {
  auto d = make(sample(), 10);
  EXPECT_EQ(d[0], std::byte{0x52});  // 'R'
  EXPECT_EQ(d[1], std::byte{0x42});  // 'B'
  EXPECT_EQ(d[2], std::byte{kVersion});
  EXPECT_EQ(d[8], std::byte{0x88});  // node id, low byte first
}

TEST(Header, RejectsShortDatagrams) {
  auto d = make(sample(), 10);
  Header out;
  std::span<const std::byte> p;
  for (std::size_t n = 0; n < kHeaderSize; ++n) {
    EXPECT_EQ(decode_datagram(std::span(d).first(n), 1 << 20, out, p), DecodeError::kTooShort) << n;
  }
}

TEST(Header, RejectsBadMagicVersionAndType) {
  Header out;
  std::span<const std::byte> p;
  auto d = make(sample(), 10);
  d[0] = std::byte{0};
  EXPECT_EQ(decode_datagram(d, 1 << 20, out, p), DecodeError::kBadMagic);
  d = make(sample(), 10);
  d[2] = std::byte{2};
  EXPECT_EQ(decode_datagram(d, 1 << 20, out, p), DecodeError::kBadVersion);
  d = make(sample(), 10);
  d[3] = std::byte{99};
  EXPECT_EQ(decode_datagram(d, 1 << 20, out, p), DecodeError::kBadType);
}

TEST(Header, RejectsLengthsThatLie) {
  Header out;
  std::span<const std::byte> p;
  auto h = sample();
  auto d = make(h, 9);  // header says 10, datagram holds 9
  EXPECT_EQ(decode_datagram(d, 1 << 20, out, p), DecodeError::kLengthMismatch);
  d = make(h, 11);
  EXPECT_EQ(decode_datagram(d, 1 << 20, out, p), DecodeError::kLengthMismatch);
  h.flags = kFlagAuth;  // tag missing
  d = make(h, 10);
  EXPECT_EQ(decode_datagram(d, 1 << 20, out, p), DecodeError::kLengthMismatch);
  d = make(h, 10, kAuthTagSize);
  EXPECT_EQ(decode_datagram(d, 1 << 20, out, p), DecodeError::kOk);
  h = sample();
  h.total_len = 11;  // single fragment must carry the whole message
  d = make(h, 10);
  EXPECT_EQ(decode_datagram(d, 1 << 20, out, p), DecodeError::kBadTotalLength);
}

TEST(Header, RejectsBadFragmentFields) {
  Header out;
  std::span<const std::byte> p;
  auto h = sample();
  h.fragment_count = 0;
  EXPECT_EQ(decode_datagram(make(h, 10), 1 << 20, out, p), DecodeError::kBadFragment);
  h.fragment_count = 3;
  h.fragment_index = 3;
  EXPECT_EQ(decode_datagram(make(h, 10), 1 << 20, out, p), DecodeError::kBadFragment);
  h.fragment_count = kMaxFragments + 1;
  h.fragment_index = 0;
  EXPECT_EQ(decode_datagram(make(h, 10), 1 << 20, out, p), DecodeError::kBadFragment);
}

TEST(Header, ChecksFragmentSizesAgainstTotal) {
  Header out;
  std::span<const std::byte> p;
  auto h = sample();
  h.fragment_count = 3;
  h.fragment_index = 0;
  h.payload_len = 10;
  h.total_len = 25;  // 10 + 10 + 5: consistent
  EXPECT_EQ(decode_datagram(make(h, 10), 1 << 20, out, p), DecodeError::kOk);
  h.total_len = 31;  // would need a fourth fragment
  EXPECT_EQ(decode_datagram(make(h, 10), 1 << 20, out, p), DecodeError::kBadTotalLength);
  h.total_len = 20;  // last fragment would be empty
  EXPECT_EQ(decode_datagram(make(h, 10), 1 << 20, out, p), DecodeError::kBadTotalLength);
  h.fragment_index = 2;  // last: 5 bytes, implies size 10
  h.total_len = 25;
  h.payload_len = 5;
  EXPECT_EQ(decode_datagram(make(h, 5), 1 << 20, out, p), DecodeError::kOk);
  h.total_len = 26;  // 21 / 2 is not whole
  EXPECT_EQ(decode_datagram(make(h, 5), 1 << 20, out, p), DecodeError::kBadTotalLength);
  h.payload_len = 0;
  EXPECT_EQ(decode_datagram(make(h, 0), 1 << 20, out, p), DecodeError::kBadTotalLength);
}

TEST(Header, RejectsMessagesAboveTheConfiguredMaximum) {
  Header out;
  std::span<const std::byte> p;
  auto h = sample();
  h.fragment_count = 1000;
  h.payload_len = 1000;
  h.total_len = 1000 * 1000;
  EXPECT_EQ(decode_datagram(make(h, 1000), 999'999, out, p), DecodeError::kTooLarge);
  EXPECT_EQ(out.message_id, h.message_id);  // header fields are usable for the reply
  EXPECT_EQ(decode_datagram(make(h, 1000), 1'000'000, out, p), DecodeError::kOk);
}

TEST(Header, DecodeErrorNamesAreDistinct) {
  for (int i = 0; i < static_cast<int>(DecodeError::kCount_); ++i) {
    for (int j = i + 1; j < static_cast<int>(DecodeError::kCount_); ++j) {
      EXPECT_STRNE(decode_error_name(static_cast<DecodeError>(i)),
                   decode_error_name(static_cast<DecodeError>(j)));
    }
  }
}

}  // namespace
}  // namespace broach::wire
