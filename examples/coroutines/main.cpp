// C++20 coroutines with BroachRpc, in one process (two nodes on loopback):
//  - a coroutine handler ("total") that co_awaits other calls: it holds no
//    thread while it waits, so a node can have thousands of them open;
//  - a caller coroutine that co_awaits node.call_async<R>(...).
// Exits 0 when every result is right (ctest runs it).
#include <broach/broach.hpp>

#include <future>
#include <iostream>
#include <string>
#include <vector>

namespace {

broach::Config loopback() {
  broach::Config c = broach::default_config();
  c.rpc_ip = "127.0.0.1";
  c.rpc_port = 0;
  c.log_level = "warn";
  return c;
}

// A caller coroutine: the Async<T> of broach/async.hpp can be started by
// anyone, not only by a node.
broach::Async<int> sum_prices(broach::Node& node, broach::Endpoint shop, std::vector<std::string> items) {
  int sum = 0;
  for (const auto& item : items) {
    broach::Result<int> price = co_await node.call_async<int>(shop, "price", item);
    if (!price.ok()) throw price.error();
    sum += price.value();
  }
  co_return sum;
}

}  // namespace

int main() {
  broach::Node shop(loopback());
  broach::Node front(loopback());
  shop.provide("price", [](const std::string& item) { return static_cast<int>(item.size()) * 10; });

  // A coroutine handler on `front`: every item's price is asked for at once
  // (all calls in flight together), then awaited one by one.
  const broach::Endpoint shop_at = shop.address();
  front.provide("total", [&front, shop_at](std::vector<std::string> items) -> broach::Async<int> {
    std::vector<broach::CallFuture<int>> asks;
    for (const auto& item : items) asks.push_back(front.call_async<int>(shop_at, "price", item));
    int sum = 0;
    for (auto& ask : asks) {
      broach::Result<int> p = co_await std::move(ask);
      if (!p.ok()) throw p.error();
      sum += p.value();
    }
    co_return sum;
  });

  int rc = 0;
  // An ordinary blocking call of the coroutine handler.
  const int total = front.call<int>(front.address(), "total", std::vector<std::string>{"tea", "bread", "jam"});
  std::cout << "total (coroutine handler) = " << total << "\n";
  rc |= total != 110;

  // A caller coroutine, started here; its result arrives on front's loop thread.
  std::promise<broach::Result<int>> got;
  sum_prices(front, shop_at, {"milk", "eggs"}).start([&got](broach::Result<int> r) { got.set_value(r); });
  broach::Result<int> sum = got.get_future().get();
  std::cout << "sum_prices (caller coroutine) = " << (sum.ok() ? std::to_string(sum.value()) : "error") << "\n";
  rc |= !sum.ok() || sum.value() != 80;
  return rc;
}
