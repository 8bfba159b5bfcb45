// The arch.h contract for x86_64 (time is in timer.cc, context_switch in isr.S).
#include "arch.h"

#include "cpu.h"
#include "platform.h"

extern "C" void x86_thread_trampoline();  // isr.S

namespace arch {

namespace {
constexpr uint64_t kRflagsInterruptEnable = 1u << 9;
constexpr uint64_t kRflagsReserved = 1u << 1;  // always set
}  // namespace

uint64_t irq_save() {
    uint64_t flags;
    asm volatile("pushfq; popq %0; cli" : "=r"(flags) : : "memory");
    return flags & kRflagsInterruptEnable;
}

void irq_restore(uint64_t state) {
    if (state & kRflagsInterruptEnable) asm volatile("sti" : : : "memory");
}

void idle_wait() {
    // sti takes effect after the next instruction, so an interrupt pending now wakes the hlt
    // instead of slipping in between (no lost wake-up).
    asm volatile("sti; hlt; cli" : : : "memory");
}

void context_init(Context* ctx, void* stack_base, size_t stack_bytes, void (*entry)(void*),
                  void* arg) {
    // The layout context_switch pops (isr.S): r15 r14 r13 r12 rbx rbp rflags, then its return
    // address, here the trampoline. After that ret, rsp is 16-byte aligned, so entry sees the
    // ABI's alignment once the trampoline's call has pushed its return address.
    uintptr_t top = (reinterpret_cast<uintptr_t>(stack_base) + stack_bytes) & ~uintptr_t(15);
    auto* s = reinterpret_cast<uint64_t*>(top) - 8;
    s[0] = 0;                                      // r15
    s[1] = 0;                                      // r14
    s[2] = reinterpret_cast<uint64_t>(entry);      // r13
    s[3] = reinterpret_cast<uint64_t>(arg);        // r12
    s[4] = 0;                                      // rbx
    s[5] = 0;                                      // rbp: ends a debugger's backtrace
    s[6] = kRflagsReserved;                        // interrupts off until the trampoline's sti
    s[7] = reinterpret_cast<uint64_t>(&x86_thread_trampoline);
    ctx->rsp = reinterpret_cast<uint64_t>(s);
}

void console_write(const char* text, size_t length) {
    // Whole writes stay whole when an interrupt handler prints too.
    uint64_t state = irq_save();
    x86::serial_write(text, length);
    irq_restore(state);
}

void exit(int status) {
    asm volatile("cli");
    x86::debug_exit(status == 0 ? x86::kExitValueSuccess : x86::kExitValueFailure);
}

}  // namespace arch
