// The kernel heap: first fit over the one region BootInfo gives, with neighbours coalesced on
// free. Every allocation can fail (nullptr) and callers check it. Data paths (send, receive,
// reply, pulse) never allocate; tests assert that through allocation_count().
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace kernel::heap {

constexpr size_t kAlignBytes = 16;

void init(void* base, size_t bytes);
// nullptr when no free block is large enough (or bytes is 0).
[[nodiscard]] void* allocate(size_t bytes);
void release(void* block);  // nullptr is ignored

struct Stats {
    uint64_t allocation_count;  // successful allocate() calls since init
    uint64_t failure_count;     // allocate() calls that returned nullptr
    size_t bytes_in_use;        // payload bytes currently allocated
    size_t bytes_in_use_high;   // the most bytes_in_use has been since init
    size_t bytes_total;         // size of the region
    size_t blocks_in_use;
};
Stats stats();

}  // namespace kernel::heap
