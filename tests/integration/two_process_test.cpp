// Two processes on loopback: a `broach node` and this test's own node.
// Payloads of 16 B, 64 KiB and 16 MiB round-trip byte for byte.
#include <gtest/gtest.h>

#include "base/rng.hpp"
#include "broach/node.hpp"
#include "support/process.hpp"

namespace broach {
namespace {

Config client_config() {
  Config c = default_config();
  c.rpc_ip = "127.0.0.1";
  c.rpc_port = 0;
  c.log_level = "warn";
  c.rpc_timeout = 60;
  return c;
}

Endpoint start_server(testing::ChildProcess& p) {
  const std::string line = p.wait_for_line("listening on", std::chrono::seconds(30));
  Endpoint e;
  EXPECT_TRUE(Endpoint::parse(line.substr(line.rfind(' ') + 1), e, nullptr,
                              /*allow_port_zero=*/false))
      << "got: " << line;
  return e;
}

TEST(TwoProcesses, EchoRoundTripsByteForByte) {
  testing::ChildProcess server({BROACH_CLI, "node", "--ip", "127.0.0.1", "--port", "0",
                                "--log-level", "warn"});
  ASSERT_TRUE(server.started());
  const Endpoint to = start_server(server);
  Node client(client_config());
  Rng rng(1);
  for (std::size_t size : {std::size_t{16}, std::size_t{64} << 10, std::size_t{16} << 20}) {
    std::string payload(size, '\0');
    for (auto& c : payload) c = static_cast<char>(rng.next());
    const auto back = client.call<std::string>(to, "echo", payload);
    EXPECT_EQ(back.size(), size);
    EXPECT_TRUE(back == payload) << "payload of " << size << " bytes differs";
  }
  EXPECT_EQ(client.call<int>(to, "add", 1, 2), 3);
  EXPECT_EQ(client.call<std::string>(to, "whoami"), to.to_string());
}

// A killed provider's port is closed: its host answers the request with
// ICMP port unreachable and the call ends with peer_gone at once, not
// after udpTimeOut (delivery_timeout is for a peer that answers nothing:
// a host that is down or cut off, covered in tests/sim).
TEST(TwoProcesses, KilledProviderGivesPeerGoneNotHang) {
  testing::ChildProcess server({BROACH_CLI, "node", "--ip", "127.0.0.1", "--port", "0",
                                "--log-level", "warn"});
  const Endpoint to = start_server(server);
  Config c = client_config();
  c.udp_timeout = 1;
  Node client(c);
  EXPECT_EQ(client.call<int>(to, "add", 2, 2), 4);
  server.kill(SIGKILL);
  server.wait();
  const auto t0 = std::chrono::steady_clock::now();
  try {
    client.call<int>(to, "add", 1, 2);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::kPeerGone) << e.what();
    EXPECT_EQ(retry_class(e.code()), RetryClass::kMaybeExecuted);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

TEST(TwoProcesses, SigtermStopsTheNodeCleanly) {
  testing::ChildProcess server({BROACH_CLI, "node", "--ip", "127.0.0.1", "--port", "0",
                                "--log-level", "warn"});
  start_server(server);
  server.kill(SIGTERM);
  EXPECT_EQ(server.wait(), 0);
}

}  // namespace
}  // namespace broach
