// The raw-socket transport under libsmp: the kernel-side filter keeps each endpoint's packets
// apart on one address, and the socket reports missing privilege as such. Loopback only.
#include "protocol/linux/raw_socket.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <vector>

namespace sl = smp::linux_peer;

namespace {

constexpr size_t kIdOffsetBytes = 8;  // SPEC.md section 2: the destination endpoint number

std::array<uint8_t, 64> packet_for(uint16_t endpoint, uint8_t tag) {
  std::array<uint8_t, 64> p{};
  p[kIdOffsetBytes] = static_cast<uint8_t>(endpoint >> 8);
  p[kIdOffsetBytes + 1] = static_cast<uint8_t>(endpoint);
  p[0] = tag;
  return p;
}

// Every tag the socket holds now, in arrival order (waits briefly for the first).
std::vector<uint8_t> drain(sl::RawSocket& s) {
  std::vector<uint8_t> tags;
  pollfd p{s.fd(), POLLIN, 0};
  poll(&p, 1, 200);
  uint8_t buf[2048];
  sl::Received r;
  while (s.receive(buf, sizeof buf, &r)) {
    EXPECT_EQ(r.size_bytes, 64u);
    EXPECT_EQ(r.source_be, htonl(INADDR_LOOPBACK));
    tags.push_back(buf[0]);
  }
  return tags;
}

class RawSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (CAP_NET_RAW) for raw sockets";
  }
};

TEST_F(RawSocketTest, FilterKeepsEndpointsApartOnOneAddress) {
  const uint16_t id_a = 0x8123, id_b = 0x8124;
  sl::RawSocket a, b, sender;
  ASSERT_EQ(a.open({kIdOffsetBytes, id_a}), sl::SocketError::kNone);
  ASSERT_EQ(b.open({kIdOffsetBytes, id_b}), sl::SocketError::kNone);
  ASSERT_EQ(sender.open({kIdOffsetBytes, 0x8125}), sl::SocketError::kNone);
  const uint32_t lo = htonl(INADDR_LOOPBACK);
  auto send = [&](uint16_t id, uint8_t tag) {
    auto p = packet_for(id, tag);
    ASSERT_EQ(sender.send(lo, p.data(), p.size()), 0);
  };
  send(id_a, 1);
  send(id_b, 2);
  send(0x8126, 3);          // nobody's
  send(id_a ^ 0x8000, 4);   // differs in the high byte only
  send(id_a, 5);
  EXPECT_EQ(drain(a), (std::vector<uint8_t>{1, 5}));
  EXPECT_EQ(drain(b), (std::vector<uint8_t>{2}));
}

// Large packets leave through the IP_HDRINCL socket with the IP header we write: they arrive
// whole, from the source address we name, in order with the small ones of the same batch, and
// the send-only socket takes none of the traffic. Past the IPv4 maximum: EMSGSIZE, never split.
TEST_F(RawSocketTest, LargePacketsKeepTheirBytesSourceAndOrder) {
  const uint16_t id = 0x8131;
  sl::RawSocket a, sender;
  ASSERT_EQ(a.open({kIdOffsetBytes, id}), sl::SocketError::kNone);
  ASSERT_EQ(sender.open({kIdOffsetBytes, 0x8132}), sl::SocketError::kNone);
  const uint32_t lo = htonl(INADDR_LOOPBACK), source = htonl(0x7F000002);  // 127.0.0.2
  sender.set_source(source);
  std::vector<std::vector<uint8_t>> packets;
  for (size_t size : {size_t{64}, sl::kLargePacketBytes, size_t{60000}, size_t{100}, size_t{65000}}) {
    std::vector<uint8_t> p(size);
    for (size_t i = 0; i < size; ++i) p[i] = uint8_t(i * 31 + size);
    p[kIdOffsetBytes] = uint8_t(id >> 8);
    p[kIdOffsetBytes + 1] = uint8_t(id);
    packets.push_back(p);
  }
  std::vector<sl::OutPacket> out;
  for (const auto& p : packets) out.push_back(sl::OutPacket{p.data(), p.size(), lo});
  int err = -1;
  ASSERT_EQ(sender.send_batch(out.data(), out.size(), &err), out.size());
  EXPECT_EQ(err, 0);
  pollfd pf{a.fd(), POLLIN, 0};
  std::vector<uint8_t> buf(70000);
  for (size_t k = 0; k < packets.size(); ++k) {
    poll(&pf, 1, 1000);
    sl::Received r;
    ASSERT_TRUE(a.receive(buf.data(), buf.size(), &r)) << "packet " << k;
    EXPECT_EQ(std::vector<uint8_t>(buf.begin(), buf.begin() + long(r.size_bytes)), packets[k]) << k;
    // Small packets carry the socket's own source (the route's: 127.0.0.1), large ones ours.
    EXPECT_EQ(r.source_be, packets[k].size() >= sl::kLargePacketBytes ? source : lo) << k;
  }
  std::vector<uint8_t> huge(70000);
  EXPECT_EQ(sender.send(lo, huge.data(), 65535 - 20 + 1), EMSGSIZE);  // past the IPv4 maximum
}

TEST_F(RawSocketTest, TooShortToNameAnEndpointIsDroppedInTheKernel) {
  sl::RawSocket a, sender;
  ASSERT_EQ(a.open({kIdOffsetBytes, 0x8107}), sl::SocketError::kNone);
  ASSERT_EQ(sender.open({kIdOffsetBytes, 0x8108}), sl::SocketError::kNone);
  uint8_t short_packet[kIdOffsetBytes + 4] = {9};
  ASSERT_EQ(sender.send(htonl(INADDR_LOOPBACK), short_packet, sizeof short_packet), 0);
  auto p = packet_for(0x8107, 10);
  ASSERT_EQ(sender.send(htonl(INADDR_LOOPBACK), p.data(), p.size()), 0);
  EXPECT_EQ(drain(a), (std::vector<uint8_t>{10}));
}

TEST_F(RawSocketTest, WithoutCapNetRawSaysNoPrivilege) {
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // A child drops to nobody (which also drops every capability) and tries.
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(10);
    sl::RawSocket s;
    _exit(s.open({kIdOffsetBytes, 0x8107}) == sl::SocketError::kNoPrivilege ? 0 : 11);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
