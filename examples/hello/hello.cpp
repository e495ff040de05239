// Minimal BroachRpc example: start a node, provide a function, call another
// node's functions by address with typed arguments.
//
//   example_hello                 serve "greet" until Ctrl-C
//   example_hello IP:PORT         call add, echo (1 MiB) and a missing
//                                 function at IP:PORT, print what happens
#include <broach/broach.hpp>

#include <csignal>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  broach::Config config = broach::default_config();  // or broach::load_config_file(path)
  config.rpc_port = 0;                                // any free port
  config.log_level = "warn";
  broach::Node node(config);
  node.provide("greet", [](const std::string& who) { return "hello, " + who; });

  if (argc < 2) {
    std::cout << "serving greet on " << node.address().to_string() << std::endl;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int sig = 0;
    sigwait(&set, &sig);
    return 0;
  }

  broach::Endpoint peer;
  std::string why;
  if (!broach::Endpoint::parse(argv[1], peer, &why, /*allow_port_zero=*/false)) {
    std::cerr << "example_hello: bad address '" << argv[1] << "': " << why << "\n"
              << "usage: example_hello [IP:PORT]\n";
    return 1;
  }
  int rc = 0;
  const int sum = node.call<int>(peer, "add", 1, 2);
  std::cout << "add(1, 2) at " << peer.to_string() << " = " << sum << "\n";
  rc |= sum != 3;

  const std::string big(1 << 20, 'x');
  const auto back = node.call<std::string>(peer, "echo", big);
  std::cout << "echo of 1 MiB: " << back.size() << " bytes back, "
            << (back == big ? "identical" : "DIFFERENT") << "\n";
  rc |= back != big;

  try {
    node.call<int>(peer, "work02", 1, 2);
    std::cout << "work02: unexpectedly succeeded\n";
    rc = 1;
  } catch (const broach::Error& e) {
    std::cout << "work02(1, 2): " << e.what() << " (error code "
              << static_cast<int>(e.code()) << ")\n";
  }
  auto fut = node.call_async<std::string>(peer, "whoami");
  std::cout << "whoami (async): " << fut.get().value() << "\n";
  return rc;
}
