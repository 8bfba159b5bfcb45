// Running the portable kernel inside a Linux process: each run() boots a fresh kernel (new heap,
// new scheduler) on user-level contexts of the calling Linux thread and returns when the kernel
// calls arch::exit.
//
// Time is virtual. It moves only (1) when the idle thread waits: the clock jumps to the next
// timer deadline, which is then delivered; and (2) when a thread reads the clock with interrupts
// enabled: each such read costs kClockReadCostNs, as work does on a real machine. Timer expiry
// (sleep deadlines, send/receive deadlines, the time slice) is delivered at safe points only:
// at such a clock read and whenever interrupts are re-enabled (irq_restore), never in the middle
// of kernel code that runs with interrupts disabled. A thread that spins on now_ns() is
// therefore preempted when its slice ends, as on real hardware.
// If every thread is blocked with no deadline pending, nothing can ever wake them: the port
// prints a line and exits the kernel with kExitDeadlock instead of hanging.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <string>

namespace hosted {

constexpr uint64_t kClockReadCostNs = 1000;
constexpr size_t kHeapBytesDefault = size_t{96} << 20;  // 1,000 threads with ASan-sized stacks

struct RunResult {
    int status;           // what the kernel passed to arch::exit
    std::string console;  // everything it printed
};

// Boots the kernel with the given command line; echo also copies its output to stdout.
RunResult run(const char* command_line, size_t heap_bytes = kHeapBytesDefault, bool echo = false);

}  // namespace hosted
