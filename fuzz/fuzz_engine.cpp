// libFuzzer target: the reliable engine's whole receive path.
//
// One Engine on a SimNetwork (virtual time, no sockets) receives the fuzz
// input as a sequence of datagrams from one fixed peer, with virtual time
// passing between them, so decoding, dispatch, reassembly, the at-most-once
// table, fragment acks, calls in flight and every timer (retransmission,
// polling, expiry, housekeeping) meet hostile input.
//
// Input layout:
//   byte 0      setup bits: kStartSmallCall, kStartBigCall, kDelayResponses
//   then records, each: gap u8 (virtual ms to run first), len u16 LE, bytes.
//   A last record shorter than its len takes what is left.
// After the last record the network runs 3 virtual seconds more, past every
// call deadline and past the reassembly expiry.
//
// Checks (a failure aborts, so libFuzzer reports it and saves the input):
//  - every call completes exactly once, and no later than its deadline;
//  - at-most-once: a request is not run twice while the engine must still
//    hold its record (delivery_timeout after it ran, unless records were
//    evicted for space);
//  - memory: small engine limits (1 MiB messages, 4 MiB reassembly) plus
//    run-all's -malloc_limit_mb / -rss_limit_mb; ASan and UBSan throughout.
// The handler answers by service name: "echo" (args back), "big" (a 100 KB
// result, so fragmented), "huge" (over max_message), "fail" (an error);
// anything else is kNotFound.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "base/log.hpp"
#include "reliable/engine.hpp"
#include "sim/sim_network.hpp"
#include "wire/payload.hpp"

namespace {

using namespace broach;
using reliable::Bytes;

constexpr std::uint8_t kStartSmallCall = 1u << 0;  // call id 1: one datagram
constexpr std::uint8_t kStartBigCall = 1u << 1;    // next id: a fragmented request
constexpr std::uint8_t kDelayResponses = 1u << 2;  // handler answers 30 ms later

constexpr Duration kDeliveryTimeout = std::chrono::seconds(1);
constexpr Duration kCallBudget = std::chrono::milliseconds(1500);
constexpr Duration kResponseDelay = std::chrono::milliseconds(30);
constexpr Duration kDrain = std::chrono::seconds(3);

const Endpoint kSelf{0x0a000001, 7000};  // 10.0.0.1:7000
const Endpoint kPeer{0x0a000002, 7000};  // 10.0.0.2:7000, where every datagram comes from

[[noreturn]] void fail(const std::string& what) {
  std::fprintf(stderr, "fuzz_engine: check failed: %s\n", what.c_str());
  std::abort();
}

void put_be(Bytes& out, std::uint64_t v, int n) {
  for (int i = n - 1; i >= 0; --i) out.push_back(static_cast<std::byte>((v >> (8 * i)) & 0xff));
}

// msgpack [bin(n)] of n bytes: one packed array, usable as args or result.
Bytes packed_bin_array(std::size_t n) {
  Bytes b;
  b.push_back(std::byte{0x91});
  b.push_back(std::byte{0xc6});
  put_be(b, n, 4);
  b.resize(b.size() + n, std::byte{0x5a});
  return b;
}

class FuzzHandler final : public reliable::RequestHandler {
 public:
  FuzzHandler(Loop& loop, bool delay) : loop_(loop), delay_(delay) {}
  void set_engine(reliable::Engine* e) { engine_ = e; }

  void on_request(reliable::IncomingRequest&& r) override {
    check_at_most_once(r.token);
    Bytes body;
    if (r.service == "echo") {
      wire::encode_response_ok(r.args, body);
    } else if (r.service == "big") {
      static const Bytes kBig = packed_bin_array(100 * 1024);
      wire::encode_response_ok(kBig, body);
    } else if (r.service == "huge") {
      static const Bytes kHuge = packed_bin_array((1u << 20) + 1);
      wire::encode_response_ok(kHuge, body);
    } else if (r.service == "fail") {
      wire::encode_response_error(Errc::kRemoteError, "handler threw", body);
    } else {
      wire::encode_response_error(Errc::kNotFound, r.service, body);
    }
    if (!delay_) {
      engine_->respond(r.token, std::move(body));
      return;
    }
    // The engine outlives every timer that runs: the network is only
    // stepped while the engine exists.
    loop_.run_after(kResponseDelay, [e = engine_, token = r.token, b = std::move(body)]() mutable {
      e->respond(token, std::move(b));
    });
  }

 private:
  void check_at_most_once(const reliable::RequestToken& t) {
    const TimePoint now = loop_.now();
    auto [it, fresh] = ran_at_.emplace(std::pair{t.node_id, t.message_id}, now);
    if (fresh) return;
    // A finished record lives at least delivery_timeout past its response,
    // which comes after the run; only eviction for space may end it sooner.
    if (now - it->second < kDeliveryTimeout && engine_->stats().dedup_evicted == 0) {
      fail("request (node " + std::to_string(t.node_id) + ", id " + std::to_string(t.message_id) +
           ") ran twice within delivery_timeout without any eviction");
    }
    it->second = now;
  }

  Loop& loop_;
  bool delay_;
  reliable::Engine* engine_ = nullptr;
  std::map<std::pair<std::uint64_t, std::uint64_t>, TimePoint> ran_at_;
};

struct CallRecord {
  TimePoint deadline{};
  TimePoint done_at{};
  int completions = 0;
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  log::set_level("off");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t setup = data[0];
  std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data) + 1, size - 1);

  sim::SimNetwork net(1);
  auto node = net.add_node(kSelf);
  reliable::EngineOptions opt;
  opt.node_id = 1;
  opt.advertised = kSelf;
  opt.max_message = 1u << 20;
  opt.delivery_timeout = kDeliveryTimeout;
  opt.dedup_max_entries = 32;          // small, so eviction paths run
  opt.dedup_max_bytes = 256u << 10;
  opt.reassembly_max_bytes_per_peer = 4u << 20;
  opt.reassembly_max_bytes_total = 4u << 20;
  FuzzHandler handler(*node.loop, (setup & kDelayResponses) != 0);
  auto engine = std::make_unique<reliable::Engine>(*node.loop, *node.transport, opt, &handler);
  handler.set_engine(engine.get());

  // Calls to the peer, so responses, in-progress notes, unknown-call replies
  // and fragment acks from it find state to act on.
  std::vector<std::unique_ptr<CallRecord>> calls;
  auto start_call = [&](Bytes args) {
    Bytes body;
    wire::encode_request("echo", args, body);
    auto rec = std::make_unique<CallRecord>();
    rec->deadline = net.now() + kCallBudget;
    CallRecord* r = rec.get();
    calls.push_back(std::move(rec));
    engine->call(kPeer, std::move(body), r->deadline, [r, &net](reliable::CallResult&&) {
      if (++r->completions > 1) fail("a call completed twice");
      r->done_at = net.now();
    });
  };
  if (setup & kStartSmallCall) start_call(Bytes{std::byte{0x91}, std::byte{0x01}});
  if (setup & kStartBigCall) start_call(packed_bin_array(20000));  // 15 fragments of 1400

  while (!in.empty()) {
    if (in.size() < 3) break;
    const auto gap = std::chrono::milliseconds(static_cast<unsigned>(in[0]));
    std::size_t len = static_cast<unsigned>(in[1]) | static_cast<std::size_t>(in[2]) << 8;
    in = in.subspan(3);
    len = std::min(len, in.size());
    net.run_for(gap);
    engine->path().on_datagram(kPeer, in.first(len));
    in = in.subspan(len);
  }
  net.run_for(kDrain);

  for (std::size_t i = 0; i < calls.size(); ++i) {
    const CallRecord& r = *calls[i];
    if (r.completions != 1) {
      fail("call " + std::to_string(i + 1) + " completed " + std::to_string(r.completions) +
           " times by the end of the run (deadline long past)");
    }
    if (r.done_at > r.deadline) {
      fail("call " + std::to_string(i + 1) + " completed after its deadline");
    }
  }
  if (engine->pending_calls() != 0) fail("pending calls remain after every deadline");
  engine.reset();
  return 0;
}
