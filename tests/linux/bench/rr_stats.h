// Round-trip statistics shared by the request/reply benchmark clients: every client times each
// round trip with CLOCK_MONOTONIC and prints one JSON line the bench command reads.
#pragma once

#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace rr {

inline int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// Runs `warm_up` untimed round trips, then `count` timed ones; `one` returns false on failure.
template <typename F>
int measure(const char* name, size_t size_bytes, int count, F&& one) {
  const int warm_up = std::max(20, count / 10);
  for (int i = 0; i < warm_up; ++i) {
    if (!one()) {
      std::fprintf(stderr, "%s: round trip failed during warm-up\n", name);
      return 1;
    }
  }
  std::vector<int64_t> rtt_ns;
  rtt_ns.reserve(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    const int64_t t0 = now_ns();
    if (!one()) {
      std::fprintf(stderr, "%s: round trip %d failed\n", name, i);
      return 1;
    }
    rtt_ns.push_back(now_ns() - t0);
  }
  std::sort(rtt_ns.begin(), rtt_ns.end());
  double sum = 0;
  for (int64_t v : rtt_ns) sum += static_cast<double>(v);
  auto pct = [&](double p) {
    return static_cast<double>(rtt_ns[static_cast<size_t>(p * static_cast<double>(count - 1))]) / 1e3;
  };
  std::printf("{\"name\":\"%s\",\"size\":%zu,\"count\":%d,\"median_us\":%.2f,\"mean_us\":%.2f,"
              "\"p99_us\":%.2f}\n",
              name, size_bytes, count, pct(0.5), sum / count / 1e3, pct(0.99));
  return 0;
}

inline bool parse_count(const char* s, long lo, long hi, long* out) {
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (end == s || *end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

constexpr long kSizeMax = 16L << 20;  // largest message a baseline is asked to carry
// --busy-poll of tcp_rr and raw_rr: how long a receive polls before it sleeps; the bench gives
// libsmp the same (smpctl --spin-us=50).
constexpr int64_t kBusyPollNs = 50'000;

// The command line every baseline shares: `NAME server PORT` or `NAME client ADDRESS PORT SIZE
// COUNT`; a bad one gets the usage line and status 2.
template <typename Server, typename Client>
int main_of(const char* name, int argc, char** argv, Server&& server, Client&& client) {
  long port = 0, size = 0, count = 0;
  if (argc == 3 && std::string(argv[1]) == "server" && parse_count(argv[2], 1, 65535, &port))
    return server(static_cast<int>(port));
  if (argc == 6 && std::string(argv[1]) == "client" && parse_count(argv[3], 1, 65535, &port) &&
      parse_count(argv[4], 0, kSizeMax, &size) && parse_count(argv[5], 1, 10'000'000, &count))
    return client(argv[2], static_cast<int>(port), static_cast<size_t>(size),
                  static_cast<int>(count));
  std::fprintf(stderr, "usage: %s server PORT | %s client ADDRESS PORT SIZE COUNT\n", name, name);
  return 2;
}

}  // namespace rr
