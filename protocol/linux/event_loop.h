// epoll over the raw socket and one timerfd. The timer is armed at an absolute CLOCK_MONOTONIC
// time (the engine's next timeout or the caller's deadline, whichever is first), so the loop
// sleeps in the kernel between events and never polls.
#pragma once

#include <cstdint>

namespace smp::linux_peer {

struct Wakeup {
  bool readable = false;  // the socket has packets
  bool writable = false;  // the socket has room again (after EAGAIN/ENOBUFS)
  bool timer = false;     // the armed time has come
};

class EventLoop {
 public:
  EventLoop() = default;
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;
  ~EventLoop();

  // 0 or an errno.
  int open(int socket_fd);
  // Arms the timer at `when_ns` (CLOCK_MONOTONIC); a time already past fires at once.
  void arm(int64_t when_ns);
  // Blocks until something happens (or timeout_ms; 0 only looks); asks for writability only
  // while `want_writable`. One thread at a time. It touches nothing arm() uses, so another
  // thread may arm() meanwhile (libsmp: under its lock, while the waiter runs without it); a
  // Wakeup with `timer` then goes to timer_fired(), under that lock again.
  Wakeup wait(bool want_writable, int timeout_ms = -1);
  // Takes a fired timer in (the timer is disarmed), unless it was armed again since it fired.
  void timer_fired();
  // Readable whenever wait() would return at once: lets another loop (poll) watch this one.
  int fd() const { return epoll_fd_; }

 private:
  int epoll_fd_ = -1;
  int timer_fd_ = -1;
  int socket_fd_ = -1;
  bool watching_writable_ = false;
  int64_t armed_ns_ = -1;
};

}  // namespace smp::linux_peer
