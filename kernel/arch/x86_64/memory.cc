// Physical memory at boot: the multiboot memory map gives the usable RAM above the kernel image;
// the first kDmaPoolBytes of it become the DMA pool, the rest the kernel heap. Everything below
// 4 GiB is identity-mapped (boot.S), so addresses are physical addresses.
#include "cpu.h"
#include "platform.h"

extern "C" char __kernel_end[];  // linker.ld

namespace x86 {
namespace {

constexpr uint32_t kMultibootFlagMemoryMap = 1u << 6;
constexpr uint32_t kMemoryAvailable = 1;
constexpr uint64_t kIdentityMappedEnd = 4ull << 30;
constexpr size_t kHeapBytesMin = 1u << 20;
constexpr size_t kMemoryMapEntriesMax = 128;  // bounds the walk over a corrupt map

struct __attribute__((packed)) MultibootInfo {
    uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
    uint32_t syms[4];
    uint32_t mmap_length, mmap_addr;
};
struct __attribute__((packed)) MemoryMapEntry {
    uint32_t size;  // of the rest of the entry
    uint64_t base, length;
    uint32_t type;
};

uintptr_t dma_next = 0;
uintptr_t dma_end = 0;

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) & ~(a - 1); }

}  // namespace

bool memory_init(uint32_t multiboot_info, void** heap_base, size_t* heap_bytes) {
    auto* mbi = reinterpret_cast<const MultibootInfo*>(uintptr_t(multiboot_info));
    if ((mbi->flags & kMultibootFlagMemoryMap) == 0) {
        serial_write("x86: the boot loader gave no memory map\n");
        return false;
    }
    // The largest available range above the kernel image wins (with QEMU: 1 MiB to the end of
    // RAM minus ACPI's few pages). The multiboot structures themselves lie just above the image;
    // boot.cc copied what it needs (the command line) before this memory is reused.
    uint64_t kernel_end = align_up(uintptr_t(__kernel_end), 4096);
    uint64_t best_base = 0, best_end = 0;
    uintptr_t p = mbi->mmap_addr, end = uintptr_t(mbi->mmap_addr) + mbi->mmap_length;
    for (size_t n = 0; p < end && n < kMemoryMapEntriesMax; ++n) {
        auto* e = reinterpret_cast<const MemoryMapEntry*>(p);
        uint64_t base = e->base, top = e->base + e->length;
        if (top > kIdentityMappedEnd) top = kIdentityMappedEnd;  // FIXME: RAM above 4 GiB unused
        if (base < kernel_end) base = kernel_end;
        if (e->type == kMemoryAvailable && top > base && top - base > best_end - best_base) {
            best_base = base;
            best_end = top;
        }
        p += e->size + sizeof(e->size);
    }
    best_end &= ~uint64_t(4095);
    if (best_end < best_base + kDmaPoolBytes + kHeapBytesMin) {
        serial_write("x86: not enough memory for the DMA pool and a heap (give QEMU more -m)\n");
        return false;
    }
    dma_next = best_base;
    dma_end = best_base + kDmaPoolBytes;
    *heap_base = reinterpret_cast<void*>(dma_end);
    *heap_bytes = size_t(best_end - dma_end);
    return true;
}

uintptr_t virt_to_phys(const void* p) { return reinterpret_cast<uintptr_t>(p); }

void* phys_to_virt(uintptr_t pa) { return reinterpret_cast<void*>(pa); }

void* dma_alloc(size_t bytes, size_t align) {
    if (align == 0 || (align & (align - 1)) != 0) return nullptr;
    uint64_t flags;
    asm volatile("pushfq; popq %0; cli" : "=r"(flags) : : "memory");
    uintptr_t start = align_up(dma_next, align);
    void* result = nullptr;
    if (start >= dma_next && start <= dma_end && bytes <= dma_end - start) {
        dma_next = start + bytes;
        result = reinterpret_cast<void*>(start);
    }
    if (flags & (1u << 9)) asm volatile("sti" : : : "memory");
    if (result) {
        auto* b = static_cast<volatile uint8_t*>(result);
        for (size_t i = 0; i < bytes; ++i) b[i] = 0;
    }
    return result;
}

size_t dma_free_bytes() { return dma_end - dma_next; }

}  // namespace x86
