/*
 * The C interface between our lwIP port (C, lwIP conventions) and the kernel side (C++).
 * Everything here is called only from the net thread, except where a comment says otherwise.
 */
#ifndef SMP_NET_PORT_HOOKS_H
#define SMP_NET_PORT_HOOKS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct netif;

/* Implemented in C++ (port_hooks.cc). */
uint64_t net_port_now_ns(void);
void net_port_console(const char *text);
void net_port_fatal(const char *what, const char *message, const char *file, int line);
struct pbuf;
/* Hands one Ethernet frame (a pbuf chain of length bytes) to the NIC driver, which copies it
 * once into a TX slot. Returns 0 when queued, -1 when the frame is too large or the TX ring is
 * full (the frame is dropped and counted). */
int net_port_transmit(void *driver, struct pbuf *p, size_t length);

/* Implemented in C (sys_arch.c, ethernetif.c). */
void lwip_port_seed(uint64_t seed);
/* Sets up the netif: MAC, MTU, flags; driver is the opaque NIC passed to net_port_transmit. */
int net_port_netif_add(struct netif *netif, void *driver, const uint8_t mac[6], uint32_t ip_be,
                       uint32_t netmask_be);
/* Copies one received frame into a pbuf chain and feeds it to lwIP. Returns 0 on success, -1
 * when lwIP had no pbuf for it (the frame is dropped; the caller counts it). */
int net_port_netif_input(struct netif *netif, const void *frame, size_t length);

#ifdef __cplusplus
}
#endif

#endif /* SMP_NET_PORT_HOOKS_H */
