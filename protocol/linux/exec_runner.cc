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

#include <cstring>

extern char** environ;

namespace smp::linux_peer {
namespace {

constexpr size_t kReadChunkBytes = 64 * 1024;
constexpr int kGiveUpPollMs = 200;
// To the guardian: from the kernel when the thread that started it ends (PR_SET_PDEATHSIG), and
// from us when we have taken the command's answer (the guardian may then report and go) or when
// the command must be stopped (given up, output too long).
constexpr int kServerGoneSignal = SIGUSR2;
constexpr int kReleaseSignal = SIGUSR1;
constexpr int kStopSignal = SIGTERM;
// The guardian's walk over its descendants (kill_descendants): how many it holds at once (each
// with a pidfd open), and how long it waits for one to die before it walks again.
constexpr int kWalkProcessesMax = 256;
constexpr long kWalkPauseNs = 10'000'000;
constexpr int kStoppedStatus = 125;  // the guardian's exit status once it has stopped the command

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

// What follows runs in the guardian, a fork of a server that may have other threads: only
// async-signal-safe calls (system calls), no allocation, no stdio.

// "/proc/" PID [ "/task/" TID ] SUFFIX into `out` (at least 64 bytes).
void proc_path(char* out, pid_t pid, pid_t tid, const char* suffix) {
  char* p = out;
  auto put = [&p](const char* s) {
    while (*s) *p++ = *s++;
  };
  auto put_number = [&p](long v) {
    char digits[24];
    int n = 0;
    do digits[n++] = char('0' + v % 10); while ((v /= 10) > 0);
    while (n > 0) *p++ = digits[--n];
  };
  put("/proc/");
  put_number(pid);
  if (tid > 0) {
    put("/task/");
    put_number(tid);
  }
  put(suffix);
  *p = '\0';
}

// The parent of `pid` (field 4 of /proc/PID/stat), or -1. The command's name (field 2) is at most
// 15 bytes, so the last ')' of the first bytes read is its end.
pid_t parent_of(pid_t pid) {
  char path[64], buf[256];
  proc_path(path, pid, 0, "/stat");
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  const ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  const char* close_paren = nullptr;
  for (const char* p = buf; *p; ++p)
    if (*p == ')') close_paren = p;
  if (close_paren == nullptr || close_paren[1] != ' ' || close_paren[2] == '\0' || close_paren[3] != ' ') return -1;
  long ppid = 0;
  const char* p = close_paren + 4;
  if (*p < '0' || *p > '9') return -1;
  for (; *p >= '0' && *p <= '9'; ++p) ppid = ppid * 10 + (*p - '0');
  return static_cast<pid_t>(ppid);
}

// Calls on_child(pid) for each child of every thread of `pid` (/proc/PID/task/TID/children, the
// kernel's CONFIG_PROC_CHILDREN). False if the list cannot be read at all.
template <class OnChild>
bool for_each_child(pid_t pid, OnChild&& on_child) {
  char path[64];
  proc_path(path, pid, 0, "/task");
  const int dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return false;
  bool any = false;
  alignas(8) char entries[1024];
  long n;
  while ((n = syscall(SYS_getdents64, dir, entries, sizeof entries)) > 0) {
    for (long at = 0; at < n;) {
      // struct linux_dirent64: inode (8), offset (8), record length (2), type (1), name.
      unsigned short length;
      std::memcpy(&length, entries + at + 16, sizeof length);
      const char* name = entries + at + 19;
      at += length;
      long tid = 0;
      for (const char* p = name; *p >= '0' && *p <= '9'; ++p) tid = tid * 10 + (*p - '0');
      if (tid <= 0) continue;  // "." and ".."
      proc_path(path, pid, static_cast<pid_t>(tid), "/children");
      const int fd = open(path, O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue;
      any = true;
      char buf[512];
      long child = 0;  // a number may span two reads
      ssize_t got;
      while ((got = read(fd, buf, sizeof buf)) > 0) {
        for (ssize_t i = 0; i < got; ++i) {
          if (buf[i] >= '0' && buf[i] <= '9') {
            child = child * 10 + (buf[i] - '0');
          } else {
            if (child > 0) on_child(static_cast<pid_t>(child));
            child = 0;
          }
        }
      }
      if (child > 0) on_child(static_cast<pid_t>(child));
      close(fd);
    }
  }
  close(dir);
  return any;
}

int pidfd_open(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }
int pidfd_kill(int pidfd) { return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0)); }

// One pass over the guardian's descendants, SIGKILLing each it reaches. A process's children are
// read before it is killed (a killed process goes at once, and its children would move to the
// guardian before the walk reads them), and each is taken by a pidfd and checked to be its
// child, so that the walk never signals a stranger that got a pid the walk read, freed since:
//   1. X's children are read; each N gets a pidfd, then N's parent is read and must be X;
//   2. X is killed through its own pidfd: that succeeds only if X was not reaped yet, so the pid
//      X read in step 1 was still X's (and N's parent was X: a descendant; so the process
//      behind N's pidfd was it, or it died before the read and our signal reaches nobody);
//      otherwise step 1's children are dropped;
//   3. the guardian's own children need no check: only it reaps them.
// What a pass misses is found by a later one: a child X forks between steps 1 and 2 (a process
// with SIGKILL pending forks no more: the kernel fails a fork that a fatal signal overtakes),
// one that moved to the guardian after the guardian's list was read, one past the walk's limit.
// Returns false if the guardian's own children cannot be read (no /proc, no
// CONFIG_PROC_CHILDREN).
bool kill_descendants_once(pid_t self) {
  struct Reached {
    pid_t pid;
    int pidfd;  // -1 for the guardian itself
  };
  Reached stack[kWalkProcessesMax];
  int depth = 0;
  stack[depth++] = {self, -1};
  bool readable = true;
  while (depth > 0) {
    const Reached x = stack[--depth];
    const int first_child = depth;
    const bool listed = for_each_child(x.pid, [&](pid_t child) {
      const int pidfd = depth < kWalkProcessesMax ? pidfd_open(child) : -1;
      if (pidfd < 0) {
        // Not held (past the walk's limit, or no pidfds): the guardian's own child is killed by
        // its pid all the same (3.), not descended into; another is left for a later pass.
        if (x.pid == self) kill(child, SIGKILL);
        return;
      }
      if (parent_of(child) != x.pid) {
        close(pidfd);
        return;
      }
      stack[depth++] = {child, pidfd};
    });
    if (x.pid == self) {
      readable = listed;
      continue;
    }
    const bool reached = pidfd_kill(x.pidfd) == 0;
    close(x.pidfd);
    if (!reached) {
      while (depth > first_child) close(stack[--depth].pidfd);
    }
  }
  return readable;
}

// Reaps whatever of the guardian's children has ended (the shell's status into *shell_status).
// Returns false once it has no child at all.
bool reap_children(pid_t shell, int* shell_status, bool* shell_done) {
  for (;;) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid == 0) return true;
    if (pid < 0) return errno != ECHILD;
    if (pid == shell) {
      *shell_status = status;
      *shell_done = true;
    }
  }
}

// Stops the command, all of it: whatever the shell started, in its process group or not
// (`setsid`, a daemon's double fork), is the guardian's descendant (it is a child subreaper:
// what loses its parent moves to it, not to init). Walks and kills until it has no child left:
// every live descendant has a live parent up to the guardian, so none is left either. A
// process that dies slowly (uninterruptible sleep) holds the guardian, and the request, until
// it has gone.
[[noreturn]] void stop_command(pid_t self, pid_t shell) {
  sigset_t child_ended;
  sigemptyset(&child_ended);
  sigaddset(&child_ended, SIGCHLD);
  const timespec pause{0, kWalkPauseNs};
  int status = 0;
  bool shell_done = false;
  for (;;) {
    if (!kill_descendants_once(self)) kill(0, SIGKILL);  // no way to see them: our group, as before
    if (!reap_children(shell, &status, &shell_done)) _exit(kStoppedStatus);
    sigtimedwait(&child_ended, nullptr, &pause);  // one has died (or none yet: walk again)
  }
}

// The guardian: a fork of the server (not exec'd), the shell's parent, the leader of the
// command's process group and a child subreaper. It stops the command (stop_command) when the
// server says so or dies, however it dies: a SIGKILLed server runs none of its own code, and
// the kernel signals only its direct children (PR_SET_PDEATHSIG), never what the shell
// started. Otherwise it reaps the shell (and any orphan that ends) and, once released, exits
// with the shell's status (exit code, or 128 + signal: what we report); what the command left
// running then moves on to the next subreaper up, or init, and runs on. Runs with every signal
// blocked (as forked).
[[noreturn]] void guardian(pid_t server, int in_fd, int out_fd, char* const argv[], const sigset_t& shell_mask) {
  setpgid(0, 0);
  prctl(PR_SET_PDEATHSIG, kServerGoneSignal);
  if (getppid() != server) _exit(127);  // the server died before the line above
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) _exit(127);
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
    const bool from_server = si.si_code == SI_USER && si.si_pid == server;
    if (getppid() != server || (sig == kStopSignal && from_server)) stop_command(self, shell);
    if (sig == SIGCHLD) reap_children(shell, &status, &shell_done);
    if (sig == kReleaseSignal && from_server) released = true;
    // Anything else (a command that signals its own group, `kill 0`) leaves the guardian be.
  }
  reap_children(shell, &status, &shell_done);  // no zombie left behind for init to reap
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
  // The command runs under a guardian (above): giving up asks it to kill the shell and whatever
  // the shell started (kStopSignal), and it does the same by itself when the server dies, SIGKILL
  // included. Every signal is blocked across the fork: the guardian takes them with
  // sigwaitinfo, and the shell gets this thread's mask back.
  const char* argv[] = {"sh", "-c", command.c_str(), nullptr};
  const pid_t parent = getpid();
  sigset_t all, mask;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &mask);
  const pid_t pid = fork();
  if (pid == 0) guardian(parent, in_pipe[0], out_pipe[1], const_cast<char**>(argv), mask);
  const int fork_errno = errno;
  pthread_sigmask(SIG_SETMASK, &mask, nullptr);
  if (pid > 0) setpgid(pid, pid);  // also here, so that the kill(-pid) below cannot miss it
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
  // this endpoint answering anyone, SIGTERM included. So is a guardian told to stop the command
  // (it goes once all the command's processes have). (No pidfd: waitpid alone, below.)
  const int guardian_fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  bool released = false, stopping = false;
  auto stop = [&] {
    close_fd(&from_child);
    close_fd(&to_child);
    kill(pid, kStopSignal);
    stopping = true;
  };
  while (from_child >= 0 || ((released || stopping) && guardian_fd >= 0)) {
    // Slot 1 is stdin while it is open, slot 3 the guardian once released or stopping; a
    // negative fd makes poll skip a slot.
    pollfd fds[4] = {{from_child, POLLIN, 0}, {to_child, POLLOUT, 0}, {wake_fd, POLLIN, 0},
                     {released || stopping ? guardian_fd : -1, POLLIN, 0}};
    // give_up is asked after each wake-up, a signal, and at least every kGiveUpPollMs (a
    // signal that came just before poll began interrupts nothing), until it has said yes.
    const bool asking = give_up && !stopping;
    const int n = poll(fds, 4, asking ? kGiveUpPollMs : -1);
    if (n < 0 && errno != EINTR) break;
    if (n > 0 && (fds[3].revents & POLLIN)) break;  // the guardian has ended
    if (n > 0 && wake_fd >= 0 && (fds[2].revents & POLLIN) && on_wake) on_wake();
    if (asking && (n <= 0 || (fds[2].revents & POLLIN)) && give_up()) {
      r.abandoned = true;
      stop();
      continue;
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
        stop();
      } else {
        r.output.insert(r.output.end(), chunk, chunk + n);
      }
    }
  }
  close_fd(&to_child);
  close_fd(&from_child);
  if (guardian_fd >= 0) close(guardian_fd);
  if (!released && !stopping) kill(pid, kReleaseSignal);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  // A guardian killed before it could stop the command (the command may kill it): what is left
  // of its process group, as much as can still be reached (pid's number stays its group's while
  // the group has a member, so no stranger is hit).
  if (stopping && WIFSIGNALED(status)) kill(-pid, SIGKILL);
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
