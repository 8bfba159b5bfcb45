// AddressSanitizer annotations for the hosted port's ASan build; empty everywhere else.
#pragma once

#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__)
#define KERNEL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KERNEL_ASAN 1
#endif
#endif

#ifdef KERNEL_ASAN
extern "C" void __asan_poison_memory_region(void const volatile* addr, size_t size);
extern "C" void __asan_unpoison_memory_region(void const volatile* addr, size_t size);
#define KERNEL_ASAN_POISON(addr, size) __asan_poison_memory_region((addr), (size))
#define KERNEL_ASAN_UNPOISON(addr, size) __asan_unpoison_memory_region((addr), (size))
#else
#define KERNEL_ASAN_POISON(addr, size) ((void)(addr), (void)(size))
#define KERNEL_ASAN_UNPOISON(addr, size) ((void)(addr), (void)(size))
#endif
