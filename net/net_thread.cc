#include "net_thread.h"

#include "arch/arch.h"
#include "event.h"
#include "panic.h"
#include "thread.h"

#include "lwip/init.h"
#include "lwip/inet_chksum.h"
#include "lwip/ip4.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/prot/icmp.h"
#include "lwip/prot/ip4.h"
#include "lwip/raw.h"
#include "lwip/tcp.h"
#include "lwip/timeouts.h"
#include "lwip/udp.h"
#include "lwip_port/port_hooks.h"

namespace net {
namespace {

constexpr uint32_t kPingCountMax = 1000;           // send-time table below
constexpr uint16_t kPingPayloadBytes = 56;         // as Linux ping's default
constexpr uint16_t kPingId = 0x534d;               // "SM"
constexpr uint16_t kUdpPingPayloadBytes = 32;
constexpr size_t kTcpChunkBytes = 16 * 1024;

enum class RequestKind : uint8_t { kPing, kUdpPing, kTcpSend };

struct Request {
    RequestKind kind;
    uint32_t ip;
    uint32_t count;
    uint64_t interval_ns;
    uint64_t timeout_ns;
    uint64_t bytes;
    EchoStats stats;
    uint64_t elapsed_ns;
    kernel::Status result;
    kernel::Event done;
};

// ---- State owned by the net thread ------------------------------------------------------------
NodeConfig g_config;
Nic* g_nic;
struct netif g_netif;
kernel::Event g_wake;                 // signalled by the NIC interrupt and by requesters
Request* volatile g_request;          // posted by a requester, taken by the net thread
Request* g_active;                    // the request in progress (net thread only)
LwipCounters g_counters;
struct raw_pcb* g_icmp_pcb;
struct udp_pcb* g_udp_ping_pcb;
uint64_t g_ping_sent_ns[kPingCountMax];
uint8_t g_ping_seen[kPingCountMax];
uint64_t g_ping_rtt_ns[kPingCountMax];   // received samples, for the median
uint64_t g_tcp_start_ns;
uint64_t g_tcp_queued, g_tcp_acked;
bool g_tcp_connected;                  // the bulk sender's connection was established
struct tcp_pcb* g_tcp_pcb;             // the bulk sender's connection, while one runs
uint8_t g_tcp_pattern[kTcpChunkBytes];
NetClient g_clients[kNetClientsMax];
size_t g_client_count;
bool g_thread_started;

TurnStats g_turn;
uint32_t g_in_samples[kTurnSamples], g_out_samples[kTurnSamples];
uint64_t g_last_irq_ns, g_last_tx_ns;
bool g_irq_since_tx, g_tx_since_irq;
bool g_turn_on;
uint64_t g_pass_now_ns;  // the clock read of the net thread's current pass (0 before the first)

void wake_from_irq(void*) {
    if (!g_turn_on) {
        g_wake.signal();
        return;
    }
    const uint64_t now = arch::now_ns();
    g_last_irq_ns = now;
    if (g_tx_since_irq) {
        g_turn.outside_ns += now - g_last_tx_ns;
        if (g_turn.outside_count < kTurnSamples)
            g_out_samples[g_turn.outside_count] = clamp_u32(now - g_last_tx_ns);
        ++g_turn.outside_count;
        g_tx_since_irq = false;
    }
    if (!g_irq_since_tx) g_irq_since_tx = true;
    g_wake.signal();
}

void rx_sink(void*, const uint8_t* frame, size_t length) {
    // QEMU's socket multicast network (the unprivileged cluster mode) hands every node its own
    // frames back: drop what carries our own source MAC.
    if (length >= 12 && frame[6] == g_nic->mac[0] && frame[7] == g_nic->mac[1] &&
        frame[8] == g_nic->mac[2] && frame[9] == g_nic->mac[3] && frame[10] == g_nic->mac[4] &&
        frame[11] == g_nic->mac[5]) {
        ++g_counters.rx_own_frames;
        return;
    }
    if (net_port_netif_input(&g_netif, frame, length) != 0) {
        ++g_counters.rx_no_pbuf;
        ++g_nic->counters.rx_drops;
    }
}

void finish(kernel::Status status) {
    Request* r = g_active;
    g_active = nullptr;
    r->result = status;
    r->done.signal();
}

void record_rtt(EchoStats& s, uint64_t rtt) {
    if (s.received == 0 || rtt < s.rtt_min_ns) s.rtt_min_ns = rtt;
    if (rtt > s.rtt_max_ns) s.rtt_max_ns = rtt;
    s.rtt_sum_ns += rtt;
    ++s.received;
}

u32_t to_ms(uint64_t ns) {
    uint64_t ms = (ns + 999999) / 1000000;
    return static_cast<u32_t>(ms == 0 ? 1 : ms);
}

ip_addr_t to_lwip(uint32_t ip) {
    ip_addr_t a;
    ip_addr_set_ip4_u32_val(a, lwip_htonl(ip));
    return a;
}

// ---- ICMP echo (ping) -------------------------------------------------------------------------
// The median of the received samples (so benches compare like with like: the bridge's calltest
// reports a median too). Insertion sort: at most kPingCountMax samples, once per ping command.
void ping_median(EchoStats& s) {
    uint64_t* a = g_ping_rtt_ns;
    for (uint32_t i = 1; i < s.received; ++i) {
        uint64_t v = a[i];
        uint32_t j = i;
        for (; j > 0 && a[j - 1] > v; --j) a[j] = a[j - 1];
        a[j] = v;
    }
    s.rtt_median_ns = s.received ? a[s.received / 2] : 0;
    s.rtt_p90_ns = s.received ? a[percentile_rank(s.received, 90)] : 0;
    s.rtt_p99_ns = s.received ? a[percentile_rank(s.received, 99)] : 0;
}

void ping_finish(void*) {
    if (g_active && g_active->kind == RequestKind::kPing) {
        ping_median(g_active->stats);
        // No echo came back at all: timed-out (it said "ok" with received=0).
        finish(g_active->stats.received ? kernel::Status::kOk : kernel::Status::kTimedOut);
    }
}

void ping_send(void*) {
    Request* r = g_active;
    if (!r || r->kind != RequestKind::kPing) return;
    uint16_t seq = static_cast<uint16_t>(r->stats.sent);
    const uint16_t len = sizeof(struct icmp_echo_hdr) + kPingPayloadBytes;
    struct pbuf* p = pbuf_alloc(PBUF_IP, len, PBUF_RAM);
    if (p) {
        auto* h = static_cast<struct icmp_echo_hdr*>(p->payload);
        ICMPH_TYPE_SET(h, ICMP_ECHO);
        ICMPH_CODE_SET(h, 0);
        h->id = lwip_htons(kPingId);
        h->seqno = lwip_htons(seq);
        auto* payload = reinterpret_cast<uint8_t*>(h + 1);
        for (uint16_t i = 0; i < kPingPayloadBytes; ++i) payload[i] = static_cast<uint8_t>(i);
        h->chksum = 0;
        h->chksum = inet_chksum(h, len);
        ip_addr_t dst = to_lwip(r->ip);
        g_ping_sent_ns[seq] = arch::now_ns();
        raw_sendto(g_icmp_pcb, p, &dst);
        pbuf_free(p);
    }
    ++r->stats.sent;
    if (r->interval_ns == 0) {
        // Back to back: the next echo goes out when this one's reply arrives (ping_recv); a
        // lost one ends the run after the timeout.
        sys_untimeout(ping_finish, nullptr);
        sys_timeout(to_ms(r->timeout_ns), ping_finish, nullptr);
    } else if (r->stats.sent < r->count) {
        sys_timeout(to_ms(r->interval_ns), ping_send, nullptr);
    } else {
        sys_timeout(to_ms(r->timeout_ns), ping_finish, nullptr);
    }
}

u8_t ping_recv(void*, struct raw_pcb*, struct pbuf* p, const ip_addr_t*) {
    Request* r = g_active;
    if (!r || r->kind != RequestKind::kPing) return 0;
    struct ip_hdr iph;
    struct icmp_echo_hdr h;
    if (pbuf_copy_partial(p, &iph, sizeof iph, 0) != sizeof iph) return 0;
    u16_t hlen = static_cast<u16_t>(IPH_HL(&iph) * 4);
    if (pbuf_copy_partial(p, &h, sizeof h, hlen) != sizeof h) return 0;
    if (ICMPH_TYPE(&h) != ICMP_ER || lwip_ntohs(h.id) != kPingId) return 0;
    uint16_t seq = lwip_ntohs(h.seqno);
    if (seq >= r->stats.sent || g_ping_seen[seq]) {
        pbuf_free(p);
        return 1;  // a duplicate or stray reply to our id: consumed
    }
    g_ping_seen[seq] = 1;
    const uint64_t rtt = arch::now_ns() - g_ping_sent_ns[seq];
    g_ping_rtt_ns[r->stats.received] = rtt;   // received < sent <= kPingCountMax
    record_rtt(r->stats, rtt);
    pbuf_free(p);
    if (r->stats.received == r->count) {
        sys_untimeout(ping_finish, nullptr);
        ping_median(r->stats);
        finish(kernel::Status::kOk);
    } else if (r->interval_ns == 0 && r->stats.sent < r->count) {
        ping_send(nullptr);
    }
    return 1;
}

// ---- UDP echo service and UDP round trips -----------------------------------------------------
void udp_echo_recv(void*, struct udp_pcb* pcb, struct pbuf* p, const ip_addr_t* addr, u16_t port) {
    udp_sendto(pcb, p, addr, port);
    ++g_counters.udp_echoed;
    pbuf_free(p);
}

void udp_ping_send();

void udp_ping_timeout(void*) {
    if (g_active && g_active->kind == RequestKind::kUdpPing) {
        ping_median(g_active->stats);
        finish(kernel::Status::kTimedOut);
    }
}

void udp_ping_recv(void*, struct udp_pcb*, struct pbuf* p, const ip_addr_t*, u16_t) {
    Request* r = g_active;
    uint32_t seq = 0;
    if (r && r->kind == RequestKind::kUdpPing && pbuf_copy_partial(p, &seq, sizeof seq, 0) == sizeof seq &&
        seq + 1 == r->stats.sent) {
        sys_untimeout(udp_ping_timeout, nullptr);
        const uint64_t rtt = arch::now_ns() - g_ping_sent_ns[0];
        g_ping_rtt_ns[r->stats.received] = rtt;  // received < count <= kPingCountMax
        record_rtt(r->stats, rtt);
        if (r->stats.sent < r->count) {
            udp_ping_send();
        } else {
            // The median and percentiles as ping's (they were printed as 0).
            ping_median(r->stats);
            finish(kernel::Status::kOk);
        }
    }
    pbuf_free(p);
}

void udp_ping_send() {
    Request* r = g_active;
    struct pbuf* p = pbuf_alloc(PBUF_TRANSPORT, kUdpPingPayloadBytes, PBUF_RAM);
    if (!p) {
        finish(kernel::Status::kNoMemory);
        return;
    }
    uint32_t seq = r->stats.sent;
    pbuf_take(p, &seq, sizeof seq);
    ip_addr_t dst = to_lwip(r->ip);
    g_ping_sent_ns[0] = arch::now_ns();
    ++r->stats.sent;
    udp_sendto(g_udp_ping_pcb, p, &dst, kUdpEchoPort);
    pbuf_free(p);
    sys_timeout(to_ms(r->timeout_ns), udp_ping_timeout, nullptr);
}

// ---- TCP: discard service and a bulk sender ---------------------------------------------------
err_t discard_recv(void*, struct tcp_pcb* pcb, struct pbuf* p, err_t) {
    if (!p) {
        tcp_close(pcb);
        return ERR_OK;
    }
    g_counters.tcp_discard_bytes += p->tot_len;
    // Data that came with PSH (the end of each of the sender's writes, the last segment among
    // them) is acknowledged at once: lwIP's delayed ACK otherwise waits for its 250 ms fast
    // timer when an odd segment ends a burst, and the bulk sender's figure (connect to last
    // ack) then measured that timer, not TCP (6.5 MiB took 249 ms or 105 ms depending on it).
    const bool push = (p->flags & PBUF_FLAG_PUSH) != 0;
    tcp_recved(pcb, p->tot_len);
    pbuf_free(p);
    if (push) {
        tcp_set_flags(pcb, TF_ACK_NOW);
        tcp_output(pcb);
    }
    return ERR_OK;
}

// The discard service only receives: a sender that dies mid-transfer (a killed node) is never
// noticed without keepalives, and its PCB stayed ESTABLISHED for good (16 such crashes left
// none for any connection, this node's own tcpsend included). Probes after this much silence:
constexpr u32_t kDiscardKeepIdleMs = 10000;
constexpr u32_t kDiscardKeepIntervalMs = 2000;
constexpr u32_t kDiscardKeepProbes = 5;

err_t discard_accept(void*, struct tcp_pcb* pcb, err_t err) {
    if (err != ERR_OK || !pcb) return ERR_VAL;
    tcp_recv(pcb, discard_recv);
    ip_set_option(pcb, SOF_KEEPALIVE);
    pcb->keep_idle = kDiscardKeepIdleMs;
    pcb->keep_intvl = kDiscardKeepIntervalMs;
    pcb->keep_cnt = kDiscardKeepProbes;
    return ERR_OK;
}

void tcp_send_more(struct tcp_pcb* pcb) {
    Request* r = g_active;
    while (g_tcp_queued < r->bytes) {
        uint64_t left = r->bytes - g_tcp_queued;
        u16_t room = tcp_sndbuf(pcb);
        u16_t n = static_cast<u16_t>(left < kTcpChunkBytes ? left : kTcpChunkBytes);
        if (n > room) n = room;
        if (n == 0 || tcp_write(pcb, g_tcp_pattern, n, 0) != ERR_OK) break;
        g_tcp_queued += n;
    }
    tcp_output(pcb);
}

void tcp_send_timeout(void*) {
    if (!g_active || g_active->kind != RequestKind::kTcpSend || !g_tcp_pcb) return;
    tcp_abort(g_tcp_pcb);  // calls tcp_send_err
}

// What a failed bulk send reports. ERR_ABRT: our deadline (tcp_send_timeout aborted it) or lwIP
// gave up retransmitting; ERR_RST while connecting: the peer refused (nothing listens on its
// discard port); a reset or close later: the peer's end went away mid-transfer. Every failure
// used to read "timed-out", a refusal too (at once, after no time at all).
kernel::Status tcp_failure_status(err_t err) {
    if (err == ERR_ABRT) return kernel::Status::kTimedOut;
    if (err == ERR_RST && !g_tcp_connected) return kernel::Status::kNoSuchService;
    return kernel::Status::kServerExited;
}

void tcp_send_err(void*, err_t err) {
    // lwIP has freed the pcb already.
    g_tcp_pcb = nullptr;
    if (g_active && g_active->kind == RequestKind::kTcpSend) {
        sys_untimeout(tcp_send_timeout, nullptr);
        finish(tcp_failure_status(err));
    }
}

err_t tcp_send_sent(void*, struct tcp_pcb* pcb, u16_t len) {
    Request* r = g_active;
    g_tcp_acked += len;
    if (g_tcp_acked >= r->bytes) {
        r->elapsed_ns = arch::now_ns() - g_tcp_start_ns;
        tcp_sent(pcb, nullptr);
        tcp_err(pcb, nullptr);
        sys_untimeout(tcp_send_timeout, nullptr);
        g_tcp_pcb = nullptr;
        finish(kernel::Status::kOk);
        if (tcp_close(pcb) != ERR_OK) {
            tcp_abort(pcb);
            return ERR_ABRT;
        }
        return ERR_OK;
    }
    tcp_send_more(pcb);
    return ERR_OK;
}

err_t tcp_send_connected(void*, struct tcp_pcb* pcb, err_t err) {
    if (err != ERR_OK) return err;
    g_tcp_connected = true;
    g_tcp_start_ns = arch::now_ns();
    tcp_send_more(pcb);
    return ERR_OK;
}

// ---- Requests from other threads --------------------------------------------------------------
void start_request(Request* r) {
    g_active = r;
    r->stats = EchoStats{};
    switch (r->kind) {
        case RequestKind::kPing:
            for (uint32_t i = 0; i < r->count; ++i) g_ping_seen[i] = 0;
            ping_send(nullptr);
            break;
        case RequestKind::kUdpPing:
            udp_ping_send();
            break;
        case RequestKind::kTcpSend: {
            struct tcp_pcb* pcb = tcp_new();
            if (!pcb) {
                finish(kernel::Status::kNoMemory);
                return;
            }
            g_tcp_queued = g_tcp_acked = 0;
            g_tcp_connected = false;
            tcp_nagle_disable(pcb);
            tcp_sent(pcb, tcp_send_sent);
            ip_addr_t dst = to_lwip(r->ip);
            const err_t err = tcp_connect(pcb, &dst, kTcpDiscardPort, tcp_send_connected);
            if (err != ERR_OK) {
                // No SYN went out (ERR_RTE: no route, e.g. a loopback address; ERR_BUF: no
                // local port): say so now, not as a time-out.
                tcp_abort(pcb);
                finish(err == ERR_RTE ? kernel::Status::kInvalidArgument
                                      : kernel::Status::kNoMemory);
                return;
            }
            tcp_err(pcb, tcp_send_err);
            g_tcp_pcb = pcb;
            sys_timeout(to_ms(r->timeout_ns), tcp_send_timeout, nullptr);
            break;
        }
    }
}

kernel::Status submit(Request* r) {
    if (!g_nic) return kernel::Status::kNotSupported;
    {
        uint64_t s = arch::irq_save();
        bool busy = g_request != nullptr;
        if (!busy) g_request = r;
        arch::irq_restore(s);
        if (busy) return kernel::Status::kLimitReached;
    }
    g_wake.signal();
    r->done.wait(kernel::kNoDeadline);
    return r->result;
}

// ---- The loop ----------------------------------------------------------------------------------
uint64_t run_clients(uint64_t now) {
    uint64_t next = kernel::kNoDeadline;
    for (size_t i = 0; i < g_client_count; ++i) {
        uint64_t d = g_clients[i].run(g_clients[i].ctx, now);
        if (d < next) next = d;
    }
    return next;
}

void net_thread_main(void*) {
    for (size_t i = 0; i < g_client_count; ++i) {
        if (g_clients[i].start) g_clients[i].start(g_clients[i].ctx);
    }
    for (;;) {
        // Frames this pass sends (ICMP and TCP answers in lwIP's input, the clients' bursts) go
        // to the device with one kick at the end of the pass (nic_tx_flush), not one each.
        nic_tx_hold_kicks(g_nic);
        // One clock read serves the pass: lwIP's clock (sys_now), the clients and the sleep
        // deadline (a pass used to read it ~8 times; each read is a TCG helper call).
        const uint64_t now = arch::now_ns();
        g_pass_now_ns = now;
        // Drain received frames, at most one ring's worth, so timers are not starved by a flood.
        bool more = true;
        for (size_t pass = 0; more && pass < kRxRingSlots / kRxBudgetPerPass; ++pass) {
            more = nic_receive(g_nic, rx_sink, nullptr, kRxBudgetPerPass) == kRxBudgetPerPass;
        }
        if (!g_active && g_request) {
            Request* r = g_request;
            start_request(r);
            g_request = nullptr;
        }
        sys_check_timeouts();
        uint64_t client_deadline = run_clients(now);
        u32_t sleep_ms = sys_timeouts_sleeptime();
        uint64_t deadline = sleep_ms == SYS_TIMEOUTS_SLEEPTIME_INFINITE
                                ? kernel::kNoDeadline
                                : now + uint64_t(sleep_ms) * 1000000u;
        if (client_deadline < deadline) deadline = client_deadline;
        if (more) deadline = 0;  // frames may still be waiting: poll the event, do not sleep
        nic_tx_flush(g_nic);
        g_wake.wait(deadline);
    }
}

bool start_services() {
    struct udp_pcb* echo = udp_new();
    g_udp_ping_pcb = udp_new();
    g_icmp_pcb = raw_new(IP_PROTO_ICMP);
    struct tcp_pcb* discard = tcp_new();
    if (!echo || !g_udp_ping_pcb || !g_icmp_pcb || !discard) return false;
    if (udp_bind(echo, IP_ADDR_ANY, kUdpEchoPort) != ERR_OK) return false;
    udp_recv(echo, udp_echo_recv, nullptr);
    if (udp_bind(g_udp_ping_pcb, IP_ADDR_ANY, 0) != ERR_OK) return false;
    udp_recv(g_udp_ping_pcb, udp_ping_recv, nullptr);
    raw_recv(g_icmp_pcb, ping_recv, nullptr);
    if (tcp_bind(discard, IP_ADDR_ANY, kTcpDiscardPort) != ERR_OK) return false;
    discard = tcp_listen(discard);
    if (!discard) return false;
    tcp_accept(discard, discard_accept);
    for (size_t i = 0; i < kTcpChunkBytes; ++i) g_tcp_pattern[i] = static_cast<uint8_t>(i * 7);
    return true;
}

}  // namespace

kernel::Status net_start(const NodeConfig& config) {
    g_config = config;
    g_nic = nic_probe_and_start(config.has_mac ? config.mac : nullptr, wake_from_irq, nullptr);
    if (!g_nic) return kernel::Status::kNotSupported;
    lwip_port_seed(arch::cycle_counter() ^ (uint64_t(config.ip) << 16));
    lwip_init();
    if (net_port_netif_add(&g_netif, g_nic, g_nic->mac, lwip_htonl(config.ip),
                           lwip_htonl(prefix_to_netmask(config.prefix))) != 0) {
        kernel::print("net: netif_add failed\n");
        return kernel::Status::kInvalidArgument;
    }
    if (!start_services()) {
        kernel::print("net: cannot start UDP echo / TCP discard / ICMP services\n");
        return kernel::Status::kNoMemory;
    }
    g_thread_started = true;
    auto t = kernel::thread_create("net", net_thread_main, nullptr, kNetThreadPriority,
                                   kNetThreadStackBytes);
    if (!t.is_ok()) {
        kernel::print("net: cannot create the net thread: %s\n", kernel::status_name(t.status));
        return t.status;
    }
    kernel::print("net: lwIP %s up; UDP echo on port %u, TCP discard on port %u\n",
                  LWIP_VERSION_STRING, kUdpEchoPort, kTcpDiscardPort);
    return kernel::Status::kOk;
}

bool net_register_client(const NetClient& client) {
    if (g_thread_started || g_client_count == kNetClientsMax || !client.run) return false;
    g_clients[g_client_count++] = client;
    return true;
}

void net_wake() { g_wake.signal(); }

uint64_t net_last_irq_ns() { return g_last_irq_ns; }

uint64_t net_pass_now_ns() { return g_pass_now_ns ? g_pass_now_ns : arch::now_ns(); }

void net_note_transmit() {
    if (!g_turn_on) return;
    uint64_t s = arch::irq_save();
    // Read with interrupts off: an interrupt between this read and the IRQ mark it is compared
    // with would make the difference negative (and huge, unsigned).
    const uint64_t now = arch::now_ns();
    if (g_irq_since_tx) {
        g_turn.in_node_ns += now - g_last_irq_ns;
        if (g_turn.in_node_count < kTurnSamples)
            g_in_samples[g_turn.in_node_count] = clamp_u32(now - g_last_irq_ns);
        ++g_turn.in_node_count;
        g_irq_since_tx = false;
    }
    if (!g_tx_since_irq) {
        g_last_tx_ns = now;
        g_tx_since_irq = true;
    }
    arch::irq_restore(s);
}

void net_turn_stats_enable(bool on) {
    uint64_t s = arch::irq_save();
    g_turn_on = on;
    g_irq_since_tx = g_tx_since_irq = false;
    g_turn = TurnStats{};
    arch::irq_restore(s);
}

uint32_t median_u32(uint32_t* a, size_t n) {
    if (n == 0) return 0;
    for (size_t gap = n / 2; gap > 0; gap /= 2)  // shell sort: n is at most a few thousand
        for (size_t i = gap; i < n; ++i) {
            const uint32_t v = a[i];
            size_t j = i;
            for (; j >= gap && a[j - gap] > v; j -= gap) a[j] = a[j - gap];
            a[j] = v;
        }
    return a[n / 2];
}

TurnStats net_turn_stats(bool reset) {
    static uint32_t in[kTurnSamples], out[kTurnSamples];
    uint64_t s = arch::irq_save();
    TurnStats t = g_turn;
    const size_t ni = t.in_node_count < kTurnSamples ? t.in_node_count : kTurnSamples;
    const size_t no = t.outside_count < kTurnSamples ? t.outside_count : kTurnSamples;
    for (size_t i = 0; i < ni; ++i) in[i] = g_in_samples[i];
    for (size_t i = 0; i < no; ++i) out[i] = g_out_samples[i];
    if (reset) g_turn = TurnStats{};
    arch::irq_restore(s);
    t.in_node_median_ns = median_u32(in, ni);
    t.outside_median_ns = median_u32(out, no);
    return t;
}

__attribute__((weak)) void node_extensions() {}

Nic* net_nic() { return g_nic; }
const NodeConfig& net_config() { return g_config; }
LwipCounters net_lwip_counters() { return g_counters; }

kernel::Status net_ping(uint32_t ip, uint32_t count, uint64_t interval_ns, uint64_t timeout_ns,
                        EchoStats* out) {
    if (count == 0 || count > kPingCountMax) return kernel::Status::kInvalidArgument;
    Request r{};  // the caller's own: concurrent callers never share one (one runs at a time)
    r.kind = RequestKind::kPing;
    r.ip = ip;
    r.count = count;
    r.interval_ns = interval_ns;
    r.timeout_ns = timeout_ns;
    kernel::Status s = submit(&r);
    *out = r.stats;
    return s;
}

kernel::Status net_udp_ping(uint32_t ip, uint32_t count, uint64_t timeout_ns, EchoStats* out) {
    if (count == 0 || count > kPingCountMax) return kernel::Status::kInvalidArgument;
    Request r{};  // the caller's own: concurrent callers never share one (one runs at a time)
    r.kind = RequestKind::kUdpPing;
    r.ip = ip;
    r.count = count;
    r.timeout_ns = timeout_ns;
    kernel::Status s = submit(&r);
    *out = r.stats;
    return s;
}

kernel::Status net_tcp_send(uint32_t ip, uint64_t bytes, uint64_t timeout_ns, uint64_t* elapsed_ns) {
    if (bytes == 0) return kernel::Status::kInvalidArgument;
    Request r{};  // the caller's own: concurrent callers never share one (one runs at a time)
    r.kind = RequestKind::kTcpSend;
    r.ip = ip;
    r.bytes = bytes;
    r.timeout_ns = timeout_ns;
    r.elapsed_ns = 0;
    kernel::Status s = submit(&r);
    *elapsed_ns = r.elapsed_ns;
    return s;
}

}  // namespace net
