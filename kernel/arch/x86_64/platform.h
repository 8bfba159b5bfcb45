// The x86_64 port's platform API for device drivers (NICs): port I/O, PCI configuration space,
// legacy interrupt lines, and memory for DMA. Single CPU; everything here may be called from any
// kernel thread, and the port-I/O and PCI helpers also from interrupt context.
//
// Memory model: the port identity-maps the first 4 GiB of physical memory (2 MiB pages, kernel
// linked at 1 MiB), so a kernel pointer IS its physical address for everything below 4 GiB:
// the heap, static data, stacks and the DMA pool. PCI MMIO BARs placed below 4 GiB (where SeaBIOS
// puts them on QEMU's i440fx machine) are reachable directly through phys_to_virt(bar_address).
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace x86 {

// ---- Port I/O -------------------------------------------------------------------------------
inline uint8_t inb(uint16_t port) {
    uint8_t v;
    asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
inline uint16_t inw(uint16_t port) {
    uint16_t v;
    asm volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
inline uint32_t inl(uint16_t port) {
    uint32_t v;
    asm volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
inline void outb(uint16_t port, uint8_t v) { asm volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
inline void outw(uint16_t port, uint16_t v) { asm volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
inline void outl(uint16_t port, uint32_t v) { asm volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }

// ---- PCI configuration space (mechanism #1, ports 0xcf8/0xcfc) ------------------------------
// offset is rounded down to a multiple of 4. Reading a slot with no device returns 0xffffffff.
uint32_t pci_config_read32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t offset);
void pci_config_write32(uint8_t bus, uint8_t dev, uint8_t fn, uint8_t offset, uint32_t value);

// ---- Legacy interrupt lines (8259 PIC pair, remapped to vectors 0x20-0x2f) -------------------
// Runs handler(ctx) in interrupt context (interrupts disabled) for a legacy IRQ line (0-15, as
// read from PCI's interrupt-line register, config offset 0x3c, low byte). The port acknowledges
// the interrupt controller BEFORE calling the handlers (so a handler may wake a thread and the
// kernel may switch threads on the way out). Before that acknowledgement it calls quiet(ctx), if
// given: it must acknowledge the interrupt at the device (lowering a level-triggered line) and
// say whether the device had raised it (false: handler is not called). A level-triggered PCI
// line still asserted at the acknowledgement fires again at once; on a line behind the slave
// PIC, one quieted just after fires as a spurious IRQ 15 instead (the master latched the
// cascade's edge): an interrupt entry and three port accesses more per interrupt, which
// quiet() saves. Shared lines allowed (several handlers per line: every quiet() first, then the
// handlers whose device raised it, in registration order; if one wakes a higher-priority thread
// and the kernel switches to it at once, the line's later handlers run when the interrupted
// thread resumes). Unmasks the line.
// Returns false if the table is full (kIrqHandlersMax) or the line is out of range, or is line 0
// (the port's timer) or 2 (the PIC cascade).
constexpr size_t kIrqHandlersMax = 16;
bool irq_register(uint8_t irq_line, void (*handler)(void* ctx), void* ctx,
                  bool (*quiet)(void* ctx) = nullptr);
// Interrupts the PIC reported as spurious (line 7 or 15 with nothing in service), since boot.
uint64_t irq_spurious_count();

// ---- Memory for DMA -------------------------------------------------------------------------
// Identity mapping below 4 GiB (see the top of this file): these are casts, checked nowhere.
uintptr_t virt_to_phys(const void* p);
void* phys_to_virt(uintptr_t pa);
// Physically contiguous, zeroed, aligned (align: a power of two, at most 4096 is typical; any
// power of two works) memory for DMA rings and buffers, from a pool of kDmaPoolBytes reserved at
// boot. For start-up only: never freed. nullptr when exhausted or align is not a power of two.
constexpr size_t kDmaPoolBytes = 4u << 20;
void* dma_alloc(size_t bytes, size_t align);
// Bytes of the DMA pool still free (for drivers' start-up messages and the shell's stats).
size_t dma_free_bytes();

// ---- Diagnostics ----------------------------------------------------------------------------
// Writes text to COM1 (and first to COM2 when a UART is there: a cluster node's log), usable
// before kernel::start and from interrupt context (polled UARTs).
void serial_write(const char* text, size_t length);
void serial_write(const char* text);  // NUL-terminated
// Writes "0x" and 16 hex digits (no allocation; for dumps).
void serial_write_hex(uint64_t value);
void serial_write_decimal(uint64_t value);

}  // namespace x86
