// `smpctl serve --exec CMD`: runs CMD through /bin/sh once per request, the request on its stdin,
// and takes its stdout (bounded) as the reply.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace smp::linux_peer {

struct ExecResult {
  bool ok = false;          // started, exited 0, output within the limit
  int exit_status = -1;     // the command's exit status (or 128 + signal)
  std::string error;        // why not ok, one line
  std::vector<uint8_t> output;
};

ExecResult run_command(const std::string& command, const uint8_t* input, size_t input_bytes,
                       size_t output_bytes_max);

}  // namespace smp::linux_peer
