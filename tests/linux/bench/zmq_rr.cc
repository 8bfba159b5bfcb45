// Baseline for `./smp bench linux`: ZeroMQ REQ/REP (Debian's libzmq), the server echoes each request.
//   zmq_rr server PORT
//   zmq_rr client ADDRESS PORT SIZE COUNT
#include <zmq.h>

#include <cstring>
#include <string>
#include <vector>

#include "rr_stats.h"

namespace {

using rr::kSizeMax;

int server(int port) {
  void* ctx = zmq_ctx_new();
  void* s = zmq_socket(ctx, ZMQ_REP);
  std::string ep = "tcp://*:" + std::to_string(port);
  if (zmq_bind(s, ep.c_str()) != 0) {
    std::fprintf(stderr, "zmq_rr: bind %s: %s\n", ep.c_str(), zmq_strerror(zmq_errno()));
    return 1;
  }
  for (;;) {
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, s, 0) < 0) {
      zmq_msg_close(&m);
      continue;
    }
    zmq_msg_send(&m, s, 0);  // sends and releases the same message: an echo without a copy
  }
}

int client(const char* addr, int port, size_t size, int count) {
  void* ctx = zmq_ctx_new();
  void* s = zmq_socket(ctx, ZMQ_REQ);
  std::string ep = std::string("tcp://") + addr + ":" + std::to_string(port);
  if (zmq_connect(s, ep.c_str()) != 0) {
    std::fprintf(stderr, "zmq_rr: connect %s: %s\n", ep.c_str(), zmq_strerror(zmq_errno()));
    return 1;
  }
  std::vector<char> req(size, 'q'), rep(size + 1);
  int rc = rr::measure("ZeroMQ", size, count, [&] {
    if (zmq_send(s, req.data(), size, 0) != static_cast<int>(size)) return false;
    return zmq_recv(s, rep.data(), rep.size(), 0) == static_cast<int>(size);
  });
  zmq_close(s);
  zmq_ctx_term(ctx);
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  return rr::main_of("zmq_rr", argc, argv, server, client);
}
