/*
 * Ethernet interface glue between lwIP and our NIC drivers (the shape of lwIP's
 * contrib/examples/ethernetif skeleton, written for simplemsg). Runs only in the net thread.
 */
#include "lwip/opt.h"
#include "lwip/def.h"
#include "lwip/pbuf.h"
#include "lwip/netif.h"
#include "lwip/etharp.h"
#include "lwip/ip4_addr.h"
#include "netif/ethernet.h"

#include <string.h>

#include "port_hooks.h"

#define IFNAME0 'e'
#define IFNAME1 'n'
static void *netif_driver;
static u8_t netif_mac[ETH_HWADDR_LEN];

static err_t low_level_output(struct netif *netif, struct pbuf *p)
{
  /* The driver copies the chain once, straight into its TX slot. */
  LWIP_UNUSED_ARG(netif);
  if (net_port_transmit(netif_driver, p, p->tot_len) != 0) {
    return ERR_MEM;
  }
  return ERR_OK;
}

static err_t ethernetif_init(struct netif *netif)
{
  netif->name[0] = IFNAME0;
  netif->name[1] = IFNAME1;
  netif->output = etharp_output;
  netif->linkoutput = low_level_output;
  netif->mtu = 1500;
  netif->hwaddr_len = ETH_HWADDR_LEN;
  memcpy(netif->hwaddr, netif_mac, ETH_HWADDR_LEN);
  netif->flags = NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP | NETIF_FLAG_ETHERNET |
                 NETIF_FLAG_LINK_UP;
  return ERR_OK;
}

int net_port_netif_add(struct netif *netif, void *driver, const uint8_t mac[6], uint32_t ip_be,
                       uint32_t netmask_be)
{
  ip4_addr_t ip, mask, gw;
  netif_driver = driver;
  ip.addr = ip_be;
  mask.addr = netmask_be;
  gw.addr = 0;
  memset(netif, 0, sizeof(*netif));
  memcpy(netif_mac, mac, ETH_HWADDR_LEN);
  if (netif_add(netif, &ip, &mask, &gw, NULL, ethernetif_init, ethernet_input) == NULL) {
    return -1;
  }
  netif_set_default(netif);
  netif_set_up(netif);
  return 0;
}

int net_port_netif_input(struct netif *netif, const void *frame, size_t length)
{
  struct pbuf *p;
  if (length > 0xffff) {
    return -1;
  }
  p = pbuf_alloc(PBUF_RAW, (u16_t)length, PBUF_POOL);
  if (p == NULL) {
    return -1;
  }
  if (pbuf_take(p, frame, (u16_t)length) != ERR_OK || netif->input(p, netif) != ERR_OK) {
    pbuf_free(p);
    return -1;
  }
  return 0;
}
