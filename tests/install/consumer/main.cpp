// Uses only the installed headers and library: starts a node, provides a
// function, calls it by name through the route table and by address.
#include <broach/broach.hpp>

#include <chrono>
#include <cstdio>
#include <thread>

int main() {
  broach::Config c = broach::default_config();
  c.rpc_port = 0;
  c.log_level = "warn";
  broach::Node node(c);
  node.provide("add", [](int a, int b) { return a + b; });
  for (int i = 0; i < 500 && node.routes().empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto add = node.stub<int(int, int)>("add");
  const int by_name = add(1, 2);
  const int by_address = node.call<int>(node.address(), "add", 20, 22);
  std::printf("%d %d\n", by_name, by_address);
  return by_name == 3 && by_address == 42 ? 0 : 1;
}
