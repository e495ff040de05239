// libFuzzer target: the sealed receive path (DatagramPath::on_datagram with
// a keyring). Half of the inputs are datagrams sealed with the ring's key
// (a valid header built from the input, then sealed) with one byte flipped
// or not, half are raw bytes, so the fuzzer reaches the key lookup, the
// AEAD open, the replay window and the hand-off to the sink.
//
// Input layout: byte 0 mode (bit 0: seal the rest as a payload; bit 1: flip
// the byte at position byte 1 after sealing; bit 2: deliver twice), then the
// payload (or raw datagram).
// Checks: a flipped sealed datagram never reaches the sink; a datagram
// delivered twice reaches the sink at most once; nothing reaches the sink
// that is not sealed; ASan and UBSan throughout.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "reliable/datagram_path.hpp"
#include "reliable/keyring.hpp"
#include "sim/sim_network.hpp"

namespace {

using namespace broach;

struct CountingSink final : reliable::PacketSink {
  int packets = 0;
  void on_packet(const Endpoint&, const wire::Header& h, std::span<const std::byte>) override {
    if (!(h.flags & wire::kFlagAuth)) {
      std::fprintf(stderr, "an unsealed datagram reached the sink\n");
      std::abort();
    }
    ++packets;
  }
  void on_too_large(const Endpoint&, const wire::Header&) override {}
  void on_unreachable(const Endpoint&, const wire::Header&) override {}
};

struct Rig {
  sim::SimNetwork net{1};
  sim::SimNetwork::Node node = net.add_node(Endpoint{0x0a000001, 7000});
  std::shared_ptr<const reliable::Keyring> ring = std::make_shared<const reliable::Keyring>(
      reliable::Keyring::from_base64({"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="}, "fuzz"));
  reliable::DatagramPath receiver{*node.loop, *node.transport, 1u << 20, reliable::PathSecurity{ring, true, true}};
  // A second path with the same key seals the datagrams the fuzzer shapes.
  sim::SimNetwork::Node other = net.add_node(Endpoint{0x0a000002, 7000});
  reliable::DatagramPath sealer{*other.loop, *other.transport, 1u << 20, reliable::PathSecurity{ring, true, true}};
  CountingSink sink;
  std::uint64_t next_id = 1;
  Rig() { receiver.set_sink(&sink); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Rig rig;
  if (size < 2) return 0;
  const std::uint8_t mode = data[0];
  const std::uint8_t flip_at = data[1];
  std::span<const std::byte> rest(reinterpret_cast<const std::byte*>(data + 2), size - 2);
  std::vector<std::byte> datagram;
  if (mode & 1) {
    if (rest.size() > 60000) return 0;
    wire::Header h;
    h.type = wire::MsgType::kRequest;
    h.node_id = 0x1234;
    h.message_id = rig.next_id++;
    h.total_len = static_cast<std::uint32_t>(rest.size());
    h.payload_len = static_cast<std::uint16_t>(rest.size());
    datagram.resize(wire::kHeaderSize + rest.size() + wire::kAuthTagSize);
    datagram.resize(rig.sealer.encode_into(h, rest, datagram));
  } else {
    datagram.assign(rest.begin(), rest.end());
  }
  const bool flipped = (mode & 2) && !datagram.empty();
  if (flipped) datagram[flip_at % datagram.size()] ^= std::byte{0x01};
  const int before = rig.sink.packets;
  const Endpoint from{0x0a000002, 7000};
  rig.receiver.on_datagram(from, datagram);
  if (mode & 4) rig.receiver.on_datagram(from, datagram);
  const int got = rig.sink.packets - before;
  if ((mode & 1) && flipped && got != 0) {
    std::fprintf(stderr, "a tampered sealed datagram reached the sink\n");
    std::abort();
  }
  if (got > 1) {
    std::fprintf(stderr, "a datagram delivered twice reached the sink twice (replay)\n");
    std::abort();
  }
  return 0;
}
