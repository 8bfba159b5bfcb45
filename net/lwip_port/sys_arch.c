/*
 * lwIP's system hooks for NO_SYS mode: the clock (sys_now), diagnostics, assertions and the
 * random numbers lwIP uses for ports and sequence numbers. The kernel side of each is a small
 * C function implemented in net/lwip_port/port_hooks.cc.
 */
#include "lwip/opt.h"
#include "lwip/sys.h"
#include "arch/cc.h"

#include "port_hooks.h"

u32_t sys_now(void)
{
  return (u32_t)(net_port_now_ns() / 1000000u);
}

void lwip_port_diag(const char *message)
{
  net_port_console("lwip: ");
  net_port_console(message);
}

void lwip_port_assert(const char *message, const char *file, int line)
{
  net_port_fatal("lwIP assertion failed", message, file, line);
}

/* xorshift64*: seeded once from the cycle counter and the MAC, enough for ports and ISNs. */
static uint64_t rand_state;

void lwip_port_seed(uint64_t seed)
{
  rand_state = seed ? seed : 0x9e3779b97f4a7c15ull;
}

uint32_t lwip_port_rand(void)
{
  rand_state ^= rand_state >> 12;
  rand_state ^= rand_state << 25;
  rand_state ^= rand_state >> 27;
  return (uint32_t)((rand_state * 0x2545f4914f6cdd1dull) >> 32);
}
