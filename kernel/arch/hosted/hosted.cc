// The hosted port: arch.h on top of one Linux thread. See hosted.h for how time moves.
#include "hosted.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <x86intrin.h>

#include "arch/arch.h"
#include "panic.h"
#include "sanitizer.h"

#ifdef KERNEL_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

extern "C" void hosted_switch(void** save_sp, void* new_sp);
extern "C" void hosted_trampoline();
extern "C" [[noreturn]] void hosted_thread_start(arch::Context* ctx);

namespace {

constexpr size_t kBootStackBytes = 256 * 1024;

struct HostedState {
    uint64_t now_ns;
    uint64_t timer_deadline_ns;
    bool irq_enabled;
    int exit_status;
    bool echo;
    std::string* console;
    arch::Context harness;         // the Linux thread's own stack, where run() waits
    arch::Context boot;            // a small stack on which kernel::start runs
    kernel::BootInfo boot_info;
};

HostedState g;

// Like a timer interrupt arriving: runs kernel::on_timer with interrupts "disabled".
void deliver_timer() {
    // No nesting: on_timer runs with interrupts disabled, and delivery needs them enabled. (The
    // flag belongs to whichever thread runs: on_timer may switch, and the thread resumed restores
    // its own state, as arch.h says.)
    bool was = g.irq_enabled;
    g.irq_enabled = false;
    g.timer_deadline_ns = arch::kNoDeadline;  // on_timer programs the next one
    kernel::on_timer(g.now_ns);
    g.irq_enabled = was;
}

void deliver_if_due() {
    if (g.irq_enabled && g.now_ns >= g.timer_deadline_ns) deliver_timer();
}

void switch_to(arch::Context* from, arch::Context* to) {
#ifdef KERNEL_ASAN
    __sanitizer_start_switch_fiber(from ? &from->fake_stack : nullptr, to->stack_bottom,
                                   to->stack_bytes);
#endif
    // A context that never resumes (from == nullptr) saves its stack pointer in a static: with
    // nullptr, ASan frees the fiber's fake stack at once, so a local could already be gone.
    static void* dead_sp;
    hosted_switch(from ? &from->sp : &dead_sp, to->sp);
#ifdef KERNEL_ASAN
    // Back in `from`: tell ASan, and learn the bounds of the stack we came from (only needed
    // for the harness, whose bounds no one gave us).
    const void* old_bottom;
    size_t old_bytes;
    __sanitizer_finish_switch_fiber(from->fake_stack, &old_bottom, &old_bytes);
#endif
}

void boot_entry(void*) { kernel::start(g.boot_info); }

}  // namespace

extern "C" void hosted_thread_start(arch::Context* ctx) {
#ifdef KERNEL_ASAN
    const void* old_bottom;
    size_t old_bytes;
    __sanitizer_finish_switch_fiber(nullptr, &old_bottom, &old_bytes);
    if (ctx == &g.boot) {  // coming from the harness: remember its stack for arch::exit
        g.harness.stack_bottom = old_bottom;
        g.harness.stack_bytes = old_bytes;
    }
#endif
    if (ctx != &g.boot) g.irq_enabled = true;  // a thread starts with interrupts enabled
    ctx->entry(ctx->arg);
    abort();  // entry never returns (kernel threads end through thread_exit)
}

namespace arch {

uint64_t irq_save() {
    uint64_t was = g.irq_enabled;
    g.irq_enabled = false;
    return was;
}

void irq_restore(uint64_t state) {
    g.irq_enabled = state != 0;
    deliver_if_due();
}

uint64_t now_ns() {
    if (g.irq_enabled) {
        g.now_ns += hosted::kClockReadCostNs;
        deliver_if_due();
    }
    return g.now_ns;
}

uint64_t cycle_counter() { return __rdtsc(); }

void set_timer_deadline(uint64_t deadline_ns) { g.timer_deadline_ns = deadline_ns; }

bool timer_fires_by(uint64_t deadline_ns) { return g.timer_deadline_ns <= deadline_ns; }

void idle_wait() {
    if (g.timer_deadline_ns == kNoDeadline) {
        kernel::print("hosted: every thread is blocked and no deadline is pending (deadlock)\n");
        exit(kernel::kExitDeadlock);
    }
    if (g.now_ns < g.timer_deadline_ns) g.now_ns = g.timer_deadline_ns;
    deliver_timer();
}

void context_init(Context* ctx, void* stack_base, size_t stack_bytes, void (*entry)(void*),
                  void* arg) {
    uintptr_t top = (reinterpret_cast<uintptr_t>(stack_base) + stack_bytes) & ~uintptr_t{15};
    // Popped by hosted_switch: r15 r14 r13 r12 rbx rbp, then `ret` to the trampoline. After the
    // ret, rsp = top - 16, 16-byte aligned as the trampoline's `call` expects.
    auto* frame = reinterpret_cast<uint64_t*>(top - 72);
    memset(frame, 0, 72);
    frame[3] = reinterpret_cast<uint64_t>(ctx);  // r12
    frame[6] = reinterpret_cast<uint64_t>(&hosted_trampoline);
    ctx->sp = frame;
    ctx->fake_stack = nullptr;
    ctx->stack_bottom = stack_base;
    ctx->stack_bytes = stack_bytes;
    ctx->entry = entry;
    ctx->arg = arg;
}

void context_switch(Context* from, Context* to) { switch_to(from, to); }

void console_write(const char* text, size_t length) {
    if (g.console) g.console->append(text, length);
    if (g.echo) fwrite(text, 1, length, stdout);
}

void exit(int status) {
    g.exit_status = status;
    g.irq_enabled = false;
    // The kernel's stacks are about to be freed with its heap: this context is never resumed.
    switch_to(nullptr, &g.harness);
    abort();
}

}  // namespace arch

namespace hosted {

RunResult run(const char* command_line, size_t heap_bytes, bool echo) {
    RunResult result{-1, {}};
    void* heap = malloc(heap_bytes);
    void* boot_stack = malloc(kBootStackBytes);
    if (!heap || !boot_stack) {
        free(heap);
        free(boot_stack);
        result.console = "hosted: cannot allocate the kernel's memory\n";
        return result;
    }
    g = HostedState{};
    g.timer_deadline_ns = arch::kNoDeadline;
    g.echo = echo;
    g.console = &result.console;
    g.boot_info = kernel::BootInfo{command_line, heap, heap_bytes};
    arch::context_init(&g.boot, boot_stack, kBootStackBytes, boot_entry, nullptr);
    switch_to(&g.harness, &g.boot);
    // arch::exit brought us back here.
    result.status = g.exit_status;
    g.console = nullptr;
    KERNEL_ASAN_UNPOISON(heap, heap_bytes);  // dead threads' frames leave stack redzones behind
    KERNEL_ASAN_UNPOISON(boot_stack, kBootStackBytes);
    free(heap);
    free(boot_stack);
    return result;
}

}  // namespace hosted
