// The x86_64 port checked on its own, in QEMU, without the portable kernel: this file is the
// image's kernel::start and kernel::on_timer. Run by tests/qemu (boot with -device e1000 to also
// check a PCI legacy interrupt end to end). Prints "arch selftest: N passed, N failed" and exits
// through arch::exit (0 = all passed).
#include "arch.h"
#include "cpu.h"
#include "platform.h"

namespace {

int passed = 0;
int failed = 0;

void print(const char* s) { x86::serial_write(s); }

void print_u(uint64_t v) {
    char buf[24];
    int n = 0;
    do {
        buf[n++] = char('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) {
        char c = buf[--n];
        x86::serial_write(&c, 1);
    }
}

void check(bool ok, const char* what) {
    print(ok ? "  ok   " : "  FAIL ");
    print(what);
    print("\n");
    (ok ? passed : failed)++;
}

bool interrupts_enabled() {
    uint64_t f;
    asm volatile("pushfq; popq %0" : "=r"(f));
    return (f >> 9) & 1;
}

// ---- timer ------------------------------------------------------------------------------------
volatile uint64_t timer_calls = 0;
volatile uint64_t timer_early_calls = 0;
volatile uint64_t timer_last_now = 0;
void (*volatile timer_hook)() = nullptr;

// Waits (halting) for one on_timer call; returns the now it was given.
uint64_t wait_for_timer(uint64_t deadline) {
    uint64_t calls = timer_calls;
    arch::set_timer_deadline(deadline);
    while (timer_calls == calls) arch::idle_wait();
    return timer_last_now;
}

void check_timer() {
    uint64_t a = arch::now_ns(), b = arch::now_ns();
    check(b >= a, "now_ns is monotonic");
    const uint64_t delays_ns[] = {1000000, 250000, 20000000, 70000000 /* beyond the PIT's reach */};
    for (uint64_t d : delays_ns) {
        uint64_t irq = arch::irq_save();
        uint64_t deadline = arch::now_ns() + d;
        uint64_t fired = wait_for_timer(deadline);
        uint64_t seen = arch::now_ns();
        arch::irq_restore(irq);
        check(fired >= deadline && seen >= deadline, "one-shot deadline never fires early");
        print("       delay ");
        print_u(d / 1000);
        print(" us: late by ");
        print_u((seen - deadline) / 1000);
        print(" us\n");
    }
    // A later deadline replacing an earlier one: the one-shot stays armed for the earlier one
    // (timer_fires_by says so), fires there as on_timer_early and re-arms; on_timer comes once.
    // The later one is 40 ms on (within the PIT's reach), far past the early one however long
    // the host holds the guest between them.
    constexpr uint64_t kLater = 40000000;
    uint64_t irq = arch::irq_save();
    uint64_t now = arch::now_ns();
    arch::set_timer_deadline(now + 1000000);
    check(arch::timer_fires_by(now + 1000000) && !arch::timer_fires_by(now + 500000),
          "timer_fires_by: an interrupt by the deadline armed, none before it");
    arch::set_timer_deadline(now + kLater);
    check(arch::timer_fires_by(now + 1000000),
          "timer_fires_by: a later deadline leaves the earlier one-shot armed (no reprogramming)");
    uint64_t calls = timer_calls;
    uint64_t early = timer_early_calls;
    uint64_t fired = wait_for_timer(now + kLater);
    check(fired >= now + kLater && timer_calls == calls + 1,
          "a deadline moved later is honoured, not the earlier one");
    // At least once: the one-shot re-armed for the later deadline may itself come a few
    // microseconds before it (the PIT's clock against now_ns), a second early call; on_timer
    // still comes once, at the deadline (checked above).
    check(timer_early_calls > early, "the early one-shot calls on_timer_early, not on_timer");
    // No deadline: nothing fires (the idle node is quiet); an IRQ-less wait would hang, so only
    // check that a cancelled deadline does not call on_timer.
    calls = timer_calls;
    arch::set_timer_deadline(arch::now_ns() + 2000000);
    arch::set_timer_deadline(arch::kNoDeadline);
    arch::irq_restore(irq);
    uint64_t until = arch::now_ns() + 10000000;
    while (arch::now_ns() < until) {
    }
    check(timer_calls == calls, "a cancelled deadline calls nothing");
    // Tickless: with no deadline wanted, not a single timer interrupt (an idle node costs nothing).
    uint64_t raw = x86::timer_interrupts;
    until = arch::now_ns() + 100000000;
    while (arch::now_ns() < until) {
    }
    check(x86::timer_interrupts == raw, "no timer interrupt at all while no deadline is wanted");
}

// ---- contexts -----------------------------------------------------------------------------------
constexpr size_t kStackBytes = 16384;
alignas(16) uint8_t stack_a[kStackBytes];
arch::Context main_ctx, ctx_a;
volatile int pingpong = 0;
volatile bool a_interrupts_on = false;
volatile uint64_t a_arg = 0;
volatile uint64_t a_stack_alignment = 1;

void thread_a(void* arg) {
    a_interrupts_on = interrupts_enabled();
    a_arg = reinterpret_cast<uint64_t>(arg);
    // With frame pointers, rbp = rsp at entry - 8, which the ABI makes 16-byte aligned.
    a_stack_alignment = reinterpret_cast<uintptr_t>(__builtin_frame_address(0)) & 15;
    for (;;) {
        arch::irq_save();
        pingpong = pingpong + 1;
        arch::context_switch(&ctx_a, &main_ctx);
    }
}

void check_contexts() {
    arch::context_init(&ctx_a, stack_a, kStackBytes, thread_a, reinterpret_cast<void*>(0x1234));
    uint64_t irq = arch::irq_save();
    for (int i = 0; i < 1000; ++i) arch::context_switch(&main_ctx, &ctx_a);
    arch::irq_restore(irq);
    check(pingpong == 1000, "1000 context switches there and back");
    check(a_arg == 0x1234, "a new context gets its argument");
    check(a_interrupts_on, "a new context starts with interrupts enabled");
    check(a_stack_alignment == 0, "a new context's stack is ABI-aligned");
}

// ---- preemption inside the timer interrupt ------------------------------------------------------
alignas(16) uint8_t stack_b[kStackBytes];
arch::Context ctx_b;
volatile uint64_t spins = 0;
volatile bool b_may_finish = false;
volatile bool preempted = false;
volatile bool b_finished = false;

void thread_b(void*) {
    while (!b_may_finish) spins = spins + 1;  // interrupts on: only the timer gets us out
    arch::irq_save();
    b_finished = true;
    arch::context_switch(&ctx_b, &main_ctx);
    for (;;) arch::idle_wait();
}

void preempt_b() {
    // In interrupt context on b's stack: switch away; b resumes here later, inside the handler.
    timer_hook = nullptr;
    preempted = true;
    arch::context_switch(&ctx_b, &main_ctx);
}

void check_preemption() {
    arch::context_init(&ctx_b, stack_b, kStackBytes, thread_b, nullptr);
    uint64_t irq = arch::irq_save();
    timer_hook = preempt_b;
    arch::set_timer_deadline(arch::now_ns() + 2000000);
    arch::context_switch(&main_ctx, &ctx_b);  // back here only through preempt_b
    check(preempted && spins > 0, "the timer interrupt switches away from a busy context");
    b_may_finish = true;
    arch::context_switch(&main_ctx, &ctx_b);  // b returns from its interrupt and finishes
    arch::irq_restore(irq);
    check(b_finished, "a preempted context resumes and ends");
}

// ---- memory -------------------------------------------------------------------------------------
void check_memory(const kernel::BootInfo& boot) {
    auto* heap = static_cast<volatile uint64_t*>(boot.heap_base);
    size_t words = boot.heap_bytes / 8;
    heap[0] = 0x1122334455667788;
    heap[words - 1] = 0x8877665544332211;
    check(boot.heap_bytes >= (16u << 20) && heap[0] == 0x1122334455667788 &&
              heap[words - 1] == 0x8877665544332211,
          "the heap region is usable from its first to its last word");
    auto* a = static_cast<uint8_t*>(x86::dma_alloc(100, 4096));
    auto* b = static_cast<uint8_t*>(x86::dma_alloc(3000, 64));
    bool zeroed = a && b;
    for (size_t i = 0; zeroed && i < 3000; ++i) zeroed = b[i] == 0;
    check(a && b && (uintptr_t(a) & 4095) == 0 && (uintptr_t(b) & 63) == 0 && b >= a + 100 &&
              zeroed && x86::virt_to_phys(a) == uintptr_t(a) && x86::phys_to_virt(uintptr_t(b)) == b,
          "dma_alloc: aligned, zeroed, disjoint, identity-mapped");
    check(x86::dma_alloc(16, 3) == nullptr, "dma_alloc rejects an alignment that is no power of two");
    check(x86::dma_alloc(x86::kDmaPoolBytes, 16) == nullptr && x86::dma_alloc(16, 16) != nullptr,
          "dma_alloc says nullptr when exhausted, and still serves what fits");
    check(uintptr_t(a) >= uintptr_t(boot.heap_base) + boot.heap_bytes ||
              uintptr_t(a) + x86::kDmaPoolBytes <= uintptr_t(boot.heap_base),
          "the DMA pool and the heap do not overlap");
}

// memcpy/memset move eight bytes per step and then the tail: every length 0..40 at every source
// and destination offset 0..7 gives exactly the bytes asked for and touches nothing around them.
extern "C" void* memcpy(void*, const void*, size_t);
extern "C" void* memset(void*, int, size_t);
void check_mem_routines() {
    static uint8_t src[64], dst[64];
    bool ok = true;
    for (size_t n = 0; n <= 40 && ok; ++n) {
        for (size_t so = 0; so < 8 && ok; ++so) {
            for (size_t d = 0; d < 8 && ok; ++d) {
                for (size_t i = 0; i < sizeof src; ++i) src[i] = uint8_t(i * 7 + 1), dst[i] = 0xEE;
                void* r = memcpy(dst + d, src + so, n);
                ok = r == dst + d;
                for (size_t i = 0; i < sizeof dst && ok; ++i)
                    ok = dst[i] == (i >= d && i < d + n ? src[so + i - d] : 0xEE);
                r = memset(dst + d, 0x5A, n);
                ok = ok && r == dst + d;
                for (size_t i = d; i < d + n && ok; ++i) ok = dst[i] == 0x5A;
                ok = ok && (d == 0 || dst[d - 1] != 0x5A) && dst[d + n] != 0x5A;
            }
        }
    }
    check(ok, "memcpy and memset: every length 0..40 at every alignment, nothing beyond");
}

// ---- PCI and a legacy interrupt -----------------------------------------------------------------
volatile uint32_t e1000_irqs = 0;
volatile uint32_t* e1000_regs = nullptr;
constexpr uint32_t kE1000Icr = 0xc0 / 4, kE1000Ics = 0xc8 / 4, kE1000Ims = 0xd0 / 4;

void e1000_irq(void* ctx) {
    auto* regs = static_cast<volatile uint32_t*>(ctx);
    if (regs[kE1000Icr] != 0) e1000_irqs = e1000_irqs + 1;  // reading ICR clears it and lowers the line
}

void check_pci() {
    uint32_t id = x86::pci_config_read32(0, 0, 0, 0);
    check(id == 0x12378086, "PCI 00:00.0 is the i440FX host bridge (8086:1237)");
    check(x86::pci_config_read32(0, 31, 7, 0) == 0xffffffff, "an empty PCI slot reads all ones");
    check(!x86::irq_register(0, e1000_irq, nullptr) && !x86::irq_register(2, e1000_irq, nullptr) &&
              !x86::irq_register(16, e1000_irq, nullptr),
          "irq_register refuses the timer, the cascade and lines past 15");
    // Every device with an interrupt pin got a legacy line from SeaBIOS, set level-triggered in
    // the PIIX's ELCR (ports 0x4d0/0x4d1), as PCI INTx lines must be.
    uint16_t elcr = uint16_t(x86::inb(0x4d0) | (x86::inb(0x4d1) << 8));
    int with_pin = 0, routed = 0;
    for (uint8_t dev = 0; dev < 32; ++dev) {
        uint32_t id = x86::pci_config_read32(0, dev, 0, 0);
        uint32_t r3c = x86::pci_config_read32(0, dev, 0, 0x3c);
        uint8_t pin = uint8_t(r3c >> 8), line = uint8_t(r3c);
        if (id == 0xffffffff || pin == 0) continue;
        ++with_pin;
        print("       pci 00:");
        print_u(dev);
        print(" id ");
        x86::serial_write_hex(id);
        print(" pin ");
        print_u(pin);
        print(" line ");
        print_u(line);
        print((line < 16 && (elcr >> line) & 1) ? " level\n" : " NOT level-triggered\n");
        if (line > 0 && line < 16 && line != 2 && ((elcr >> line) & 1)) ++routed;
    }
    check(with_pin == routed, "every PCI device with an interrupt pin has a level-triggered line");
    for (uint8_t dev = 0; dev < 32; ++dev) {
        if (x86::pci_config_read32(0, dev, 0, 0) != 0x100e8086) continue;
        uint8_t line = uint8_t(x86::pci_config_read32(0, dev, 0, 0x3c));
        uint32_t bar0 = x86::pci_config_read32(0, dev, 0, 0x10) & ~0xfu;
        print("       e1000 at 00:");
        print_u(dev);
        print(" irq line ");
        print_u(line);
        print(" bar0 ");
        x86::serial_write_hex(bar0);
        print("\n");
        check(line > 0 && line < 16, "SeaBIOS gave the e1000 a legacy interrupt line");
        uint32_t cmd = x86::pci_config_read32(0, dev, 0, 0x04);
        x86::pci_config_write32(0, dev, 0, 0x04, (cmd & ~(1u << 10)) | 0x6);  // memory, master, INTx on
        e1000_regs = static_cast<volatile uint32_t*>(x86::phys_to_virt(bar0));
        check(x86::irq_register(line, e1000_irq, const_cast<uint32_t*>(e1000_regs)),
              "irq_register accepts the e1000's line");
        uint64_t irq = arch::irq_save();
        e1000_regs[kE1000Ims] = 0x4;   // link status change
        e1000_regs[kE1000Ics] = 0x4;   // raise it by software
        uint64_t until = arch::now_ns() + 1000000000;  // a guard against a hang, not a threshold
        arch::set_timer_deadline(until);
        while (e1000_irqs == 0 && arch::now_ns() < until) arch::idle_wait();
        arch::irq_restore(irq);
        check(e1000_irqs == 1, "the e1000's legacy interrupt reached its handler once");
        return;
    }
    print("       (no e1000 on the bus: boot with -device e1000 to check a PCI interrupt)\n");
}

}  // namespace

namespace kernel {

void on_timer(uint64_t now_ns) {
    timer_last_now = now_ns;
    timer_calls = timer_calls + 1;
    if (timer_hook) timer_hook();
}

void on_timer_early() { timer_early_calls = timer_early_calls + 1; }

void start(const BootInfo& boot) {
    print("arch selftest: begin\n");
    check(!interrupts_enabled(), "kernel::start runs with interrupts disabled");
    check_memory(boot);
    check_mem_routines();
    check_contexts();
    check_timer();
    check_preemption();
    check_pci();
    print("arch selftest: ");
    print_u(passed);
    print(" passed, ");
    print_u(failed);
    print(" failed\n");
    arch::exit(failed == 0 ? 0 : 1);
}

}  // namespace kernel
