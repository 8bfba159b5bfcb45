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

using rr::kSizeMax;

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
  return rr::main_of("grpc_rr", argc, argv, server, client);
}
