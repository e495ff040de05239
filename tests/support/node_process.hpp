// Test support for tests that run `broach node` processes: the address a
// child reports once it listens, and polling for a condition with a bound.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "broach/endpoint.hpp"
#include "support/process.hpp"

namespace broach::testing {

/// The address on the child's "listening on IP:PORT" line (30 s at most).
inline Endpoint wait_listening(ChildProcess& p) {
  const std::string line = p.wait_for_line("listening on", std::chrono::seconds(30));
  Endpoint e;
  EXPECT_TRUE(Endpoint::parse(line.substr(line.rfind(' ') + 1), e, nullptr, /*allow_port_zero=*/false))
      << "got: " << line;
  return e;
}

/// Polls `pred` every 100 ms until it holds or `limit` passes; its last value.
template <class Pred>
bool eventually(Pred pred, std::chrono::seconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return pred();
}

}  // namespace broach::testing
