// What g++ may call in freestanding code: the mem* routines (struct copies and
// initialisations) and the C++ ABI's few hooks. All weak, so the portable kernel may provide
// its own (kernel-core's copy routine, say) without a clash.
#include <stddef.h>
#include <stdint.h>

#include "cpu.h"
#include "platform.h"

extern "C" {

__attribute__((weak)) void* memcpy(void* dst, const void* src, size_t n) {
    void* d = dst;
    asm volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
    return dst;
}

__attribute__((weak)) void* memset(void* dst, int c, size_t n) {
    void* d = dst;
    asm volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
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
