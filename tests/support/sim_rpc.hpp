// Test support: reliable engines on a simulated network.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <msgpack.hpp>

#include "reliable/engine.hpp"
#include "sim/sim_network.hpp"
#include "wire/header.hpp"

namespace broach::testing {

inline reliable::Bytes pack_bytes(const msgpack::sbuffer& buf) {
  auto* p = reinterpret_cast<const std::byte*>(buf.data());
  return reliable::Bytes(p, p + buf.size());
}

template <class... A>
reliable::Bytes request_body(const std::string& service, const A&... args) {
  msgpack::sbuffer buf;
  msgpack::pack(buf, std::make_tuple(args...));
  reliable::Bytes out;
  wire::encode_request(service, pack_bytes(buf), out);
  return out;
}

/// Echo handler: responds with the first argument, optionally after a
/// virtual delay; counts how often each request ran.
class EchoHandler : public reliable::RequestHandler {
 public:
  EchoHandler(Loop& loop) : loop_(loop) {}
  void set_engine(reliable::Engine* e) { engine_ = e; }
  void on_request(reliable::IncomingRequest&& r) override {
    ++runs_[{r.token.node_id, r.token.message_id}];
    ++total_runs;
    reliable::Bytes body;
    if (r.service != "echo") {
      wire::encode_response_error(Errc::kNotFound, r.service, body);
    } else {
      auto oh = msgpack::unpack(reinterpret_cast<const char*>(r.args.data()), r.args.size());
      if (oh.get().via.array.size == 0) {
        wire::encode_response_error(Errc::kBadArguments, "echo takes 1 argument", body);
      } else {
        msgpack::sbuffer out;
        msgpack::pack(out, oh.get().via.array.ptr[0]);
        wire::encode_response_ok(pack_bytes(out), body);
      }
    }
    if (delay.count() == 0) {
      engine_->respond(r.token, std::move(body));
    } else {
      auto token = r.token;
      loop_.run_after(delay, [this, token, b = std::move(body)]() mutable {
        engine_->respond(token, std::move(b));
      });
    }
  }
  int max_runs_per_request() const {
    int m = 0;
    for (auto& [k, v] : runs_) m = std::max(m, v);
    return m;
  }
  Duration delay{};
  int total_runs = 0;

 private:
  Loop& loop_;
  reliable::Engine* engine_ = nullptr;
  std::map<std::pair<std::uint64_t, std::uint64_t>, int> runs_;
};

struct SimNode {
  sim::SimNetwork::Node n;
  std::unique_ptr<EchoHandler> handler;
  std::unique_ptr<reliable::Engine> engine;
};

inline reliable::EngineOptions sim_options(std::uint64_t node_id, const Endpoint& addr) {
  reliable::EngineOptions o;
  o.node_id = node_id;
  o.advertised = addr;
  return o;
}

inline SimNode make_node(sim::SimNetwork& net, const Endpoint& addr, std::uint64_t node_id,
                         reliable::EngineOptions opt = {}) {
  SimNode s;
  s.n = net.add_node(addr);
  s.handler = std::make_unique<EchoHandler>(*s.n.loop);
  opt.node_id = node_id;
  opt.advertised = addr;
  s.engine = std::make_unique<reliable::Engine>(*s.n.loop, *s.n.transport, opt, s.handler.get());
  s.handler->set_engine(s.engine.get());
  return s;
}

/// Describes datagrams in the trace by their decoded header.
inline std::string describe_datagram(std::span<const std::byte> d) {
  wire::Header h;
  std::span<const std::byte> p;
  auto err = wire::decode_datagram(d, ~0ull, h, p);
  if (err != wire::DecodeError::kOk) return std::string("bad:") + wire::decode_error_name(err);
  return "t" + std::to_string(static_cast<int>(h.type)) + " id" + std::to_string(h.message_id) +
         " f" + std::to_string(h.fragment_index) + "/" + std::to_string(h.fragment_count);
}

}  // namespace broach::testing
