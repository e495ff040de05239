// The seed's provider, in C++. Python:
//   BroachFramework.run("./application1.json")
//   @BroachApply.rpcRoute()
//   def work01(x, y): return x + y
#include <broach/broach.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>
#include <thread>

int work01(int x, int y) { return x + y; }

std::string sleep_then_ok(int seconds) {
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  return "ok";
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: seed_provider CONFIG.json\n");
    return 1;
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  auto node = broach::run(argv[1]);  // non-blocking, like BroachFramework.run
  const std::string me = node->address().to_string();
  node->provide("work00", [me] { return me; });  // returns its address
  BROACH_PROVIDE(*node, work01);                   // name from the function
  node->provide("work05", [] { return sleep_then_ok(3); });
  node->provide("work06", [] { return sleep_then_ok(6); });
  node->provide("work07", [] { return sleep_then_ok(10); });
  std::printf("provider %s ready\n", me.c_str());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&set, &sig);
  const auto s = node->stats();
  std::printf("provider %s: %llu requests, %llu handlers run, %llu dropped unrun because the caller "
              "had given up, %llu refused as overloaded\n",
              me.c_str(), static_cast<unsigned long long>(s.requests_received),
              static_cast<unsigned long long>(s.handlers_run),
              static_cast<unsigned long long>(s.expired_in_queue),
              static_cast<unsigned long long>(s.rejected_overloaded));
  std::fflush(stdout);
  return 0;
}
