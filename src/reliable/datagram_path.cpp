// DatagramPath: the one outgoing and the one incoming stage of a node.
#include "reliable/datagram_path.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/assert.hpp"
#include "base/log.hpp"

namespace broach::reliable {

DatagramPath::DatagramPath(Loop& loop, Transport& transport, std::uint64_t max_message)
    : loop_(loop), transport_(transport), max_message_(max_message), scratch_(65536) {
  transport_.set_receiver(this);
}

DatagramPath::~DatagramPath() { transport_.set_receiver(nullptr); }

bool DatagramPath::transmit(const Endpoint& to, std::span<const std::byte> datagram) {
  stats_.datagrams_out.fetch_add(1, std::memory_order_relaxed);
  stats_.bytes_out.fetch_add(datagram.size(), std::memory_order_relaxed);
  if (transport_.send(to, datagram)) return true;
  stats_.send_failures.fetch_add(1, std::memory_order_relaxed);
  return false;
}

std::size_t DatagramPath::encode_into(const wire::Header& h, std::span<const std::byte> payload,
                                      std::span<std::byte> slot) const {
  const std::size_t n = wire::kHeaderSize + payload.size();
  BROACH_ASSERT(n <= slot.size());
  wire::encode_header(h, slot);
  if (!payload.empty()) std::memcpy(slot.data() + wire::kHeaderSize, payload.data(), payload.size());
  return n;
}

void DatagramPath::send(const Endpoint& to, const wire::Header& h, std::span<const std::byte> payload) {
  BROACH_ASSERT_IN_LOOP(loop_);
  const std::size_t n = encode_into(h, payload, scratch_);
  transmit(to, std::span<const std::byte>(scratch_.data(), n));
}

void DatagramPath::send_batch(const Endpoint& to, std::span<const std::span<const std::byte>> datagrams) {
  BROACH_ASSERT_IN_LOOP(loop_);
  std::size_t bytes = 0;
  for (const auto& d : datagrams) bytes += d.size();
  stats_.datagrams_out.fetch_add(datagrams.size(), std::memory_order_relaxed);
  stats_.bytes_out.fetch_add(bytes, std::memory_order_relaxed);
  const std::size_t sent = transport_.send_batch(to, datagrams);
  if (sent < datagrams.size()) stats_.send_failures.fetch_add(datagrams.size() - sent, std::memory_order_relaxed);
}

std::span<const std::byte> DatagramPath::prepare(const wire::Header& h, std::span<const std::byte> payload) {
  // One buffer per thread: callers and workers encode without sharing.
  thread_local std::vector<std::byte> buf;
  const std::size_t n = wire::kHeaderSize + payload.size() + wire::kAuthTagSize;
  if (buf.size() < n) buf.resize(std::max<std::size_t>(n, 2048));
  return std::span<const std::byte>(buf.data(), encode_into(h, payload, buf));
}

bool DatagramPath::send_prepared(const Endpoint& to, std::span<const std::byte> datagram) {
  BROACH_ASSERT(can_send_from_any_thread());
  return transmit(to, datagram);
}

void DatagramPath::on_datagram(const Endpoint& from, std::span<const std::byte> data) {
  BROACH_ASSERT_IN_LOOP(loop_);
  ++stats_.datagrams_in;
  stats_.bytes_in += data.size();
  wire::Header h;
  std::span<const std::byte> payload;
  const auto err = wire::decode_datagram(data, max_message_, h, payload);
  if (err == wire::DecodeError::kTooLarge) {
    // The header itself is sound (it was read before the size check): the
    // sink tells the other side clearly instead of letting it time out.
    ++stats_.drops[static_cast<int>(err)];
    if (sink_ != nullptr) sink_->on_too_large(from, h);
    return;
  }
  if (err != wire::DecodeError::kOk) {
    ++stats_.drops[static_cast<int>(err)];
    BROACH_LOG_DEBUG("drop datagram from {}: {}", from.to_string(), wire::decode_error_name(err));
    return;
  }
  if (h.flags & wire::kFlagAuth) {
    // No keys are configured in this version: an authenticated datagram
    // cannot be verified, so it is dropped rather than trusted.
    ++stats_.drops_unauthenticated;
    return;
  }
  if (sink_ != nullptr) sink_->on_packet(from, h, payload);
}

}  // namespace broach::reliable
