// What g++ may call in freestanding code: the mem* routines (struct copies and
// initialisations) and the C++ ABI's few hooks. All weak, so the portable kernel may provide
// its own (kernel-core's copy routine, say) without a clash.
#include <stddef.h>
#include <stdint.h>

#include "cpu.h"
#include "platform.h"

extern "C" {

// Eight bytes per step, then the tail: under QEMU TCG every step of a rep string instruction is
// a trip through translated code, so rep movsb moved 1 byte per trip and bulk copies (packets,
// messages) cost 8x what rep movsq costs (measured: a 1 MiB echo over the bridge).
__attribute__((weak)) void* memcpy(void* dst, const void* src, size_t n) {
    void* d = dst;
    size_t words = n >> 3, tail = n & 7;
    asm volatile("rep movsq" : "+D"(d), "+S"(src), "+c"(words) : : "memory");
    asm volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(tail) : : "memory");
    return dst;
}

__attribute__((weak)) void* memset(void* dst, int c, size_t n) {
    void* d = dst;
    size_t words = n >> 3, tail = n & 7;
    const uint64_t pattern = uint64_t(uint8_t(c)) * 0x0101010101010101ull;
    asm volatile("rep stosq" : "+D"(d), "+c"(words) : "a"(pattern) : "memory");
    asm volatile("rep stosb" : "+D"(d), "+c"(tail) : "a"(pattern) : "memory");
    return dst;
}

__attribute__((weak)) void* memmove(void* dst, const void* src, size_t n) {
    auto* d = static_cast<uint8_t*>(dst);
    auto* s = static_cast<const uint8_t*>(src);
    if (d <= s || d >= s + n) return memcpy(dst, src, n);
    // Overlapping with dst above src: copy backwards (direction flag set only for this copy).
    d += n - 1;
    s += n - 1;
    asm volatile("std; rep movsb; cld" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
    return dst;
}

__attribute__((weak)) int memcmp(const void* a, const void* b, size_t n) {
    auto* x = static_cast<const uint8_t*>(a);
    auto* y = static_cast<const uint8_t*>(b);
    for (size_t i = 0; i < n; ++i)
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    return 0;
}

__attribute__((weak)) size_t strlen(const char* s) {
    size_t n = 0;
    while (s[n]) ++n;
    return n;
}

// Static objects with destructors register them here; the kernel never ends, so none runs.
__attribute__((weak)) void* __dso_handle = nullptr;
__attribute__((weak)) int __cxa_atexit(void (*)(void*), void*, void*) { return 0; }

__attribute__((weak)) void __cxa_pure_virtual() {
    x86::serial_write("x86: pure virtual function called\n");
    x86::debug_exit(x86::kExitValueFailure);
}

}  // extern "C"
