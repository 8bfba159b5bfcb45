#include "event_loop.h"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cstdint>

namespace smp::linux_peer {
namespace {

constexpr int kEventsMax = 4;
constexpr uint64_t kTimerTag = 1;
constexpr uint64_t kSocketTag = 2;
constexpr int64_t kNeverNs = INT64_MAX / 2;  // beyond any real deadline

}  // namespace

EventLoop::~EventLoop() {
  if (timer_fd_ >= 0) close(timer_fd_);
  if (epoll_fd_ >= 0) close(epoll_fd_);
}

int EventLoop::open(int socket_fd) {
  socket_fd_ = socket_fd;
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) return errno;
  timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (timer_fd_ < 0) return errno;
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kTimerTag;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, timer_fd_, &ev) != 0) return errno;
  ev.data.u64 = kSocketTag;
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, socket_fd_, &ev) != 0) return errno;
  return 0;
}

void EventLoop::arm(int64_t when_ns) {
  // A timer already set to fire no later is left alone: waking early costs one spurious loop,
  // re-arming costs a system call on every wait (most deadlines move forward with each call).
  if (armed_ns_ >= 0 && armed_ns_ <= when_ns) return;
  armed_ns_ = when_ns;
  itimerspec its{};
  if (when_ns >= kNeverNs) return;  // nothing timed: an armed timer only wakes us once, early
  // it_value zero would disarm: a time at or before zero becomes "as soon as possible".
  const int64_t t = when_ns > 0 ? when_ns : 1;
  its.it_value.tv_sec = t / 1'000'000'000;
  its.it_value.tv_nsec = t % 1'000'000'000;
  timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &its, nullptr);
}

Wakeup EventLoop::wait(bool want_writable, int timeout_ms) {
  if (want_writable != watching_writable_) {
    epoll_event ev{};
    ev.events = EPOLLIN | (want_writable ? EPOLLOUT : 0u);
    ev.data.u64 = kSocketTag;
    epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, socket_fd_, &ev);
    watching_writable_ = want_writable;
  }
  Wakeup w;
  epoll_event events[kEventsMax];
  int n = epoll_wait(epoll_fd_, events, kEventsMax, timeout_ms);
  if (n < 0) return w;  // EINTR: the caller looks at the clock and its flags again
  for (int i = 0; i < n; ++i) {
    if (events[i].data.u64 == kTimerTag) {
      w.timer = true;
    } else {
      w.readable = (events[i].events & (EPOLLIN | EPOLLERR)) != 0;
      w.writable = (events[i].events & EPOLLOUT) != 0;
    }
  }
  return w;
}

void EventLoop::timer_fired() {
  // A timer armed again after it fired has no expiration to read (timerfd_settime clears it):
  // it stays armed, and so does armed_ns_.
  uint64_t expirations = 0;
  if (read(timer_fd_, &expirations, sizeof expirations) > 0) armed_ns_ = -1;
}

}  // namespace smp::linux_peer
