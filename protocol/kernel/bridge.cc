// The remote bridge: see bridge.h. Everything touching the engine or lwIP runs in the net thread
// (the net client's run()); other threads only link Ops under arch::irq_save and signal.
#include "bridge.h"

#include "arch/arch.h"
#include "command_line.h"
#include "event.h"
#include "heap.h"
#include "list.h"
#include "net_thread.h"
#include "node_config.h"
#include "panic.h"
#include "start.h"
#include "thread.h"

#include "protocol/engine.h"
#include "protocol/wire.h"

extern "C" {
#include "lwip/ip.h"
#include "lwip/ip4.h"
#include "lwip/pbuf.h"
#include "lwip/prot/ip4.h"
#include "lwip/raw.h"
}

namespace bridge {
namespace {

using kernel::Status;

constexpr size_t kStaticPeersMax = 32;      // peers= entries
constexpr size_t kRxChainMax = 64;          // pbufs of one received datagram
constexpr size_t kTxBurstMax = 256;         // packets sent per run before others get a turn
constexpr uint8_t kSmpProtocol = smp::wire::kIpProtocol;

// The engine's clock, in microseconds, never going back: now_us() reads the TSC (where a
// packet's time matters: received, sent), last_us() gives the latest time read (the net
// thread's pass time or a later packet's) for the calls between, without a read of its own.
smp::Instant g_last_us;
smp::Instant now_us() {
    const smp::Instant t = arch::now_ns() / 1000;
    if (t > g_last_us) g_last_us = t;
    return g_last_us;
}
smp::Instant last_us() { return g_last_us; }

struct IrqLock {
    uint64_t s = arch::irq_save();
    ~IrqLock() { arch::irq_restore(s); }
};

struct RemoteConn {
    uint32_t peer;     // smp::PeerRef value; each connection holds one reference (release_peer)
    uint32_t channel;
    uint16_t source;   // its number in PULSE's source field (SPEC.md 4.7): 1..65535, reused
};

enum class OpKind : uint8_t {
    kSend, kRead, kPulse, kLookup, kAttach, kDetach, kClose, kSnapshot, kHoldPeer, kReleasePeer
};

struct RemoteRec;

// A request from a kernel thread to the net thread; lives on the caller's stack until done.
struct Op {
    kernel::ListNode link;
    OpKind kind;
    kernel::Event done;
    Status status = Status::kOk;
    // kSend / kPulse
    RemoteConn* conn = nullptr;
    smp::ConstBytes send_parts[kernel::kPartsMax];
    smp::MutableBytes reply_parts[kernel::kPartsMax];
    size_t send_count = 0, reply_count = 0;
    smp::Instant deadline = smp::kNever;
    uint8_t priority = 0;
    uint32_t handle = 0;
    size_t size = 0;
    int32_t code = 0;
    int64_t value = 0;
    // kRead
    RemoteRec* rec = nullptr;
    uint64_t serial = 0;      // the record's serial the reader's receive id named
    uint32_t offset = 0;
    // For submit_until (under IrqLock): the net thread has taken it off g.ops; it waits on
    // g.abandons for the net thread to give it up.
    kernel::ListNode abandon_link;  // on g.abandons (link may be on g.lookups meanwhile)
    bool taken = false;
    bool in_abandons = false;
    bool finished = false;   // finish() ran (its signal may still be on the way)
    // kLookup / kAttach
    const char* node = nullptr;
    const char* name = nullptr;
    kernel::Channel* channel = nullptr;
    uint32_t peer = 0;
    uint32_t channel_number = 0;
    // kSnapshot
    void (*fn)(void* ctx) = nullptr;
    void* ctx = nullptr;
};

enum class Phase : uint8_t { kFree, kInKernel, kCompleting, kReplying };

// A remote sender here: one kernel record + the eager bytes that arrived with it.
struct RemoteRec {
    kernel::SenderRecord record;
    kernel::ListNode link;       // g_free or g_completions
    Phase phase = Phase::kFree;
    uint32_t handle = 0;         // smp::RequestHandle value
    uint8_t* eager = nullptr;    // the request's area in the engine's eager store (eager_bytes_max)
    uint32_t eager_len = 0;
    Op* read_op = nullptr;
    size_t attached_index = 0;
    // Completion (filled in complete(), interrupts disabled)
    Status status = Status::kOk;
    int32_t code = 0;
    // The reply the engine sends: in `eager` (a small one, copied) or the replier's own parts
    // (a large one, not copied: the replier waits in reply() on `hold` until kReplyDone).
    smp::ConstBytes reply_parts[kernel::kPartsMax];
    size_t reply_count = 0;
    kernel::ReplyHold* hold = nullptr;
};

// Remote pulses into an attached channel: one kernel pulse slot per remote connection (an engine
// peer, a node or a Linux process, and the connection number it gives in PULSE's source), so
// pulses from different connections stay apart with their own sender and priority, as pulses
// from different local connections do; one connection's coalesce. A sender that gives no
// number (source 0) has one slot for all its pulses. A slot is given to another connection only
// while it holds no pending pulse. With every slot pending for others, the pulse coalesces into
// the last one (counted pulses_shared).
constexpr size_t kPulseSlotsPerName = 8;
struct RemotePulseSlot {
    kernel::PulseSlot slot;
    uint32_t peer;    // smp::PeerRef value of the sender it serves now (0: never used)
    uint16_t source;  // and the sender's connection number
};

struct Attached {
    char name[kServiceNameBytes];
    kernel::Channel* channel;  // nullptr: free slot
    RemotePulseSlot pulse_slots[kPulseSlotsPerName];
    uint64_t requests;
};

struct Bridge {
    smp::Config config;
    smp::StaticPeer static_peers[kStaticPeersMax];
    char static_names[kStaticPeersMax][kServiceNameBytes];
    size_t static_count = 0;
    smp::Engine* engine = nullptr;
    struct raw_pcb* pcb = nullptr;
    uint8_t* tx_buffer = nullptr;
    RemoteRec* recs = nullptr;
    size_t rec_count = 0;
    bool running = false;
    kernel::Thread* net_thread = nullptr;  // the engine's one owner
    // Shared with other threads (interrupts disabled around every touch).
    kernel::List ops;
    kernel::List completions;
    kernel::List abandons;   // started reads and lookups whose caller's deadline passed
    // True while the net thread is inside run_rounds and will look at ops and completions again
    // before it leaves: a thread queueing one then needs no net_wake. Without this, an echo
    // server's reply (queued while the net thread that handed it the request waits inside the
    // same run_rounds) left the wake-up set, and the net thread ran one more, empty, pass after
    // sending the reply (~350 guest instructions per request served).
    bool rounds_recheck = false;
    uint16_t next_conn_source = 0;  // the last RemoteConn::source given
    // Net thread only.
    kernel::List free_recs;
    kernel::List inflight;   // kSend ops started in the engine
    kernel::List lookups;    // kLookup ops started in the engine
    Attached attached[kAttachedMax];
    // Counters of the bridge itself.
    uint64_t rx_chain_too_long = 0, tx_no_pbuf = 0, tx_errors = 0, tx_err_mem = 0, no_channel = 0,
             pulses_in = 0, pulses_dropped = 0, pulses_shared = 0, peer_down_events = 0,
             requests_in = 0,
             answers_busy = 0;  // reserved requests that waited for an answer slot
};
Bridge g;

// Liveness as this node saw it: when a packet last arrived from each address, and how long
// after that the engine declared the peer down (the detection time `peers` prints beside the
// configured bound, Config::dead_after_us(); the bound itself is proven in the simulation's
// time). Keyed by IPv4 address: Linux endpoints behind one address share an entry. Net thread
// only. Entries are never freed; when the table is full the least recently heard is reused.
constexpr size_t kHeardMax = 64;  // addresses tracked (the engine's peers_max by default)
struct Heard {
    uint32_t ipv4 = 0;
    smp::Instant last_us = 0;         // the last datagram from this address
    uint64_t down_detect_us = 0;      // the detection: first "host down" after last_us, - last_us
    uint32_t downs = 0;               // "host down" events for this address
    // A "host down" already seen since last_us: later ones (a new send to the silent peer tries
    // again and fails again) are no new detection, and their age would grow without bound.
    bool down_since_heard = false;
};
Heard g_heard[kHeardMax];
size_t g_heard_count = 0;
size_t g_heard_last = 0;  // the entry hit last (a burst comes from one peer)

Heard* heard_find(uint32_t ipv4) {
    if (g_heard_last < g_heard_count && g_heard[g_heard_last].ipv4 == ipv4) return &g_heard[g_heard_last];
    for (size_t i = 0; i < g_heard_count; ++i) {
        if (g_heard[i].ipv4 != ipv4) continue;
        g_heard_last = i;
        return &g_heard[i];
    }
    return nullptr;
}

void heard_from(uint32_t ipv4, smp::Instant now) {
    Heard* h = heard_find(ipv4);
    if (!h) {
        size_t i = g_heard_count;
        if (g_heard_count < kHeardMax) {
            ++g_heard_count;
        } else {
            i = 0;
            for (size_t k = 1; k < kHeardMax; ++k)
                if (g_heard[k].last_us < g_heard[i].last_us) i = k;
        }
        g_heard[i] = Heard{};
        g_heard[i].ipv4 = ipv4;
        g_heard_last = i;
        h = &g_heard[i];
    }
    h->last_us = now;
    h->down_since_heard = false;
}

// Stage times of single round trips (the `lat` command), for finding where a call's time goes:
// client marks (send entry, net thread start, request sent, reply interrupt, reply in the
// engine, send done, send returned) and server marks (request interrupt, request in the engine,
// queued to the channel, server replied, net thread completes, reply sent). Meaningful with one
// call at a time only (with several, marks of different calls mix).
constexpr size_t kClientMarks = 7, kServerMarks = 6;
constexpr size_t kLatSamples = 1024;  // per stage: medians over the first this many round trips
struct Lat {
    uint64_t c[kClientMarks], s[kServerMarks];
    uint64_t c_sum[kClientMarks], s_sum[kServerMarks];
    uint64_t c_count, s_count;
    uint64_t rx_irq, rx_now;
    bool c_wait_tx, s_wait_tx;
    bool on;  // `lat on`: off by default, so the marks cost a test each, not a clock read
};
Lat g_lat;
// Each stage's samples, for medians: a mean is one preempted or first-time call away from
// meaning nothing under TCG (a stage's mean and median differed 10x in real-time runs).
uint32_t g_lat_c_samples[kClientMarks][kLatSamples], g_lat_s_samples[kServerMarks][kLatSamples];
uint64_t lat_now() { return g_lat.on ? arch::now_ns() : 0; }

// A call's marks are of one exchange only when they come in order: a call that also looked a
// name up (or whose marks another event overwrote) is not sampled (its differences wrapped).
template <size_t N>
bool lat_in_order(const uint64_t (&m)[N]) {
    for (size_t i = 1; i < N; ++i)
        if (m[i] < m[i - 1]) return false;
    return true;
}

void lat_client_done() {
    if (!g_lat.on || !lat_in_order(g_lat.c)) return;
    for (size_t i = 1; i < kClientMarks; ++i) {
        const uint64_t d = g_lat.c[i] - g_lat.c[i - 1];
        g_lat.c_sum[i] += d;
        if (g_lat.c_count < kLatSamples) g_lat_c_samples[i][g_lat.c_count] = net::clamp_u32(d);
    }
    ++g_lat.c_count;
}
void lat_server_done() {
    if (!g_lat.on || !lat_in_order(g_lat.s)) return;
    for (size_t i = 1; i < kServerMarks; ++i) {
        const uint64_t d = g_lat.s[i] - g_lat.s[i - 1];
        g_lat.s_sum[i] += d;
        if (g_lat.s_count < kLatSamples) g_lat_s_samples[i][g_lat.s_count] = net::clamp_u32(d);
    }
    ++g_lat.s_count;
}

// The median of a stage's first n samples (sorts them in place: printing ends a measurement).
unsigned long lat_median(uint32_t* a, uint64_t count) {
    return net::median_u32(a, count < kLatSamples ? static_cast<size_t>(count) : kLatSamples);
}

Op* op_of(kernel::ListNode* n) { return KERNEL_CONTAINER_OF(n, Op, link); }
RemoteRec* rec_of(kernel::ListNode* n) { return KERNEL_CONTAINER_OF(n, RemoteRec, link); }

// run_caller_now: the op's thread runs at once (Event::signal_and_run), before this pass goes on;
// for a send's reply, so the caller's next call is taken in this same pass.
void finish(Op* op, Status s, bool run_caller_now = false) {
    op->status = s;
    {
        IrqLock lock;
        op->finished = true;
        if (op->in_abandons) {  // finished before the net thread got to the abandon
            kernel::List::remove(&op->abandon_link);
            op->in_abandons = false;
        }
    }
    if (run_caller_now) op->done.signal_and_run();
    else op->done.signal();
}

// submit() with a deadline, for ops the net thread can give up (kRead, kLookup): past the deadline an op
// not yet taken is withdrawn; a started one is handed back through g.abandons, and the net
// thread ends it (kTimedOut) within one pass, unless it ended meanwhile. Either way the op is
// off every list and finished before this returns, so it may live on the caller's stack.
Status submit_until(Op* op, uint64_t deadline_ns) {
    if (!g.running) return Status::kNotSupported;
    if (deadline_ns != kernel::kNoDeadline && arch::now_ns() >= deadline_ns) return Status::kTimedOut;
    bool wake;
    {
        IrqLock lock;
        g.ops.push_back(&op->link);
        wake = !g.rounds_recheck;
    }
    if (wake) net::net_wake();
    if (op->done.wait(deadline_ns) == Status::kOk) return op->status;
    {
        IrqLock lock;
        if (!op->taken) {
            kernel::List::remove(&op->link);
            return Status::kTimedOut;
        }
        if (!op->finished) {  // else it ended just after the deadline: its signal came or comes
            g.abandons.push_back(&op->abandon_link);
            op->in_abandons = true;
        }
    }
    net::net_wake();
    op->done.wait(kernel::kNoDeadline);  // finish() signals exactly once, maybe already did
    return op->status;
}

// Hands an op to the net thread and waits for it to end.
Status submit(Op* op) { return submit_until(op, kernel::kNoDeadline); }

// Net thread: ends the ops handed back by submit_until (each still in progress: finish() takes
// a finished one off the list). A read's pull is abandoned; a lookup leaves g.lookups and the
// engine ends it (its slot free at once, not after the K probe intervals of asking).
void give_up(smp::Instant now, kernel::List& abandoned) {
    while (kernel::ListNode* n = abandoned.pop_front()) {
        Op* op = KERNEL_CONTAINER_OF(n, Op, abandon_link);
        if (op->kind == OpKind::kRead) {
            RemoteRec* r = op->rec;
            if (r->read_op == op) {  // (else its record ended the read first, and finished it)
                g.engine->abandon_read(now, smp::RequestHandle{r->handle});
                r->read_op = nullptr;
            }
        } else {
            kernel::List::remove(&op->link);  // kLookup: on g.lookups until answered
            g.engine->cancel_lookup(smp::LookupHandle{op->handle});
        }
        finish(op, Status::kTimedOut);
    }
}

Status from_wire(smp::ErrorCode e, uint32_t app) {
    using smp::ErrorCode;
    switch (e) {
    case ErrorCode::kOk: return Status::kOk;
    case ErrorCode::kNoSuchChannel:
    case ErrorCode::kNoSuchService: return Status::kNoSuchService;
    case ErrorCode::kTooLarge: return Status::kMessageTooLarge;
    case ErrorCode::kCancelled:
    case ErrorCode::kTimedOut: return Status::kTimedOut;
    case ErrorCode::kAppError: return app ? static_cast<Status>(app) : Status::kMessageError;
    case ErrorCode::kServerGone: return Status::kServerExited;
    case ErrorCode::kHostDown: return Status::kHostDown;
    case ErrorCode::kPeerRebooted:
    case ErrorCode::kStale: return Status::kPeerRebooted;
    case ErrorCode::kNoResources:
    case ErrorCode::kBusy: return Status::kLimitReached;
    default: return Status::kInvalidArgument;
    }
}

size_t str_len(const char* s) {
    size_t n = 0;
    while (s[n]) ++n;
    return n;
}
void str_copy(char* dst, const char* src, size_t cap) {
    size_t i = 0;
    for (; src[i] && i + 1 < cap; ++i) dst[i] = src[i];
    dst[i] = '\0';
}

// ---- lwIP side ---------------------------------------------------------------------------------

enum class Rounds { kIdle, kBusy, kRingFull };
Rounds run_rounds(smp::Instant now);

u8_t raw_input(void*, struct raw_pcb*, struct pbuf* p, const ip_addr_t* addr) {
    // A raw PCB's pbuf starts at the IP header.
    const struct ip_hdr* ip = static_cast<const struct ip_hdr*>(p->payload);
    const u16_t hlen = IPH_HL_BYTES(ip);
    const uint32_t src = lwip_ntohl(ip4_addr_get_u32(ip_2_ip4(addr)));
    const uint32_t dst = lwip_ntohl(ip4_addr_get_u32(ip4_current_dest_addr()));
    if (pbuf_remove_header(p, hlen) != 0) {
        pbuf_free(p);
        return 1;
    }
    smp::ConstBytes parts[kRxChainMax];
    size_t n = 0;
    for (struct pbuf* q = p; q && n < kRxChainMax; q = q->next) {
        if (q->len) parts[n++] = smp::ConstBytes{static_cast<const uint8_t*>(q->payload), q->len};
        if (q->tot_len == q->len) break;
    }
    size_t total = 0;
    for (size_t i = 0; i < n; ++i) total += parts[i].size;
    if (g_lat.on) {
        g_lat.rx_irq = net::net_last_irq_ns();
        g_lat.rx_now = arch::now_ns();
    }
    if (total != p->tot_len) {
        ++g.rx_chain_too_long;  // FIXME: a datagram in more than kRxChainMax pbufs is dropped
    } else {
        const smp::Instant now = now_us();
        heard_from(src, now);
        g.engine->handle_datagram(now, src, dst, smp::ConstChain{parts, n});
        // What the datagram caused (a request for a server here, a reply for a caller, packets
        // to send) is taken care of now, inside lwIP's input like an ICMP echo's answer, not
        // after the rest of the pass (the driver's ring, lwIP's timers): a request's server
        // runs, and its reply leaves, before this returns. net_run still runs later in the pass.
        run_rounds(now);
    }
    pbuf_free(p);
    return 1;
}

// A packet the NIC's TX ring had no room for (lwIP's ERR_MEM): kept and sent first next time,
// rather than lost and retransmitted an RTO later.
struct pbuf* g_held;
// The packet buffer transmit() has the engine write into: static memory with room for the
// Ethernet header in front, then the IP header we write (the PCB is HDRINCL: lwIP neither builds
// nor checksums it, and does not add and remove header room twice), then the SMP packet;
// wrapped in a custom pbuf for each packet (a heap pbuf costs an allocation, a trim to the
// packet's size and a free: ~300 guest instructions per packet). lwIP hands it back through
// tx_buf_free once the driver has copied the frame (at once, in linkoutput); while something
// holds it (the ring-full retry, ARP's queue), packets are staged in tx_buffer and copied into
// heap pbufs.
constexpr size_t kTxLinkRoom = LWIP_MEM_ALIGN_SIZE(PBUF_LINK);  // the Ethernet header
constexpr size_t kIpHeaderBytes = IP_HLEN;
struct TxBuf {
    struct pbuf_custom pc;
    uint8_t* mem;  // kTxLinkRoom + kIpHeaderBytes + mtu_max bytes
    bool busy;
};
uint16_t g_ip_id;

// Version 4, no options, DF (SPEC 2: never fragmented), TTL 64, protocol 121, our address.
void write_ip_header(uint8_t* ip, size_t payload_bytes, uint32_t dst_ipv4) {
    const size_t total = kIpHeaderBytes + payload_bytes;
    const uint32_t src = g.config.local_ipv4;
    const uint16_t id = ++g_ip_id;
    ip[0] = 0x45;
    ip[1] = 0;
    ip[2] = static_cast<uint8_t>(total >> 8);
    ip[3] = static_cast<uint8_t>(total);
    ip[4] = static_cast<uint8_t>(id >> 8);
    ip[5] = static_cast<uint8_t>(id);
    ip[6] = 0x40;  // DF
    ip[7] = 0;
    ip[8] = IP_DEFAULT_TTL;
    ip[9] = kSmpProtocol;
    ip[10] = ip[11] = 0;
    for (int i = 0; i < 4; ++i) {
        ip[12 + i] = static_cast<uint8_t>(src >> (24 - 8 * i));
        ip[16 + i] = static_cast<uint8_t>(dst_ipv4 >> (24 - 8 * i));
    }
    const uint16_t c = smp::wire::ipv4_header_checksum(ip, kIpHeaderBytes);
    ip[10] = static_cast<uint8_t>(c >> 8);
    ip[11] = static_cast<uint8_t>(c);
}
TxBuf g_txbuf;
void tx_buf_free(struct pbuf*) { g_txbuf.busy = false; }
ip_addr_t g_held_to;
u16_t g_held_len;  // the IP packet's bytes (lwIP may have added an Ethernet header in front)
constexpr uint64_t kTxRetryNs = 25'000;  // QEMU drains the TX ring in its next bottom half: tens of us

enum class TxResult { kDone, kMore, kRingFull };

// Sends what the engine has: kMore when the burst limit stopped it, kRingFull when the NIC is
// busy (a packet is held for the retry).
TxResult transmit() {
    if (g_held) {
        // lwIP left the Ethernet header it added on the failed attempt: drop it.
        if (g_held->tot_len > g_held_len) pbuf_remove_header(g_held, g_held->tot_len - g_held_len);
        const err_t err = raw_sendto(g.pcb, g_held, &g_held_to);
        if (err == ERR_MEM) return TxResult::kRingFull;
        if (err != ERR_OK) ++g.tx_errors;
        pbuf_free(g_held);
        g_held = nullptr;
    }
    for (size_t i = 0; i < kTxBurstMax; ++i) {
        // The engine writes the packet straight into the buffer lwIP sends (no staging copy).
        const bool own = !g_txbuf.busy;
        uint8_t* ip = own ? g_txbuf.mem + kTxLinkRoom : g.tx_buffer;
        // The pass's clock for the first look (most find nothing, and a packet's RTO is
        // milliseconds); a fresh reading for the rest of a burst, which can take a while.
        smp::Transmit t = g.engine->poll_transmit(i == 0 ? last_us() : now_us(), ip + kIpHeaderBytes,
                                                  g.config.mtu_max);
        if (t.bytes == 0) return TxResult::kDone;
        write_ip_header(ip, t.bytes, t.dst_ipv4);
        const u16_t ip_bytes = static_cast<u16_t>(kIpHeaderBytes + t.bytes);
        struct pbuf* p;
        if (own) {
            g_txbuf.pc.custom_free_function = tx_buf_free;
            p = pbuf_alloced_custom(PBUF_LINK, ip_bytes, PBUF_RAM, &g_txbuf.pc, g_txbuf.mem,
                                    static_cast<u16_t>(kTxLinkRoom + kIpHeaderBytes + g.config.mtu_max));
            g_txbuf.busy = p != nullptr;
        } else {
            p = pbuf_alloc(PBUF_LINK, ip_bytes, PBUF_RAM);
            if (p) pbuf_take(p, g.tx_buffer, ip_bytes);
        }
        if (!p) {
            ++g.tx_no_pbuf;  // lost like a dropped frame: the engine retransmits
            continue;
        }
        ip_addr_t to;
        ip_addr_set_ip4_u32(&to, lwip_htonl(t.dst_ipv4));
        const err_t err = raw_sendto(g.pcb, p, &to);
        if (err == ERR_MEM) {
            ++g.tx_err_mem;
            g_held = p;
            g_held_to = to;
            g_held_len = ip_bytes;
            return TxResult::kRingFull;
        }
        if (err != ERR_OK) ++g.tx_errors;
        pbuf_free(p);
        if (g_lat.c_wait_tx) {
            g_lat.c[2] = arch::now_ns();
            g_lat.c_wait_tx = false;
        }
        if (g_lat.s_wait_tx) {
            g_lat.s[5] = arch::now_ns();
            g_lat.s_wait_tx = false;
            lat_server_done();
        }
    }
    return TxResult::kMore;
}

// ---- Records -----------------------------------------------------------------------------------

// Records by request handle: a direct-mapped table (the engine's handles differ in their low bits
// while live), checked against the record's own handle; a miss falls back to the scan. Every
// request looks its record up twice or more (kReadDone, kReplyDone), and a scan of the 256
// records cost ~750 guest instructions each time (measured with -icount).
constexpr size_t kRecIndexSlots = 512;  // power of two, >= Config::requests_max
RemoteRec* g_rec_index[kRecIndexSlots];
size_t rec_slot(uint32_t handle) { return handle & (kRecIndexSlots - 1); }

RemoteRec* find_rec(uint32_t handle) {
    RemoteRec* hit = g_rec_index[rec_slot(handle)];
    if (hit && hit->phase != Phase::kFree && hit->handle == handle) return hit;
    for (size_t i = 0; i < g.rec_count; ++i) {
        if (g.recs[i].phase != Phase::kFree && g.recs[i].handle == handle) return &g.recs[i];
    }
    return nullptr;
}

// A held reply's replier learns the outcome and returns from reply(); its ReplyHold (on its
// stack) is not touched after the signal.
void release_hold(RemoteRec* r, Status result) {
    kernel::ReplyHold* h = r->hold;
    if (!h) return;
    r->hold = nullptr;
    h->result = result;
    h->done.signal();
}

void free_rec(RemoteRec* r) {
    if (g_rec_index[rec_slot(r->handle)] == r) g_rec_index[rec_slot(r->handle)] = nullptr;
    release_hold(r, Status::kSenderUnblocked);  // freed before kReplyDone: the sender is gone
    if (r->read_op) finish(r->read_op, Status::kSenderUnblocked);  // its reader, never left waiting
    r->reply_count = 0;
    r->phase = Phase::kFree;
    r->handle = 0;
    r->read_op = nullptr;
    g.free_recs.push_back(&r->link);
}

// Kernel hooks (RemoteSenderOps).
size_t rec_copy_out(kernel::SenderRecord* record, size_t offset, kernel::MutParts dst) {
    RemoteRec* r = static_cast<RemoteRec*>(record->remote_context);
    if (offset >= r->eager_len) return 0;
    kernel::Part part{r->eager + offset, r->eager_len - offset};
    return kernel::copy_parts(dst, kernel::Parts{&part, 1}, 0);
}

kernel::Result<size_t> rec_read(kernel::SenderRecord* record, uint64_t serial, size_t offset,
                                kernel::MutParts dst, uint64_t deadline_ns) {
    using R = kernel::Result<size_t>;
    RemoteRec* r = static_cast<RemoteRec*>(record->remote_context);
    {
        // Still the message the receive id named? Its sender may have given up since, and the
        // record taken the next sender's request (whose bytes this reader must never see).
        IrqLock lock;
        if (record->serial != serial || record->state != kernel::RecordState::kReceived)
            return R::error(Status::kSenderUnblocked);
        if (offset >= record->send_size) return R::ok(0);
        const size_t want = kernel::parts_size(dst);
        if (offset + want <= r->eager_len || record->send_size <= r->eager_len)
            return R::ok(rec_copy_out(record, offset, dst));  // eager bytes: at most eager_bytes_max
    }
    // The engine also ends a pull by itself when the client dies, cancels or times out
    // (kRequestCancelled); the reader's own deadline ends the wait through submit_until.
    Op op;
    op.kind = OpKind::kRead;
    op.rec = r;
    op.serial = serial;
    op.offset = static_cast<uint32_t>(offset);
    for (size_t i = 0; i < dst.count; ++i)
        op.reply_parts[i] = smp::MutableBytes{static_cast<uint8_t*>(dst.parts[i].data), dst.parts[i].size};
    op.reply_count = dst.count;
    Status s = submit_until(&op, deadline_ns);
    if (s != Status::kOk) return R::error(s);
    return R::ok(op.size);
}

void rec_complete(kernel::SenderRecord* record, Status status, int32_t code, kernel::Parts reply,
                  kernel::ReplyHold* hold) {
    // Interrupts are disabled: hand the record to the net thread with its reply. A small reply
    // is copied into the record's eager buffer (the request is done with it); a larger one is
    // sent from the replier's own buffers, the replier waiting in reply() until the sender's
    // node has it all (kReplyDone), so no reply of any size takes this node's memory.
    RemoteRec* r = static_cast<RemoteRec*>(record->remote_context);
    g_lat.s[3] = lat_now();
    r->status = status;
    r->code = code;
    r->reply_count = 0;
    r->hold = nullptr;
    if (status == Status::kOk) {
        const size_t n = kernel::parts_size(reply);
        if (n && n <= g.config.eager_bytes_max) {
            kernel::MutPart mp{r->eager, n};
            kernel::copy_parts(kernel::MutParts{&mp, 1}, reply, 0);
            r->reply_parts[0] = smp::ConstBytes{r->eager, n};
            r->reply_count = 1;
        } else if (n && hold) {
            for (size_t i = 0; i < reply.count; ++i)
                r->reply_parts[i] = smp::ConstBytes{static_cast<const uint8_t*>(reply.parts[i].data),
                                                    reply.parts[i].size};
            r->reply_count = reply.count;
            r->hold = hold;
            hold->held = true;
        } else if (n) {
            r->status = Status::kInvalidArgument;  // cannot happen: only reply() carries parts
        }
    }
    r->phase = Phase::kCompleting;
    g.completions.push_back(&r->link);
    if (!g.rounds_recheck) net::net_wake();
}

const kernel::RemoteSenderOps kSenderOps = {rec_copy_out, rec_read, rec_complete};

// ---- Remote connections (RemoteConnectionOps), in the caller's thread --------------------------

kernel::Result<size_t> conn_send(void* handle, kernel::Parts message, kernel::MutParts reply,
                                 uint64_t deadline_ns, uint8_t priority, int32_t* reply_code) {
    using R = kernel::Result<size_t>;
    if (message.count > kernel::kPartsMax || reply.count > kernel::kPartsMax)
        return R::error(Status::kInvalidArgument);
    if (kernel::parts_size(message) > smp::wire::kMessageBytesMax)
        return R::error(Status::kMessageTooLarge);
    Op op;
    op.kind = OpKind::kSend;
    op.conn = static_cast<RemoteConn*>(handle);
    for (size_t i = 0; i < message.count; ++i)
        op.send_parts[i] = smp::ConstBytes{static_cast<const uint8_t*>(message.parts[i].data),
                                           message.parts[i].size};
    for (size_t i = 0; i < reply.count; ++i)
        op.reply_parts[i] = smp::MutableBytes{static_cast<uint8_t*>(reply.parts[i].data),
                                              reply.parts[i].size};
    op.send_count = message.count;
    op.reply_count = reply.count;
    op.deadline = deadline_ns == kernel::kNoDeadline ? smp::kNever : deadline_ns / 1000;
    op.priority = priority;
    const uint64_t t0 = lat_now();
    Status s = submit(&op);
    if (s == Status::kOk && g_lat.on) {
        g_lat.c[0] = t0;
        g_lat.c[6] = arch::now_ns();
        lat_client_done();
    }
    if (reply_code) *reply_code = op.code;
    if (s != Status::kOk) return R::error(s);
    return R::ok(op.size);
}

Status conn_pulse(void* handle, int32_t code, int64_t value, uint8_t priority) {
    if (code > 127) return Status::kInvalidArgument;  // the wire carries an 8-bit code
    Op op;
    op.kind = OpKind::kPulse;
    op.conn = static_cast<RemoteConn*>(handle);
    op.code = code;
    op.value = value;
    op.priority = priority;
    return submit(&op);
}

// The connection is freed by the net thread, after every op queued before (another thread's
// send or pulse on it, not yet started, still reads it there).
void conn_close(void* handle) {
    if (!g.running || kernel::thread_current() == g.net_thread) {
        if (g.running) g.engine->release_peer(smp::PeerRef{static_cast<RemoteConn*>(handle)->peer});
        kernel::heap::release(handle);
        return;
    }
    Op op;
    op.kind = OpKind::kClose;
    op.conn = static_cast<RemoteConn*>(handle);
    submit(&op);
}

const kernel::RemoteConnectionOps kConnectionOps = {conn_send, conn_pulse, conn_close};

// ---- The net thread ----------------------------------------------------------------------------

// Net thread: the names attached for a channel being destroyed leave the engine and the table;
// their remote pulse slots leave its pulse queue (the slots are reused by the next attach).
void detach_channel(kernel::Channel* ch) {
    for (Attached& a : g.attached) {
        if (a.channel != ch) continue;
        g.engine->name_detach(a.name);
        IrqLock lock;
        for (RemotePulseSlot& ps : a.pulse_slots) {
            if (ps.slot.link.linked()) kernel::List::remove(&ps.slot.link);
            ps.slot.count = 0;
        }
        a.channel = nullptr;
    }
}

// kernel::set_channel_destroy_hook: in the destroying thread, before the channel goes.
void on_channel_destroy(kernel::Channel* ch) {
    if (!g.running) return;
    bool attached = false;
    for (const Attached& a : g.attached) attached = attached || a.channel == ch;
    if (!attached) return;
    if (kernel::thread_current() == g.net_thread) {
        detach_channel(ch);
        return;
    }
    Op op;
    op.kind = OpKind::kDetach;
    op.channel = ch;
    submit(&op);
}

Attached* attached_at(uint32_t channel) {
    if (channel == 0 || channel > kAttachedMax) return nullptr;
    Attached* a = &g.attached[channel - 1];
    return a->channel ? a : nullptr;
}

// Reserved channels are answered here, in the net thread. The engine borrows a reply's bytes
// until kReplyDone, so each answer in flight keeps its own slot; with every slot taken the
// request waits (its engine record held, as any request's) and is answered when one frees.
// (They were once refused with engine->error(kBusy), which the engine does not take from an
// application: they went unanswered until the client's deadline.)
constexpr size_t kAnswersMax = 4;        // reserved answers awaiting their client's ack
struct ReservedAnswer {
    bool busy = false;
    uint32_t handle = 0;                 // the request it answers (valid while busy)
    char text[512];
    smp::ConstBytes part;
};
ReservedAnswer g_answers[kAnswersMax];
uint8_t g_question[64];
// Reserved requests waiting for a slot, oldest first: at most the engine's request records.
struct WaitingQuestion {
    uint32_t handle, channel, size;
};
WaitingQuestion* g_waiting = nullptr;  // requests_max of them (init)
size_t g_waiting_head = 0, g_waiting_count = 0;

// kReplyDone for a reserved answer: frees its slot. False when `handle` is not one of them.
bool release_answer(uint32_t handle) {
    for (ReservedAnswer& a : g_answers) {
        if (a.busy && a.handle == handle) {
            a.busy = false;
            return true;
        }
    }
    return false;
}

ReservedAnswer* free_answer_slot() {
    for (ReservedAnswer& a : g_answers)
        if (!a.busy) return &a;
    return nullptr;
}

void answer_reserved(const smp::Event& e) {
    ReservedAnswer* slot = free_answer_slot();
    if (!slot) {
        // Never more than the engine's request records are delivered at once, so it fits.
        ++g.answers_busy;
        const size_t cap = g.config.requests_max;
        if (g_waiting && g_waiting_count < cap) {
            g_waiting[(g_waiting_head + g_waiting_count) % cap] = WaitingQuestion{e.handle, e.channel, e.size};
            ++g_waiting_count;
        }
        return;
    }
    char* const text = slot->text;
    constexpr size_t kAnswerBytes = sizeof slot->text;
    size_t n = 0;
    if (e.channel == kNamesChannel) {
        for (const Attached& a : g.attached) {
            if (!a.channel) continue;
            size_t l = str_len(a.name);
            if (n + l + 1 >= kAnswerBytes) break;
            for (size_t i = 0; i < l; ++i) text[n++] = a.name[i];
            text[n++] = '\n';
        }
    } else {
        // The question (a service name) arrived eagerly: read it now.
        uint32_t q = e.size < sizeof g_question - 1 ? e.size : sizeof g_question - 1;
        smp::MutableBytes mb{g_question, q};
        g.engine->read(last_us(), smp::RequestHandle{e.handle}, 0, smp::MutableChain{&mb, 1});
        g_question[q] = 0;
        n = format_stats_line(reinterpret_cast<const char*>(g_question), text, kAnswerBytes);
    }
    slot->part = smp::ConstBytes{reinterpret_cast<const uint8_t*>(text), n};
    if (g.engine->reply(last_us(), smp::RequestHandle{e.handle}, 0, smp::ConstChain{&slot->part, 1}) ==
        smp::ErrorCode::kOk) {
        slot->busy = true;  // until kReplyDone
        slot->handle = e.handle;
    }
}

// A slot came free: the oldest waiting question takes it (one its client gave up on meanwhile
// is refused by the engine, kInvalid, and the next one is tried).
void answer_waiting() {
    const size_t cap = g.config.requests_max;
    while (g_waiting_count && free_answer_slot()) {
        const WaitingQuestion w = g_waiting[g_waiting_head];
        g_waiting_head = (g_waiting_head + 1) % cap;
        --g_waiting_count;
        smp::Event e;
        e.type = smp::EventType::kRequest;
        e.handle = w.handle;
        e.channel = w.channel;
        e.size = w.size;
        answer_reserved(e);
    }
}

void on_request(const smp::Event& e) {
    ++g.requests_in;
    if (e.channel == kNamesChannel || e.channel == kStatsChannel) {
        answer_reserved(e);
        return;
    }
    Attached* a = attached_at(e.channel);
    if (!a) {
        ++g.no_channel;
        g.engine->error(last_us(), smp::RequestHandle{e.handle}, smp::ErrorCode::kNoSuchChannel);
        return;
    }
    uint8_t* eager = g.engine->eager_in_place(smp::RequestHandle{e.handle});
    if (!eager) return;  // ended already (a CANCEL in the same batch): kRequestCancelled follows
    kernel::ListNode* n = g.free_recs.pop_front();
    if (!n) {  // cannot happen: the pool has requests_max records
        g.engine->error(last_us(), smp::RequestHandle{e.handle}, smp::ErrorCode::kServerGone);
        return;
    }
    RemoteRec* r = rec_of(n);
    r->handle = e.handle;
    r->phase = Phase::kInKernel;
    g_rec_index[rec_slot(e.handle)] = r;
    r->attached_index = a - g.attached;
    ++a->requests;
    kernel::SenderRecord& k = r->record;
    k.priority = e.priority < kernel::kPriorityMin ? kernel::kPriorityMin
               : e.priority > kernel::kPriorityMax ? kernel::kPriorityMax : e.priority;
    k.send_size = e.size;
    k.reply_capacity = e.reply_bytes_max;
    k.sender = kernel::SenderId{e.peer.value, 0};
    // The eager bytes are where the engine wrote them as they arrived (Config::eager_store):
    // the server's receive copies them from there, no copy before it.
    r->eager = eager;
    r->eager_len = e.eager_bytes < g.config.eager_bytes_max ? e.eager_bytes : g.config.eager_bytes_max;
    if (r->eager_len > e.size) r->eager_len = e.size;
    g_lat.s[0] = g_lat.rx_irq;
    g_lat.s[1] = g_lat.rx_now;
    g_lat.s[2] = lat_now();
    // A server waiting in receive takes the request and runs now: its reply is then sent
    // within this pass, not the next one.
    if (kernel::enqueue_remote(a->channel, &k, true) != Status::kOk) {
        g.engine->error(last_us(), smp::RequestHandle{e.handle}, smp::ErrorCode::kServerGone);
        free_rec(r);
    }
}

void on_request_cancelled(const smp::Event& e) {
    RemoteRec* r = find_rec(e.handle);
    if (!r) return;
    bool taken;
    {
        // Checked and taken at once: a server above the net thread's priority may reply in
        // between (rec_complete: kCompleting, on g.completions), and a record freed here too
        // would then sit on two lists.
        IrqLock lock;
        taken = r->phase == Phase::kInKernel;
        if (taken) kernel::cancel_remote(&r->record);  // queued: leaves; received: unblock pulse
    }
    if (taken) {
        free_rec(r);  // ends a read in progress (kSenderUnblocked)
    } else if (r->phase == Phase::kReplying) {
        free_rec(r);  // the handle is dead: the engine no longer borrows the reply
    }
    // kCompleting: the reply/error below gets kInvalid and frees it.
}

// The pulse slot for connection `source` of sender `peer` (interrupts disabled): its own, else
// one free (not pending), else the last one, shared (counted).
kernel::PulseSlot* pulse_slot_for(Attached& a, uint32_t peer, uint16_t source) {
    RemotePulseSlot* free_slot = nullptr;
    for (RemotePulseSlot& ps : a.pulse_slots) {
        if (ps.peer == peer && ps.source == source) return &ps.slot;
        if (!free_slot && !ps.slot.link.linked()) free_slot = &ps;
    }
    if (free_slot) {
        free_slot->peer = peer;
        free_slot->source = source;
        return &free_slot->slot;
    }
    ++g.pulses_shared;
    return &a.pulse_slots[kPulseSlotsPerName - 1].slot;
}

void on_event(const smp::Event& e) {
    switch (e.type) {
    case smp::EventType::kRequest: on_request(e); break;
    case smp::EventType::kRequestCancelled: on_request_cancelled(e); break;
    case smp::EventType::kReadDone: {
        RemoteRec* r = find_rec(e.handle);
        if (!r) break;
        if (r->read_op) {
            Op* op = r->read_op;
            r->read_op = nullptr;
            op->size = e.bytes;
            finish(op, from_wire(e.error, 0));
        }
        break;
    }
    case smp::EventType::kReplyDone: {
        if (release_answer(e.handle)) {
            answer_waiting();
            break;
        }
        RemoteRec* r = find_rec(e.handle);
        if (r && r->phase == Phase::kReplying) {
            release_hold(r, e.error == smp::ErrorCode::kOk ? Status::kOk : Status::kSenderUnblocked);
            free_rec(r);
        }
        break;
    }
    case smp::EventType::kSendDone:
        for (kernel::ListNode* n = g.inflight.front(); n; n = g.inflight.next(n)) {
            Op* op = op_of(n);
            if (op->handle != e.handle) continue;
            kernel::List::remove(n);
            op->size = e.size;
            op->code = static_cast<int32_t>(e.status);
            g_lat.c[3] = g_lat.rx_irq;
            g_lat.c[4] = g_lat.rx_now;
            g_lat.c[5] = lat_now();
            finish(op, from_wire(e.error, e.status), true);
            break;
        }
        break;
    case smp::EventType::kNameResolved: {
        bool taken = false;
        for (kernel::ListNode* n = g.lookups.front(); n; n = g.lookups.next(n)) {
            Op* op = op_of(n);
            if (op->handle != e.handle) continue;
            kernel::List::remove(n);
            op->peer = e.peer.value;  // its reference goes to the connection name_open makes
            op->channel_number = e.channel;
            finish(op, from_wire(e.error, 0));
            taken = true;
            break;
        }
        // Given up before the answer came: nobody will hold its PeerRef.
        if (!taken && e.peer.valid()) g.engine->release_peer(e.peer);
        break;
    }
    case smp::EventType::kPulse: {
        ++g.pulses_in;
        Attached* a = attached_at(e.channel);
        if (!a || e.code < 0) {
            ++g.pulses_dropped;
            break;
        }
        const uint8_t prio = e.priority < kernel::kPriorityMin ? kernel::kPriorityMin
                           : e.priority > kernel::kPriorityMax ? kernel::kPriorityMax : e.priority;
        Status st;
        {
            IrqLock lock;  // a receive takes slots off the channel meanwhile
            kernel::PulseSlot* slot = pulse_slot_for(*a, e.peer.value, e.source);
            st = kernel::pulse_remote(a->channel, slot, e.code, static_cast<int64_t>(e.value), prio,
                                      kernel::SenderId{e.peer.value, 0});
        }
        if (st != Status::kOk) ++g.pulses_dropped;
        break;
    }
    case smp::EventType::kPeerDown:
        ++g.peer_down_events;  // its sends and requests end with their own events
        if (e.error == smp::ErrorCode::kHostDown) {
            // Detection time: how long after the peer was last heard from it was declared down
            // (a peer never heard from has no figure).
            if (Heard* h = heard_find(g.engine->peer_info(e.peer).ipv4)) {
                const smp::Instant now = last_us();
                if (!h->down_since_heard)
                    h->down_detect_us = now > h->last_us ? now - h->last_us : 0;
                h->down_since_heard = true;
                ++h->downs;
            }
        }
        break;
    }
}

void start_op(Op* op) {
    const smp::Instant now = last_us();
    switch (op->kind) {
    case OpKind::kSend: {
        g_lat.c[1] = lat_now();
        g_lat.c_wait_tx = g_lat.on;
        auto r = g.engine->start_send(now, smp::PeerRef{op->conn->peer}, op->conn->channel,
                                      smp::ConstChain{op->send_parts, op->send_count},
                                      smp::MutableChain{op->reply_parts, op->reply_count},
                                      op->deadline, op->priority);
        if (!r.ok()) {
            finish(op, from_wire(r.error, 0));
            return;
        }
        op->handle = r.value.value;
        g.inflight.push_back(&op->link);
        return;
    }
    case OpKind::kPulse: {
        smp::ErrorCode e = g.engine->pulse(now, smp::PeerRef{op->conn->peer}, op->conn->channel,
                                           static_cast<int8_t>(op->code),
                                           static_cast<uint32_t>(op->value), op->priority,
                                           op->conn->source);
        finish(op, from_wire(e, 0));
        return;
    }
    case OpKind::kRead: {
        RemoteRec* r = op->rec;
        if (r->phase != Phase::kInKernel || r->record.state != kernel::RecordState::kReceived ||
            r->record.serial != op->serial) {  // (reused for another request since)
            finish(op, Status::kSenderUnblocked);
            return;
        }
        smp::ErrorCode e = g.engine->read(now, smp::RequestHandle{r->handle}, op->offset,
                                          smp::MutableChain{op->reply_parts, op->reply_count});
        if (e != smp::ErrorCode::kOk) {
            finish(op, Status::kSenderUnblocked);
            return;
        }
        r->read_op = op;
        return;
    }
    case OpKind::kLookup: {
        smp::PeerRef where{};
        if (op->node) {
            auto p = g.engine->peer_by_name(op->node);
            if (!p.ok()) {
                finish(op, Status::kNoSuchNode);  // not in the peer table (`peers` lists it)
                return;
            }
            where = p.value;
            g.engine->release_peer(where);  // a static peer: never retired, held or not
        }
        auto l = g.engine->name_lookup(now, op->name, where);
        if (!l.ok()) {
            finish(op, from_wire(l.error, 0));
            return;
        }
        op->handle = l.value.value;
        g.lookups.push_back(&op->link);
        return;
    }
    case OpKind::kAttach: {
        size_t free_slot = kAttachedMax;
        for (size_t i = 0; i < kAttachedMax; ++i) {
            if (!g.attached[i].channel && free_slot == kAttachedMax) free_slot = i;
            if (g.attached[i].channel && kernel::string_equal(g.attached[i].name, op->name)) {
                finish(op, Status::kInvalidArgument);
                return;
            }
        }
        if (free_slot == kAttachedMax) {
            finish(op, Status::kLimitReached);
            return;
        }
        smp::ErrorCode e = g.engine->name_attach(op->name, static_cast<uint32_t>(free_slot + 1));
        if (e == smp::ErrorCode::kOk) {
            Attached& a = g.attached[free_slot];
            str_copy(a.name, op->name, sizeof a.name);
            a.channel = op->channel;
            a.requests = 0;
            for (RemotePulseSlot& ps : a.pulse_slots) ps = RemotePulseSlot{};
        }
        finish(op, from_wire(e, 0));
        return;
    }
    case OpKind::kDetach:
        detach_channel(op->channel);
        finish(op, Status::kOk);
        return;
    case OpKind::kClose:
        g.engine->release_peer(smp::PeerRef{op->conn->peer});
        kernel::heap::release(op->conn);
        finish(op, Status::kOk);
        return;
    case OpKind::kHoldPeer:
        finish(op, from_wire(g.engine->hold_peer(smp::PeerRef{op->peer}), 0));
        return;
    case OpKind::kReleasePeer:
        g.engine->release_peer(smp::PeerRef{op->peer});
        finish(op, Status::kOk);
        return;
    case OpKind::kSnapshot:
        op->fn(op->ctx);
        finish(op, Status::kOk);
        return;
    }
}

void complete_rec(RemoteRec* r) {
    const smp::Instant now = last_us();
    g_lat.s[4] = lat_now();
    g_lat.s_wait_tx = g_lat.on;
    if (Op* reader = r->read_op) {
        // Another thread answered this receive id (or its channel went) while a read() pulled
        // the rest of the message: the pull ends, and so does the read, as a local read() of
        // an answered id would (the engine's reply drops the pull without a kReadDone).
        g.engine->abandon_read(now, smp::RequestHandle{r->handle});
        r->read_op = nullptr;
        finish(reader, r->status == Status::kChannelDestroyed ? Status::kChannelDestroyed
                                                              : Status::kBadReceiveId);
    }
    smp::ErrorCode e;
    if (r->status == Status::kOk) {
        e = g.engine->reply(now, smp::RequestHandle{r->handle}, static_cast<uint32_t>(r->code),
                            smp::ConstChain{r->reply_parts, r->reply_count});
    } else {
        e = g.engine->error(now, smp::RequestHandle{r->handle}, smp::ErrorCode::kAppError,
                            static_cast<uint32_t>(r->status));
    }
    if (e != smp::ErrorCode::kOk) {
        free_rec(r);  // cancelled meanwhile (kInvalid): nobody to answer
        return;
    }
    r->phase = Phase::kReplying;
}

void net_start_client(void*) {
    g.pcb = raw_new(kSmpProtocol);
    if (!g.pcb) {
        kernel::print("bridge: error: raw_new(%u) failed: remote IPC is off\n", kSmpProtocol);
        return;
    }
    raw_setflags(g.pcb, RAW_FLAGS_HDRINCL);  // transmit() writes the IP header
    raw_recv(g.pcb, raw_input, nullptr);
    g.net_thread = kernel::thread_current();
    g.running = true;
}

// The engine's events, in order, until none is left or a thread queued an op or a completion
// meanwhile (one an event handed the CPU to: a server that replied, a caller that sent again):
// the next round takes those, and sends what they give, before the rest of the events. Returns
// how many it handled.
size_t take_events(smp::Event& e) {
    size_t n = 0;
    while (g.ops.empty() && g.completions.empty() && g.engine->poll_event(e)) {
        on_event(e);
        ++n;
    }
    return n;
}

// What other threads queued (ops, completions, abandons), the engine's events and its packets,
// round after round until a round finds nothing new: round 0 always runs (a datagram handled in
// raw_input may have left events and packets); later rounds only when the previous one left
// more to do (ops or completions queued by other threads meanwhile, or by a thread handed the
// CPU, a burst cut short, events raised while transmitting), so an exchange costs one pass,
// not a pass plus an empty one (~300 guest instructions each).
Rounds run_rounds(smp::Instant now) {
    // However this returns, a thread queueing something from then on wakes the net thread; what
    // was queued while it was promised a look (a ring-full return) gets a wake-up here.
    struct Recheck {
        ~Recheck() {
            if (!g.rounds_recheck) return;  // returned after a look (kIdle) or the last round
            IrqLock lock;
            g.rounds_recheck = false;
            if (!g.ops.empty() || !g.completions.empty()) net::net_wake();
        }
    } recheck;
    bool again = true;
    smp::Event e;
    constexpr int kRounds = 8;
    for (int round = 0; round < kRounds; ++round) {
        // A look without the lock (single CPU: what another thread queues before this look is
        // seen by it; what it queues after, while rounds_recheck is false, wakes us again).
        g.rounds_recheck = false;
        asm volatile("" ::: "memory");
        const bool queued = !g.ops.empty() || !g.completions.empty() || !g.abandons.empty();
        if (!again && !queued) return Rounds::kIdle;
        again = false;
        // Until the next look, what other threads queue (the server this round's request is
        // handed to, replying) is taken by that look: no wake-up needed. Not in the last round.
        g.rounds_recheck = round + 1 < kRounds;
        asm volatile("" ::: "memory");
        bool sends = false;
        if (queued) {
            kernel::List ops, completions, abandoned;
            ops.init();
            completions.init();
            abandoned.init();
            {
                IrqLock lock;
                for (kernel::ListNode* n = g.ops.front(); n; n = g.ops.next(n)) op_of(n)->taken = true;
                ops.splice_back(g.ops);
                completions.splice_back(g.completions);
                for (kernel::ListNode* n = g.abandons.front(); n; n = g.abandons.next(n))
                    KERNEL_CONTAINER_OF(n, Op, abandon_link)->in_abandons = false;
                abandoned.splice_back(g.abandons);
            }
            if (!abandoned.empty()) give_up(now, abandoned);
            sends = !ops.empty() || !completions.empty();
            while (kernel::ListNode* n = ops.pop_front()) start_op(op_of(n));
            while (kernel::ListNode* n = completions.pop_front()) complete_rec(rec_of(n));
        }
        // A caller's request or a server's reply leaves before the engine's events are handled
        // (what a request's ACK released, say: see take_events); otherwise the events come
        // first, and the transmit sends what they left.
        if (!sends) {
            take_events(e);
            if (!g.ops.empty() || !g.completions.empty()) {
                again = true;  // stopped for those: the next round sends what they give first
                continue;
            }
        }
        const TxResult tx = transmit();
        if (tx == TxResult::kRingFull) {
            if (sends) take_events(e);  // not held up by the device's ring
            return Rounds::kRingFull;
        }
        if (tx == TxResult::kMore) again = true;
        // The events after a send, and anything the transmit pass raised (rare): another round
        // sends what they leave.
        if (take_events(e) && g.engine->transmit_pending()) again = true;
    }
    return Rounds::kBusy;
}

uint64_t net_run(void*, uint64_t now_ns) {
    if (!g.running) return kernel::kNoDeadline;
    if (now_ns / 1000 > g_last_us) g_last_us = now_ns / 1000;
    const smp::Instant now = last_us();
    // Timers after the rounds: the packet that woke us is answered first, and the one look at
    // next_timeout below serves both the check and the sleep deadline.
    Rounds r = run_rounds(now);
    smp::Instant t = g.engine->next_timeout();
    if (r != Rounds::kRingFull && t <= now) {
        g.engine->handle_timeout(now);
        r = run_rounds(now);  // what the timers left: retransmissions, probes, events
        t = g.engine->next_timeout();
    }
    uint64_t next = t == smp::kNever ? kernel::kNoDeadline : t * 1000;
    if (r == Rounds::kRingFull) {
        // The device frees TX slots on its own time: try again shortly, without spinning.
        const uint64_t retry = now_ns + kTxRetryNs;
        return retry < next ? retry : next;
    }
    if (r == Rounds::kBusy) return 0;  // more to do: run again at once
    return next;
}

bool parse_peers(const char* text) {
    // node1@10.77.0.11,node2@10.77.0.12,...
    const char* p = text;
    while (*p) {
        if (g.static_count == kStaticPeersMax) return false;
        char name[kServiceNameBytes];
        size_t n = 0;
        while (*p && *p != '@' && n + 1 < sizeof name) name[n++] = *p++;
        name[n] = 0;
        if (*p != '@' || n == 0) return false;
        ++p;
        char addr[16];
        size_t m = 0;
        while (*p && *p != ',' && m + 1 < sizeof addr) addr[m++] = *p++;
        addr[m] = 0;
        uint32_t ip;
        if (!net::parse_ipv4(addr, &ip)) return false;
        if (*p == ',') ++p;
        str_copy(g.static_names[g.static_count], name, kServiceNameBytes);
        g.static_peers[g.static_count] = smp::StaticPeer{g.static_names[g.static_count], ip, 0};
        ++g.static_count;
    }
    return true;
}

void print_wire_error(const char* what) { kernel::print("bridge: error: %s\n", what); }

// auth_key=: the cluster key (SPEC.md 3.4), 64 hex digits. False if malformed.
bool parse_auth_key(const char* text, smp::wire::AuthKey* key) {
    auto nibble = [](char ch) -> int {
        if (ch >= '0' && ch <= '9') return ch - '0';
        if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
        if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
        return -1;
    };
    for (size_t i = 0; i < smp::wire::kAuthKeyBytes; ++i) {
        const int hi = text[2 * i] ? nibble(text[2 * i]) : -1;
        const int lo = hi >= 0 && text[2 * i + 1] ? nibble(text[2 * i + 1]) : -1;
        if (hi < 0 || lo < 0) return false;
        key->bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
    }
    return text[2 * smp::wire::kAuthKeyBytes] == 0;
}

}  // namespace

// ---- Public ------------------------------------------------------------------------------------

bool running() { return g.running; }

void init() {
    g.ops.init();
    g.completions.init();
    g.abandons.init();
    g.free_recs.init();
    g.inflight.init();
    g.lookups.init();
    const kernel::CommandLine& cl = kernel::command_line();
    if (const char* peers = cl.get("peers")) {
        if (!parse_peers(peers)) {
            print_wire_error("bad peers= (expected NAME@A.B.C.D,...; at most 32): no remote IPC");
            return;
        }
    }
    net::NodeConfig node;
    const char* bad = "";
    if (net::node_config_parse(cl, &node, &bad) != Status::kOk) return;  // node_main reports it
    smp::Config& c = g.config;
    c.local_ipv4 = node.ip;
    c.local_endpoint = 0;
    if (const char* key = cl.get("auth_key")) {
        if (!parse_auth_key(key, &c.auth_key)) {
            print_wire_error("bad auth_key= (expected 64 hex digits, the cluster key): no remote IPC");
            return;
        }
        c.auth = true;  // every packet carries a MAC; only nodes with this key are believed
    }
    // A peer sends min(its own eager_bytes_max, ours (our HELLO gives it), the window we grant)
    // eagerly and the rest is pulled (SPEC.md 5.3). Linux peers (libsmp) send up to 64 KiB
    // eagerly: accept up to 64 KiB a request (SPEC default 8 KiB), so that a 64 KiB message goes
    // whole in its first flight, no PULL round trip for it or for its reply; and a 128 KiB window
    // (SPEC default 32 KiB), so that two of them from one peer can be in flight at once (several
    // senders on one node pipeline: 4 senders of 64 KiB messages, 0.94-1.15x TCP with a 64 KiB
    // window, 1.01-1.27x with this one, higher in each of 5 paired bench runs). Memory: the pool bound
    // (pool_bytes, 256 KiB) is unchanged, so 2 peers at full window fill it (others wait at home
    // for credit); the eager store is requests_max x 64 KiB = 16 MiB of a 128 MiB node.
    c.window_bytes = 128 * 1024;
    c.eager_bytes_max = 64 * 1024;
    // Retransmission timers run up to 10 ms late (SPEC.md 5.2): back-to-back calls replace
    // each request's timer long before it is due, and the one-shot armed for the first (the
    // PIT, not reprogrammed for a later deadline: 3 port writes) fired for nothing every RTO +
    // ack_delay (4 ms), a QEMU timer and a vCPU wake-up each. Now about every 14 ms.
    c.timer_slack_us = 10'000;
    uint64_t seed = arch::cycle_counter() ^ (uint64_t(node.ip) << 32) ^ arch::now_ns();
    seed ^= seed >> 33;
    seed *= 0xff51afd7ed558ccdull;
    seed ^= seed >> 33;
    c.incarnation = seed ? seed : 1;
    // Our own entry stays out of the engine's table: a node does not probe itself.
    size_t k = 0;
    for (size_t i = 0; i < g.static_count; ++i) {
        if (g.static_peers[i].ipv4 == node.ip) continue;
        g.static_peers[k++] = g.static_peers[i];
    }
    c.static_peers = g.static_peers;
    c.static_peers_count = static_cast<uint16_t>(k);
    if (smp::Engine::check_config(c) != smp::ErrorCode::kOk) {
        print_wire_error("the engine rejected its configuration");
        return;
    }
    // Each request's eager bytes, written there by the engine as they arrive; the bridge also
    // keeps a small reply there (rec_complete) until the engine has sent it.
    uint8_t* eager = static_cast<uint8_t*>(kernel::heap::allocate(smp::Engine::eager_store_bytes(c)));
    c.eager_store = eager;
    const size_t bytes = smp::Engine::memory_bytes(c);
    void* arena = kernel::heap::allocate(bytes);  // 16-byte aligned (heap::kAlignBytes)
    g.tx_buffer = static_cast<uint8_t*>(kernel::heap::allocate(kIpHeaderBytes + c.mtu_max));
    g_txbuf.mem = static_cast<uint8_t*>(kernel::heap::allocate(kTxLinkRoom + kIpHeaderBytes + c.mtu_max));
    g.rec_count = c.requests_max;
    g.recs = static_cast<RemoteRec*>(kernel::heap::allocate(sizeof(RemoteRec) * g.rec_count));
    g_waiting = static_cast<WaitingQuestion*>(kernel::heap::allocate(sizeof(WaitingQuestion) * c.requests_max));
    if (!arena || !g.tx_buffer || !g_txbuf.mem || !g.recs || !eager || !g_waiting) {
        print_wire_error("out of memory for the engine: no remote IPC");
        return;
    }
    // A function-local static: constructed once, here (no placement new in this kernel).
    static smp::Engine engine(c, arena, bytes);
    g.engine = &engine;
    if (!g.engine->ok()) {
        print_wire_error("the engine did not start");
        return;
    }
    for (size_t i = 0; i < g.rec_count; ++i) {
        g.recs[i] = RemoteRec();
        RemoteRec* r = &g.recs[i];
        r->record.kind = kernel::SenderKind::kRemote;
        r->record.remote_context = r;
        if (kernel::record_register(&r->record) != Status::kOk) {
            print_wire_error("kernel record registry full");
            return;
        }
        g.free_recs.push_back(&r->link);
    }
    g.engine->name_attach("_names", kNamesChannel);
    g.engine->name_attach("_stats", kStatsChannel);
    kernel::set_remote_sender_ops(&kSenderOps);
    kernel::set_remote_connection_ops(&kConnectionOps);
    kernel::set_channel_destroy_hook(on_channel_destroy);
    if (!net::net_register_client(net::NetClient{"smp", net_start_client, net_run, nullptr})) {
        print_wire_error("net client table full");
        return;
    }
    if (const char* sv = cl.get("services")) services_start(sv);
    ipc_test_server_start();
    kernel::print("bridge: engine %zu bytes, %zu static peers, %zu remote records, incarnation %lx%s\n",
                  bytes, k, g.rec_count, static_cast<unsigned long>(c.incarnation),
                  c.auth ? ", authenticated (auth_key)" : "");
}

Status name_attach(const char* name, kernel::Channel* channel) {
    if (!name || !channel || str_len(name) == 0 || str_len(name) > smp::wire::kNameBytesMax)
        return Status::kInvalidArgument;
    Op op;
    op.kind = OpKind::kAttach;
    op.name = name;
    op.channel = channel;
    return submit(&op);
}

kernel::Channel* local_channel(const char* name) {
    for (const Attached& a : g.attached)
        if (a.channel && kernel::string_equal(a.name, name)) return a.channel;
    return nullptr;
}

namespace {
// Gives back a PeerRef nothing will hold (from any thread but the net thread's own code).
void release_peer_ref(uint32_t peer) {
    Op op;
    op.kind = OpKind::kReleasePeer;
    op.peer = peer;
    submit(&op);
}

// A connection on a PeerRef reference already taken for it (a lookup's answer): the
// connection holds it until conn_close, and gives it back if it cannot be made.
kernel::Result<kernel::Connection*> connect_held(uint32_t peer, uint32_t channel) {
    using R = kernel::Result<kernel::Connection*>;
    auto* conn = static_cast<RemoteConn*>(kernel::heap::allocate(sizeof(RemoteConn)));
    if (!conn) {
        release_peer_ref(peer);
        return R::error(Status::kNoMemory);
    }
    conn->peer = peer;
    conn->channel = channel;
    {
        IrqLock lock;  // connections are made from any thread
        if (++g.next_conn_source == 0) g.next_conn_source = 1;
        conn->source = g.next_conn_source;
    }
    auto c = kernel::connect_remote(conn);
    if (!c.is_ok()) {
        kernel::heap::release(conn);
        release_peer_ref(peer);
    }
    return c;
}
}  // namespace

kernel::Result<kernel::Connection*> connect_peer_channel(uint32_t peer, uint32_t channel) {
    Op op;
    op.kind = OpKind::kHoldPeer;  // a reference of its own: the peer's other holders may go
    op.peer = peer;
    if (Status s = submit(&op); s != Status::kOk) return kernel::Result<kernel::Connection*>::error(s);
    return connect_held(peer, channel);
}

kernel::Result<kernel::Connection*> name_open(const char* target, uint64_t deadline_ns,
                                              uint32_t* peer_out) {
    using R = kernel::Result<kernel::Connection*>;
    if (peer_out) *peer_out = 0;
    char node[kServiceNameBytes] = {};
    const char* service = target;
    for (const char* p = target; *p; ++p) {
        if (*p != '/') continue;
        size_t n = static_cast<size_t>(p - target);
        if (n == 0 || n >= sizeof node) return R::error(Status::kInvalidArgument);
        for (size_t i = 0; i < n; ++i) node[i] = target[i];
        service = p + 1;
        break;
    }
    if (!*service || str_len(service) > smp::wire::kNameBytesMax)
        return R::error(Status::kInvalidArgument);
    const bool local_node = node[0] && kernel::string_equal(node, net::net_config().name);
    if (!node[0] || local_node) {
        if (kernel::Channel* ch = local_channel(service)) return kernel::connect(ch);
        if (local_node) return R::error(Status::kNoSuchService);
    }
    // The engine copies the name; a lookup given up at the deadline ends later in the engine
    // (K probe intervals at most), its answer dropped.
    Op op;
    op.kind = OpKind::kLookup;
    op.node = node[0] ? node : nullptr;
    op.name = service;
    Status s = submit_until(&op, deadline_ns);
    if (s != Status::kOk) return R::error(s);
    if (op.peer == 0) {
        kernel::Channel* ch = local_channel(service);
        return ch ? kernel::connect(ch) : R::error(Status::kNoSuchService);
    }
    if (peer_out) *peer_out = op.peer;
    return connect_held(op.peer, op.channel_number);
}

size_t format_stats_line(const char* service, char* out, size_t cap) {
    size_t hwm = 0;
    for (const Attached& a : g.attached) {
        if (!a.channel || !kernel::string_equal(a.name, service)) continue;
        hwm = kernel::channel_stats(a.channel).queued_high_water;
    }
    const smp::Stats& s = g.engine->stats();
    return kernel::format(out, cap, "hwm_queue=%zu hwm_proto_bytes=%lu bound_proto_bytes=%u", hwm,
                          static_cast<unsigned long>(s.pool_bytes_high), g.config.pool_bytes);
}

// ---- Shell snapshots -----------------------------------------------------------------------------

namespace {
struct PeerRow {
    char name[kServiceNameBytes];
    smp::PeerInfo info;
    bool known;
    uint32_t downs;            // "host down" events seen for its address
    uint64_t down_detect_us;   // the last one's detection time (after the last packet heard)
};
constexpr size_t kLearnedRowsMax = 64;  // the engine's peers_max
struct PeersSnap {
    PeerRow rows[kStaticPeersMax];
    size_t count;
    smp::PeerInfo learned[kLearnedRowsMax];  // peers the engine added, not in the static table
    size_t learned_count;                    // listed (at most kLearnedRowsMax)
    size_t learned_total;
};
void snap_peers(void* ctx) {
    auto* s = static_cast<PeersSnap*>(ctx);
    s->count = 0;
    for (size_t i = 0; i < g.config.static_peers_count; ++i) {
        PeerRow& row = s->rows[s->count++];
        str_copy(row.name, g.static_peers[i].name, sizeof row.name);
        auto p = g.engine->peer_by_name(g.static_peers[i].name);
        row.known = p.ok();
        if (p.ok()) g.engine->release_peer(p.value);  // only looked at (before: refs= says so)
        if (p.ok()) row.info = g.engine->peer_info(p.value);
        const Heard* h = heard_find(g.static_peers[i].ipv4);
        row.downs = h ? h->downs : 0;
        row.down_detect_us = h ? h->down_detect_us : 0;
    }
    // The rest of the engine's table: peers learned from their datagrams (Linux processes with
    // their own endpoints, nodes not in peers=) or added by name lookups.
    constexpr size_t kRefsMax = kLearnedRowsMax + kStaticPeersMax;
    static smp::PeerRef refs[kRefsMax];
    const size_t n = g.engine->peer_list(refs, kRefsMax);
    s->learned_count = s->learned_total = 0;
    for (size_t i = 0; i < n && i < kRefsMax; ++i) {
        bool is_static = false;
        for (size_t k = 0; k < s->count && !is_static; ++k) {
            auto p = g.engine->peer_by_name(g.static_peers[k].name);
            is_static = p.ok() && p.value.value == refs[i].value;
            if (p.ok()) g.engine->release_peer(p.value);
        }
        if (is_static) continue;
        ++s->learned_total;
        if (s->learned_count < kLearnedRowsMax)
            s->learned[s->learned_count++] = g.engine->peer_info(refs[i]);
    }
    if (n > kRefsMax) s->learned_total += n - kRefsMax;  // beyond the refs array: all learned
}
const char* peer_state_name(smp::PeerState s) {
    switch (s) {
    case smp::PeerState::kFree: return "free";
    case smp::PeerState::kConnecting: return "connecting";
    case smp::PeerState::kUp: return "up";
    case smp::PeerState::kDown: return "down";
    }
    return "?";
}
struct StatsSnap {
    smp::Stats s;
    uint64_t rx_chain_too_long, tx_no_pbuf, tx_errors, tx_err_mem, no_channel, pulses_in, pulses_dropped,
        pulses_shared, peer_down_events,
        requests_in, answers_busy;
    size_t hwm_queue;
};
void snap_stats(void* ctx) {
    auto* s = static_cast<StatsSnap*>(ctx);
    s->s = g.engine->stats();
    s->rx_chain_too_long = g.rx_chain_too_long;
    s->tx_no_pbuf = g.tx_no_pbuf;
    s->tx_errors = g.tx_errors;
    s->tx_err_mem = g.tx_err_mem;
    s->no_channel = g.no_channel;
    s->pulses_in = g.pulses_in;
    s->pulses_dropped = g.pulses_dropped;
    s->pulses_shared = g.pulses_shared;
    s->peer_down_events = g.peer_down_events;
    s->requests_in = g.requests_in;
    s->answers_busy = g.answers_busy;
    s->hwm_queue = 0;
    for (const Attached& a : g.attached) {
        if (!a.channel) continue;
        size_t h = kernel::channel_stats(a.channel).queued_high_water;
        if (h > s->hwm_queue) s->hwm_queue = h;
    }
}
Status snapshot(void (*fn)(void*), void* ctx) {
    Op op;
    op.kind = OpKind::kSnapshot;
    op.fn = fn;
    op.ctx = ctx;
    return submit(&op);
}
}  // namespace

void print_peers() {
    static PeersSnap s;
    if (snapshot(snap_peers, &s) != Status::kOk) {
        kernel::print("peers: error: remote IPC is not running\n");
        return;
    }
    // detect_bound_ms: the configured bound on detecting a dead peer (probe interval x K);
    // downs: "host down" events for the peer; down_detect_ms: how long after its last packet
    // arrived here the first of them (since that packet) came.
    kernel::print("peers: %zu static %zu learned detect_bound_ms=%lu\n", s.count, s.learned_total,
                  static_cast<unsigned long>(g.config.dead_after_us() / 1000));
    // The engine says kDown both before a first connection and after "host down": a peer never
    // declared down (no host-down event for its address) is shown as idle, not down.
    auto print_info = [](const smp::PeerInfo& in) {
        const Heard* h = heard_find(in.ipv4);
        const bool idle = in.state == smp::PeerState::kDown && (!h || h->downs == 0);
        kernel::print("state=%s srtt_us=%u rto_us=%u mtu=%u credit_bytes=%u outstanding_bytes=%u "
                      "refs=%u incarnation=%lx detect_bound_ms=%lu",
                      idle ? "idle" : peer_state_name(in.state), in.srtt_us, in.rto_us, in.mtu, in.credit_bytes,
                      in.outstanding_bytes, unsigned(in.app_refs), static_cast<unsigned long>(in.incarnation),
                      static_cast<unsigned long>(g.config.dead_after_us() / 1000));
    };
    for (size_t i = 0; i < s.count; ++i) {
        const PeerRow& r = s.rows[i];
        char addr[16];
        net::format_ipv4(r.info.ipv4, addr, sizeof addr);
        if (!r.known) {
            kernel::print("  %-10s (not in table)\n", r.name);
            continue;
        }
        kernel::print("  %-10s %-15s ", r.name, addr);
        print_info(r.info);
        if (r.downs) {
            kernel::print(" downs=%u down_detect_ms=%lu", r.downs,
                          static_cast<unsigned long>(r.down_detect_us / 1000));
        }
        kernel::print("\n");
    }
    // Learned peers: ADDRESS:ENDPOINT (a Linux process's endpoint; 0 for a kernel node).
    for (size_t i = 0; i < s.learned_count; ++i) {
        const smp::PeerInfo& in = s.learned[i];
        char addr[16], where[24];
        net::format_ipv4(in.ipv4, addr, sizeof addr);
        kernel::format(where, sizeof where, "%s:%u", addr, static_cast<unsigned>(in.endpoint));
        kernel::print("  %-10s %-21s ", "learned", where);
        print_info(in);
        kernel::print("\n");
    }
    if (s.learned_total > s.learned_count)
        kernel::print("  (%zu more learned peers not listed)\n", s.learned_total - s.learned_count);
}

size_t static_peer_names(const char** out, size_t cap) {
    size_t n = 0;
    for (size_t i = 0; g.running && i < g.config.static_peers_count && n < cap; ++i)
        out[n++] = g.static_peers[i].name;
    return n;
}

void print_names() {
    if (!g.running) {
        kernel::print("names: error: remote IPC is not running\n");
        return;
    }
    kernel::print("names: attached here:");
    for (const Attached& a : g.attached) {
        if (a.channel) kernel::print(" %s(channel %zu)", a.name, static_cast<size_t>(&a - g.attached + 1));
    }
    kernel::print("\n");
}

void print_lat(int on) {
    Lat l;
    {
        IrqLock lock;
        l = g_lat;
        if (on >= 0) g_lat.on = on != 0;
        for (uint64_t& v : g_lat.c_sum) v = 0;
        for (uint64_t& v : g_lat.s_sum) v = 0;
        g_lat.c_count = g_lat.s_count = 0;
    }
    if (on >= 0) net::net_turn_stats_enable(on != 0);
    const net::TurnStats t = net::net_turn_stats(true);
    if (on >= 0) {
        kernel::print("lat: %s\n", on ? "on (counts from now; `lat` prints and resets)" : "off");
        return;
    }
    if (!l.on) kernel::print("lat: off (`lat on` first)\n");
    auto mean = [](uint64_t sum, uint64_t n) { return static_cast<unsigned long>(n ? sum / n : 0); };
    kernel::print("lat: node in_node_ns=%lu (n=%lu) outside_ns=%lu (n=%lu) medians in_node_ns=%lu "
                  "outside_ns=%lu\n",
                  mean(t.in_node_ns, t.in_node_count), static_cast<unsigned long>(t.in_node_count),
                  mean(t.outside_ns, t.outside_count), static_cast<unsigned long>(t.outside_count),
                  static_cast<unsigned long>(t.in_node_median_ns),
                  static_cast<unsigned long>(t.outside_median_ns));
    kernel::print("lat: client n=%lu to_net=%lu engine_tx=%lu wire=%lu irq_to_rx=%lu rx_to_done=%lu "
                  "done_to_caller=%lu\n",
                  static_cast<unsigned long>(l.c_count), mean(l.c_sum[1], l.c_count),
                  mean(l.c_sum[2], l.c_count), mean(l.c_sum[3], l.c_count), mean(l.c_sum[4], l.c_count),
                  mean(l.c_sum[5], l.c_count), mean(l.c_sum[6], l.c_count));
    auto cm = [&](size_t i) { return lat_median(g_lat_c_samples[i], l.c_count); };
    auto sm = [&](size_t i) { return lat_median(g_lat_s_samples[i], l.s_count); };
    if (l.c_count)
        kernel::print("lat: client medians to_net=%lu engine_tx=%lu wire=%lu irq_to_rx=%lu "
                      "rx_to_done=%lu done_to_caller=%lu\n",
                      cm(1), cm(2), cm(3), cm(4), cm(5), cm(6));
    kernel::print("lat: server n=%lu irq_to_rx=%lu rx_to_queued=%lu queued_to_reply=%lu "
                  "reply_to_net=%lu net_to_tx=%lu\n",
                  static_cast<unsigned long>(l.s_count), mean(l.s_sum[1], l.s_count),
                  mean(l.s_sum[2], l.s_count), mean(l.s_sum[3], l.s_count), mean(l.s_sum[4], l.s_count),
                  mean(l.s_sum[5], l.s_count));
    if (l.s_count)
        kernel::print("lat: server medians irq_to_rx=%lu rx_to_queued=%lu queued_to_reply=%lu "
                      "reply_to_net=%lu net_to_tx=%lu\n",
                      sm(1), sm(2), sm(3), sm(4), sm(5));
}

void print_stats() {
    static StatsSnap s;
    if (snapshot(snap_stats, &s) != Status::kOk) {
        kernel::print("stats: error: remote IPC is not running\n");
        return;
    }
    const smp::Stats& t = s.s;
    auto u = [](uint64_t v) { return static_cast<unsigned long>(v); };
    uint64_t decode = 0;
    for (uint64_t d : t.decode_errors) decode += d;
    kernel::print("stats: packets_out=%lu packets_in=%lu bytes_out=%lu bytes_in=%lu "
                  "retransmitted=%lu duplicates=%lu\n",
                  u(t.packets_out), u(t.packets_in), u(t.bytes_out), u(t.bytes_in),
                  u(t.retransmissions), u(t.duplicates));
    kernel::print("stats: sends_completed=%lu requests_delivered=%lu requests_in=%lu probes_sent=%lu "
                  "peers_down=%lu peers_rebooted=%lu busy_sent=%lu resets_sent=%lu resets_limited=%lu\n",
                  u(t.sends_completed), u(t.requests_delivered), u(s.requests_in), u(t.probes_sent),
                  u(t.peers_down), u(t.peers_rebooted), u(t.busy_sent), u(t.resets_sent), u(t.resets_limited));
    kernel::print("stats: drops decode=%lu not_mine=%lu auth=%lu no_peer_slot=%lu unexpected=%lu "
                  "control_full=%lu rx_chain_too_long=%lu tx_no_pbuf=%lu tx_errors=%lu tx_ring_full=%lu "
                  "no_channel=%lu pulses_in=%lu pulses_dropped=%lu pulses_shared=%lu answers_busy=%lu\n",
                  u(decode), u(t.dropped_not_mine), u(t.dropped_auth), u(t.dropped_no_peer_slot),
                  u(t.dropped_unexpected), u(t.dropped_control_full), u(s.rx_chain_too_long),
                  u(s.tx_no_pbuf), u(s.tx_errors), u(s.tx_err_mem), u(s.no_channel), u(s.pulses_in), u(s.pulses_dropped),
                  u(s.pulses_shared), u(s.answers_busy));
    kernel::print("stats: hwm_queue=%zu hwm_proto_bytes=%lu bound_proto_bytes=%u "
                  "requests_high=%lu bound_requests=%u sends_high=%lu peers_high=%lu "
                  "bound_peers=%u engine_arena_bytes=%zu eager_store_bytes=%zu\n",
                  s.hwm_queue, u(t.pool_bytes_high), g.config.pool_bytes, u(t.requests_high),
                  g.config.requests_max, u(t.sends_high), u(t.peers_high), g.config.peers_max,
                  smp::Engine::memory_bytes(g.config), smp::Engine::eager_store_bytes(g.config));
    kernel::print("stats: peers_retired=%lu peers_restored=%lu refusals_received=%lu "
                  "lives_checked=%lu challenges_sent=%lu\n",
                  u(t.peers_retired), u(t.peers_restored), u(t.refusals_received), u(t.lives_checked),
                  u(t.challenges_sent));
}

}  // namespace bridge

namespace net {
// The weak hook of net/net_thread.h: the bridge, its services and its shell commands.
void node_extensions() {
    bridge::init();
    bridge::register_commands();
}
}  // namespace net
