// The x86_64 port's internals shared between its own files (not for drivers: see platform.h).
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace x86 {

// The frame every interrupt stub builds (isr.S), lowest address first.
struct InterruptFrame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error_code;
    uint64_t rip, cs, rflags, rsp, ss;  // pushed by the CPU
};
static_assert(sizeof(InterruptFrame) == 22 * 8, "isr.S pushes 22 words");

// isa-debug-exit (port 0xf4): writing v makes QEMU exit with status (v << 1) | 1. These values
// give the statuses kernel_qemu.py knows: 33 = success, 35 = failure, 37 = CPU exception.
// A triple fault with -no-reboot ends QEMU with status 0 (also a failure to the harness).
constexpr uint16_t kDebugExitPort = 0xf4;
constexpr uint32_t kExitValueSuccess = 0x10;
constexpr uint32_t kExitValueFailure = 0x11;
constexpr uint32_t kExitValueException = 0x12;
[[noreturn]] void debug_exit(uint32_t value);

// Vectors: CPU exceptions 0-31, the 8259 PIC pair remapped to 0x20-0x2f.
constexpr uint8_t kIrqVectorBase = 0x20;
constexpr uint8_t kIrqLines = 16;
constexpr uint8_t kTimerIrqLine = 0;     // PIT channel 0
constexpr uint8_t kCascadeIrqLine = 2;

void serial_init();
void cpu_init();      // GDT with TSS (IST1 for double fault), IDT
void pic_init();      // remap, mask all but the timer and the cascade
void pic_unmask(uint8_t line);
void timer_init();    // calibrates the TSC against the PIT; leaves the one-shot disarmed
void timer_interrupt();
extern uint64_t timer_interrupts;  // PIT interrupts taken, wanted or not (for the self-test)
// A PIC line's interrupt (pic.cc): drops spurious ones, acknowledges the PIC first (the
// handlers may switch threads and not come back for a while), then runs the timer or the
// handlers drivers registered.
void pic_interrupt(uint8_t line);

// Boot memory (memory.cc): reads the multiboot memory map, reserves the DMA pool, returns the
// heap region. Returns false (after printing why) if no usable region is large enough.
bool memory_init(uint32_t multiboot_info, void** heap_base, size_t* heap_bytes);

inline uint64_t read_tsc() {
    uint32_t lo, hi;
    asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return (uint64_t(hi) << 32) | lo;
}

}  // namespace x86
