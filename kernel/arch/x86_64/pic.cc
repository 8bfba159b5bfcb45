// The 8259 PIC pair, remapped to vectors 0x20-0x2f, and the drivers' handler table.
// QEMU's SeaBIOS (which runs before -kernel's multiboot loader) routes the PCI INTx lines through
// the PIIX3 to PIC lines and marks them level-triggered in the ELCR; the line number it chose is
// in each device's PCI interrupt-line register.
#include "cpu.h"
#include "platform.h"

namespace x86 {
namespace {

constexpr uint16_t kMasterCommand = 0x20;
constexpr uint16_t kMasterData = 0x21;
constexpr uint16_t kSlaveCommand = 0xa0;
constexpr uint16_t kSlaveData = 0xa1;
constexpr uint8_t kEndOfInterrupt = 0x20;
constexpr uint8_t kReadInService = 0x0b;
constexpr uint8_t kSpuriousLine = 7;  // of either chip (lines 7 and 15)

struct Handler {
    void (*function)(void* ctx);
    void* ctx;
    bool (*quiet)(void* ctx);  // may be null
    uint8_t line;
};
static_assert(kIrqHandlersMax <= 32, "pic_interrupt keeps one bit per handler");
Handler handlers[kIrqHandlersMax];
size_t handlers_count = 0;
uint16_t mask = 0xffff;  // bit set = line masked
uint64_t spurious = 0;

void write_mask() {
    outb(kMasterData, uint8_t(mask));
    outb(kSlaveData, uint8_t(mask >> 8));
}

uint8_t in_service(uint16_t command_port) {
    outb(command_port, kReadInService);
    return inb(command_port);
}

}  // namespace

void pic_init() {
    outb(kMasterCommand, 0x11);  // ICW1: edge (per-line levels come from the ELCR), cascade, ICW4
    outb(kSlaveCommand, 0x11);
    outb(kMasterData, kIrqVectorBase);      // ICW2: vector offsets
    outb(kSlaveData, kIrqVectorBase + 8);
    outb(kMasterData, 1 << kCascadeIrqLine);  // ICW3: slave on line 2
    outb(kSlaveData, kCascadeIrqLine);
    outb(kMasterData, 0x01);  // ICW4: 8086 mode
    outb(kSlaveData, 0x01);
    mask = uint16_t(~((1u << kTimerIrqLine) | (1u << kCascadeIrqLine)));
    write_mask();
}

void pic_unmask(uint8_t line) {
    mask = uint16_t(mask & ~(1u << line));
    write_mask();
}

void pic_interrupt(uint8_t line) {
    // A line that dropped before the CPU took it shows up as line 7 of its chip with no
    // in-service bit: acknowledge nothing on that chip (but the master did see the cascade).
    if ((line & 7) == kSpuriousLine) {
        uint16_t chip = line < 8 ? kMasterCommand : kSlaveCommand;
        if ((in_service(chip) & (1u << kSpuriousLine)) == 0) {
            ++spurious;
            if (line >= 8) outb(kMasterCommand, kEndOfInterrupt);
            return;
        }
    }
    // The devices first (their lines drop), then the PIC, then the handlers (which may switch
    // threads): see irq_register.
    uint32_t raised = 0;
    if (line != kTimerIrqLine) {
        for (size_t i = 0; i < handlers_count; ++i) {
            const Handler& h = handlers[i];
            if (h.line == line && (!h.quiet || h.quiet(h.ctx))) raised |= 1u << i;
        }
    }
    if (line >= 8) outb(kSlaveCommand, kEndOfInterrupt);
    outb(kMasterCommand, kEndOfInterrupt);
    if (line == kTimerIrqLine) {
        timer_interrupt();
        return;
    }
    for (size_t i = 0; raised; ++i, raised >>= 1)
        if (raised & 1) handlers[i].function(handlers[i].ctx);
}

uint64_t irq_spurious_count() { return spurious; }

bool irq_register(uint8_t irq_line, void (*handler)(void* ctx), void* ctx, bool (*quiet)(void* ctx)) {
    if (irq_line >= kIrqLines || irq_line == kTimerIrqLine || irq_line == kCascadeIrqLine ||
        handler == nullptr)
        return false;
    uint64_t flags;
    asm volatile("pushfq; popq %0; cli" : "=r"(flags) : : "memory");
    bool ok = handlers_count < kIrqHandlersMax;
    if (ok) {
        handlers[handlers_count++] = Handler{handler, ctx, quiet, irq_line};
        pic_unmask(irq_line);
    }
    if (flags & (1u << 9)) asm volatile("sti" : : : "memory");
    return ok;
}

}  // namespace x86
