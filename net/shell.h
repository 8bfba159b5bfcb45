// A small command reader on the serial console (COM1). Commands live in one bounded table;
// other areas add theirs with shell_register() before shell_run() (issue 8 extends it).
// Output lines that tests parse start with the command's name and a colon.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace net {

constexpr size_t kShellCommandsMax = 32;
constexpr size_t kShellLineBytes = 160;
constexpr size_t kShellArgsMax = 8;
constexpr size_t kSerialInputBytes = 512;   // received characters not yet read; more are dropped

struct ShellCommand {
    const char* name;
    const char* usage;      // e.g. "ping IP [COUNT] [INTERVAL_MS]"
    const char* help;       // one line
    void (*run)(int argc, char** argv);
};

// false when the table is full (kShellCommandsMax) or the name is taken.
bool shell_register(const ShellCommand& command);
// Starts reading COM1 (receive interrupt on IRQ 4) and runs commands for ever, in the caller's
// thread. prompt_name prefixes the prompt ("node1> ").
[[noreturn]] void shell_run(const char* prompt_name);

}  // namespace net
