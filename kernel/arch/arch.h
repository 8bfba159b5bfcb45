// The contract between the portable kernel (scheduler, threads, IPC) and a port.
// Two ports implement it: arch/x86_64 (the real kernel under QEMU) and arch/hosted (user-level
// contexts on one Linux thread with a virtual clock, for GoogleTest). The portable code includes
// only this header; each port supplies "arch_port.h" (found on its include path) with the types
// below. Nothing here allocates.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "arch_port.h"  // struct arch::Context: a thread's saved registers (per port)

namespace arch {

// ---- Interrupts -----------------------------------------------------------------------------
// Disables interrupt delivery (hosted: timer callbacks) and returns the previous state.
uint64_t irq_save();
void irq_restore(uint64_t state);

// ---- Time -----------------------------------------------------------------------------------
// Monotonic nanoseconds since boot (hosted: the virtual clock).
uint64_t now_ns();
// A raw, cheap counter for benchmarks (x86_64: rdtsc, which under QEMU's -icount shift=0 counts
// guest instructions; hosted: rdtsc of the host).
uint64_t cycle_counter();
// Asks for kernel::on_timer(now) to be called, from interrupt context, at or soon after
// deadline_ns (kNoDeadline: no wake-up needed). A periodic-tick port may round up to its next
// tick; a tickless port programs a one-shot timer. Called with interrupts disabled.
constexpr uint64_t kNoDeadline = UINT64_MAX;
void set_timer_deadline(uint64_t deadline_ns);
// Whether a timer interrupt will come at or before deadline_ns as things stand (x86_64: the
// one-shot is still armed for an earlier deadline that a later one replaced; hosted: the
// deadline set). The scheduler then needs no timer of its own by then (sched::handoff).
bool timer_fires_by(uint64_t deadline_ns);
// Called by the idle thread with interrupts disabled: waits for the next interrupt and
// returns with interrupts disabled (x86_64: sti; hlt; cli. hosted: advance the virtual clock to
// the next deadline and deliver it).
void idle_wait();

// ---- Contexts -------------------------------------------------------------------------------
// Prepares ctx so that the first context_switch to it calls entry(arg) on the given stack with
// interrupts enabled. entry must never return (the kernel's thread trampoline calls exit).
void context_init(Context* ctx, void* stack_base, size_t stack_bytes, void (*entry)(void*),
                  void* arg);
// Saves the current registers in *from and resumes *to. Called with interrupts disabled; the
// resumed thread continues with interrupts disabled and restores its own state afterwards.
void context_switch(Context* from, Context* to);

// ---- Console and exit -----------------------------------------------------------------------
void console_write(const char* text, size_t length);
// Ends the machine (x86_64: isa-debug-exit; hosted: returns control to the test harness).
[[noreturn]] void exit(int status);

}  // namespace arch

// ---- Provided by the portable kernel, called by the port ------------------------------------
namespace kernel {

struct BootInfo {
    const char* command_line;   // "key=value key=value ..." (kernel's file name removed)
    void* heap_base;            // free memory for the kernel heap
    size_t heap_bytes;
};

// The port's boot code calls this once, on the boot stack, with interrupts disabled.
[[noreturn]] void start(const BootInfo& boot);
// The port's timer interrupt calls this (interrupts disabled). It wakes sleepers and expired
// deadlines and may switch threads (preemption) before returning.
void on_timer(uint64_t now_ns);
// The port's timer interrupt calls this instead when it fires before the deadline asked for
// (a one-shot armed for an earlier deadline; it re-arms first). Nothing is due, but it is a
// point to preempt at: a thread handed the CPU (sched::handoff) gives it back. May switch.
void on_timer_early();

}  // namespace kernel
