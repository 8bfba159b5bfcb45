// The arch.h contract for x86_64 (time is in timer.cc, context_switch in isr.S, irq_save and
// irq_restore inline in arch_port.h).
#include "arch.h"

#include "cpu.h"
#include "platform.h"

extern "C" void x86_thread_trampoline();  // isr.S

namespace arch {

void idle_wait() {
    // sti takes effect after the next instruction, so an interrupt pending now wakes the hlt
    // instead of slipping in between (no lost wake-up).
    asm volatile("sti; hlt; cli" : : : "memory");
}

void context_init(Context* ctx, void* stack_base, size_t stack_bytes, void (*entry)(void*),
                  void* arg) {
    // The layout context_switch pops (isr.S): r15 r14 r13 r12 rbx rbp, then its return address,
    // here the trampoline. After that ret, rsp is 16-byte aligned (two words below the top), so
    // entry sees the ABI's alignment once the trampoline's call has pushed its return address.
    uintptr_t top = (reinterpret_cast<uintptr_t>(stack_base) + stack_bytes) & ~uintptr_t(15);
    auto* s = reinterpret_cast<uint64_t*>(top) - 9;
    s[0] = 0;                                      // r15
    s[1] = 0;                                      // r14
    s[2] = reinterpret_cast<uint64_t>(entry);      // r13
    s[3] = reinterpret_cast<uint64_t>(arg);        // r12
    s[4] = 0;                                      // rbx
    s[5] = 0;                                      // rbp: ends a debugger's backtrace
    s[6] = reinterpret_cast<uint64_t>(&x86_thread_trampoline);
    s[7] = 0;                                      // padding up to the top
    s[8] = 0;
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
