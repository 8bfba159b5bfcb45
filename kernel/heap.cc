#include "heap.h"

#include "arch/arch.h"
#include "panic.h"
#include "sanitizer.h"

namespace kernel::heap {
namespace {

// Every block, free or used, starts with this header; blocks tile the region in address order.
struct Block {
    size_t size;        // payload bytes after the header (multiple of kAlignBytes)
    Block* next_free;   // only while free
    uint32_t magic;     // kMagicFree or kMagicUsed: catches double free and wild pointers
    uint32_t pad;
    uint64_t reserved;  // keeps payloads 16-byte aligned
};
static_assert(sizeof(Block) % kAlignBytes == 0);
constexpr uint32_t kMagicFree = 0x46524545;  // "FREE"
constexpr uint32_t kMagicUsed = 0x55534544;  // "USED"

char* g_base = nullptr;
char* g_end = nullptr;
Block* g_free = nullptr;  // free list in address order, so neighbours coalesce on release
Stats g_stats{};

size_t round_up(size_t v) { return (v + kAlignBytes - 1) & ~(kAlignBytes - 1); }
Block* after(Block* b) { return reinterpret_cast<Block*>(reinterpret_cast<char*>(b + 1) + b->size); }

}  // namespace

void init(void* base, size_t bytes) {
    uintptr_t start = (reinterpret_cast<uintptr_t>(base) + kAlignBytes - 1) & ~(kAlignBytes - 1);
    uintptr_t end = (reinterpret_cast<uintptr_t>(base) + bytes) & ~(kAlignBytes - 1);
    g_stats = Stats{};
    g_free = nullptr;
    g_base = reinterpret_cast<char*>(start);
    g_end = reinterpret_cast<char*>(end);
    if (end <= start + 2 * sizeof(Block)) return;  // no usable heap: every allocation fails
    g_free = reinterpret_cast<Block*>(start);
    g_free->size = end - start - sizeof(Block);
    g_free->next_free = nullptr;
    g_free->magic = kMagicFree;
    g_stats.bytes_total = end - start;
}

void* allocate(size_t bytes) {
    uint64_t irq = arch::irq_save();
    size_t want = round_up(bytes);
    Block** link = &g_free;
    while (bytes != 0 && want >= bytes && *link && (*link)->size < want) link = &(*link)->next_free;
    Block* b = (bytes != 0 && want >= bytes) ? *link : nullptr;
    if (!b) {
        ++g_stats.failure_count;
        arch::irq_restore(irq);
        return nullptr;
    }
    if (b->size >= want + sizeof(Block) + kAlignBytes) {
        // Split: the tail stays free, in b's place in the address-ordered list.
        Block* rest = reinterpret_cast<Block*>(reinterpret_cast<char*>(b + 1) + want);
        KERNEL_ASAN_UNPOISON(rest, sizeof(Block));
        rest->size = b->size - want - sizeof(Block);
        rest->next_free = b->next_free;
        rest->magic = kMagicFree;
        b->size = want;
        *link = rest;
    } else {
        *link = b->next_free;
    }
    b->magic = kMagicUsed;
    b->next_free = nullptr;
    ++g_stats.allocation_count;
    g_stats.bytes_in_use += b->size;
    if (g_stats.bytes_in_use > g_stats.bytes_in_use_high)
        g_stats.bytes_in_use_high = g_stats.bytes_in_use;
    // Freed payloads are poisoned (ASan build): a kernel use-after-free is reported. This also
    // clears stack redzones that a dead thread's frames left behind.
    KERNEL_ASAN_UNPOISON(b + 1, b->size);
    ++g_stats.blocks_in_use;
    arch::irq_restore(irq);
    return b + 1;
}

void release(void* block) {
    if (!block) return;
    uint64_t irq = arch::irq_save();
    Block* b = static_cast<Block*>(block) - 1;
    if (reinterpret_cast<char*>(b) < g_base || reinterpret_cast<char*>(b) >= g_end ||
        b->magic != kMagicUsed) {
        panic("heap: release of a block the heap does not own (or a double free)");
    }
    g_stats.bytes_in_use -= b->size;
    --g_stats.blocks_in_use;
    b->magic = kMagicFree;
    KERNEL_ASAN_POISON(b + 1, b->size);
    Block* prev = nullptr;
    Block* cur = g_free;
    while (cur && cur < b) {
        prev = cur;
        cur = cur->next_free;
    }
    b->next_free = cur;
    if (prev) prev->next_free = b; else g_free = b;
    if (cur && after(b) == cur) {  // merge with the following free block
        b->size += sizeof(Block) + cur->size;
        b->next_free = cur->next_free;
    }
    if (prev && after(prev) == b) {  // merge into the preceding free block
        prev->size += sizeof(Block) + b->size;
        prev->next_free = b->next_free;
    }
    arch::irq_restore(irq);
}

Stats stats() {
    uint64_t irq = arch::irq_save();
    Stats s = g_stats;
    arch::irq_restore(irq);
    return s;
}

}  // namespace kernel::heap
