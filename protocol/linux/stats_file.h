// How `smpctl stats` sees running servers: each `smpctl serve` keeps a small record of its
// counters in $SMPCTL_RUN_DIR (default /run/smpctl), one file per process, rewritten atomically
// after each request and removed at exit. Records of processes that are gone are skipped and removed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "libsmp.h"

namespace smp::linux_peer {

struct StatsRecord {
  std::string json;  // one JSON object
  std::string text;  // human-readable lines
};

class StatsFile {
 public:
  StatsFile(std::string node, std::string service);
  void write(const Endpoint& ep, int64_t requests_served);
  void remove();
  static std::vector<StatsRecord> read_all();

 private:
  std::string node_, service_, path_;
};

}  // namespace smp::linux_peer
