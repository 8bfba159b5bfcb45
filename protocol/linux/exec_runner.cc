#include "exec_runner.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace smp::linux_peer {
namespace {

constexpr size_t kReadChunkBytes = 64 * 1024;
constexpr int kGiveUpPollMs = 200;
// To the guardian: from the kernel when the thread that started it ends (PR_SET_PDEATHSIG),
// and from us when we have taken the command's answer (the guardian may then report and go).
constexpr int kServerGoneSignal = SIGUSR2;
constexpr int kReleaseSignal = SIGUSR1;

void close_fd(int* fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

void close_from(int first) {
  if (close_range(static_cast<unsigned>(first), ~0U, 0) == 0) return;
  rlimit rl{};
  const int end = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? int(rl.rlim_cur) : 65536;
  for (int fd = first; fd < end; ++fd) close(fd);
}

// The guardian: a fork of the server (not exec'd) that leads the command's process group and is
// the shell's parent. It kills its whole group (itself included) when the server dies, however
// it dies: a SIGKILLed server runs none of its own code, and the kernel signals only its direct
// children (PR_SET_PDEATHSIG), never what the shell started. Otherwise it reaps the shell and,
// once released, exits with the shell's status (exit code, or 128 + signal: what we report).
// Runs with every signal blocked (as forked) and makes only async-signal-safe calls: the
// server may have other threads, whose locks are lost in the fork.
[[noreturn]] void guardian(pid_t server, int in_fd, int out_fd, char* const argv[], const sigset_t& shell_mask) {
  setpgid(0, 0);
  prctl(PR_SET_PDEATHSIG, kServerGoneSignal);
  if (getppid() != server) _exit(127);  // the server died before the line above
  // The shell's stdin and stdout at 0 and 1 (by way of fds >= 3, so that neither overwrites the
  // other), and nothing else of the server's: a guardian that held another request's pipe would
  // delay that request's end of output, and one that held the endpoint's socket its number.
  const int in_copy = fcntl(in_fd, F_DUPFD, 3), out_copy = fcntl(out_fd, F_DUPFD, 3);
  if (in_copy < 0 || out_copy < 0 || dup2(in_copy, 0) < 0 || dup2(out_copy, 1) < 0) _exit(127);
  close_from(3);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigaction(SIGCHLD, &dfl, nullptr);  // queued while blocked (SIG_IGN would reap by itself)
  const pid_t self = getpid();
  const pid_t shell = _Fork();  // no atfork handlers: they may take the lost locks
  if (shell == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // a guardian killed alone (SIGKILL) takes the shell along
    if (getppid() != self) _exit(127);
    sigaction(SIGPIPE, &dfl, nullptr);  // ignored in the server (a reply to a vanished client)
    sigprocmask(SIG_SETMASK, &shell_mask, nullptr);
    execve("/bin/sh", argv, environ);
    _exit(127);
  }
  if (shell < 0) _exit(127);
  close(0);  // the server's end of output comes with the command's, not ours
  close(1);
  close(2);
  sigset_t all;
  sigfillset(&all);
  bool shell_done = false, released = false;
  int status = 0;
  while (!(shell_done && released)) {
    siginfo_t si{};
    const int sig = sigwaitinfo(&all, &si);
    if (getppid() != server) kill(0, SIGKILL);  // the server is gone: so is the command, all of it
    if (sig == SIGCHLD && !shell_done && waitpid(shell, &status, WNOHANG) == shell) shell_done = true;
    if (sig == kReleaseSignal && si.si_pid == server) released = true;
    // Anything else (a command that signals its own group, `kill 0`) leaves the guardian be.
  }
  _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
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
  // The command runs under a guardian (above), which leads a process group of its own: giving up
  // kills the guardian, the shell and whatever the shell started together, and so does the
  // guardian itself when the server dies, SIGKILL included. Every signal is blocked across the
  // fork: the guardian takes them with sigwaitinfo, and the shell gets this thread's mask back.
  const char* argv[] = {"sh", "-c", command.c_str(), nullptr};
  const pid_t parent = getpid();
  sigset_t all, mask;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &mask);
  const pid_t pid = fork();
  if (pid == 0) guardian(parent, in_pipe[0], out_pipe[1], const_cast<char**>(argv), mask);
  const int fork_errno = errno;
  pthread_sigmask(SIG_SETMASK, &mask, nullptr);
  if (pid > 0) setpgid(pid, pid);  // also here, so that a kill(-pid) right after cannot miss it
  const int rc = pid < 0 ? fork_errno : 0;
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
  // Once the output has ended the guardian is released, and may go when the shell has ended;
  // the shell may run on (`exec >&-; sleep 100`), so it is waited for in the same loop, the
  // caller's event loop running and give_up asked, not in a blocking waitpid that would stop
  // this endpoint answering anyone, SIGTERM included. (No pidfd: waitpid alone, below.)
  const int guardian_fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  bool released = false;
  while (from_child >= 0 || (released && guardian_fd >= 0)) {
    // Slot 1 is stdin while it is open, slot 3 the guardian once released; a negative fd makes
    // poll skip a slot.
    pollfd fds[4] = {{from_child, POLLIN, 0}, {to_child, POLLOUT, 0}, {wake_fd, POLLIN, 0},
                     {released ? guardian_fd : -1, POLLIN, 0}};
    // give_up is asked after each wake-up, a signal, and at least every kGiveUpPollMs (a
    // signal that came just before poll began interrupts nothing).
    const int n = poll(fds, 4, give_up ? kGiveUpPollMs : -1);
    if (n < 0 && errno != EINTR) break;
    if (n > 0 && (fds[3].revents & POLLIN)) break;  // the guardian has ended
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
    if (from_child >= 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
      const ssize_t n = read(from_child, chunk, sizeof chunk);
      if (n <= 0) {
        close_fd(&from_child);
        close_fd(&to_child);
        // What the command left running in the background (its output elsewhere: we had the
        // end of it) is no longer the command's: the guardian may go once the shell has ended.
        kill(pid, kReleaseSignal);
        released = true;
      } else if (r.output.size() + static_cast<size_t>(n) > output_bytes_max) {
        too_long = true;
        break;
      } else {
        r.output.insert(r.output.end(), chunk, chunk + n);
      }
    }
  }
  close_fd(&to_child);
  close_fd(&from_child);
  if (guardian_fd >= 0) close(guardian_fd);
  // Stopped (given up, or output too long): the whole group, pid its leader.
  if (r.abandoned || too_long) kill(-pid, SIGKILL);
  else if (!released) kill(pid, kReleaseSignal);
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
