// The Linux transport under libsmp: one raw IPv4 socket for protocol 121. The kernel builds the IP
// header on send; on receive it hands us the whole IP packet, and a classic BPF filter attached to
// the socket drops, in the kernel, every packet addressed to another endpoint, so several processes
// on one host (each its own endpoint) never see, nor pay for, each other's traffic.
//
// Packets of kLargePacketBytes and more (a path MTU above 32 KiB: veth, loopback) leave through a
// second, send-only socket with IP_HDRINCL, where we write the IP header. Without it the kernel
// computes a checksum of every byte while it copies them in (nothing uses it: a raw socket's
// packets carry their own); with it, it copies plainly (64 KiB echo at MTU 65535: ~10% faster).
// Not for small packets: the kernel routes an IP_HDRINCL packet to a directly connected peer
// without its route cache (FLOWI_FLAG_KNOWN_NH), allocating a route per packet, which cost more
// than the checksum of a 1500-byte packet (64 KiB at MTU 1500, two cores: 420-490 us vs 330-370).
#pragma once

#include <sys/types.h>

struct iphdr;

#include <cstddef>
#include <cstdint>

namespace smp::linux_peer {

inline constexpr int kIpProtocolSmp = 121;
// Socket buffers big enough for a window of full-size segments in both directions; the kernel
// caps them at net.core.[rw]mem_max unless we hold CAP_NET_ADMIN (root does: SO_*BUFFORCE).
inline constexpr int kSocketBufferBytes = 8 << 20;

enum class SocketError {
  kNone,
  kNoPrivilege,  // socket() said EPERM/EACCES: the process lacks CAP_NET_RAW
  kSystem,       // anything else; errno_value says what
};

// Where, inside the protocol's header, the 16-bit big-endian destination endpoint number sits
// (SPEC.md section 2: byte offset 8), and which number is this process's.
struct EndpointFilter {
  size_t offset_bytes = 0;   // from the start of the protocol header (after the IP header)
  uint16_t own_endpoint = 0;
};

struct Received {
  size_t size_bytes = 0;   // protocol bytes (IP header removed)
  uint32_t source_be = 0;  // IPv4 addresses in network byte order
  uint32_t destination_be = 0;
};

struct Datagram {
  const uint8_t* data = nullptr;  // the protocol bytes, past the IP header, inside the caller's buffer
  size_t size_bytes = 0;
  uint32_t source_be = 0;
  uint32_t destination_be = 0;
};

struct OutPacket {
  const uint8_t* data = nullptr;
  size_t size_bytes = 0;
  uint32_t destination_be = 0;
};

inline constexpr size_t kBatchMax = 32;  // packets per recvmmsg / sendmmsg
inline constexpr size_t kLargePacketBytes = 32 * 1024;  // and larger: the IP_HDRINCL socket

class RawSocket {
 public:
  RawSocket() = default;
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;
  ~RawSocket();

  // Opens the socket non-blocking, with the filter attached before any packet can queue.
  SocketError open(const EndpointFilter& filter);
  int errno_value() const { return errno_value_; }
  int fd() const { return fd_; }
  // The source address written into the IP headers of large packets (network order); 0 (the
  // default) lets the kernel take the route's. Set it to the address the socket is bound to.
  void set_source(uint32_t source_be) { source_be_ = source_be; }

  // Returns false when nothing is waiting (EAGAIN). Packets too short for an IP header are
  // skipped and counted in `runts`.
  bool receive(uint8_t* buf, size_t capacity_bytes, Received* out);
  // 0 on success, else an errno: EAGAIN/ENOBUFS (socket buffer full: the engine's retransmission
  // covers it), EMSGSIZE (larger than the device MTU: a failed path-MTU probe), others.
  int send(uint32_t destination_be, const uint8_t* data, size_t size_bytes);

  // One datagram with a plain recv(), the cheapest way to take exactly one (recvmmsg costs
  // ~0.4 us more per call here, and always tries once more than it finds). False when nothing
  // is waiting; runts are skipped and counted.
  bool receive_one(uint8_t* buf, size_t capacity_bytes, Datagram* out);
  // One recvmmsg: up to `count` (<= kBatchMax) datagrams into bufs[i] (capacity bytes each).
  // Returns how many were received (0: none waiting); runts are skipped and counted.
  size_t receive_batch(uint8_t* const* bufs, size_t capacity_bytes, Datagram* out, size_t count);
  // Up to `count` (<= kBatchMax) packets, in order: each run of small ones with one sendmmsg on
  // the plain socket (a lone one with sendto), each run of large ones on the IP_HDRINCL socket.
  // Returns how many left; when fewer than `count`, *err is the errno of the first that did not
  // (as send() above; a full large socket says ENOBUFS).
  size_t send_batch(const OutPacket* packets, size_t count, int* err);

  uint64_t runts = 0;

 private:
  static constexpr uint8_t kTtl = 64;
  static void set_buffers(int fd);
  int large_socket();  // -1 (errno set) if it cannot be opened
  void ip_header(uint32_t destination_be, size_t size_bytes, iphdr* h) const;
  size_t send_run(int fd, bool with_header, const OutPacket* packets, size_t count, int* err);

  int fd_ = -1;
  int large_fd_ = -1;  // the IP_HDRINCL socket, opened at the first large packet
  int errno_value_ = 0;
  uint32_t source_be_ = 0;
};

}  // namespace smp::linux_peer
