// The floor for `./smp bench linux`: what any request/reply protocol over a raw IPv4 socket pays at
// the least on this path. An echo of SIZE bytes in datagrams of at most the route's MTU, each with
// a 4-byte header (the message's size) and nothing else: no reliability, no checksum of its own, no
// state, no copy in user space (the server echoes its receive buffers as they are). One datagram
// goes with recv/sendto, several with recvmmsg/sendmmsg. The PROTOCOL is its own IP protocol number
// (the bench uses 253, RFC 3692's for experiments), so that the SMP servers never see its packets.
//   raw_rr [--busy-poll] server PROTOCOL
//   raw_rr [--busy-poll] client ADDRESS PROTOCOL SIZE COUNT
// --busy-poll: receive with MSG_DONTWAIT + sched_yield for up to rr::kBusyPollNs, then sleep: the
// same policy as libsmp's spin_ns and tcp_rr --busy-poll (an idle server that polled forever
// would take the CPU from every other system the bench measures there).
// No loss is expected on a veth; a datagram lost anyway ends the run with an error after
// kReceiveTimeoutS instead of a hang.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "rr_stats.h"

namespace {

constexpr size_t kHeaderBytes = 4;           // the message's size, big-endian
constexpr size_t kIpHeaderBytes = 20;
constexpr size_t kBatchMax = 64;             // datagrams of one message (64 KiB at MTU 1500: 45)
constexpr size_t kReceiveBufferBytes = 65536;
constexpr int kReceiveTimeoutS = 5;
constexpr int kSocketBufferBytes = 8 << 20;

bool g_busy_poll = false;

struct Message {
  std::vector<uint8_t> storage;  // kBatchMax receive buffers
  mmsghdr msgs[kBatchMax];
  iovec iov[kBatchMax];
  sockaddr_in from{};
  size_t count = 0;  // datagrams received

  Message() : storage(kBatchMax * kReceiveBufferBytes) {
    for (size_t i = 0; i < kBatchMax; ++i) {
      iov[i] = iovec{storage.data() + i * kReceiveBufferBytes, kReceiveBufferBytes};
      msgs[i] = mmsghdr{};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
  }
};

int open_raw(int protocol) {
  const int fd = socket(AF_INET, SOCK_RAW, protocol);
  if (fd < 0) {
    std::perror("raw_rr: socket (needs CAP_NET_RAW)");
    return -1;
  }
  timeval tv{kReceiveTimeoutS, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const int size = kSocketBufferBytes;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size);
  return fd;
}

// Waits for the first datagram (polling first with --busy-poll, then sleeping); -1 after the
// receive timeout.
ssize_t receive_first(int fd, void* buf, size_t cap, sockaddr_in* from) {
  const int64_t stop_polling = g_busy_poll ? rr::now_ns() + rr::kBusyPollNs : 0;
  for (;;) {
    const bool poll = g_busy_poll && rr::now_ns() < stop_polling;
    socklen_t len = sizeof *from;
    const ssize_t n = recvfrom(fd, buf, cap, poll ? MSG_DONTWAIT : 0,
                               reinterpret_cast<sockaddr*>(from), &len);
    if (n >= 0 || !poll || (errno != EAGAIN && errno != EWOULDBLOCK)) return n;
    sched_yield();
  }
}

// One whole message: its datagrams' IP packets in m.storage; false on a timeout or a bad packet.
bool receive_message(int fd, Message& m, size_t* size_bytes) {
  const ssize_t n = receive_first(fd, m.iov[0].iov_base, kReceiveBufferBytes, &m.from);
  if (n < ssize_t(kIpHeaderBytes + kHeaderBytes)) return false;
  m.msgs[0].msg_len = unsigned(n);
  const auto* first = static_cast<const uint8_t*>(m.iov[0].iov_base) + kIpHeaderBytes;
  const size_t total = size_t(first[0]) << 24 | size_t(first[1]) << 16 | size_t(first[2]) << 8 | first[3];
  size_t got = size_t(n) - kIpHeaderBytes - kHeaderBytes;
  m.count = 1;
  while (got < total) {
    if (m.count == kBatchMax) return false;
    const int k = recvmmsg(fd, m.msgs + m.count, unsigned(kBatchMax - m.count),
                           g_busy_poll ? MSG_DONTWAIT : MSG_WAITFORONE, nullptr);
    if (k < 0) {
      if (!g_busy_poll || (errno != EAGAIN && errno != EWOULDBLOCK)) return false;
      // The sender may be the one waiting for this CPU (one core: it was preempted mid-batch
      // by our wake-up): polling without yielding would keep it out for a whole time slice.
      sched_yield();
      continue;
    }
    for (int i = 0; i < k; ++i) got += m.msgs[m.count + size_t(i)].msg_len - kIpHeaderBytes - kHeaderBytes;
    m.count += size_t(k);
  }
  *size_bytes = total;
  return got == total;
}

// Sends the datagrams described by iov[0..count) (each a header and its bytes) to `to`.
bool send_datagrams(int fd, const sockaddr_in& to, iovec* iov, size_t count) {
  if (count == 1) {
    return sendto(fd, iov[0].iov_base, iov[0].iov_len, 0, reinterpret_cast<const sockaddr*>(&to),
                  sizeof to) == ssize_t(iov[0].iov_len);
  }
  mmsghdr msgs[kBatchMax];
  for (size_t i = 0; i < count; ++i) {
    msgs[i] = mmsghdr{};
    msgs[i].msg_hdr.msg_name = const_cast<sockaddr_in*>(&to);
    msgs[i].msg_hdr.msg_namelen = sizeof to;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  size_t sent = 0;
  while (sent < count) {
    const int k = sendmmsg(fd, msgs + sent, unsigned(count - sent), 0);
    if (k <= 0) return false;
    sent += size_t(k);
  }
  return true;
}

bool protocol_ok(int protocol) {
  if (protocol <= 255) return true;
  std::fprintf(stderr, "raw_rr: the protocol is an IP protocol number, 1..255\n");
  return false;
}

int server(int protocol) {
  if (!protocol_ok(protocol)) return 2;
  const int fd = open_raw(protocol);
  if (fd < 0) return 1;
  Message m;
  iovec out[kBatchMax];
  for (;;) {
    size_t size = 0;
    if (!receive_message(fd, m, &size)) continue;  // the timeout, or a stray packet
    for (size_t i = 0; i < m.count; ++i) {  // echo each datagram as received, past its IP header
      out[i] = iovec{static_cast<uint8_t*>(m.iov[i].iov_base) + kIpHeaderBytes,
                     m.msgs[i].msg_len - kIpHeaderBytes};
    }
    send_datagrams(fd, m.from, out, m.count);
  }
}

// The route's MTU toward `to`: a connected UDP socket sends nothing but knows it.
size_t route_mtu(const sockaddr_in& to) {
  int mtu = 1500;
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in u = to;
  u.sin_port = htons(9);
  socklen_t len = sizeof mtu;
  if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&u), sizeof u) == 0)
    getsockopt(fd, IPPROTO_IP, IP_MTU, &mtu, &len);
  if (fd >= 0) close(fd);
  return size_t(mtu);
}

int client(const char* address, int protocol, size_t size, int count) {
  sockaddr_in to{};
  to.sin_family = AF_INET;
  if (!protocol_ok(protocol)) return 2;
  if (inet_pton(AF_INET, address, &to.sin_addr) != 1) {
    std::fprintf(stderr, "raw_rr: bad address %s\n", address);
    return 2;
  }
  const int fd = open_raw(protocol);
  if (fd < 0) return 1;
  const size_t chunk = route_mtu(to) - kIpHeaderBytes - kHeaderBytes;
  const size_t datagrams = size == 0 ? 1 : (size + chunk - 1) / chunk;
  if (datagrams > kBatchMax) {
    std::fprintf(stderr, "raw_rr: %zu bytes need %zu datagrams, more than %zu\n", size, datagrams, kBatchMax);
    return 2;
  }
  // The request, datagram by datagram: header and bytes contiguous, so one iovec each.
  std::vector<uint8_t> request(datagrams * (kHeaderBytes + chunk), 'q');
  iovec iov[kBatchMax];
  for (size_t i = 0; i < datagrams; ++i) {
    uint8_t* d = request.data() + i * (kHeaderBytes + chunk);
    d[0] = uint8_t(size >> 24);
    d[1] = uint8_t(size >> 16);
    d[2] = uint8_t(size >> 8);
    d[3] = uint8_t(size);
    const size_t bytes = i + 1 < datagrams ? chunk : size - i * chunk;
    iov[i] = iovec{d, kHeaderBytes + bytes};
  }
  Message m;
  return rr::measure("RAW", size, count, [&] {
    size_t got = 0;
    return send_datagrams(fd, to, iov, datagrams) && receive_message(fd, m, &got) && got == size;
  });
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--busy-poll") == 0) {
    g_busy_poll = true;
    argv[1] = argv[0];
    return rr::main_of("raw_rr", argc - 1, argv + 1, server, client);
  }
  return rr::main_of("raw_rr", argc, argv, server, client);
}
