// The x86_64 port's part of the arch.h contract: a thread's saved context.
#pragma once

#include <stdint.h>

namespace arch {

// context_switch pushes the callee-saved registers (rbx, rbp, r12-r15) and rflags on the
// outgoing thread's own stack and saves only its stack pointer here (as xv6's swtch), so the
// struct is one word and a switch touches one cache line of each thread.
struct Context {
    uint64_t rsp = 0;
};

}  // namespace arch
