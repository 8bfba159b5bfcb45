#include "raw_socket.h"

#include <errno.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

namespace smp::linux_peer {
namespace {

constexpr size_t kIpHeaderMinBytes = 20;
constexpr size_t kFilterLength = 5;

sock_filter stmt(uint16_t code, uint32_t k) { return sock_filter{code, 0, 0, k}; }

// Accept when the 16-bit big-endian word at (IP header length + offset) is our endpoint number.
// A packet too short for the field makes the indirect load fail, which drops it: it could not
// name an endpoint, so no process is its owner. Jump offsets count from the next instruction.
void build_filter(const EndpointFilter& f, sock_filter (&prog)[kFilterLength]) {
  prog[0] = stmt(BPF_LDX | BPF_B | BPF_MSH, 0);  // X = 4 * (IP[0] & 0xf): the IP header's length
  prog[1] = stmt(BPF_LD | BPF_H | BPF_IND, static_cast<uint32_t>(f.offset_bytes));
  prog[2] = sock_filter{BPF_JMP | BPF_JEQ | BPF_K, 0, 1, f.own_endpoint};
  prog[3] = stmt(BPF_RET | BPF_K, 0xffffffffu);  // ours: the whole packet
  prog[4] = stmt(BPF_RET | BPF_K, 0);            // someone else's: dropped in the kernel
}

}  // namespace

RawSocket::~RawSocket() {
  if (fd_ >= 0) close(fd_);
  if (large_fd_ >= 0) close(large_fd_);
}

SocketError RawSocket::open(const EndpointFilter& filter) {
  const int fd = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, kIpProtocolSmp);
  if (fd < 0) {
    errno_value_ = errno;
    return (errno == EPERM || errno == EACCES) ? SocketError::kNoPrivilege : SocketError::kSystem;
  }
  fd_ = fd;
  // Packets that arrive between socket() and the filter could belong to anyone: attach the
  // filter first, then drain, so nothing foreign is left in the queue.
  sock_filter prog[kFilterLength];
  build_filter(filter, prog);
  sock_fprog fprog{static_cast<unsigned short>(kFilterLength), prog};
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof fprog) != 0) {
    errno_value_ = errno;
    return SocketError::kSystem;
  }
  uint8_t scratch[64];
  while (recv(fd, scratch, sizeof scratch, 0) >= 0) {
  }
  set_buffers(fd);
  // The engine finds the path MTU by probing (a raw socket hears no ICMP errors): set DF, never
  // fragment locally, and ignore any cached path MTU, so a probe larger than the device fails
  // here (EMSGSIZE) instead of being split.
  const int pmtu = IP_PMTUDISC_PROBE;
  setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &pmtu, sizeof pmtu);
  return SocketError::kNone;
}

void RawSocket::set_buffers(int fd) {
  const int size = kSocketBufferBytes;
  // Forced sizes need CAP_NET_ADMIN; without it the plain option still gets up to rmem_max.
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) != 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
}

// The socket for large packets, opened at the first one: IP_HDRINCL (we write the IP header), so
// the kernel copies the packet plainly instead of also computing a checksum of every byte that
// nothing uses. It only sends: a filter that takes nothing keeps its receive queue empty.
int RawSocket::large_socket() {
  if (large_fd_ >= 0) return large_fd_;
  const int fd = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, kIpProtocolSmp);
  if (fd < 0) return -1;
  sock_filter none = stmt(BPF_RET | BPF_K, 0);
  sock_fprog fprog{1, &none};
  const int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof fprog) != 0 ||
      setsockopt(fd, IPPROTO_IP, IP_HDRINCL, &one, sizeof one) != 0) {
    const int why = errno;
    ::close(fd);
    errno = why;
    return -1;
  }
  set_buffers(fd);
  large_fd_ = fd;
  return fd;
}

void RawSocket::ip_header(uint32_t destination_be, size_t size_bytes, iphdr* h) const {
  *h = iphdr{};
  h->version = 4;
  h->ihl = kIpHeaderMinBytes / 4;
  h->tot_len = htons(static_cast<uint16_t>(kIpHeaderMinBytes + size_bytes));  // the kernel sets it too
  h->frag_off = htons(IP_DF);  // never fragmented; the kernel refuses one larger than the device
  h->ttl = kTtl;
  h->protocol = kIpProtocolSmp;
  h->saddr = source_be_;  // 0: the kernel takes the route's source address
  h->daddr = destination_be;
  // id 0 and check 0: the kernel picks an id and computes the header checksum (raw(7)).
}

bool RawSocket::receive(uint8_t* buf, size_t capacity_bytes, Received* out) {
  for (;;) {
    sockaddr_in from{};
    socklen_t from_len = sizeof from;
    const ssize_t n = recvfrom(fd_, buf, capacity_bytes, 0, reinterpret_cast<sockaddr*>(&from),
                               &from_len);
    if (n < 0) return false;  // EAGAIN, or an error the next epoll round will show again
    const auto len = static_cast<size_t>(n);
    const size_t ihl = len > 0 ? size_t{4} * (buf[0] & 0x0f) : 0;
    if (len < kIpHeaderMinBytes || ihl < kIpHeaderMinBytes || ihl > len) {
      ++runts;
      continue;
    }
    std::memcpy(&out->source_be, buf + 12, 4);
    std::memcpy(&out->destination_be, buf + 16, 4);
    out->size_bytes = len - ihl;
    std::memmove(buf, buf + ihl, out->size_bytes);
    return true;
  }
}

int RawSocket::send(uint32_t destination_be, const uint8_t* data, size_t size_bytes) {
  OutPacket one{data, size_bytes, destination_be};
  int err = 0;
  send_batch(&one, 1, &err);
  return err;
}

bool RawSocket::receive_one(uint8_t* buf, size_t capacity_bytes, Datagram* out) {
  for (;;) {
    const ssize_t n = recv(fd_, buf, capacity_bytes, MSG_DONTWAIT);
    if (n < 0) return false;
    const auto len = static_cast<size_t>(n);
    const size_t ihl = len > 0 ? size_t{4} * (buf[0] & 0x0f) : 0;
    if (len < kIpHeaderMinBytes || ihl < kIpHeaderMinBytes || ihl > len) {
      ++runts;
      continue;
    }
    std::memcpy(&out->source_be, buf + 12, 4);
    std::memcpy(&out->destination_be, buf + 16, 4);
    out->data = buf + ihl;
    out->size_bytes = len - ihl;
    return true;
  }
}

size_t RawSocket::receive_batch(uint8_t* const* bufs, size_t capacity_bytes, Datagram* out,
                                size_t count) {
  mmsghdr msgs[kBatchMax];
  iovec iov[kBatchMax];
  count = count < kBatchMax ? count : kBatchMax;
  for (size_t i = 0; i < count; ++i) {
    iov[i] = iovec{bufs[i], capacity_bytes};
    msgs[i] = mmsghdr{};
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  const int n = recvmmsg(fd_, msgs, static_cast<unsigned>(count), MSG_DONTWAIT, nullptr);
  if (n <= 0) return 0;
  size_t kept = 0;
  for (int i = 0; i < n; ++i) {
    const uint8_t* buf = bufs[i];
    const size_t len = msgs[i].msg_len;
    const size_t ihl = len > 0 ? size_t{4} * (buf[0] & 0x0f) : 0;
    if (len < kIpHeaderMinBytes || ihl < kIpHeaderMinBytes || ihl > len) {
      ++runts;
      continue;
    }
    Datagram& d = out[kept++];
    std::memcpy(&d.source_be, buf + 12, 4);
    std::memcpy(&d.destination_be, buf + 16, 4);
    d.data = buf + ihl;
    d.size_bytes = len - ihl;
  }
  return kept;
}

size_t RawSocket::send_batch(const OutPacket* packets, size_t count, int* err) {
  count = count < kBatchMax ? count : kBatchMax;
  *err = 0;
  size_t sent = 0;
  // Runs of small and of large packets, in order, each with one sendmmsg on its socket.
  while (sent < count) {
    const bool large = packets[sent].size_bytes >= kLargePacketBytes;
    size_t end = sent + 1;
    while (end < count && (packets[end].size_bytes >= kLargePacketBytes) == large) ++end;
    const int fd = large ? large_socket() : fd_;
    if (fd < 0) {
      *err = errno;
      return sent;
    }
    size_t n = 0;
    if (!large && end - sent == 1) {
      // One small packet: sendto() is ~0.2 us cheaper than a sendmmsg of one here.
      sockaddr_in to{};
      to.sin_family = AF_INET;
      to.sin_addr.s_addr = packets[sent].destination_be;
      const ssize_t r = sendto(fd_, packets[sent].data, packets[sent].size_bytes, 0,
                               reinterpret_cast<sockaddr*>(&to), sizeof to);
      *err = r < 0 ? errno : 0;
      n = r < 0 ? 0 : 1;
    } else {
      n = send_run(fd, large, packets + sent, end - sent, err);
    }
    sent += n;
    // The caller's event loop watches only the receiving socket for room: a full large socket
    // is reported as a full device queue instead, which the caller retries after a while.
    if (large && (*err == EAGAIN || *err == EWOULDBLOCK)) *err = ENOBUFS;
    if (*err != 0) return sent;
  }
  return sent;
}

size_t RawSocket::send_run(int fd, bool with_header, const OutPacket* packets, size_t count,
                           int* err) {
  mmsghdr msgs[kBatchMax];
  iovec iov[2 * kBatchMax];
  iphdr headers[kBatchMax];
  sockaddr_in to[kBatchMax];
  for (size_t i = 0; i < count; ++i) {
    to[i] = sockaddr_in{};
    to[i].sin_family = AF_INET;
    to[i].sin_addr.s_addr = packets[i].destination_be;
    size_t parts = 0;
    if (with_header) {
      // Our IP header and the protocol bytes as two parts: no copy to join them.
      ip_header(packets[i].destination_be, packets[i].size_bytes, &headers[i]);
      iov[2 * i + parts++] = iovec{&headers[i], kIpHeaderMinBytes};
    }
    iov[2 * i + parts++] = iovec{const_cast<uint8_t*>(packets[i].data), packets[i].size_bytes};
    msgs[i] = mmsghdr{};
    msgs[i].msg_hdr.msg_name = &to[i];
    msgs[i].msg_hdr.msg_namelen = sizeof to[i];
    msgs[i].msg_hdr.msg_iov = &iov[2 * i];
    msgs[i].msg_hdr.msg_iovlen = parts;
  }
  const int n = sendmmsg(fd, msgs, static_cast<unsigned>(count), 0);
  if (n < 0) {
    *err = errno;
    return 0;
  }
  *err = 0;
  if (static_cast<size_t>(n) < count) {
    // sendmmsg stops at the first failure without saying why: ask that one alone.
    const size_t k = static_cast<size_t>(n);
    const ssize_t r = sendmsg(fd, &msgs[k].msg_hdr, 0);
    *err = r < 0 ? errno : 0;
    return *err == 0 ? k + 1 : k;
  }
  return count;
}

}  // namespace smp::linux_peer
