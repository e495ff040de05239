// libFuzzer target: the membership message decoders.
//
// decode_probe reads the body of every kPing / kGossip datagram a node
// receives (Membership::on_extension), and decode_push_pull the state a peer
// sends in a push-pull exchange; both are network input. The input goes to
// both decoders. Checks:
//  - nothing escapes and nothing crashes (ASan, UBSan);
//  - memory stays bounded: run-all passes -malloc_limit_mb=64, far above what
//    any message of at most 64 KiB (one datagram) needs;
//  - what decodes re-encodes (ProbeWriter + encode_update, encode_push_pull)
//    to a body that decodes to the same message.
// A failed check prints what failed and aborts, so libFuzzer reports it.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <span>
#include <vector>

#include "base/log.hpp"
#include "membership/messages.hpp"

namespace {

using namespace broach;
using namespace broach::membership;

[[noreturn]] void fail(const char* what, int line) {
  std::fprintf(stderr, "fuzz_membership: check failed (fuzz_membership.cpp:%d): %s\n", line, what);
  std::abort();
}
#define FUZZ_CHECK(cond) ((cond) ? (void)0 : fail(#cond, __LINE__))

bool same_update(const Update& a, const Update& b) {
  return a.state == b.state && a.addr == b.addr && a.life == b.life &&
         a.incarnation == b.incarnation && a.from == b.from && a.meta == b.meta;
}

bool same_updates(const std::vector<Update>& a, const std::vector<Update>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!same_update(a[i], b[i])) return false;
  }
  return true;
}

void check_probe(std::span<const std::byte> body) {
  ProbeMessage m;
  if (!decode_probe(body, m)) return;
  ProbeWriter w(m.kind, m.seq, m.target);
  for (const auto& u : m.updates) {
    FUZZ_CHECK(w.try_add(encode_update(u), std::numeric_limits<std::size_t>::max()));
  }
  const wire::Bytes again = w.finish();
  FUZZ_CHECK(w.size() >= again.size());  // size() is the writer's upper bound
  ProbeMessage m2;
  FUZZ_CHECK(decode_probe(again, m2));
  FUZZ_CHECK(m2.kind == m.kind && m2.seq == m.seq && m2.target == m.target);
  FUZZ_CHECK(same_updates(m2.updates, m.updates));
}

void check_push_pull(std::span<const std::byte> body) {
  bool join = false;
  std::vector<Update> state;
  if (!decode_push_pull(body, join, state)) return;
  const wire::Bytes again = encode_push_pull(join, state);
  bool join2 = !join;
  std::vector<Update> state2;
  FUZZ_CHECK(decode_push_pull(again, join2, state2));
  FUZZ_CHECK(join2 == join && same_updates(state2, state));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  log::set_level("off");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> body(reinterpret_cast<const std::byte*>(data), size);
  check_probe(body);
  check_push_pull(body);
  return 0;
}
