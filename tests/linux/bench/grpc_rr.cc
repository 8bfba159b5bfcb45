// Baseline for `./smp bench linux`: gRPC unary calls (Debian's libgrpc++), synchronous API, over
// plain HTTP/2 without TLS. The server echoes the request's bytes.
//   grpc_rr server PORT
//   grpc_rr client ADDRESS PORT SIZE COUNT
#include <grpcpp/grpcpp.h>

#include <cstring>
#include <memory>
#include <string>

#include "echo.grpc.pb.h"
#include "rr_stats.h"

namespace {

constexpr long kSizeMax = 16L << 20;

class EchoService final : public smpbench::Echo::Service {
  grpc::Status Call(grpc::ServerContext*, const smpbench::Blob* req, smpbench::Blob* rep) override {
    rep->set_data(req->data());
    return grpc::Status::OK;
  }
};

int server(int port) {
  EchoService service;
  grpc::ServerBuilder b;
  b.AddListeningPort("0.0.0.0:" + std::to_string(port), grpc::InsecureServerCredentials());
  b.RegisterService(&service);
  b.SetMaxReceiveMessageSize(static_cast<int>(kSizeMax) + 1024);
  std::unique_ptr<grpc::Server> s = b.BuildAndStart();
  if (!s) {
    std::fprintf(stderr, "grpc_rr: cannot listen on port %d\n", port);
    return 1;
  }
  s->Wait();
  return 0;
}

int client(const char* addr, int port, size_t size, int count) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(kSizeMax) + 1024);
  auto ch = grpc::CreateCustomChannel(std::string(addr) + ":" + std::to_string(port),
                                      grpc::InsecureChannelCredentials(), args);
  auto stub = smpbench::Echo::NewStub(ch);
  smpbench::Blob req;
  req.set_data(std::string(size, 'q'));
  return rr::measure("gRPC", size, count, [&] {
    grpc::ClientContext ctx;
    smpbench::Blob rep;
    grpc::Status st = stub->Call(&ctx, req, &rep);
    return st.ok() && rep.data().size() == size;
  });
}

}  // namespace

int main(int argc, char** argv) {
  long port = 0, size = 0, count = 0;
  if (argc == 3 && std::strcmp(argv[1], "server") == 0 && rr::parse_count(argv[2], 1, 65535, &port))
    return server(static_cast<int>(port));
  if (argc == 6 && std::strcmp(argv[1], "client") == 0 && rr::parse_count(argv[3], 1, 65535, &port) &&
      rr::parse_count(argv[4], 0, kSizeMax, &size) && rr::parse_count(argv[5], 1, 10'000'000, &count))
    return client(argv[2], static_cast<int>(port), static_cast<size_t>(size), static_cast<int>(count));
  std::fprintf(stderr, "usage: grpc_rr server PORT | grpc_rr client ADDRESS PORT SIZE COUNT\n");
  return 2;
}
