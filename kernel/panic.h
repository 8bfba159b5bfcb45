// Console output and the kernel's last resort.
#pragma once

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

namespace kernel {

// printf subset: %s %c %d %u %x %p %%, with l/ll/z length modifiers and a field width
// ("%8u", "%-12s", "%08x"). Output goes to arch::console_write; nothing is allocated.
void print(const char* format, ...) __attribute__((format(printf, 1, 2)));
void vprint(const char* format, va_list args);
// Formats into buffer (always NUL-terminated); returns the length written.
size_t format(char* buffer, size_t size, const char* format, ...) __attribute__((format(printf, 3, 4)));

// An invariant broke: prints the reason and ends the machine with kExitPanic.
[[noreturn]] void panic(const char* reason);

// Exit statuses the kernel passes to arch::exit (a port maps them to its own encoding).
constexpr int kExitSuccess = 0;
constexpr int kExitTestsFailed = 1;
constexpr int kExitBadCommandLine = 2;
constexpr int kExitPanic = 3;
constexpr int kExitDeadlock = 4;  // every thread blocked with no deadline (hosted port only)

#define KERNEL_ASSERT(cond)                                                    \
    do {                                                                       \
        if (!(cond)) ::kernel::panic("assertion failed: " #cond " at " __FILE__); \
    } while (0)

}  // namespace kernel
