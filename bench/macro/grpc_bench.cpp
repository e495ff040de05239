// bench_grpc: the same echo workloads as bench_rpc, over gRPC C++ (HTTP/2
// over TCP on loopback), the peer BroachRpc is measured beside in `make
// bench`. Built only when libgrpc++-dev is installed (scripts/install-deps
// --bench); never needed by `make test`.
//
//   bench_grpc server [--ip 127.0.0.1] [--port 0]
//       an echo service on gRPC's callback API (generic service: the
//       request bytes are the response, no protobuf encoding on either
//       side); prints "listening on IP:PORT".
//   bench_grpc echo --to IP:PORT [--size 16] [--inflight 1] [--seconds 5]
//       the calls of bench_rpc echo: one blocking call at a time when
//       --inflight is 1, otherwise that many chains of asynchronous calls
//       (each answer issues the chain's next call). One channel, like one
//       BroachRpc node.
// Output: one JSON line (bench_util.hpp's Report), bench "grpc".
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <signal.h>

#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bench_util.hpp"

namespace broach::bench {
namespace {

const std::string kMethod = "/bench.Echo/Echo";

// Echo through the generic callback service: read the one request, write it
// back with the final status.
class EchoService final : public grpc::CallbackGenericService {
  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* /*ctx*/) override {
    class Reactor final : public grpc::ServerGenericBidiReactor {
     public:
      Reactor() { StartRead(&buf_); }
      void OnReadDone(bool ok) override {
        if (!ok) {
          Finish(grpc::Status::OK);
          return;
        }
        StartWriteAndFinish(&buf_, grpc::WriteOptions(), grpc::Status::OK);
      }
      void OnDone() override { delete this; }

     private:
      grpc::ByteBuffer buf_;
    };
    return new Reactor;
  }
};

int run_server(const Flags& f) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);  // before gRPC's threads start
  EchoService service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(f.str("ip", "127.0.0.1") + ":" + f.str("port", "0"),
                           grpc::InsecureServerCredentials(), &port);
  builder.RegisterCallbackGenericService(&service);
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.SetMaxSendMessageSize(64 << 20);
  auto server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "bench_grpc: cannot listen\n");
    return 1;
  }
  std::printf("listening on %s:%d\n", f.str("ip", "127.0.0.1").c_str(), port);
  std::fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  server->Shutdown();
  return 0;
}

grpc::ByteBuffer make_payload(std::uint64_t size) {
  const std::string s(size, 'x');
  grpc::Slice slice(s);
  return grpc::ByteBuffer(&slice, 1);
}

class Client {
 public:
  Client(const std::string& to, std::uint64_t size, Window w, Report& r)
      : size_(size), w_(w), r_(r), request_(make_payload(size)) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    args.SetMaxSendMessageSize(64 << 20);
    channel_ = grpc::CreateCustomChannel(to, grpc::InsecureChannelCredentials(), args);
    stub_ = std::make_unique<grpc::GenericStub>(channel_);
  }

  // --inflight 1: the caller blocks on each call.
  void run_sync() {
    for (std::uint64_t t = now_ns(); t < w_.end; t = now_ns()) {
      grpc::ClientContext ctx;
      grpc::ByteBuffer resp;
      std::mutex mu;
      std::condition_variable cv;
      bool done = false;
      grpc::Status st;
      stub_->UnaryCall(&ctx, kMethod, grpc::StubOptions(), &request_, &resp, [&](grpc::Status s) {
        std::lock_guard lock(mu);
        st = std::move(s);
        done = true;
        cv.notify_one();
      });
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return done; });
      record(t, st.ok() && resp.Length() == size_);
    }
  }

  // --inflight N: N chains of asynchronous calls.
  void run_async(int inflight) {
    {
      std::lock_guard lock(mu_);
      outstanding_ = inflight;
    }
    for (int i = 0; i < inflight; ++i) issue();
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return outstanding_ == 0; });
  }

 private:
  struct Call {
    grpc::ClientContext ctx;
    grpc::ByteBuffer resp;
    std::uint64_t start = 0;
  };

  void issue() {
    auto* c = new Call;
    c->start = now_ns();
    stub_->UnaryCall(&c->ctx, kMethod, grpc::StubOptions(), &request_, &c->resp, [this, c](grpc::Status st) {
      const bool ok = st.ok() && c->resp.Length() == size_;
      const std::uint64_t start = c->start;
      delete c;
      {
        std::lock_guard lock(stats_mu_);
        record(start, ok);
      }
      if (now_ns() < w_.end) {
        issue();
        return;
      }
      std::lock_guard lock(mu_);
      if (--outstanding_ == 0) cv_.notify_all();
    });
  }

  void record(std::uint64_t start, bool ok) {
    const std::uint64_t done = now_ns();
    r_.record(start, done, ok, w_.contains(done));
  }

  const std::uint64_t size_;
  const Window w_;
  Report& r_;
  const grpc::ByteBuffer request_;  // read concurrently by the calls, never written
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::GenericStub> stub_;
  std::mutex stats_mu_;
  std::mutex mu_;
  std::condition_variable cv_;
  int outstanding_ = 0;
};

int usage() {
  std::fprintf(stderr,
               "usage: bench_grpc server [--ip IP] [--port P]\n"
               "       bench_grpc echo --to IP:PORT [--size N] [--inflight W] [--seconds D]\n"
               "       (all modes: [--cpu C] pins to CPU C)\n");
  return 2;
}

}  // namespace
}  // namespace broach::bench

int main(int argc, char** argv) {
  using namespace broach::bench;
  const Flags f(argc, argv, {"ip", "port", "to", "size", "inflight", "seconds", "cpu"});
  if (!f.ok()) return usage();
  pin_to_cpu(static_cast<int>(f.num("cpu", -1)));
  if (f.mode() == "server") return run_server(f);
  if (f.mode() != "echo") return usage();
  const auto size = static_cast<std::uint64_t>(f.num("size", 16));
  const int inflight = static_cast<int>(f.num("inflight", 1));
  const double seconds = f.num("seconds", 5);
  if (f.str("to", "").empty() || inflight < 1 || seconds <= 0) return usage();
  Report r{"grpc", "echo" + size_name(size) + "_inflight" + std::to_string(inflight), size, inflight};
  const double cpu0 = process_cpu_s();
  const Window w = Window::starting_now(seconds);
  Client client(f.str("to", ""), size, w, r);
  if (inflight == 1) {
    client.run_sync();
  } else {
    client.run_async(inflight);
  }
  r.cpu_s = process_cpu_s() - cpu0;
  r.seconds = w.seconds();
  r.print();
  return 0;
}
