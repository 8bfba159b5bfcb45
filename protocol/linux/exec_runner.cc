#include "exec_runner.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace smp::linux_peer {
namespace {

constexpr size_t kReadChunkBytes = 64 * 1024;
constexpr int kGiveUpPollMs = 200;

void close_fd(int* fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

}  // namespace

// Writes stdin and reads stdout in one poll loop: a command that answers before it has read all
// its input (or reads more than a pipe holds before answering) must not deadlock us.
ExecResult run_command(const std::string& command, const uint8_t* input, size_t input_bytes,
                       size_t output_bytes_max, int wake_fd, const std::function<void()>& on_wake,
                       const std::function<bool()>& give_up) {
  ExecResult r;
  int in_pipe[2], out_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0) {
    r.error = "pipe failed";
    return r;
  }
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    close(in_pipe[0]);
    close(in_pipe[1]);
    r.error = "pipe failed";
    return r;
  }
  // A process group of its own: giving up kills the shell and what it started together. And
  // the shell dies with us (PR_SET_PDEATHSIG), so a server killed outright (SIGKILL, which
  // runs none of our code) does not leave its command running. Between fork and exec the child
  // makes only async-signal-safe calls: the parent may have other threads.
  const char* argv[] = {"sh", "-c", command.c_str(), nullptr};
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // we died before the line above: nobody to answer
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGPIPE, &dfl, nullptr);  // ignored here (a reply to a vanished client), not there
    if (dup2(in_pipe[0], 0) < 0 || dup2(out_pipe[1], 1) < 0) _exit(127);
    execve("/bin/sh", const_cast<char**>(argv), environ);
    _exit(127);
  }
  if (pid > 0) setpgid(pid, pid);  // also here, so that a kill(-pid) right after cannot miss it
  const int rc = pid < 0 ? errno : 0;
  close(in_pipe[0]);
  close(out_pipe[1]);
  int to_child = in_pipe[1], from_child = out_pipe[0];
  if (rc != 0) {
    close_fd(&to_child);
    close_fd(&from_child);
    r.error = "cannot start /bin/sh";
    return r;
  }
  fcntl(to_child, F_SETFL, O_NONBLOCK);
  if (input_bytes == 0) close_fd(&to_child);
  size_t written = 0;
  bool too_long = false;
  uint8_t chunk[kReadChunkBytes];
  while (from_child >= 0) {
    // Slot 1 is stdin while it is open; a negative fd makes poll skip a slot.
    pollfd fds[3] = {{from_child, POLLIN, 0}, {to_child, POLLOUT, 0}, {wake_fd, POLLIN, 0}};
    // give_up is asked after each wake-up, a signal, and at least every kGiveUpPollMs (a
    // signal that came just before poll began interrupts nothing).
    const int n = poll(fds, 3, give_up ? kGiveUpPollMs : -1);
    if (n < 0 && errno != EINTR) break;
    if (n > 0 && wake_fd >= 0 && (fds[2].revents & POLLIN) && on_wake) on_wake();
    if (give_up && (n <= 0 || (fds[2].revents & POLLIN)) && give_up()) {
      r.abandoned = true;
      break;
    }
    if (n <= 0) continue;
    if (to_child >= 0 && (fds[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
      const ssize_t n = write(to_child, input + written, input_bytes - written);
      if (n > 0) written += static_cast<size_t>(n);
      if (n < 0 && errno != EAGAIN) written = input_bytes;  // the command stopped reading: EPIPE
      if (written == input_bytes) close_fd(&to_child);
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      const ssize_t n = read(from_child, chunk, sizeof chunk);
      if (n <= 0) {
        close_fd(&from_child);
      } else if (r.output.size() + static_cast<size_t>(n) > output_bytes_max) {
        too_long = true;
        close_fd(&from_child);
      } else {
        r.output.insert(r.output.end(), chunk, chunk + n);
      }
    }
  }
  close_fd(&to_child);
  close_fd(&from_child);
  if (r.abandoned) kill(-pid, SIGKILL);  // the whole group (pid is its leader)
  else if (too_long) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  r.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (r.abandoned) {
    r.error = "given up: command stopped";
  } else if (too_long) {
    r.error = "command output larger than the largest message";
  } else if (r.exit_status != 0) {
    r.error = "command exited with status " + std::to_string(r.exit_status);
  } else {
    r.ok = true;
  }
  return r;
}

}  // namespace smp::linux_peer
