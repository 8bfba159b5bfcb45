// Threads: create, exit, join, sleep, yield. Priorities 1..31 (higher runs first; 0 is the idle
// thread's); round-robin with a time slice among ready threads of one priority; preemption by a
// higher-priority thread at once.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "status.h"

namespace kernel {

struct Thread;

constexpr uint8_t kPriorityCount = 32;
constexpr uint8_t kPriorityIdle = 0;      // the idle thread only
constexpr uint8_t kPriorityMin = 1;
constexpr uint8_t kPriorityDefault = 16;
constexpr uint8_t kPriorityMax = kPriorityCount - 1;
constexpr size_t kThreadsMax = 2048;      // live (not yet joined) threads, idle included
constexpr uint64_t kTimeSliceNs = 10'000'000;
// A thread handed the CPU (sched::handoff) that does not block keeps it at most about this long:
// until the next timer interrupt, which the one-shot armed for other deadlines usually brings
// sooner; a slice is armed only when none is due by then.
constexpr uint64_t kHandoffBoundNs = 2 * kTimeSliceNs;
constexpr size_t kThreadNameBytes = 16;
constexpr uint64_t kNoDeadline = UINT64_MAX;  // same value as arch::kNoDeadline

#ifndef KERNEL_STACK_BYTES_DEFAULT
#define KERNEL_STACK_BYTES_DEFAULT 16384
#endif
#ifndef KERNEL_STACK_BYTES_SMALL
#define KERNEL_STACK_BYTES_SMALL 8192
#endif
constexpr size_t kStackBytesDefault = KERNEL_STACK_BYTES_DEFAULT;
// For tests that create a thousand threads; enough for IPC calls and print().
constexpr size_t kStackBytesSmall = KERNEL_STACK_BYTES_SMALL;
constexpr size_t kStackBytesMin = 4096;

using ThreadEntry = void (*)(void* arg);

// Allocates the thread (one heap block: record + stack) and makes it ready. kNoMemory,
// kLimitReached (kThreadsMax), kInvalidArgument (null entry, priority out of 1..31, tiny stack).
Result<Thread*> thread_create(const char* name, ThreadEntry entry, void* arg, uint8_t priority,
                              size_t stack_bytes = kStackBytesDefault);
// Ends the calling thread. Messages it received and did not reply fail with kServerExited.
[[noreturn]] void thread_exit(int code);
// Waits for the thread to end, frees it and returns its exit code. Exactly one join per thread;
// kInvalidArgument for a null thread, oneself, or a thread someone already joins.
Result<int> thread_join(Thread* thread);

Thread* thread_current();
uint32_t thread_id(const Thread* thread);
const char* thread_name(const Thread* thread);
// Effective priority: the base priority raised by priority inheritance while serving a sender.
uint8_t thread_priority(const Thread* thread);
uint8_t thread_base_priority(const Thread* thread);
Status thread_set_priority(Thread* thread, uint8_t priority);
size_t thread_count();  // live threads, idle included

void yield();
// Blocks until now_ns() >= deadline_ns (kOk); a deadline in the past returns at once.
Status sleep_until(uint64_t deadline_ns);
Status sleep_for(uint64_t duration_ns);
uint64_t now_ns();
// The absolute deadline duration_ns from now, saturating at kNoDeadline.
uint64_t deadline_after(uint64_t duration_ns);
// Spins (does work, does not block) until now_ns() >= deadline_ns: lets tests model busy threads.
void busy_until(uint64_t deadline_ns);

// A snapshot of every live thread, for the console's `threads` command.
enum class ThreadRunState : uint8_t { kReady, kRunning, kBlocked, kExited };
struct ThreadInfo {
    uint32_t id;
    uint8_t base_priority;
    uint8_t priority;        // effective (inheritance included)
    ThreadRunState state;
    char name[kThreadNameBytes];
};
// Fills up to `capacity` entries (in creation order) and returns how many threads are live.
size_t thread_snapshot(ThreadInfo* out, size_t capacity);
const char* thread_state_name(ThreadRunState state);

// Counters for tests and the console.
struct SchedulerStats {
    uint64_t context_switches;
    uint64_t preemptions;       // time slice expiries that rotated a thread
    uint64_t timer_interrupts;  // on_timer calls
    uint64_t early_timer_interrupts;  // on_timer_early calls: the timer fired with nothing due
};
SchedulerStats scheduler_stats();

}  // namespace kernel
