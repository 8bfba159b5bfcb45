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
  bool abandoned = false;   // give_up() said so: the command (all it started) was killed
  std::string error;        // why not ok, one line
  std::vector<uint8_t> output;
};

// While the command runs, `on_wake` is called whenever `wake_fd` (if >= 0) is readable: the
// caller's event loop keeps running (an SMP endpoint must go on answering its peers). After
// each, after a signal, and at least every 200 ms, `give_up` (if given) may say the answer is no
// longer wanted (its client gave up, or the server is stopping): the command and whatever it
// started are killed at once, as when its output passes `output_bytes_max`, and waited for
// (events handled). "Whatever it started" is every descendant of a guardian process, the shell's
// parent and a child subreaper (PR_SET_CHILD_SUBREAPER: what loses its parent moves to it), so
// also what left the command's process group (setsid, setpgid, a shell's job control, a
// daemon's double fork). The guardian kills them when the thread that started it dies
// (PR_SET_PDEATHSIG) too: a server killed outright (SIGKILL) leaves nothing of the command
// running either. What the command leaves running after it has ended and closed its output is
// not stopped (the command was not): the guardian exits, and it moves on to the next subreaper
// up, or init. A shell that closes its output and runs on is waited for the same way: events
// handled, give_up asked. Out of reach: a process another started at the command's request
// (`systemd-run`, `at`: not a descendant), and what left the process group of a command that
// has killed or stopped its own guardian (a give-up then kills what is left of the group).
ExecResult run_command(const std::string& command, const uint8_t* input, size_t input_bytes,
                       size_t output_bytes_max, int wake_fd = -1,
                       const std::function<void()>& on_wake = {},
                       const std::function<bool()>& give_up = {});

}  // namespace smp::linux_peer
