// Internal header (api layer). The node's HTTP endpoint (params.broach.http,
// off by default): Prometheus /metrics, /members, /routes, /status.json,
// /series.json (the last ten minutes, one point per second, recorded while
// the endpoint runs) and the live status page at /. cpp-httplib serves it on its own threads; every
// handler reads the node's state on the loop thread (Status) by posting
// there and waiting.
// Thread contract: construct, start and stop from the node's owning thread;
// the handlers run on httplib's threads.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "api/status.hpp"
#include "base/loop.hpp"
#include "broach/endpoint.hpp"

namespace httplib {
class Server;
}

namespace broach::api {

class HttpEndpoint {
 public:
  /// `listen` is "ip:port" (port 0: any free port); `source` names the
  /// config file for errors.
  HttpEndpoint(std::string listen, std::string source, Loop& loop, Status& status,
               const std::atomic<bool>& stopping);
  ~HttpEndpoint();
  /// Binds and starts serving. Throws Error{kIoError} naming the key.
  void start();
  void stop();
  /// "ip:port" actually bound.
  std::string address() const;

 private:
  std::string listen_, source_, host_;
  bool v6_ = false;
  Loop& loop_;
  Status& status_;
  const std::atomic<bool>& stopping_;
  std::unique_ptr<httplib::Server> http_;
  std::thread thread_;
  int port_ = 0;
  /// Once a second on the loop thread: Status::record_series.
  void tick_series();
  TimerId series_timer_ = kNoTimer;  // loop thread
};

}  // namespace broach::api
