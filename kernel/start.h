// What kernel::start offers the rest of the kernel (the network node, the console shell).
#pragma once

#include "command_line.h"

namespace kernel {

// The parsed boot command line (valid after start).
const CommandLine& command_line();

// The network node's entry point, run in the main thread when the command line asks for no test
// or benchmark. Returns the machine's exit status. The kernel's weak default prints a line and
// returns 0; the node (net/) provides the real one.
int node_main(const CommandLine& command_line);

}  // namespace kernel
