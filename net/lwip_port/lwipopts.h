/*
 * lwIP options for simplemsg nodes: NO_SYS (one owner thread, the net thread), IPv4 only,
 * ARP, ICMP, UDP, TCP and the raw API (protocol 121 rides on a raw PCB later).
 *
 * Memory: a node has 128 MiB by default; lwIP's share is sized so that a large message in
 * flight (segments of up to ~1.5 KB each, many at once) and TCP at full window do not starve
 * each other. Every pool below is a hard limit: an exhausted pool drops the packet and lwIP
 * counts it, nothing grows.
 */
#ifndef SMP_LWIPOPTS_H
#define SMP_LWIPOPTS_H

/* ---- System: no OS layer, single execution context (the net thread) ---- */
#define NO_SYS                          1
#define SYS_LIGHTWEIGHT_PROT            0   /* only the net thread enters lwIP */
#define LWIP_SOCKET                     0
#define LWIP_NETCONN                    0
#define LWIP_NETIF_API                  0
#define LWIP_TIMERS                     1

/* ---- Freestanding build: no C library headers beyond gcc's own ---- */
#define LWIP_NO_LIMITS_H                1
#define LWIP_NO_CTYPE_H                 1
#define LWIP_NO_INTTYPES_H              1
#define LWIP_NO_UNISTD_H                1

/* ---- Memory ---- */
#define MEM_ALIGNMENT                   8
#define MEM_SIZE                        (4 * 1024 * 1024)  /* lwIP heap: TX data, reassembly */
#define MEMP_NUM_PBUF                   256
#define MEMP_NUM_RAW_PCB                8
#define MEMP_NUM_UDP_PCB                8
#define MEMP_NUM_TCP_PCB                16
#define MEMP_NUM_TCP_PCB_LISTEN         8
#define MEMP_NUM_TCP_SEG                512
#define MEMP_NUM_REASSDATA              16
#define MEMP_NUM_FRAG_PBUF              64
#define MEMP_NUM_ARP_QUEUE              32
#define MEMP_NUM_SYS_TIMEOUT            (LWIP_NUM_SYS_TIMEOUT_INTERNAL + 8)
#define PBUF_POOL_SIZE                  1024               /* RX pbufs: ~1.6 MiB */
#define PBUF_POOL_BUFSIZE               LWIP_MEM_ALIGN_SIZE(1536 + PBUF_LINK_HLEN + PBUF_LINK_ENCAPSULATION_HLEN)

/* ---- Link layer ---- */
#define LWIP_ARP                        1
#define ARP_TABLE_SIZE                  64   /* up to 16 nodes plus the namespace, with room */
#define ARP_QUEUEING                    1
#define ETHARP_SUPPORT_STATIC_ENTRIES   0
#define LWIP_ETHERNET                   1
#define ETH_PAD_SIZE                    0

/* ---- IPv4 ---- */
#define LWIP_IPV4                       1
#define LWIP_IPV6                       0
#define IP_FORWARD                      0
#define IP_REASSEMBLY                   1
#define IP_FRAG                         1
#define IP_REASS_MAXAGE                 3     /* seconds (lwIP timer units) */
#define IP_REASS_MAX_PBUFS              128   /* bound on pbufs held by reassembly, all datagrams */
#define IP_DEFAULT_TTL                  64
#define LWIP_ICMP                       1
#define LWIP_RAW                        1
#define LWIP_DHCP                       0
#define LWIP_AUTOIP                     0
#define LWIP_IGMP                       0
#define LWIP_DNS                        0

/* ---- UDP ---- */
#define LWIP_UDP                        1

/* ---- TCP ---- */
#define LWIP_TCP                        1
#define TCP_MSS                         1460
#define TCP_WND                         (44 * TCP_MSS)   /* < 64 KiB: no window scaling needed */
#define TCP_SND_BUF                     (44 * TCP_MSS)
#define TCP_SND_QUEUELEN                (4 * TCP_SND_BUF / TCP_MSS)
#define TCP_QUEUE_OOSEQ                 1
#define LWIP_TCP_SACK_OUT               0
#define LWIP_TCP_KEEPALIVE              1   /* per-PCB keep_intvl/keep_cnt: the discard service */

/* ---- Checksums: computed in software (neither driver offloads) ---- */
#define LWIP_CHECKSUM_ON_COPY           0
#define LWIP_CHKSUM_ALGORITHM           3

/* ---- Netif ---- */
#define LWIP_NETIF_STATUS_CALLBACK      0
#define LWIP_NETIF_LINK_CALLBACK        0
#define LWIP_SINGLE_NETIF               1
#define LWIP_NETIF_TX_SINGLE_PBUF       0

/* ---- Statistics and debugging ---- */
#define LWIP_STATS                      1
#define LWIP_STATS_DISPLAY              0
#define MEM_STATS                       1
#define MEMP_STATS                      1
#define LWIP_DEBUG                      0

#endif /* SMP_LWIPOPTS_H */
