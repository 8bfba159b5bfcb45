// The hosted port's per-thread context: a saved stack pointer (callee-saved registers live on
// the stack, pushed by hosted_switch.S) and what AddressSanitizer needs to follow the switch.
#pragma once

#include <stddef.h>

namespace arch {

struct Context {
    void* sp;
    void* fake_stack;           // ASan's fake stack of this context while it is switched out
    const void* stack_bottom;   // lowest address of the stack (ASan switch annotations)
    size_t stack_bytes;
    void (*entry)(void*);
    void* arg;
};

}  // namespace arch
