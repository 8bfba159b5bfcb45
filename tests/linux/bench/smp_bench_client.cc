// SMP's side of `./smp bench linux`: request/reply through libsmp to an `smpctl serve` echo, timed
// exactly as the TCP, ZeroMQ and gRPC clients are (rr_stats.h).
//   smp_bench_client [--spin-us=US] --peer=NAME=ADDRESS[:ENDPOINT]... NODE/SERVICE SIZE COUNT
#include <cstring>
#include <string>
#include <vector>

#include "protocol/linux/libsmp.h"
#include "rr_stats.h"

namespace sl = smp::linux_peer;

int main(int argc, char** argv) {
  sl::Config config;
  int i = 1;
  for (; i < argc && std::strncmp(argv[i], "--", 2) == 0; ++i) {
    sl::Peer p;
    long spin_us = 0;
    if (std::strncmp(argv[i], "--peer=", 7) == 0 && sl::parse_peer(argv[i] + 7, &p)) {
      config.peers.push_back(p);
    } else if (std::strncmp(argv[i], "--spin-us=", 10) == 0 && rr::parse_count(argv[i] + 10, 0, 1'000'000, &spin_us)) {
      config.spin_ns = spin_us * 1000;
    } else if (std::strncmp(argv[i], "--name=", 7) != 0) {
      std::fprintf(stderr, "smp_bench_client: bad option %s\n", argv[i]);
      return 2;
    }
  }
  long size = 0, count = 0;
  if (argc - i != 3 || !rr::parse_count(argv[i + 1], 0, long(sl::kMessageBytesMax), &size) ||
      !rr::parse_count(argv[i + 2], 1, 10'000'000, &count)) {
    std::fprintf(stderr, "usage: smp_bench_client [--spin-us=US] --peer=NAME=ADDRESS... NODE/SERVICE SIZE COUNT\n");
    return 2;
  }
  std::unique_ptr<sl::Endpoint> ep;
  std::string detail;
  sl::Status s = sl::Endpoint::open(config, &ep, &detail);
  if (s != sl::Status::kOk) {
    std::fprintf(stderr, "smp_bench_client: %s %s\n", sl::status_text(s), detail.c_str());
    return 1;
  }
  sl::Connection c;
  s = ep->connect(argv[i], &c, sl::monotonic_ns() + 5'000'000'000);
  if (s != sl::Status::kOk) {
    std::fprintf(stderr, "smp_bench_client: connect %s: %s\n", argv[i], sl::status_text(s));
    return 1;
  }
  std::vector<uint8_t> req(size_t(size), 'q'), rep(size_t(size) + 1);
  return rr::measure("SMP", size_t(size), int(count), [&] {
    size_t got = 0;
    const sl::Status r = ep->send(c, req, rep.data(), rep.size(), &got, sl::monotonic_ns() + 5'000'000'000);
    return r == sl::Status::kOk && got == size_t(size);
  });
}
