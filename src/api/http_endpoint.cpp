// HttpEndpoint: /metrics, /members, /routes, /status.json and the page.
#include "api/http_endpoint.hpp"

#include <httplib.h>

#include <chrono>
#include <future>

#include "api/status_page.hpp"
#include "base/log.hpp"

namespace broach::api {
namespace {

// Runs `f` on the loop thread and waits; false when the loop has stopped.
template <class F>
bool on_loop(Loop& loop, F&& f) {
  std::promise<void> done;
  auto fut = done.get_future();
  if (!loop.try_post([&] {
        f();
        done.set_value();
      })) {
    return false;
  }
  fut.wait();
  return true;
}

}  // namespace

HttpEndpoint::HttpEndpoint(std::string listen, std::string source, Loop& loop, Status& status,
                           const std::atomic<bool>& stopping)
    : listen_(std::move(listen)), source_(std::move(source)), loop_(loop), status_(status), stopping_(stopping) {}

HttpEndpoint::~HttpEndpoint() { stop(); }

void HttpEndpoint::start() {
  Endpoint bind;
  std::string why;
  if (!Endpoint::parse(listen_, bind, &why)) {
    throw Error(Errc::kBadConfig, source_ + ": params.broach.http: " + why);
  }
  host_ = bind.ip_string();
  v6_ = bind.v6;
  http_ = std::make_unique<httplib::Server>();
  if (v6_) http_->set_address_family(AF_INET6);
  // Each route reads the node on its loop thread; 503 once it stops.
  auto route = [this](const char* path, const char* type, auto render) {
    http_->Get(path, [this, type, render](const httplib::Request&, httplib::Response& res) {
      std::string body;
      if (stopping_.load() || !on_loop(loop_, [&] { body = render(); })) {
        res.status = 503;
        return;
      }
      res.set_content(body, type);
    });
  };
  route("/metrics", "text/plain; version=0.0.4; charset=utf-8", [this] { return status_.prometheus(); });
  route("/members", "application/json", [this] { return status_.members_json().dump(); });
  route("/routes", "application/json", [this] { return status_.routes_json().dump(); });
  route("/status.json", "application/json", [this] { return status_.snapshot().dump(); });
  http_->Get("/series.json", [this](const httplib::Request& req, httplib::Response& res) {
    const std::string prefix = req.has_param("prefix") ? req.get_param_value("prefix") : "";
    std::string body;
    if (stopping_.load() || !on_loop(loop_, [&] { body = status_.series_json(prefix).dump(); })) {
      res.status = 503;
      return;
    }
    res.set_content(body, "application/json");
  });
  http_->Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kStatusPage, "text/html; charset=utf-8");
  });
  const int bound = bind.port == 0 ? http_->bind_to_any_port(host_)
                                   : (http_->bind_to_port(host_, bind.port) ? bind.port : -1);
  if (bound < 0) throw Error(Errc::kIoError, source_ + ": params.broach.http: cannot listen on " + listen_);
  port_ = bound;
  thread_ = std::thread([this] { http_->listen_after_bind(); });
  on_loop(loop_, [this] { tick_series(); });
  BROACH_LOG_INFO("status page and metrics on http://{}/", address());
}

void HttpEndpoint::tick_series() {
  BROACH_ASSERT_IN_LOOP(loop_);
  const auto unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
  status_.record_series(unix_ms);
  series_timer_ = loop_.run_after(std::chrono::seconds(1), [this] { tick_series(); });
}

void HttpEndpoint::stop() {
  if (!http_) return;
  http_->stop();
  if (thread_.joinable()) thread_.join();
  // The loop may have stopped already (then its timers never run again).
  on_loop(loop_, [this] {
    loop_.cancel(series_timer_);
    series_timer_ = kNoTimer;
  });
}

std::string HttpEndpoint::address() const {
  return (v6_ ? "[" + host_ + "]" : host_) + ":" + std::to_string(port_);
}

}  // namespace broach::api
