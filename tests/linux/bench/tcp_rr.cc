// Baseline for `./smp bench linux`: TCP request/reply with Nagle off. The request is a 4-byte
// big-endian length and the payload; the server echoes the same framing back.
//   tcp_rr [--busy-poll] server PORT
//   tcp_rr [--busy-poll] client ADDRESS PORT SIZE COUNT
// --busy-poll: every receive polls (MSG_DONTWAIT, then sched_yield) for up to rr::kBusyPollNs
// before it sleeps, the same busy-wait libsmp does with Config::spin_ns, so that SMP with
// busy-poll meets TCP with it too.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include "rr_stats.h"

namespace {

using rr::kSizeMax;

bool g_busy_poll = false;

bool io_all(int fd, void* buf, size_t n, bool write_side) {
  auto* p = static_cast<char*>(buf);
  const int64_t stop_polling = g_busy_poll ? rr::now_ns() + rr::kBusyPollNs : 0;
  while (n > 0) {
    const bool poll = !write_side && g_busy_poll && rr::now_ns() < stop_polling;
    ssize_t r = write_side ? ::send(fd, p, n, MSG_NOSIGNAL) : ::recv(fd, p, n, poll ? MSG_DONTWAIT : 0);
    if (r < 0 && poll && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      sched_yield();
      continue;
    }
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

void no_delay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void serve_one(int fd) {
  no_delay(fd);
  std::vector<char> buf;
  for (;;) {
    uint32_t len_be = 0;
    if (!io_all(fd, &len_be, 4, false)) break;
    uint32_t len = ntohl(len_be);
    if (len > kSizeMax) break;
    // Header and payload leave in one send, so Nagle-off TCP is not charged for an extra segment.
    buf.resize(4 + len);
    std::memcpy(buf.data(), &len_be, 4);
    if (!io_all(fd, buf.data() + 4, len, false)) break;
    if (!io_all(fd, buf.data(), 4 + len, true)) break;
  }
  close(fd);
}

int server(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 16) != 0) {
    std::perror("tcp_rr: bind/listen");
    return 1;
  }
  for (;;) {
    int c = accept(fd, nullptr, nullptr);
    if (c < 0) continue;
    std::thread(serve_one, c).detach();
  }
}

int client(const char* addr, int port, size_t size, int count) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, addr, &a.sin_addr) != 1 ||
      connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    std::perror("tcp_rr: connect");
    return 1;
  }
  no_delay(fd);
  std::vector<char> req(4 + size, 'q'), rep(size);
  uint32_t len_be = htonl(static_cast<uint32_t>(size));
  std::memcpy(req.data(), &len_be, 4);
  return rr::measure("TCP", size, count, [&] {
    if (!io_all(fd, req.data(), req.size(), true)) return false;
    uint32_t got_be = 0;
    return io_all(fd, &got_be, 4, false) && ntohl(got_be) == size &&
           io_all(fd, rep.data(), size, false);
  });
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--busy-poll") == 0) {
    g_busy_poll = true;
    argv[1] = argv[0];
    return rr::main_of("tcp_rr", argc - 1, argv + 1, server, client);
  }
  return rr::main_of("tcp_rr", argc, argv, server, client);
}
