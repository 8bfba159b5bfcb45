// The kernel side of the lwIP port's hooks (see port_hooks.h): clock, console, fatal errors and
// frame transmission. Called from the net thread only (lwIP's one execution context).
#include "lwip_port/port_hooks.h"

#include "arch/arch.h"
#include "drivers/nic.h"
#include "net_thread.h"
#include "panic.h"

#include "lwip/pbuf.h"

extern "C" {

uint64_t net_port_now_ns(void) { return net::net_pass_now_ns(); }

void net_port_console(const char* text) { kernel::print("%s", text); }

void net_port_fatal(const char* what, const char* message, const char* file, int line) {
    kernel::print("%s: %s at %s:%d\n", what, message, file, line);
    kernel::panic(what);
}

int net_port_transmit(void* driver, struct pbuf* p, size_t length) {
    auto fill = [](void* chain, uint8_t* dst, size_t n) {
        pbuf_copy_partial(static_cast<struct pbuf*>(chain), dst, static_cast<u16_t>(n), 0);
    };
    net::net_note_transmit();
    return net::nic_transmit_with(static_cast<net::Nic*>(driver), length, fill, p) ? 0 : -1;
}

}  // extern "C"
