// x86_boot_main: called by boot.S in long mode on the boot stack with interrupts disabled.
// Sets up the CPU tables, serial, PIC, timer and memory, takes the command line from the
// multiboot information, then hands over to kernel::start.
#include "arch.h"
#include "cpu.h"
#include "platform.h"

extern "C" {
using Constructor = void (*)();
extern Constructor __init_array_start[];  // linker.ld
extern Constructor __init_array_end[];
}

namespace x86 {
namespace {

constexpr uint32_t kMultibootLoaderMagic = 0x2BADB002;
constexpr uint32_t kMultibootFlagCommandLine = 1u << 2;
constexpr size_t kCommandLineBytesMax = 1024;

char command_line[kCommandLineBytesMax];

// The loader's command line is "<kernel file name> <-append text>": keep the text after the
// first word. Copied now, because the heap will reuse the memory the loader put it in.
void take_command_line(uint32_t multiboot_info) {
    auto* flags = reinterpret_cast<const uint32_t*>(uintptr_t(multiboot_info));
    auto* cmdline_address = reinterpret_cast<const uint32_t*>(uintptr_t(multiboot_info) + 16);
    command_line[0] = '\0';
    if ((*flags & kMultibootFlagCommandLine) == 0) return;
    const char* s = reinterpret_cast<const char*>(uintptr_t(*cmdline_address));
    while (*s && *s != ' ') ++s;  // the file name
    while (*s == ' ') ++s;
    size_t n = 0;
    while (s[n] && n + 1 < kCommandLineBytesMax) {
        command_line[n] = s[n];
        ++n;
    }
    command_line[n] = '\0';
    if (s[n]) serial_write("x86: command line longer than 1023 bytes, truncated\n");
}

// Finds "key=value" as a whole word and returns value's start (nullptr if absent).
const char* find_option(const char* key) {
    for (const char* w = command_line; *w;) {
        while (*w == ' ') ++w;
        const char* k = key;
        const char* p = w;
        while (*k && *p == *k) ++p, ++k;
        if (*k == '\0' && *p == '=') return p + 1;
        while (*w && *w != ' ') ++w;
    }
    return nullptr;
}

bool value_is(const char* value, const char* expected) {
    while (*expected && *value == *expected) ++value, ++expected;
    return *expected == '\0' && (*value == '\0' || *value == ' ');
}

// `crash=ud2|pf|df|null`: the harness's check that a CPU exception gives a register dump and the
// exception exit status (tests/qemu). Runs before kernel::start, so the kernel's own
// command-line parser never sees the key.
void crash_if_asked() {
    const char* v = find_option("crash");
    if (!v) return;
    serial_write("x86: crash requested by the command line\n");
    if (value_is(v, "ud2")) asm volatile("ud2");
    // Above the 4 GiB identity map: not present.
    if (value_is(v, "pf")) *reinterpret_cast<volatile uint64_t*>(0x10000000000ull) = 0x5a;
    // Page 0 is left unmapped so that a null pointer faults.
    if (value_is(v, "null")) {
        volatile uint64_t* volatile null_pointer = nullptr;
        (void)null_pointer[1];
    }
    // #UD whose frame cannot be pushed (unmapped stack) -> #PF, same -> #DF on its IST stack.
    if (value_is(v, "df")) asm volatile("movq $0x10000000000, %rsp; ud2");
    serial_write("x86: unknown crash= value (known: ud2, pf, df, null)\n");
    debug_exit(kExitValueFailure);
}

}  // namespace
}  // namespace x86

extern "C" [[noreturn]] void x86_boot_main(uint32_t magic, uint32_t multiboot_info) {
    using namespace x86;
    serial_init();
    cpu_init();
    if (magic != kMultibootLoaderMagic) {
        serial_write("x86: not started by a multiboot loader\n");
        debug_exit(kExitValueFailure);
    }
    take_command_line(multiboot_info);
    kernel::BootInfo boot{command_line, nullptr, 0};
    if (!memory_init(multiboot_info, &boot.heap_base, &boot.heap_bytes)) debug_exit(kExitValueFailure);
    pic_init();
    timer_init();
    for (Constructor* c = __init_array_start; c != __init_array_end; ++c) (*c)();
    crash_if_asked();
    serial_write("x86: heap ");
    serial_write_decimal(boot.heap_bytes >> 10);
    serial_write(" KiB, DMA pool ");
    serial_write_decimal(kDmaPoolBytes >> 10);
    serial_write(" KiB; command line: ");
    serial_write(command_line);
    serial_write("\n");
    kernel::start(boot);
}
