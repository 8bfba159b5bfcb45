// `smpctl serve --exec CMD`: runs CMD through /bin/sh once per request, the request on its stdin,
// and takes its stdout (bounded) as the reply.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace smp::linux_peer {

struct ExecResult {
  bool ok = false;          // started, exited 0, output within the limit
  int exit_status = -1;     // the command's exit status (or 128 + signal)
  bool abandoned = false;   // give_up() said so: the command (its process group) was killed
  std::string error;        // why not ok, one line
  std::vector<uint8_t> output;
};

// While the command runs, `on_wake` is called whenever `wake_fd` (if >= 0) is readable: the
// caller's event loop keeps running (an SMP endpoint must go on answering its peers). After
// each, after a signal, and at least every 200 ms, `give_up` (if given) may say the answer is no
// longer wanted (its client gave up, or the server is stopping): the command and whatever it
// started (its own process group) are killed at once, as when its output passes
// `output_bytes_max`. The group's leader is a guardian process, the shell's parent, which kills
// the group when the thread that started it dies (PR_SET_PDEATHSIG): a server killed outright
// (SIGKILL) leaves nothing of the command running either. A process that leaves the group
// (setsid, setpgid, a shell's job control) is out of reach; one the command leaves running
// after it has ended and closed its output is not stopped (the command was not). A shell that
// closes its output and runs on is waited for the same way: events handled, give_up asked.
ExecResult run_command(const std::string& command, const uint8_t* input, size_t input_bytes,
                       size_t output_bytes_max, int wake_fd = -1,
                       const std::function<void()>& on_wake = {},
                       const std::function<bool()>& give_up = {});

}  // namespace smp::linux_peer
