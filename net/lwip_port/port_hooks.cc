// The kernel side of the lwIP port's hooks (see port_hooks.h): clock, console, fatal errors and
// frame transmission. Called from the net thread only (lwIP's one execution context).
#include "lwip_port/port_hooks.h"

#include "arch/arch.h"
#include "drivers/nic.h"
#include "panic.h"

extern "C" {

uint64_t net_port_now_ns(void) { return arch::now_ns(); }

void net_port_console(const char* text) { kernel::print("%s", text); }

void net_port_fatal(const char* what, const char* message, const char* file, int line) {
    kernel::print("%s: %s at %s:%d\n", what, message, file, line);
    kernel::panic(what);
}

int net_port_transmit(void* driver, const void* frame, size_t length) {
    return net::nic_transmit(static_cast<net::Nic*>(driver), frame, length) ? 0 : -1;
}

}  // extern "C"
