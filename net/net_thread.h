// The net thread: the one execution context that calls lwIP. The NIC's interrupt handler only
// signals the thread's event; the thread drains the RX ring into lwIP, runs lwIP's timers and
// sleeps until the next lwIP timeout or the next event. Other threads (the shell) ask it for
// work through a one-slot request and wait for the answer on their own event.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "drivers/nic.h"
#include "node_config.h"
#include "status.h"

namespace net {

constexpr uint16_t kUdpEchoPort = 7;
constexpr uint16_t kTcpDiscardPort = 9;      // TCP sink for throughput measurements
constexpr size_t kRxBudgetPerPass = 32;       // frames per drain call; a pass makes at most
                                              // kRxRingSlots / kRxBudgetPerPass of them before
                                              // timers get a turn
constexpr uint8_t kNetThreadPriority = 24;
constexpr size_t kNetThreadStackBytes = 32 * 1024;

// Code that must run in the net thread (lwIP's one execution context), e.g. the protocol engine
// over a raw PCB (issue 8). start runs once in the net thread after lwIP is up; run runs on every
// wake-up of the net thread and returns the absolute time (ns) it next needs to run, or
// kernel::kNoDeadline. Register before net_start (node_extensions() below is the place).
constexpr size_t kNetClientsMax = 4;
struct NetClient {
    const char* name;
    void (*start)(void* ctx);
    uint64_t (*run)(void* ctx, uint64_t now_ns);
    void* ctx;
};
// false when the table is full or the net thread already runs.
bool net_register_client(const NetClient& client);
// Wakes the net thread (any thread, or an interrupt handler).
void net_wake();
// Weak hook node_main calls before net_start: other areas register net clients and shell
// commands here (the default does nothing).
void node_extensions();

// Brings up the NIC and lwIP and starts the net thread. Prints what it did.
kernel::Status net_start(const NodeConfig& config);
Nic* net_nic();               // nullptr before net_start succeeds
const NodeConfig& net_config();

// The index of the p-th percentile among n sorted samples (n > 0), by nearest rank: the
// smallest sample with at least p% of the samples at or below it.
inline uint32_t percentile_rank(uint32_t n, uint32_t p) {
    const uint64_t rank = (uint64_t(n) * p + 99) / 100;  // 1-based
    return rank ? static_cast<uint32_t>(rank - 1) : 0;
}

struct EchoStats {
    uint32_t sent;
    uint32_t received;
    uint64_t rtt_min_ns, rtt_sum_ns, rtt_max_ns;
    uint64_t rtt_median_ns;   // ping only (it keeps every sample); 0 elsewhere
    uint64_t rtt_p90_ns, rtt_p99_ns;  // ping only, likewise (nearest rank)
};
struct LwipCounters {
    uint64_t rx_no_pbuf;      // frames the driver received but lwIP had no pbuf for
    uint64_t udp_echoed;      // UDP echo datagrams answered
    uint64_t rx_own_frames;   // our own frames looped back by the network (dropped)
    uint64_t tcp_discard_bytes;
};
LwipCounters net_lwip_counters();

// Where a node's round trips spend their time (the `lat` shell command): from a NIC interrupt to
// the next frame sent (time in this node) and from a frame sent to the next interrupt (time
// outside it: QEMU, the host, the other node). Sums since the last reset.
struct TurnStats {
    uint64_t in_node_ns, in_node_count;     // interrupt -> next transmit
    uint64_t outside_ns, outside_count;     // transmit -> next interrupt
    uint64_t in_node_median_ns, outside_median_ns;  // over the first kTurnSamples of each
};
constexpr size_t kTurnSamples = 1024;
// The median of a[0..n) (sorted in place); a duration clamped to 32 bits for such samples.
uint32_t median_u32(uint32_t* a, size_t n);
inline uint32_t clamp_u32(uint64_t v) {
    return v > 0xffffffffull ? 0xffffffffu : static_cast<uint32_t>(v);
}
TurnStats net_turn_stats(bool reset);
void net_turn_stats_enable(bool on);   // off by default (a clock read per interrupt and frame)
uint64_t net_last_irq_ns();   // when the NIC last interrupted
// The net thread's clock for lwIP (sys_now): read once at the start of each pass. Net thread only.
uint64_t net_pass_now_ns();
void net_note_transmit();     // called by the port for every frame handed to the NIC

// Called from a thread other than the net thread (they block it until done).
// ICMP echo: count requests of payload bytes, interval_ns apart (0: back to back, each sent when
// the previous reply arrived); waits at most timeout_ns for the
// last reply.
kernel::Status net_ping(uint32_t ip, uint32_t count, uint64_t interval_ns, uint64_t timeout_ns,
                        EchoStats* out);
// UDP echo round trips against a peer's port 7, one at a time.
kernel::Status net_udp_ping(uint32_t ip, uint32_t count, uint64_t timeout_ns, EchoStats* out);
// Sends bytes over TCP to a peer's discard port; *elapsed_ns from connect to the last ack.
kernel::Status net_tcp_send(uint32_t ip, uint64_t bytes, uint64_t timeout_ns,
                            uint64_t* elapsed_ns);

}  // namespace net
