// Descriptor tables, interrupt dispatch and the exception register dump.
#include "cpu.h"

#include "platform.h"

extern "C" const uint64_t x86_isr_stubs[];  // isr.S

namespace x86 {
namespace {

constexpr uint16_t kKernelCode = 0x08;
constexpr uint16_t kKernelData = 0x10;
constexpr uint16_t kTssSelector = 0x18;
constexpr size_t kStubsCount = 32 + kIrqLines;
constexpr size_t kIdtEntries = 256;
constexpr uint8_t kDoubleFaultVector = 8;
constexpr size_t kDoubleFaultStackBytes = 8192;

struct __attribute__((packed)) Tss {
    uint32_t reserved0;
    uint64_t rsp[3];
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3;
    uint16_t iomap_base;
};
static_assert(sizeof(Tss) == 104, "64-bit TSS layout");

struct __attribute__((packed)) IdtEntry {
    uint16_t offset_low;
    uint16_t selector;
    uint8_t ist;
    uint8_t type_attributes;
    uint16_t offset_middle;
    uint32_t offset_high;
    uint32_t reserved;
};
static_assert(sizeof(IdtEntry) == 16, "64-bit IDT gate");

struct __attribute__((packed)) TablePointer {
    uint16_t limit;
    uint64_t base;
};

Tss tss;
alignas(16) uint8_t double_fault_stack[kDoubleFaultStackBytes];
// null, code64, data, TSS (two slots)
uint64_t gdt[5];
IdtEntry idt[kIdtEntries];

const char* const kExceptionNames[32] = {
    "#DE divide error", "#DB debug", "NMI", "#BP breakpoint", "#OF overflow", "#BR bound range",
    "#UD invalid opcode", "#NM device not available", "#DF double fault", "coprocessor overrun",
    "#TS invalid TSS", "#NP segment not present", "#SS stack fault", "#GP general protection",
    "#PF page fault", "reserved 15", "#MF x87 error", "#AC alignment check", "#MC machine check",
    "#XM SIMD error", "#VE virtualization", "#CP control protection", "reserved 22", "reserved 23",
    "reserved 24", "reserved 25", "reserved 26", "reserved 27", "#HV hypervisor injection",
    "#VC VMM communication", "#SX security", "reserved 31"};

void set_gate(uint8_t vector, uint64_t handler, uint8_t ist) {
    IdtEntry& e = idt[vector];
    e.offset_low = uint16_t(handler);
    e.selector = kKernelCode;
    e.ist = ist;
    e.type_attributes = 0x8e;  // present, ring 0, 64-bit interrupt gate (clears IF)
    e.offset_middle = uint16_t(handler >> 16);
    e.offset_high = uint32_t(handler >> 32);
    e.reserved = 0;
}

void dump_register(const char* name, uint64_t value) {
    serial_write(name);
    serial_write("=");
    serial_write_hex(value);
}

[[noreturn]] void exception(const InterruptFrame& f) {
    // A fault while dumping (a broken stack, say) must not recurse forever.
    static bool dumping = false;
    if (dumping) debug_exit(kExitValueException);
    dumping = true;
    uint64_t cr2;
    asm volatile("mov %%cr2, %0" : "=r"(cr2));
    serial_write("\n*** CPU EXCEPTION vector=");
    serial_write_hex(f.vector);
    serial_write(" (");
    serial_write(kExceptionNames[f.vector & 31]);
    serial_write(")\n");
    dump_register("error", f.error_code);
    dump_register(" rip", f.rip);
    dump_register(" rsp", f.rsp);
    dump_register(" cr2", cr2);
    serial_write("\n");
    dump_register("rflags", f.rflags);
    dump_register(" cs", f.cs);
    dump_register(" ss", f.ss);
    serial_write("\n");
    dump_register("rax", f.rax);
    dump_register(" rbx", f.rbx);
    dump_register(" rcx", f.rcx);
    dump_register(" rdx", f.rdx);
    serial_write("\n");
    dump_register("rsi", f.rsi);
    dump_register(" rdi", f.rdi);
    dump_register(" rbp", f.rbp);
    dump_register(" r8 ", f.r8);
    serial_write("\n");
    dump_register("r9 ", f.r9);
    dump_register(" r10", f.r10);
    dump_register(" r11", f.r11);
    dump_register(" r12", f.r12);
    serial_write("\n");
    dump_register("r13", f.r13);
    dump_register(" r14", f.r14);
    dump_register(" r15", f.r15);
    serial_write("\n*** where: addr2line -C -f -e <build>/kernel/kernel64.elf ");
    serial_write_hex(f.rip);
    serial_write("\n*** stopping (exit status 37)\n");
    debug_exit(kExitValueException);
}

}  // namespace

void cpu_init() {
    gdt[0] = 0;
    gdt[1] = 0x00209A0000000000;  // 64-bit code, ring 0
    gdt[2] = 0x0000920000000000;  // data, ring 0
    tss.ist[0] = uint64_t(double_fault_stack + kDoubleFaultStackBytes);
    tss.iomap_base = sizeof(Tss);  // no I/O permission bitmap
    uint64_t base = uint64_t(&tss);
    uint64_t limit = sizeof(Tss) - 1;
    gdt[3] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (uint64_t(0x89) << 40) |
             (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);  // available 64-bit TSS
    gdt[4] = base >> 32;
    TablePointer gp{sizeof(gdt) - 1, uint64_t(gdt)};
    asm volatile(
        "lgdt %0\n"
        "pushq %1\n"
        "leaq 1f(%%rip), %%rax\n"
        "pushq %%rax\n"
        "lretq\n"
        "1:\n"
        "movw %2, %%ax\n"
        "movw %%ax, %%ds\n"
        "movw %%ax, %%es\n"
        "movw %%ax, %%ss\n"
        :
        : "m"(gp), "i"(uint64_t(kKernelCode)), "i"(kKernelData)
        : "rax", "memory");
    asm volatile("ltr %0" : : "r"(kTssSelector));

    for (size_t v = 0; v < kStubsCount; ++v)
        set_gate(uint8_t(v), x86_isr_stubs[v], v == kDoubleFaultVector ? 1 : 0);
    TablePointer ip{sizeof(idt) - 1, uint64_t(idt)};
    asm volatile("lidt %0" : : "m"(ip));
}

[[noreturn]] void debug_exit(uint32_t value) {
    outl(kDebugExitPort, value);
    // Only reached without the isa-debug-exit device (a misconfigured QEMU): say so and stop.
    serial_write("\n*** isa-debug-exit device missing at port 0xf4; halting\n");
    for (;;) asm volatile("cli; hlt");
}

}  // namespace x86

extern "C" void x86_interrupt_dispatch(x86::InterruptFrame* frame) {
    using namespace x86;
    uint64_t v = frame->vector;
    if (v < 32) exception(*frame);
    pic_interrupt(uint8_t(v - kIrqVectorBase));
}
