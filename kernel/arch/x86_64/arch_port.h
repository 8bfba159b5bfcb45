// The x86_64 port's part of the arch.h contract: a thread's saved context.
#pragma once

#include <stdint.h>

namespace arch {

// context_switch pushes the callee-saved registers (rbx, rbp, r12-r15) on the
// outgoing thread's own stack and saves only its stack pointer here (as xv6's swtch), so the
// struct is one word and a switch touches one cache line of each thread.
struct Context {
    uint64_t rsp = 0;
};

// arch.h's interrupt masking, defined here so that it inlines into the scheduler and IPC paths
// (three instructions each instead of a call): arch.h's later declarations of the same functions
// are redeclarations of these inline ones. Returns/takes rflags' IF bit.
inline uint64_t irq_save() {
    uint64_t flags;
    asm volatile("pushfq; popq %0; cli" : "=r"(flags) : : "memory");
    return flags & (1u << 9);
}

inline void irq_restore(uint64_t state) {
    if (state) asm volatile("sti" : : : "memory");
}

}  // namespace arch
