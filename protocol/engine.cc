// The SMP engine (SPEC.md sections 5 to 9). Reading order: records and tables; the arena;
// handles and events; peers (HELLO, liveness, MTU); client sends; server requests; pulls (the
// Transfer both sides use); decoding an input; choosing an output; timers.
#include "protocol/engine.h"

#include <new>

namespace smp {

using wire::AckKind;
using wire::DataKind;
using wire::Message;
using wire::Type;

// SPEC.md ties (section 8 defaults, section 5.5 liveness arithmetic).
static_assert(Config{}.probes_dead == 50 && Config{}.probe_interval_us == 20'000,
              "SPEC 5.5: K = 50 probes every 20 ms");
static_assert(Config{}.probe_interval_us * uint64_t(Config{}.probes_dead) <= 1'000'000,
              "SPEC 5.5: default detection bound at most 1 s");
static_assert(Config{}.eager_bytes_max == 8 * 1024 && Config{}.window_txns == 16, "SPEC 8");
static_assert(Config{}.message_bytes_max == wire::kMessageBytesMax, "SPEC 5.3");
// The rest of SPEC.md section 8's table, row by row.
static_assert(Config{}.peers_max == 64 && Config{}.sends_max == 256 && Config{}.requests_max == 256,
              "SPEC 8: tables");
static_assert(Config{}.pool_bytes == 256 * 1024 && Config{}.window_bytes == 32 * 1024 &&
                  Config{}.pull_window_bytes == 256 * 1024,
              "SPEC 8: pool, window, pull window");
static_assert(Config{}.rto_initial_us == 100'000 && Config{}.rto_min_us == 2'000 &&
                  Config{}.rto_max_us == 200'000 && Config{}.ack_delay_us == 2'000,
              "SPEC 8: rto initial / min / max, ack_delay");
static_assert(uint64_t(Config{}.probe_interval_us) * Config{}.probes_dead == 1'000'000 &&
                  Config{}.retries_max == 64 && Config{}.peer_linger_us == 10'000'000 &&
                  Config{}.mtu_max == 1500,
              "SPEC 8: dead_after, retries_max, peer_linger, mtu_max");
static_assert(Config{}.control_max == 64 && Config{}.timer_slack_us == 0, "SPEC 10 (control_max), 5.2 (slack)");

namespace {

// 65535 first: veth and loopback carry the largest IPv4 packet, and each packet fewer is a pass
// through the IP stack fewer (capped by the local and the peer's MTU, so a 1500 path skips it).
constexpr uint16_t kMtuCandidates[] = {wire::kPacketBytesMax, 9000, 1500, 1280, 1024, wire::kMtuMin};
constexpr size_t kMtuCandidateCount = sizeof kMtuCandidates / sizeof kMtuCandidates[0];
constexpr uint8_t kMtuProbeTries = 3;
constexpr uint32_t kTxnWindowMax = 64;  // the server's done-bitmap is 64 bits

Instant min_t(Instant a, Instant b) { return a < b ? a : b; }
uint32_t min_u(uint32_t a, uint32_t b) { return a < b ? a : b; }
uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

size_t cstr_len(const char* s, size_t max) {
    size_t n = 0;
    while (n <= max && s[n]) n++;
    return n;
}

// A set of disjoint byte ranges [lo, hi) with a fixed capacity: what a puller holds, what a data
// source owes. Inserting into a full set fails (the other side asks again): never overflows.
struct RangeSet {
    static constexpr int kMax = 16;
    uint32_t lo[kMax];
    uint32_t hi[kMax];
    uint8_t n = 0;

    void clear() { n = 0; }
    bool insert(uint32_t a, uint32_t b) {
        if (a >= b) return true;
        int i = 0;
        while (i < n && hi[i] < a) i++;
        int j = i;
        while (j < n && lo[j] <= b) {
            if (lo[j] < a) a = lo[j];
            if (hi[j] > b) b = hi[j];
            j++;
        }
        int removed = j - i;
        if (removed == 0) {
            if (n == kMax) return false;
            for (int k = n; k > i; k--) {
                lo[k] = lo[k - 1];
                hi[k] = hi[k - 1];
            }
            n++;
        } else {
            for (int k = j; k < n; k++) {
                lo[k - removed + 1] = lo[k];
                hi[k - removed + 1] = hi[k];
            }
            n = uint8_t(n - removed + 1);
        }
        lo[i] = a;
        hi[i] = b;
        return true;
    }
    // Removes [lo[0], lo[0] + bytes) from the front (used by data sources).
    void consume_front(uint32_t bytes) {
        lo[0] += bytes;
        if (lo[0] >= hi[0]) {
            for (int k = 1; k < n; k++) {
                lo[k - 1] = lo[k];
                hi[k - 1] = hi[k];
            }
            n--;
        }
    }
    bool covers(uint32_t a, uint32_t b) const {
        if (a >= b) return true;
        for (int i = 0; i < n; i++) {
            if (lo[i] <= a && hi[i] >= b) return true;
        }
        return false;
    }
    // First byte at or after `from` not in the set.
    uint32_t first_missing(uint32_t from) const {
        for (int i = 0; i < n; i++) {
            if (lo[i] <= from && hi[i] > from) from = hi[i];
        }
        return from;
    }
    uint32_t highest() const { return n ? hi[n - 1] : 0; }
};

// What a puller (the server reading a request, the client fetching a reply) tracks.
struct Transfer {
    bool active = false;
    uint32_t lo = 0, hi = 0;        // the bytes wanted
    uint32_t requested = 0;         // [lo, requested) asked for (or sent eagerly)
    RangeSet have;
    wire::Range pending[wire::kPullRangesMax];  // ranges for the next PULL
    uint8_t pending_n = 0;
    uint32_t nack_upto = 0;         // holes below this were already asked for again
    Instant rto_at = kNever;
    uint32_t rto_us = 0;
    uint16_t retries = 0;

    bool complete() const { return have.covers(lo, hi); }
    void add_pending(uint32_t a, uint32_t b) {
        if (a >= b) return;
        if (pending_n && pending[pending_n - 1].offset + pending[pending_n - 1].bytes == a) {
            pending[pending_n - 1].bytes += b - a;
            return;
        }
        if (pending_n == wire::kPullRangesMax) return;  // asked again on the next timeout
        pending[pending_n++] = wire::Range{a, b - a};
    }
};

enum class SendState : uint8_t {
    kFree = 0,
    kWaiting,    // no credit, no free txn, or the peer is connecting: blocked at home
    kSent,       // request out, nothing heard yet: retransmitted on RTO
    kServed,     // the server has it (ACK, PULL): waiting for the reply; liveness covers death
    kReceiving,  // a reply header arrived: pulling the rest
    kClosing,    // the caller has its outcome; a CANCEL is outstanding
};

struct Send {
    uint16_t gen = 1;
    uint16_t tx_next = 0;      // transmit list link (index + 1); kept across reuse, like gen
    bool tx_queued = false;
    SendState state = SendState::kFree;
    bool is_pulse = false;
    bool tx_request = false;   // eager segments (or the PULSE) due from tx_offset
    bool tx_cancel = false;
    bool retransmission = false;
    uint16_t peer = 0;
    uint16_t next_free = 0;
    uint32_t txn = 0;
    uint32_t channel = 0;
    ConstChain msg{nullptr, 0};
    uint32_t total = 0, eager = 0, tx_offset = 0;
    MutableChain reply{nullptr, 0};
    uint32_t reply_cap = 0;
    Instant deadline = kNever;
    uint8_t priority = 0;
    int8_t code = 0;
    uint32_t value = 0;
    uint16_t source = 0;       // pulses: the caller's connection number
    Instant rto_at = kNever;
    uint32_t rto_us = 0;
    uint16_t retries = 0;
    Instant sent_at = 0;
    Instant tx_began = 0;      // when the request's first transmission was admitted
    ErrorCode cancel_reason = ErrorCode::kCancelled;
    uint32_t reply_total = 0, reply_status = 0;
    Transfer in;               // the reply's bytes
    RangeSet out;              // request bytes the server pulled and we still owe
};

enum class ReqState : uint8_t {
    kFree = 0,
    kAssembling,  // eager bytes still arriving
    kDelivered,   // kRequest event raised; the server application has it
    kReplying,    // reply or error given; kept until the client acknowledges it
};

struct Req {
    uint16_t gen = 1;
    uint16_t tx_next = 0;      // transmit list link (index + 1); kept across reuse, like gen
    bool tx_queued = false;
    ReqState state = ReqState::kFree;
    bool tx_reply = false;
    bool reply_heard = false;  // the client pulled: it has the reply header
    bool reading = false;
    // With an eager store: freed, but its end event (kRequestCancelled / kReplyDone) not yet
    // taken by the application, which may still use the record's area: off the free list until
    // poll_event hands that event out. (In the padding: sizeof(Req) unchanged.)
    bool parked = false;
    uint16_t peer = 0;
    uint16_t next_free = 0;
    uint32_t txn = 0, channel = 0, total = 0, eager = 0, reply_max = 0, deadline_wire = 0;
    // What the client announced as eager. `eager` (what we keep) may be less if the client did
    // not keep to the limit our HELLO gave: the excess is pulled like a large message's tail
    // (SPEC.md 5.3).
    uint32_t eager_wire = 0;
    uint8_t priority = 0;
    Instant deadline = kNever;
    Instant heard = 0;         // last REQUEST packet: an assembly silent for 4 x dead_after is abandoned
    uint32_t pool_head = 0, pool_blocks = 0;  // eager bytes: a chain of pool blocks
    uint32_t held = 0;         // eager bytes counted against the peer's window
    RangeSet eager_have;
    MutableChain read_dst{nullptr, 0};
    uint32_t read_offset = 0, read_len = 0;
    Transfer in;
    ConstChain reply_parts{nullptr, 0};
    uint32_t reply_total = 0, reply_eager = 0, status = 0, tx_offset = 0;
    ErrorCode reply_error = ErrorCode::kOk;
    Instant rto_at = kNever;
    uint32_t rto_us = 0;
    uint16_t retries = 0;
    Instant reply_at = 0;      // when the reply was given (its first packet leaves then)
    bool reply_resent = false; // sent again (timeout or a repeated REQUEST): no RTT sample
    RangeSet out;              // reply bytes the client pulled and we still owe
};

struct Peer {
    uint16_t gen = 1;
    uint16_t tx_next = 0;      // transmit list link (index + 1); kept across reuse, like gen
    bool tx_queued = false;
    PeerState state = PeerState::kFree;
    bool is_static = false;
    uint32_t ipv4 = 0;
    uint16_t endpoint = 0;
    // PeerRefs the application holds (peer(), a lookup's answer, hold_peer(), less
    // release_peer()): while any, the peer is not retired before its linger time. kRefsPinned:
    // counted past what an application that never releases could be keeping track of; stays.
    uint16_t app_refs = 0;
    uint64_t incarnation = 0;   // 0: not heard from yet
    // With a key (SPEC 3.4): the incarnation was taken from a HELLO naming no incarnation of
    // ours (a peer connecting to us, or a recording of a dead life's), and nothing from it has
    // named our current one since. Our own sends wait until the peer echoes our HELLO's nonce;
    // until then a RESET or an echo naming another incarnation replaces it without ending
    // anything (nothing of ours or of the application's went to it).
    bool unproven = false;
    bool hello_due = false;     // (HELLO, below: here, where it fills the padding)
    bool numbered = false;      // we gave a txn toward it (its next_txn is worth keeping, 5.1)
    // client side toward the peer
    uint32_t next_txn = 1;
    bool credit_known = false;
    uint32_t credit_bytes = 0, credit_txns = 0, peer_message_max = 0;
    uint32_t peer_eager_max = 0;  // the largest eager part it keeps (its HELLO): we send no more
    uint32_t out_bytes = 0, out_txns = 0;
    // path
    uint16_t peer_mtu = wire::kMtuMin, mtu = wire::kMtuMin;
    uint8_t mtu_cand = 0, mtu_tries = 0;
    bool mtu_done = false;
    Instant mtu_at = kNever;
    uint32_t mtu_seq = 0;
    // round trip
    bool rtt_init = false;
    uint32_t srtt_us = 0, rttvar_us = 0, rto_us = 0;
    // liveness
    Instant last_heard = 0, last_business = 0;
    // Heard in a way a recording cannot repeat (SPEC 3.4, 5.5): without a key, = last_heard;
    // with one, only the echo of a recent probe or of our nonce, which is what liveness goes by.
    Instant alive_at = 0;
    Instant probe_at = kNever, probe_sent_at = 0;
    uint32_t probe_seq = 0;
    uint16_t unanswered = 0;
    bool probe_due = false, mtu_due = false;
    uint64_t prev_incarnation = 0;  // packets from the incarnation before a reboot are dropped
    // With a key (SPEC 3.4): a HELLO from another incarnation of a known peer is a claim, taken
    // as the peer's reboot only once that incarnation echoes a fresh nonce of ours (a recorded
    // HELLO played back cannot). The claim being checked:
    uint64_t claimed_incarnation = 0;
    uint32_t claim_nonce = 0;
    Instant claim_sent_at = 0;
    // With a key (SPEC 3.4, 5.1), as a server: while base is not set, when we last asked the
    // peer for its numbering and the nonce of that CHALLENGE (0: none asked). (Here, where they
    // take the room of a field no longer used and of padding: the record stays its size.)
    Instant numbering_asked_at = 0;
    uint32_t numbering_nonce = 0;
    // As a client: the last CHALLENGE of this peer we answered, and when (on_challenge; the
    // clock's low 32 bits, compared by their difference: a rate limit, not a deadline).
    uint32_t challenge_answered = 0;
    uint32_t challenge_answered_at = 0;
    // HELLO (and hello_due, above)
    uint32_t hello_nonce = 0;
    Instant hello_at = kNever, hello_sent_at = 0;
    uint16_t hello_tries = 0;
    // server side for the peer: every txn before base (in txn_before's cyclic order) is
    // finished; done bit i = the txn i steps after base (txn_dist)
    bool base_set = false;
    uint32_t base = 0;
    uint64_t done = 0;
    uint32_t pool_bytes = 0;    // eager bytes of this peer held in the pool
    // acknowledgements waiting for a packet to ride on
    wire::AckEntry acks[wire::kAckEntriesMax];
    uint8_t nacks = 0;
    Instant ack_due = kNever;
    Instant reset_ok_at = 0;
    // With a key: a packet of ours went to the peer since the last refusal we took (SPEC 3.4: a
    // recorded refusal played again is taken at most once per packet it could have answered).
    bool refusal_ok = false;
    uint16_t sends_live = 0, reqs_live = 0;
    char name[wire::kNameBytesMax];
    uint8_t name_bytes = 0;
};

// What an idle peer retired early leaves behind (SPEC.md 5.1): enough to refuse its delayed
// duplicates and to go on with its numbering, until its linger time is over. `peers_max` x
// kRetiredPerPeer of them, so that a table full of lingering peers (clients that came and went:
// each `smpctl call` is a new endpoint) does not shut new peers out for the linger time.
struct Retired {
    bool used = false;
    bool base_set = false;
    bool unproven = false;  // with a key: its incarnation was never proven (Peer::unproven)
    bool numbered = false;  // next_txn is a number we gave toward it (Peer::numbered)
    uint16_t endpoint = 0;
    uint32_t ipv4 = 0;
    uint32_t base = 0, next_txn = 0;
    uint64_t done = 0;
    uint64_t incarnation = 0;
    Instant since = 0;  // the peer's last business: it may go for good at since + peer_linger
};
constexpr size_t kRetiredPerPeer = 16;
static_assert(sizeof(Retired) == 48, "SPEC 5.1, 6.3: a retired peer's entry is 48 bytes");
constexpr uint16_t kRefsPinned = 0xFFFF;
constexpr uint32_t kProbesFresh = 4;  // with a key, a PROBE_ACK of one of our last 4 probes is alive

struct NameEntry {
    bool used = false;
    uint8_t bytes = 0;
    char name[wire::kNameBytesMax];
    uint32_t channel = 0;
    PeerRef peer;   // cache only
    uint32_t age = 0;
};

struct Lookup {
    uint16_t gen = 1;
    bool used = false;
    uint8_t bytes = 0;
    char name[wire::kNameBytesMax];
    PeerRef where;
    uint16_t answers_needed = 0, negatives = 0;
    uint64_t* answered = nullptr;  // a bit per peer slot that answered "no" (the arena's)
    uint16_t retries = 0;
    Instant rto_at = kNever;
    bool tx_due = false;
    uint16_t cursor = 0;       // next static peer to ask
};

struct Control {
    uint32_t dst_ipv4;
    Message msg;
};

size_t align_up(size_t n) { return (n + Engine::kMemoryAlign - 1) & ~(Engine::kMemoryAlign - 1); }

}  // namespace

// ---- The arena -------------------------------------------------------------------------------
using wire::txn_before;
using wire::txn_dist;
using wire::txn_next;

struct Engine::Impl {
    Peer* peers;
    Retired* retired;
    Send* sends;
    Req* reqs;
    uint8_t* pool;
    uint32_t* pool_next;
    Event* events;
    Control* controls;
    NameEntry* names;
    NameEntry* cache;
    Lookup* lookups;
    uint64_t* lookup_bits;   // lookups_max x answered_words(peers_max)
    uint32_t pool_block_count = 0, pool_free_head = 0, pool_free_count = 0;
    uint16_t send_free = 0, req_free = 0;  // free-list heads (index + 1; 0 = empty)
    uint32_t events_max = 0, ev_head = 0, ev_count = 0, pulse_events = 0;
    uint64_t numbering_lapse_us = 0;  // E::numbering_lapse, worked out once
    uint32_t ctl_head = 0, ctl_count = 0;
    Event ev_scratch;          // E::new_event's answer when the ring is full (never, by sizing)
    uint32_t nonce_state = 0;
    bool numbering_lost = false;  // a kept next number was dropped (E::fresh_numbering)
    uint32_t cache_clock = 0;
    wire::MacKey mac_key{};     // Config::auth_key's, made once (SPEC 3.4)
    Instant resets_since = 0;   // the probe interval the budget below counts in
    uint16_t resets_count = 0;  // RESETs to sources with no peer record sent in it
    Instant now = 0;           // the latest time any entry point was given
    // 1 + the highest slot ever taken: every slot at or past it is free, so the scans of every
    // call stop there (free lists reuse the lowest slots first, so these stay at the number of
    // things in progress at once, not at the configured maximum).
    uint16_t peers_hi = 0, sends_hi = 0, reqs_hi = 0, lookups_hi = 0;
    uint16_t peer_hint = 0;    // E::find_peer's last answer, tried first
    // next_timeout's answer, a function of the state only: every entry point that changes state
    // clears nt_valid (the kernel asks twice per pass of its net thread, often with nothing
    // changed between; each answer is a scan of every table).
    bool nt_valid = false;
    Instant nt_value = kNever;
    // Transmit work (SPEC-neutral bookkeeping). Event-driven work puts its record on one of three
    // FIFO lists (index + 1; 0 = empty), so poll_transmit looks only at records that have
    // something to send instead of scanning every table after every packet. Timers and the rarer
    // entry points set tx_scan instead: the next poll_transmit scans every table as before, and
    // once a scan finds nothing the lists are emptied (everything on them was idle).
    bool tx_scan = true;
    bool lookup_tx = false;    // a lookup may have a NAME_QUERY due
    uint16_t txq_peer_head = 0, txq_peer_tail = 0;
    uint16_t txq_send_head = 0, txq_send_tail = 0;
    uint16_t txq_req_head = 0, txq_req_tail = 0;
    // The releases a REQUEST's header made, left for later (E::on_request, E::flush_release):
    // at most one is pending, since every handle_datagram first does the one before.
    struct Release {
        bool due = false;
        uint16_t peer = 0;
        uint64_t incarnation = 0;  // the peer's when it was left: a reboot since drops it
        uint32_t ack = 0, low = 0;
        Instant at = 0;
    } release;

    // A send record off the free list, reset and kWaiting (its index in *index); null when
    // none is free. What outlives one use stays: the generation (stale handles keep failing)
    // and the transmit-list links (the record may still sit on a list from its last use).
    Send* take_send(size_t* index) {
        if (!send_free) return nullptr;
        const size_t si = send_free - 1;
        Send& s = sends[si];
        send_free = s.next_free;
        if (si >= sends_hi) sends_hi = uint16_t(si + 1);
        const uint16_t gen = s.gen, tx_next = s.tx_next;
        const bool tx_queued = s.tx_queued;
        new (&s) Send;
        s.gen = gen;
        s.tx_next = tx_next;
        s.tx_queued = tx_queued;
        s.state = SendState::kWaiting;
        *index = si;
        return &s;
    }
};

namespace {

struct Layout {
    size_t impl, peers, retired, sends, reqs, pool, pool_next, events, controls, names, cache, lookups,
        lookup_bits, total;
};

uint32_t events_needed(const Config& c) {
    // Each send ends with one event; each request raises at most three (request, read, end);
    // each peer at most one down event per cycle; plus lookups and the pulse allowance.
    return uint32_t(c.sends_max) + 3u * c.requests_max + 2u * c.peers_max + c.lookups_max +
           c.pulse_events_max + 1;
}

size_t answered_words(const Config& c) { return (size_t(c.peers_max) + 63) / 64; }

Layout layout(const Config& c) {
    Layout l{};
    // With an eager store the pool only counts blocks (pool_alloc): no bytes, no chains.
    size_t blocks = c.pool_block_bytes && !c.eager_store ? c.pool_bytes / c.pool_block_bytes : 0;
    size_t off = 0;
    auto take = [&](size_t bytes) {
        size_t at = off;
        off += align_up(bytes);
        return at;
    };
    l.impl = take(sizeof(Engine::Impl));
    l.peers = take(sizeof(Peer) * c.peers_max);
    l.retired = take(sizeof(Retired) * kRetiredPerPeer * c.peers_max);
    l.sends = take(sizeof(Send) * c.sends_max);
    l.reqs = take(sizeof(Req) * c.requests_max);
    l.pool = take(blocks * c.pool_block_bytes);
    l.pool_next = take(sizeof(uint32_t) * blocks);
    l.events = take(sizeof(Event) * events_needed(c));
    l.controls = take(sizeof(Control) * c.control_max);
    l.names = take(sizeof(NameEntry) * c.names_max);
    l.cache = take(sizeof(NameEntry) * c.names_cache_max);
    l.lookups = take(sizeof(Lookup) * c.lookups_max);
    l.lookup_bits = take(sizeof(uint64_t) * c.lookups_max * answered_words(c));
    l.total = off;
    return l;
}

}  // namespace

ErrorCode Engine::check_config(const Config& c) {
    bool ok = c.incarnation != 0 && c.first_txn != 0 && c.peers_max >= 1 && c.peers_max < 0xFFFF &&
              c.sends_max >= 1 &&
              c.sends_max < 0xFFFF && c.requests_max >= 1 && c.requests_max < 0xFFFF &&
              c.pool_block_bytes >= 64 && c.pool_bytes >= c.pool_block_bytes &&
              c.window_txns >= 1 && c.window_txns <= kTxnWindowMax &&
              c.window_bytes <= c.pool_bytes && c.eager_bytes_max <= c.window_bytes &&
              c.message_bytes_max <= wire::kMessageBytesMax && c.mtu_max >= wire::kMtuMin &&
              c.pull_window_bytes >= 2048 && c.rto_min_us >= 1 && c.rto_min_us <= c.rto_max_us &&
              c.rto_initial_us >= c.rto_min_us && c.probe_interval_us >= 1 && c.probes_dead >= 1 &&
              c.retries_max >= 1 && c.control_max >= 1 && c.lookups_max < 0xFFFF &&
              c.timer_slack_us <= c.rto_max_us &&
              (c.static_peers_count == 0 || c.static_peers != nullptr);
    // A key of all zeros is a key left unset (Config's default), never one chosen.
    uint8_t any = 0;
    for (size_t i = 0; i < wire::kAuthKeyBytes; i++) any |= c.auth_key.bytes[i];
    if (c.auth && any == 0) ok = false;
    return ok ? ErrorCode::kOk : ErrorCode::kInvalid;
}

size_t Engine::memory_bytes(const Config& config) { return layout(config).total; }

Engine::Engine(const Config& config, void* memory, size_t bytes) : config_(config) {
    if (check_config(config) != ErrorCode::kOk || memory == nullptr ||
        bytes < memory_bytes(config) || (uintptr_t(memory) & (kMemoryAlign - 1)) != 0)
        return;
    Layout l = layout(config);
    uint8_t* base = static_cast<uint8_t*>(memory);
    impl_ = new (base + l.impl) Impl;
    Impl& m = *impl_;
    m.peers = reinterpret_cast<Peer*>(base + l.peers);
    m.retired = reinterpret_cast<Retired*>(base + l.retired);
    m.sends = reinterpret_cast<Send*>(base + l.sends);
    m.reqs = reinterpret_cast<Req*>(base + l.reqs);
    m.pool = base + l.pool;
    m.pool_next = reinterpret_cast<uint32_t*>(base + l.pool_next);
    m.events = reinterpret_cast<Event*>(base + l.events);
    m.controls = reinterpret_cast<Control*>(base + l.controls);
    m.names = reinterpret_cast<NameEntry*>(base + l.names);
    m.cache = reinterpret_cast<NameEntry*>(base + l.cache);
    m.lookups = reinterpret_cast<Lookup*>(base + l.lookups);
    m.lookup_bits = reinterpret_cast<uint64_t*>(base + l.lookup_bits);
    for (size_t i = 0; i < config.peers_max; i++) new (&m.peers[i]) Peer;
    for (size_t i = 0; i < kRetiredPerPeer * config.peers_max; i++) new (&m.retired[i]) Retired;
    for (size_t i = 0; i < config.sends_max; i++) {
        new (&m.sends[i]) Send;
        m.sends[i].next_free = uint16_t(i + 2 <= config.sends_max ? i + 2 : 0);
    }
    m.send_free = 1;
    for (size_t i = 0; i < config.requests_max; i++) {
        new (&m.reqs[i]) Req;
        m.reqs[i].next_free = uint16_t(i + 2 <= config.requests_max ? i + 2 : 0);
    }
    m.req_free = 1;
    m.pool_block_count = config.pool_bytes / config.pool_block_bytes;
    if (!config.eager_store)
        for (uint32_t i = 0; i < m.pool_block_count; i++) m.pool_next[i] = i + 2 <= m.pool_block_count ? i + 2 : 0;
    m.pool_free_head = 1;
    m.pool_free_count = m.pool_block_count;
    m.events_max = events_needed(config);
    for (size_t i = 0; i < m.events_max; i++) new (&m.events[i]) Event;
    for (size_t i = 0; i < config.control_max; i++) new (&m.controls[i]) Control;
    for (size_t i = 0; i < config.names_max; i++) new (&m.names[i]) NameEntry;
    for (size_t i = 0; i < config.names_cache_max; i++) new (&m.cache[i]) NameEntry;
    for (size_t i = 0; i < config.lookups_max; i++) {
        new (&m.lookups[i]) Lookup;
        m.lookups[i].answered = m.lookup_bits + i * answered_words(config);
    }
    m.nonce_state = uint32_t(config.incarnation ^ (config.incarnation >> 32)) | 1;
    const uint64_t dead = config.dead_after_us();
    m.numbering_lapse_us = config.peer_linger_us > dead ? config.peer_linger_us - dead : config.peer_linger_us;
    if (config.auth) m.mac_key = wire::mac_key(config.auth_key);
    ok_ = true;
    // The static peer table (SPEC.md section 2): entries that are never evicted.
    for (size_t i = 0; i < config.static_peers_count; i++) {
        const StaticPeer& sp = config.static_peers[i];
        if (sp.ipv4 == config.local_ipv4 && sp.endpoint == config.local_endpoint) continue;
        Result<PeerRef> r = peer(sp.ipv4, sp.endpoint);
        if (!r.ok()) continue;
        Peer& p = m.peers[(r.value.value & 0xFFFF) - 1];
        p.is_static = true;
        p.app_refs = 0;  // the table's own entry: no application holds it yet
        p.name_bytes = uint8_t(cstr_len(sp.name, wire::kNameBytesMax));
        if (p.name_bytes > wire::kNameBytesMax) p.name_bytes = wire::kNameBytesMax;
        copy_bytes(reinterpret_cast<uint8_t*>(p.name), reinterpret_cast<const uint8_t*>(sp.name),
                   p.name_bytes);
    }
}

// ---- The engine's internal operations, as free functions over Engine::Impl -------------------
// (Kept out of the public header; `E` bundles what they need.)
namespace {

struct E {
    Engine::Impl& m;
    const Config& c;
    Stats& st;

    uint32_t make_handle(uint16_t gen, size_t index) const { return (uint32_t(gen) << 16) | uint32_t(index + 1); }
    // How long a window of eager segments took to leave (begun at `began`), at most rto_max: a
    // first timeout waits that much longer, for the receiver to take the window in.
    uint64_t window_time(Instant now, Instant began) const {
        const uint64_t t = now > began ? now - began : 0;
        return t < c.rto_max_us ? t : c.rto_max_us;
    }

    // -- transmit lists: records with something to send (see Impl::tx_scan) --
    template <typename T>
    static void tx_push(T* table, uint16_t& head, uint16_t& tail, size_t index) {
        T& x = table[index];
        if (x.tx_queued) return;
        x.tx_queued = true;
        x.tx_next = 0;
        if (tail) table[tail - 1].tx_next = uint16_t(index + 1);
        else head = uint16_t(index + 1);
        tail = uint16_t(index + 1);
    }
    template <typename T>
    static void tx_pop(T* table, uint16_t& head, uint16_t& tail) {
        T& x = table[head - 1];
        x.tx_queued = false;
        head = x.tx_next;
        if (!head) tail = 0;
    }
    void want_tx(uint16_t pi) { tx_push(m.peers, m.txq_peer_head, m.txq_peer_tail, pi); }
    void want_tx(Peer& p) { want_tx(uint16_t(&p - m.peers)); }
    void want_tx(Send& s) { tx_push(m.sends, m.txq_send_head, m.txq_send_tail, size_t(&s - m.sends)); }
    void want_tx(Req& r) { tx_push(m.reqs, m.txq_req_head, m.txq_req_tail, size_t(&r - m.reqs)); }

    // -- events --
    bool push_event(const Event& ev) {
        if (m.ev_count == m.events_max) return false;  // sized so it cannot happen (see events_needed)
        m.events[(m.ev_head + m.ev_count) % m.events_max] = ev;
        m.ev_count++;
        return true;
    }
    // The same, built in place at the ring's tail (no copy): the caller fills the cleared event.
    // A full ring (ruled out by events_needed) hands out a scratch event that is dropped, as
    // push_event drops it.
    Event& new_event() {
        if (m.ev_count == m.events_max) {
            m.ev_scratch = Event{};
            return m.ev_scratch;
        }
        uint32_t at = m.ev_head + m.ev_count;
        if (at >= m.events_max) at -= m.events_max;
        m.ev_count++;
        Event& ev = m.events[at];
        ev = Event{};
        return ev;
    }

    // -- pool --
    bool pool_alloc(uint32_t bytes, uint32_t& head, uint32_t& blocks) {
        uint32_t need = (bytes + c.pool_block_bytes - 1) / c.pool_block_bytes;
        head = 0;
        blocks = need;
        if (need > m.pool_free_count) return false;
        if (c.eager_store) {  // the bytes go to the caller's store: only the count is kept
            m.pool_free_count -= need;
            st.pool_bytes_used += uint64_t(need) * c.pool_block_bytes;
            if (st.pool_bytes_used > st.pool_bytes_high) st.pool_bytes_high = st.pool_bytes_used;
            return true;
        }
        uint32_t prev = 0;
        for (uint32_t i = 0; i < need; i++) {
            uint32_t b = m.pool_free_head;
            m.pool_free_head = m.pool_next[b - 1];
            m.pool_next[b - 1] = 0;
            if (prev) m.pool_next[prev - 1] = b;
            else head = b;
            prev = b;
        }
        m.pool_free_count -= need;
        st.pool_bytes_used += uint64_t(need) * c.pool_block_bytes;
        if (st.pool_bytes_used > st.pool_bytes_high) st.pool_bytes_high = st.pool_bytes_used;
        return true;
    }
    void pool_free(uint32_t& head, uint32_t& blocks) {
        if (c.eager_store) {
            m.pool_free_count += blocks;
            st.pool_bytes_used -= uint64_t(blocks) * c.pool_block_bytes;
            blocks = 0;
            return;
        }
        uint32_t b = head;
        while (b) {
            uint32_t next = m.pool_next[b - 1];
            m.pool_next[b - 1] = m.pool_free_head;
            m.pool_free_head = b;
            m.pool_free_count++;
            st.pool_bytes_used -= c.pool_block_bytes;
            b = next;
        }
        head = 0;
        blocks = 0;
    }
    // The block holding byte `offset` of a chain, and where in it: one walk from the head.
    uint8_t* pool_seek(uint32_t head, uint32_t& offset, uint32_t& block) {
        uint32_t b = head;
        while (offset >= c.pool_block_bytes) {
            b = m.pool_next[b - 1];
            offset -= c.pool_block_bytes;
        }
        block = b;
        return m.pool + size_t(b - 1) * c.pool_block_bytes + offset;
    }
    // Both copy block by block, following the chain from the block reached, so that a message of
    // B blocks costs B steps, not the B*B/2 of a walk from the head for every block.
    template <typename Copy>  // copy(block bytes, bytes done so far, bytes to take)
    void pool_walk(uint32_t head, uint32_t offset, uint32_t n, Copy&& copy) {
        uint32_t b = 0;
        uint8_t* p = pool_seek(head, offset, b);
        size_t done = 0;
        while (n) {
            uint32_t take = min_u(c.pool_block_bytes - offset, n);
            copy(p, done, take);
            done += take;
            n -= take;
            if (!n) break;
            b = m.pool_next[b - 1];
            offset = 0;
            p = m.pool + size_t(b - 1) * c.pool_block_bytes;
        }
    }
    void pool_write(uint32_t head, uint32_t offset, ConstChain src, size_t src_off, uint32_t n) {
        if (offset + n <= c.pool_block_bytes && src.count == 1 && src_off + n <= src.parts[0].size) {
            // A small payload in one block from one buffer (most requests): no walks.
            copy_bytes(m.pool + size_t(head - 1) * c.pool_block_bytes + offset, src.parts[0].data + src_off, n);
            return;
        }
        pool_walk(head, offset, n, [&](uint8_t* p, size_t done, uint32_t take) {
            chain_read(src, src_off + done, p, take);
        });
    }
    void pool_read(uint32_t head, uint32_t offset, MutableChain dst, size_t dst_off, uint32_t n) {
        if (offset + n <= c.pool_block_bytes && dst.count == 1 && dst_off + n <= dst.parts[0].size) {
            copy_bytes(dst.parts[0].data + dst_off, m.pool + size_t(head - 1) * c.pool_block_bytes + offset, n);
            return;
        }
        pool_walk(head, offset, n, [&](uint8_t* p, size_t done, uint32_t take) {
            chain_write(dst, dst_off + done, p, take);
        });
    }

    // A request's eager bytes: in the caller's store (Config::eager_store), else in the pool.
    uint8_t* eager_area(const Req& r) const {
        return c.eager_store + req_index(r) * size_t(c.eager_bytes_max);
    }
    void eager_write(const Req& r, uint32_t offset, ConstChain src, size_t src_off, uint32_t n) {
        if (c.eager_store) chain_read(src, src_off, eager_area(r) + offset, n);
        else pool_write(r.pool_head, offset, src, src_off, n);
    }
    void eager_read(const Req& r, uint32_t offset, MutableChain dst, size_t dst_off, uint32_t n) {
        if (c.eager_store) chain_write(dst, dst_off, eager_area(r) + offset, n);
        else pool_read(r.pool_head, offset, dst, dst_off, n);
    }

    // -- peers --
    Peer& peer_at(uint16_t index) { return m.peers[index]; }
    void take_ref(uint16_t index) {
        Peer& p = m.peers[index];
        if (p.app_refs != kRefsPinned) p.app_refs++;
    }
    PeerRef ref_of(uint16_t index) const { return PeerRef{make_handle(m.peers[index].gen, index)}; }
    bool peer_of_ref(PeerRef r, uint16_t& index) const {
        uint32_t i = (r.value & 0xFFFF);
        if (i == 0 || i > c.peers_max) return false;
        const Peer& p = m.peers[i - 1];
        if (p.state == PeerState::kFree || p.gen != (r.value >> 16)) return false;
        index = uint16_t(i - 1);
        return true;
    }
    // (ipv4, endpoint) is unique in the table (a peer is added only when this finds none), so
    // the peer found last, tried first, is the answer whenever it matches: packets come in runs
    // from one peer, and a node with many peers skips the scan.
    int find_peer(uint32_t ipv4, uint16_t endpoint) const {
        uint16_t h = m.peer_hint;
        if (h < m.peers_hi) {
            const Peer& p = m.peers[h];
            if (p.state != PeerState::kFree && p.ipv4 == ipv4 && p.endpoint == endpoint) return int(h);
        }
        for (size_t i = 0; i < m.peers_hi; i++) {
            const Peer& p = m.peers[i];
            if (p.state != PeerState::kFree && p.ipv4 == ipv4 && p.endpoint == endpoint) {
                m.peer_hint = uint16_t(i);
                return int(i);
            }
        }
        return -1;
    }
    // A client's silence after which its server takes its numbering anew (5.1): the client
    // numbers anew only past peer_linger without business with us, and its last packets (an
    // acknowledgement, a CANCEL's repeats) trail that business by far less than dead_after.
    uint64_t numbering_lapse() const { return m.numbering_lapse_us; }
    bool busy(const Peer& p) const {
        return p.sends_live || p.reqs_live || p.state == PeerState::kConnecting || p.is_static;
    }
    int add_peer(Instant now, uint32_t ipv4, uint16_t endpoint) {
        int slot = -1;
        for (size_t i = 0; i < c.peers_max && slot < 0; i++) {
            if (m.peers[i].state == PeerState::kFree) slot = int(i);
        }
        if (slot < 0) {
            // The longest-idle peer with no business that has lingered long enough goes for
            // good (SPEC.md 5.1: its txn state must outlive any delayed duplicate). Else the
            // longest-idle one the application holds no reference to (a client that came and
            // went) is retired: what refuses its delayed duplicates and carries on its
            // numbering is kept aside, if there is room for it.
            int gone = -1, retired = -1;
            Instant gone_at = kNever, retired_at = kNever;
            for (size_t i = 0; i < c.peers_max; i++) {
                const Peer& p = m.peers[i];
                if (busy(p) || p.nacks) continue;
                if (p.last_business + c.peer_linger_us <= now) {
                    if (p.last_business < gone_at) gone_at = p.last_business, gone = int(i);
                } else if (p.app_refs == 0 && p.last_business < retired_at) {
                    retired_at = p.last_business, retired = int(i);
                }
            }
            if (gone >= 0) {
                slot = gone;
                forget(now, uint16_t(slot));
            } else if (retired >= 0 && retire(now, m.peers[retired])) {
                slot = retired;
                free_peer(uint16_t(slot));
            } else {
                return -1;
            }
        }
        Peer& p = m.peers[slot];
        if (slot >= m.peers_hi) m.peers_hi = uint16_t(slot + 1);
        uint16_t gen = p.gen, tx_next = p.tx_next;
        bool tx_queued = p.tx_queued;
        new (&p) Peer;
        p.gen = gen;
        p.tx_next = tx_next;
        p.tx_queued = tx_queued;
        p.state = PeerState::kDown;  // not connected yet: a HELLO goes out with the first send
        p.ipv4 = ipv4;
        p.endpoint = endpoint;
        p.rto_us = c.rto_initial_us;
        p.next_txn = fresh_numbering();
        p.last_heard = now;
        p.alive_at = now;
        p.last_business = now;
        st.peers_live++;
        if (st.peers_live > st.peers_high) st.peers_high = st.peers_live;
        restore(now, p);
        return slot;
    }
    // An entry free, or else the oldest that lingered out (null: none). Reusing one that held
    // our next number toward its peer loses that number (fresh_numbering).
    Retired* retired_slot(Instant now) {
        Retired* to = nullptr;
        for (size_t i = 0; i < kRetiredPerPeer * c.peers_max; i++) {
            Retired& r = m.retired[i];
            if (!r.used) return &r;
            if (r.since + c.peer_linger_us <= now && (!to || r.since < to->since)) to = &r;
        }
        if (to && to->numbered) m.numbering_lost = true;
        return to;
    }
    // Where a new numbering toward a peer starts: first_txn, until this engine has lost the
    // number it kept for some peer (16 x peers_max others used the room since, 5.1); from then
    // on, with a key, at a random point. A server that saw our earlier numbering toward it
    // takes the new one from our answer to its CHALLENGE (3.4); had the new one started at
    // first_txn again, a recording of the earlier one would fall in its window and be taken
    // (SPEC 10). A random start puts the recording outside it (but for a 2^-26 chance).
    uint32_t fresh_numbering() {
        if (!c.auth || !m.numbering_lost) return c.first_txn;
        const uint32_t t = next_nonce();
        return t ? t : c.first_txn;
    }
    // A peer past its linger time leaves the table. If we numbered transactions toward it, the
    // number to go on with is kept (an entry that lingered out, the first to be reused): it may
    // still keep a filter for our numbering, and would take a new one from first_txn for
    // finished transactions (`stale`). With no entry to spare it is forgotten, and the server
    // takes our new numbering after our silence (handle_datagram, SPEC 5.1).
    void forget(Instant now, uint16_t index) {
        const Peer& p = m.peers[index];
        if (p.numbered) {
            if (Retired* to = retired_slot(now)) keep_aside(*to, p);
            else m.numbering_lost = true;
        }
        free_peer(index);
    }
    void keep_aside(Retired& to, const Peer& p) {
        to.used = true;
        to.ipv4 = p.ipv4;
        to.endpoint = p.endpoint;
        to.incarnation = p.incarnation;
        to.unproven = p.unproven;
        to.base_set = p.base_set;
        to.base = p.base;
        to.done = p.done;
        to.next_txn = p.next_txn;
        to.numbered = p.numbered;
        to.since = p.last_business;
    }
    // Keeps an idle peer's duplicate filter and numbering aside (false: no room for it now).
    bool retire(Instant now, const Peer& p) {
        Retired* to = retired_slot(now);
        if (!to) return false;
        keep_aside(*to, p);
        st.peers_retired++;
        return true;
    }
    // A peer new to the table that was retired within its linger time takes up where it was;
    // after it, only our numbering toward it goes on (its own may start anew: a filter kept for
    // an old one would refuse it). Its incarnation comes back too: a packet from another one is
    // the peer rebooting, which starts both numberings anew.
    void restore(Instant now, Peer& p) {
        for (size_t i = 0; i < kRetiredPerPeer * c.peers_max; i++) {
            Retired& r = m.retired[i];
            if (!r.used || r.ipv4 != p.ipv4 || r.endpoint != p.endpoint) continue;
            r.used = false;
            p.incarnation = r.incarnation;
            p.unproven = r.unproven;  // a life learned from a recording stays to be proven
            p.next_txn = r.next_txn;
            p.numbered = r.numbered;
            if (r.since + c.peer_linger_us <= now) return;
            p.base_set = r.base_set;
            p.base = r.base;
            p.done = r.done;
            st.peers_restored++;
            return;
        }
    }
    void free_peer(uint16_t index) {
        Peer& p = m.peers[index];
        p.state = PeerState::kFree;
        p.gen = uint16_t(p.gen + 1 ? p.gen + 1 : 1);
        st.peers_live--;
    }
    uint32_t next_nonce() {
        // xorshift32: nonces only need to differ, not to be secret (SPEC.md section 10).
        uint32_t x = m.nonce_state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        m.nonce_state = x;
        return x;
    }
    void rtt_sample(Peer& p, Instant sent, Instant now) {
        if (now < sent) return;
        uint32_t r = uint32_t(min_u64(now - sent, 60'000'000));
        if (!p.rtt_init) {
            p.srtt_us = r;
            p.rttvar_us = r / 2;
            p.rtt_init = true;
        } else {
            uint32_t diff = p.srtt_us > r ? p.srtt_us - r : r - p.srtt_us;
            p.rttvar_us = (3 * p.rttvar_us + diff) / 4;
            p.srtt_us = (7 * p.srtt_us + r) / 8;
        }
        uint64_t rto = uint64_t(p.srtt_us) + 4 * uint64_t(p.rttvar_us);
        if (rto < c.rto_min_us) rto = c.rto_min_us;
        if (rto > c.rto_max_us) rto = c.rto_max_us;
        p.rto_us = uint32_t(rto);
    }
    // A reply comes no sooner than a round trip after its request left, however fast the server:
    // one that came back faster than srtt proves srtt too high, and is a sample (SPEC 5.2). A
    // slower one says nothing (the server's own work) and is not used. Without this, a peer's
    // RTO kept the first HELLO's round trip for as long as traffic flowed (no probes while the
    // peer is heard from), and a boot's first one is slow (ARP; under QEMU, cold code).
    void reply_time_sample(Instant now, Peer& p, const Send& s) {
        if (s.retransmission || !p.rtt_init || now < s.sent_at) return;
        if (now - s.sent_at < p.srtt_us) rtt_sample(p, s.sent_at, now);
    }
    uint32_t backoff(uint32_t rto) const { return rto >= c.rto_max_us / 2 ? c.rto_max_us : rto * 2; }
    void connect(Instant now, uint16_t pi) {
        Peer& p = peer_at(pi);
        if (p.state == PeerState::kConnecting || (p.state == PeerState::kUp && !p.unproven)) return;
        p.state = PeerState::kConnecting;
        p.hello_due = true;
        want_tx(pi);
        p.hello_at = now;
        p.hello_tries = 0;
        p.hello_nonce = next_nonce();
        p.last_heard = now;
        p.alive_at = now;
        p.unanswered = 0;
    }
    // The peer answered that its table has no room for us now (RESET kNoPeerSlot): it is alive,
    // so nothing about it counts toward "host down"; a HELLO goes again after rto_max, a
    // request on its own timer, and the sends wait for room, until their deadlines.
    void refused(Instant now, uint16_t pi) {
        Peer& p = peer_at(pi);
        if (c.auth) {
            if (!p.refusal_ok) {
                st.dropped_unexpected++;
                return;
            }
            p.refusal_ok = false;
        }
        st.refusals_received++;
        p.last_heard = now;
        p.alive_at = now;
        p.unanswered = 0;
        if (p.state == PeerState::kConnecting) {
            p.hello_tries = 0;
            p.hello_due = true;
            p.hello_at = now + c.rto_max_us;
            m.nt_valid = false;
        } else {
            // It forgot us (we were idle past its linger time) and has no room now: our
            // requests were refused, not lost; they go on repeating until there is room.
            for (size_t i = 0; i < m.sends_hi; i++) {
                Send& s = m.sends[i];
                if (s.state == SendState::kSent && s.peer == pi) s.retries = 0;
            }
        }
    }
    // A RESET answering the packet whose header is `h` (SPEC.md 4.9), back to its sender.
    // RESETs to sources with no peer record (the only state they may make us spend is this
    // budget): at most control_max per probe interval in all, so that packets from any number of
    // forged addresses are not answered at their own rate (SPEC 10).
    bool reset_budget(Instant now) {
        if (m.resets_count == 0 || now >= m.resets_since + c.probe_interval_us) {
            m.resets_since = now;
            m.resets_count = 0;
        }
        if (m.resets_count >= c.control_max) {
            st.resets_limited++;
            return false;
        }
        m.resets_count++;
        return true;
    }
    void send_reset(uint32_t ipv4, const wire::Header& h, uint64_t named, wire::ResetReason why) {
        Message rst;
        rst.header.type = Type::kReset;
        rst.header.dst_endpoint = h.src_endpoint;
        rst.header.dst_incarnation = h.src_incarnation;
        rst.reset = wire::Reset{named, why};
        queue_control(ipv4, rst);
        st.resets_sent++;
    }
    void note_business(Instant now, Peer& p) {
        p.last_business = now;
        if (p.probe_at == kNever) p.probe_at = now + c.probe_interval_us;
    }
    // A delayed acknowledgement is sent by the timer (handle_timeout scans) or rides on a packet.
    __attribute__((always_inline)) void queue_ack(Instant now, Peer& p, uint32_t txn, AckKind kind,
                                                  uint32_t delay) {
        if (delay == 0) want_tx(p);
        for (uint8_t i = 0; i < p.nacks; i++) {
            if (p.acks[i].txn == txn && p.acks[i].kind == kind) {
                p.ack_due = min_t(p.ack_due, now + delay);
                return;
            }
        }
        if (p.nacks == wire::kAckEntriesMax) {
            p.ack_due = now;  // flush first; this one is re-sent when its duplicate comes back
            want_tx(p);
            return;
        }
        p.acks[p.nacks++] = wire::AckEntry{txn, kind};
        p.ack_due = min_t(p.ack_due, now + delay);
    }
    void drop_ack(Peer& p, uint32_t txn, AckKind kind) {
        for (uint8_t i = 0; i < p.nacks; i++) {
            if (p.acks[i].txn == txn && p.acks[i].kind == kind) {
                p.acks[i] = p.acks[--p.nacks];
                if (!p.nacks) p.ack_due = kNever;
                return;
            }
        }
    }
    // What our HELLO and HELLO_ACK grant and announce (SPEC 4.1), with their nonce.
    wire::Hello our_hello(uint32_t nonce) const {
        return wire::Hello{c.window_bytes, c.window_txns, c.mtu_max, c.message_bytes_max, nonce, c.eager_bytes_max};
    }
    // A HELLO or HELLO_ACK with our grants, sent as a control answer (not from the peer's state).
    void queue_hello(const Peer& p, Type type, uint64_t dst_incarnation, uint32_t nonce) {
        Message hello;
        hello.header.type = type;
        hello.header.dst_endpoint = p.endpoint;
        hello.header.dst_incarnation = dst_incarnation;
        hello.hello = our_hello(nonce);
        queue_control(p.ipv4, hello);
    }
    void queue_control(uint32_t ipv4, const Message& msg) {
        if (m.ctl_count == c.control_max) {
            st.dropped_control_full++;  // the other side repeats what it asked
            return;
        }
        Control& ctl = m.controls[(m.ctl_head + m.ctl_count) % c.control_max];
        ctl.dst_ipv4 = ipv4;
        ctl.msg = msg;
        m.ctl_count++;
    }

    // -- send slots --
    Send* send_of(SendHandle h, size_t& index) {
        uint32_t i = h.value & 0xFFFF;
        if (i == 0 || i > c.sends_max) return nullptr;
        Send& s = m.sends[i - 1];
        if (s.state == SendState::kFree || s.gen != (h.value >> 16)) return nullptr;
        index = i - 1;
        return &s;
    }
    Send* find_send(uint16_t pi, uint32_t txn) {
        if (!m.peers[pi].sends_live) return nullptr;  // none of this peer's: no scan
        for (size_t i = 0; i < m.sends_hi; i++) {
            Send& s = m.sends[i];
            if (s.state != SendState::kFree && s.peer == pi && s.txn == txn && txn) return &s;
        }
        return nullptr;
    }
    size_t send_index(const Send& s) const { return size_t(&s - m.sends); }
    void free_send(Send& s) {
        Peer& p = peer_at(s.peer);
        if (s.txn) {
            p.out_txns--;
            p.out_bytes -= s.eager;
        }
        p.sends_live--;
        s.state = SendState::kFree;
        s.gen = uint16_t(s.gen + 1 ? s.gen + 1 : 1);
        s.next_free = m.send_free;
        m.send_free = uint16_t(send_index(s) + 1);
        st.sends_live--;
        // The credit it held may let a waiting sender go (none can wait if none is left).
        if (p.sends_live) admit(m.now, s.peer);
    }
    // Ends a send for the caller (exactly once), then either frees it or keeps it to close.
    void finish_send(Instant now, Send& s, ErrorCode error) {
        peer_at(s.peer).last_business = now;  // a long call's last packets are this recent
        if (!s.is_pulse) {
            Event& ev = new_event();
            ev.type = EventType::kSendDone;
            ev.error = error;
            ev.handle = make_handle(s.gen, send_index(s));
            ev.peer = ref_of(s.peer);
            ev.channel = s.channel;
            ev.status = s.reply_status;
            ev.size = s.reply_total;
            ev.bytes = min_u(s.reply_total, s.reply_cap);
            st.sends_completed++;
        }
        // The caller's buffers are no longer ours from here on.
        s.msg = ConstChain{nullptr, 0};
        s.reply = MutableChain{nullptr, 0};
        s.out.clear();
        s.in.active = false;
        bool needs_close = s.txn && (error == ErrorCode::kCancelled || error == ErrorCode::kTimedOut) &&
                           (s.state == SendState::kSent || s.state == SendState::kServed ||
                            s.state == SendState::kReceiving);
        if (needs_close && peer_at(s.peer).state == PeerState::kUp) {
            s.state = SendState::kClosing;
            s.cancel_reason = error;
            s.tx_cancel = true;
            s.tx_request = false;
            want_tx(s);
            s.retries = 0;
            s.rto_us = peer_at(s.peer).rto_us;
            s.rto_at = now + s.rto_us;
            s.deadline = kNever;
            return;
        }
        free_send(s);
    }
    // `self`: a send of this peer asking (it may hold a txn). out_txns counts the peer's live
    // sends that hold a txn (each below next_txn), so the usual cases need no scan.
    uint32_t txn_low(uint16_t pi, const Send* self = nullptr) {
        const Peer& p = peer_at(pi);
        if (p.out_txns == 0) return p.next_txn;
        if (p.out_txns == 1 && self && self->txn) return self->txn;
        uint32_t low = p.next_txn;
        for (size_t i = 0; i < m.sends_hi; i++) {
            const Send& s = m.sends[i];
            if (s.state != SendState::kFree && s.peer == pi && s.txn && txn_before(s.txn, low)) low = s.txn;
        }
        return low;
    }
    // Gives waiting sends to a peer their txn and credit, oldest... (slot order) first.
    void admit(Instant now, uint16_t pi) {
        Peer& p = peer_at(pi);
        if (p.state != PeerState::kUp || !p.credit_known) return;
        for (size_t i = 0; i < m.sends_hi; i++) {
            Send& s = m.sends[i];
            if (s.state != SendState::kWaiting || s.peer != pi || s.txn) continue;
            uint32_t eager = s.is_pulse ? 0
                                        : min_u(min_u(s.total, c.eager_bytes_max),
                                                min_u(p.peer_eager_max, p.credit_bytes));
            // The oldest outstanding txn bounds the server's window (SPEC.md 6.1).
            uint32_t low = txn_low(pi);
            if (p.out_txns >= p.credit_txns || txn_dist(low, p.next_txn) >= p.credit_txns ||
                p.out_bytes + eager > p.credit_bytes)
                return;  // blocked at home until credit returns
            s.txn = p.next_txn;
            p.next_txn = txn_next(p.next_txn);
            p.numbered = true;
            s.eager = eager;
            p.out_txns++;
            p.out_bytes += eager;
            start_tx(now, s);
        }
    }
    void start_tx(Instant now, Send& s) {
        Peer& p = peer_at(s.peer);
        s.state = SendState::kSent;
        s.tx_request = true;
        s.tx_offset = 0;
        s.retries = 0;
        s.rto_us = p.rto_us;
        // The first timeout also waits out the server's delayed acknowledgement (SPEC 5.2): a
        // request it is still serving is acknowledged after ack_delay, and a timeout of rto
        // alone (2 ms at its floor) sent every request served longer than that twice.
        s.rto_at = now + s.rto_us + c.ack_delay_us;
        s.sent_at = now;
        s.tx_began = now;
        note_business(now, p);
        want_tx(s);
    }

    // -- request records --
    Req* req_of(RequestHandle h) {
        uint32_t i = h.value & 0xFFFF;
        if (i == 0 || i > c.requests_max) return nullptr;
        Req& r = m.reqs[i - 1];
        if (r.state == ReqState::kFree || r.gen != (h.value >> 16)) return nullptr;
        return &r;
    }
    Req* find_req(uint16_t pi, uint32_t txn) {
        if (!m.peers[pi].reqs_live) return nullptr;  // none of this peer's: no scan
        for (size_t i = 0; i < m.reqs_hi; i++) {
            Req& r = m.reqs[i];
            if (r.state != ReqState::kFree && r.peer == pi && r.txn == txn) return &r;
        }
        return nullptr;
    }
    size_t req_index(const Req& r) const { return size_t(&r - m.reqs); }
    Req* alloc_req() {
        if (!m.req_free) return nullptr;
        Req& r = m.reqs[m.req_free - 1];
        if (m.req_free > m.reqs_hi) m.reqs_hi = m.req_free;
        m.req_free = r.next_free;
        uint16_t gen = r.gen, tx_next = r.tx_next;
        bool tx_queued = r.tx_queued;
        new (&r) Req;
        r.gen = gen;
        r.tx_next = tx_next;
        r.tx_queued = tx_queued;
        st.requests_live++;
        if (st.requests_live > st.requests_high) st.requests_high = st.requests_live;
        return &r;
    }
    // Frees a request record; the txn counts as executed from now on (at-most-once).
    // With an eager store, a record the application knows of (delivered, or replying: its end
    // event is queued now) goes back to the free list only when poll_event hands out that event:
    // until then the application may still read or keep bytes in its area (Engine::eager_in_place),
    // and a request taken meanwhile must not be written over them.
    void free_req(Req& r) {
        Peer& p = peer_at(r.peer);
        mark_done(p, r.txn);
        p.pool_bytes -= r.held;
        r.held = 0;
        pool_free(r.pool_head, r.pool_blocks);
        p.reqs_live--;
        const bool park = c.eager_store && (r.state == ReqState::kDelivered || r.state == ReqState::kReplying);
        r.state = ReqState::kFree;
        r.gen = uint16_t(r.gen + 1 ? r.gen + 1 : 1);
        st.requests_live--;
        if (park) {
            r.parked = true;
            return;
        }
        r.next_free = m.req_free;
        m.req_free = uint16_t(req_index(r) + 1);
    }
    // poll_event handed out a request's end event: a record parked for it is free from now on.
    void unpark_req(uint32_t handle) {
        const uint32_t index = (handle & 0xFFFF) - 1;
        if ((handle & 0xFFFF) == 0 || index >= c.requests_max) return;
        Req& r = m.reqs[index];
        if (!r.parked || r.state != ReqState::kFree) return;
        r.parked = false;
        r.next_free = m.req_free;
        m.req_free = uint16_t(index + 1);
    }
    void req_event(Req& r, EventType type, ErrorCode error) {
        Event& ev = new_event();
        ev.type = type;
        ev.error = error;
        ev.handle = make_handle(r.gen, req_index(r));
        ev.peer = ref_of(r.peer);
        ev.channel = r.channel;
    }
    // Ends a request early (cancel, deadline, peer gone), telling the application if it knew.
    void abort_req(Req& r, ErrorCode why) {
        if (r.state == ReqState::kDelivered) req_event(r, EventType::kRequestCancelled, why);
        else if (r.state == ReqState::kReplying) req_event(r, EventType::kReplyDone, why);
        free_req(r);
    }
    void mark_done(Peer& p, uint32_t txn) {
        if (!p.base_set || txn_before(txn, p.base)) return;
        uint32_t bit = txn_dist(p.base, txn);
        if (bit >= kTxnWindowMax) return;
        p.done |= uint64_t(1) << bit;
        while (p.done & 1) {
            p.done >>= 1;
            p.base = txn_next(p.base);
        }
    }
    bool is_done(const Peer& p, uint32_t txn) const {
        if (!p.base_set) return false;
        if (txn_before(txn, p.base)) return true;
        uint32_t bit = txn_dist(p.base, txn);
        return bit < kTxnWindowMax && (p.done >> bit) & 1;
    }
    // The client says every txn below `low` is finished: release what we kept for them.
    void advance_low(Instant now, uint16_t pi, uint32_t low) {
        Peer& p = peer_at(pi);
        if (!p.base_set) {
            p.base_set = true;
            p.base = low;
            p.done = 0;
            return;
        }
        if (!txn_before(p.base, low)) return;
        for (size_t i = 0; p.reqs_live && i < m.reqs_hi; i++) {
            Req& r = m.reqs[i];
            if (r.state == ReqState::kFree || r.peer != pi || !txn_before(r.txn, low)) continue;
            if (r.state == ReqState::kReplying) {
                req_event(r, EventType::kReplyDone, ErrorCode::kOk);
                free_req(r);
            } else {
                // The client finished it without us: it gave up on us (it declared us down
                // while we still heard it). Tell the application, as for a CANCEL.
                abort_req(r, ErrorCode::kCancelled);
            }
        }
        (void)now;
        // Freeing records above marked them done, which may have moved base already.
        if (!txn_before(p.base, low)) return;
        uint32_t shift = txn_dist(p.base, low);
        p.done = shift >= 64 ? 0 : p.done >> shift;
        p.base = low;
        while (p.done & 1) {
            p.done >>= 1;
            p.base = txn_next(p.base);
        }
    }

    // -- peer failure --
    void fail_peer(Instant now, uint16_t pi, ErrorCode why) {
        Peer& p = peer_at(pi);
        for (size_t i = 0; i < m.sends_hi; i++) {
            Send& s = m.sends[i];
            if (s.state == SendState::kFree || s.peer != pi) continue;
            if (s.state == SendState::kClosing) free_send(s);
            else {
                s.state = SendState::kSent;  // so finish_send does not try to close
                finish_send(now, s, why);
                if (s.state != SendState::kFree) free_send(s);
            }
        }
        for (size_t i = 0; i < m.reqs_hi; i++) {
            Req& r = m.reqs[i];
            if (r.state != ReqState::kFree && r.peer == pi) abort_req(r, why);
        }
        // Its names leave the cache: a service found there is asked for anew (it may be
        // elsewhere now), not answered from memory with a peer that is down (SPEC 5.8).
        const PeerRef ref = ref_of(pi);
        for (size_t i = 0; i < c.names_cache_max; i++) {
            if (m.cache[i].used && m.cache[i].peer == ref) m.cache[i].used = false;
        }
        Event ev;
        ev.type = EventType::kPeerDown;
        ev.error = why;
        ev.peer = ref;
        push_event(ev);
        if (why == ErrorCode::kPeerRebooted) st.peers_rebooted++;
        else st.peers_down++;
        p.state = PeerState::kDown;
        p.hello_due = false;
        p.hello_at = kNever;
        p.probe_at = kNever;
        p.mtu_at = kNever;
        p.nacks = 0;
        p.ack_due = kNever;
        p.credit_known = false;
        p.unanswered = 0;
    }
    // A new incarnation at the same address and endpoint: everything with the old one ends.
    void rebooted(Instant now, uint16_t pi, uint64_t incarnation) {
        m.tx_scan = true;  // rare: everything with the peer ends; let the next poll look everywhere
        fail_peer(now, pi, ErrorCode::kPeerRebooted);
        Peer& p = peer_at(pi);
        const PeerRef old_ref = ref_of(pi);
        p.gen = uint16_t(p.gen + 1 ? p.gen + 1 : 1);  // old PeerRefs now fail
        p.app_refs = 0;  // ... so none of them holds it any more
        // ... but not a name lookup asked of this peer: a name is no transaction, so it is
        // asked of the new incarnation, at once (the answer's PeerRef is the new one; 5.8).
        for (size_t i = 0; i < m.lookups_hi; i++) {
            Lookup& l = m.lookups[i];
            if (!l.used || !(l.where == old_ref)) continue;
            l.where = ref_of(pi);
            l.cursor = 0;
            l.tx_due = true;
            m.lookup_tx = true;
        }
        take_incarnation(p, incarnation);
    }
    // The peer is another life: its numbering both ways and its path start anew.
    void take_incarnation(Peer& p, uint64_t incarnation) {
        p.prev_incarnation = p.incarnation;
        p.incarnation = incarnation;
        p.next_txn = c.first_txn;  // (a recording names its old life: dropped, 3.4)
        p.numbered = false;
        p.base_set = false;
        p.base = 0;
        p.done = 0;
        p.mtu = wire::kMtuMin;
        p.mtu_done = false;
        p.rtt_init = false;
        p.rto_us = c.rto_initial_us;
    }

    // With a key: an incarnation never proven (Peer::unproven) with nothing bound to it (no
    // request held from it, no transaction of ours sent to it) is replaced by another without
    // ending anything: the waiting sends go to the new one, PeerRefs stay good. The numbering
    // both ways starts anew, as after a reboot. False: not so, a reboot it is.
    bool replace_unproven(uint16_t pi, uint64_t incarnation) {
        Peer& p = peer_at(pi);
        if (!p.unproven || p.reqs_live || p.out_txns) return false;
        for (size_t i = 0; i < m.sends_hi; i++) {
            const Send& s = m.sends[i];
            if (s.state != SendState::kFree && s.peer == pi && s.txn) return false;
        }
        take_incarnation(p, incarnation);
        return true;
    }

    // A packet from an incarnation of the peer other than the known one. A new life says HELLO
    // (or answers ours) before anything else: then the peer rebooted. Any other packet is a late
    // one of an earlier life, two or more back (5.5): dropped (false).
    bool new_life(Instant now, uint16_t pi, const Message& msg) {
        const wire::Header& h = msg.header;
        if (!c.auth && h.type != Type::kHello && h.type != Type::kHelloAck) {
            st.dropped_unexpected++;
            return false;
        }
        if (c.auth) {
            // Only an answer to a nonce of ours proves the new life is now (SPEC 3.4): our
            // HELLO's while we connect, or the check of a claim below.
            Peer& p = peer_at(pi);
            const bool fresh =
                h.type == Type::kHelloAck &&
                ((p.state == PeerState::kConnecting && msg.hello.nonce == p.hello_nonce) ||
                 (p.claimed_incarnation == h.src_incarnation && msg.hello.nonce == p.claim_nonce));
            if (fresh && replace_unproven(pi, h.src_incarnation)) {
                p.unproven = false;
                p.claimed_incarnation = 0;
                return true;
            }
            if (!fresh) {
                // Any packet of another life is its claim (a rebooted peer that took our check's
                // HELLO for a handshake, its answer lost, sends requests and probes, no HELLO).
                if (p.claimed_incarnation == 0 || now >= p.claim_sent_at + c.probe_interval_us) {
                    // Ask the claimed incarnation for our nonce back (at most once per probe
                    // interval per peer, whatever life is claimed: recordings of several dead
                    // lives played in turn drew one HELLO each): a rebooted peer answers at once.
                    p.claimed_incarnation = h.src_incarnation;
                    p.claim_nonce = next_nonce();
                    p.claim_sent_at = now;
                    queue_hello(p, Type::kHello, h.src_incarnation, p.claim_nonce);
                    st.lives_checked++;
                } else {
                    st.dropped_unexpected++;
                }
                return false;
            }
            p.claimed_incarnation = 0;
            p.unproven = false;
        }
        rebooted(now, pi, h.src_incarnation);
        return true;
    }

    // -- copying between chains (packet -> caller's buffers) --
    // One walk over both chains, copying straight from part to part: a bounce buffer would
    // double the copy (a 64 KiB reply packet was 256 pairs of 256-byte copies). Stops early if
    // either chain ends before n bytes, as chain_read/chain_write do.
    // The usual case (one buffer each: no walk) inline in the callers, the walk out of line.
    __attribute__((always_inline)) static void chain_to_chain(ConstChain src, size_t src_off,
                                                              MutableChain dst, size_t dst_off,
                                                              size_t n) {
        if (src.count == 1 && dst.count == 1) {
            const ConstBytes& sp = src.parts[0];
            const MutableBytes& dp = dst.parts[0];
            if (src_off >= sp.size || dst_off >= dp.size) return;
            if (n > sp.size - src_off) n = sp.size - src_off;
            if (n > dp.size - dst_off) n = dp.size - dst_off;
            copy_bytes(dp.data + dst_off, sp.data + src_off, n);
            return;
        }
        chain_walk(src, src_off, dst, dst_off, n);
    }
    __attribute__((noinline)) static void chain_walk(ConstChain src, size_t src_off, MutableChain dst,
                                                     size_t dst_off, size_t n) {
        size_t si = 0, di = 0;
        while (si < src.count && src_off >= src.parts[si].size) src_off -= src.parts[si++].size;
        while (di < dst.count && dst_off >= dst.parts[di].size) dst_off -= dst.parts[di++].size;
        while (n && si < src.count && di < dst.count) {
            size_t take = src.parts[si].size - src_off;
            if (take > dst.parts[di].size - dst_off) take = dst.parts[di].size - dst_off;
            if (take > n) take = n;
            copy_bytes(dst.parts[di].data + dst_off, src.parts[si].data + src_off, take);
            n -= take;
            src_off += take;
            dst_off += take;
            if (src_off == src.parts[si].size) {
                si++;
                src_off = 0;
            }
            if (dst_off == dst.parts[di].size) {
                di++;
                dst_off = 0;
            }
        }
    }

    // -- pulls (SPEC.md 5.3): the side that wants bytes asks, detects holes, asks again --
    void pull_start(Instant now, Transfer& t, uint32_t lo, uint32_t hi, uint32_t requested,
                    uint32_t rto) {
        t.active = true;
        t.lo = lo;
        t.hi = hi;
        t.requested = requested < lo ? lo : requested;
        t.have.clear();
        t.pending_n = 0;
        t.nack_upto = lo;
        t.retries = 0;
        t.rto_us = rto;
        t.rto_at = now + rto;
        pull_extend(t);
    }
    void pull_extend(Transfer& t) {
        uint32_t first = t.have.first_missing(t.lo);
        uint64_t limit = min_u64(uint64_t(first) + c.pull_window_bytes, t.hi);
        if (t.requested >= limit) return;
        // Ask in quarter windows so a steady transfer costs one PULL per quarter window.
        if (limit - t.requested < c.pull_window_bytes / 4 && limit < t.hi) return;
        t.add_pending(t.requested, uint32_t(limit));
        t.requested = uint32_t(limit);
    }
    // Every hole below `requested`, asked for again (timeout path).
    void pull_holes(Transfer& t) {
        t.pending_n = 0;
        uint32_t a = t.have.first_missing(t.lo);
        while (a < t.requested && t.pending_n < wire::kPullRangesMax) {
            uint32_t b = t.requested;
            for (int i = 0; i < t.have.n; i++) {
                if (t.have.lo[i] > a && t.have.lo[i] < b) b = t.have.lo[i];
            }
            t.add_pending(a, b);
            a = t.have.first_missing(b);
        }
        t.nack_upto = a;
    }
    // Bytes [off, off + n) arrived for t; returns true if they were new.
    void pull_arrived(Instant now, Transfer& t, uint32_t off, uint32_t n, uint32_t rto) {
        t.have.insert(off, off + n);
        t.retries = 0;
        t.rto_us = rto;
        t.rto_at = now + rto;
        // NACK: a hole with at least two segments' worth of later bytes is a loss, not a
        // reordering; ask for it once at once instead of waiting for the timeout.
        uint32_t a = t.have.first_missing(t.lo);
        if (a < t.requested && a >= t.nack_upto) {
            uint32_t b = t.requested;
            for (int i = 0; i < t.have.n; i++) {
                if (t.have.lo[i] > a && t.have.lo[i] < b) b = t.have.lo[i];
            }
            if (b < t.requested && uint64_t(t.have.highest()) >= uint64_t(b) + 2 * uint64_t(n)) {
                t.add_pending(a, b);
                t.nack_upto = b;
                st.retransmissions++;
            }
        }
        pull_extend(t);
    }
    void pull_timeout(Instant now, Transfer& t) {
        pull_holes(t);
        t.retries++;
        t.rto_us = backoff(t.rto_us);
        t.rto_at = now + t.rto_us;
        st.retransmissions++;
    }

    // -- server: requests --
    void refuse(uint16_t pi, uint32_t txn, ErrorCode why, uint8_t priority) {
        Peer& p = peer_at(pi);
        Message msg;
        msg.header.type = Type::kReply;
        msg.header.priority = priority;
        msg.header.dst_endpoint = p.endpoint;
        msg.header.dst_incarnation = p.incarnation;
        msg.reply = wire::Reply{txn, why, 0, 0, 0, 0, 0};
        queue_control(p.ipv4, msg);
        if (why == ErrorCode::kBusy) st.busy_sent++;
    }
    // What a REQUEST's header releases: its piggybacked reply acknowledgement and txn_low.
    void request_releases(Instant now, uint16_t pi, uint32_t ack, uint32_t low) {
        if (ack) on_ack_entry(now, pi, ack, AckKind::kReplyReceived);
        advance_low(now, pi, low);
    }
    // A REQUEST usually acknowledges the reply before it (header `ack`, txn_low). Releasing that
    // reply's record (finding it, its kReplyDone event, which the application handles too, the
    // record and its pool blocks freed) is not needed to take the new request, so it waits
    // (Engine::poll_event says until when): the request reaches its server, and a reply given
    // at once leaves, first. Back-to-back calls: ~350 guest instructions less before a node
    // answers. Released first when the request needs what they hold: the window's base, a
    // record, pool room.
    void on_request(Instant now, uint16_t pi, const Message& msg, ConstChain pkt) {
        // (No release is pending here: handle_datagram did the one before.)
        Peer& p = peer_at(pi);
        const wire::Request& q = msg.request;
        const uint32_t keep = min_u(q.eager_bytes, c.eager_bytes_max);
        const bool release_first = !p.base_set || txn_dist(p.base, q.txn) >= c.window_txns ||
                                   !m.req_free || p.pool_bytes + keep > c.window_bytes ||
                                   (keep + c.pool_block_bytes - 1) / c.pool_block_bytes > m.pool_free_count;
        if (release_first) {
            if (!p.base_set && c.auth) {
                st.dropped_unexpected++;  // a recording may be what names it (SPEC 3.4)
                ask_numbering(now, pi);
                return;
            }
            request_releases(now, pi, msg.header.ack, q.txn_low);
        } else {
            Engine::Impl::Release& r = m.release;
            r.due = true;
            r.peer = pi;
            r.incarnation = p.incarnation;
            r.ack = msg.header.ack;
            r.low = q.txn_low;
            r.at = now;
        }
        take_request(now, pi, msg, pkt);
    }
    void flush_release() {
        if (m.release.due) flush_release_now();
    }
    __attribute__((noinline)) void flush_release_now() {  // kept out of the callers' code
        Engine::Impl::Release& r = m.release;
        r.due = false;
        m.nt_valid = false;
        const Peer& p = m.peers[r.peer];
        if (p.state == PeerState::kFree || p.incarnation != r.incarnation) return;  // gone since
        request_releases(r.at, r.peer, r.ack, r.low);
    }
    // The record a caller names (reply, error, read) as the pending release would leave it: a
    // record that release ends is ended first, so the caller finds what it would have found had
    // the release not waited (a request its client finished: kInvalid, and the application gets
    // kRequestCancelled / kReplyDone as before).
    Req* req_settled(RequestHandle h) {
        Req* r = req_of(h);
        const Engine::Impl::Release& rel = m.release;
        if (r && rel.due && r->peer == rel.peer && (r->txn == rel.ack || txn_before(r->txn, rel.low))) {
            flush_release_now();
            r = req_of(h);
        }
        return r;
    }
    void take_request(Instant now, uint16_t pi, const Message& msg, ConstChain pkt) {
        Peer& p = peer_at(pi);
        const wire::Request& q = msg.request;
#ifndef SMP_PLANT_BUG_NO_DUP_SUPPRESSION
        if (is_done(p, q.txn)) {
            // Finished here. A client that still waits (we ended the request when we thought it
            // was gone) learns it from this; a late network duplicate gets an answer it ignores.
            // Like every repeat below, answered at its first segment only (SPEC.md 5.1).
            st.duplicates++;
            if (q.offset == 0) refuse(pi, q.txn, ErrorCode::kStale, msg.header.priority);
            return;
        }
#endif  // the planted bug (tests only) runs a duplicate of a finished request again
        Req* r = find_req(pi, q.txn);
        if (r) {
            if (r->state == ReqState::kAssembling) {
                store_eager(now, *r, msg, pkt);
                return;
            }
            if (q.eager_bytes == r->eager_wire && q.total_bytes == r->total && q.offset >= r->eager &&
                q.offset > 0) {
                // The tail of an announced eager part we did not keep (still in flight): not a
                // repeat. A client that repeats starts again at offset 0, which is handled below.
                r->heard = now;
                return;
            }
            st.duplicates++;
            // A client repeats a request from its first segment (offset 0), so answering that
            // one answers the repetition once, not once per segment of its window (SPEC.md 5.1).
            if (q.offset != 0) return;
            if (r->state == ReqState::kReplying && !r->reply_heard) {
                r->tx_reply = true;  // the reply was lost: send it again now
                r->tx_offset = 0;
                r->reply_resent = true;
                want_tx(*r);
            } else if (r->state == ReqState::kDelivered) {
                queue_ack(now, p, q.txn, AckKind::kRequestReceived, 0);
            }
            return;
        }
        if (txn_dist(p.base, q.txn) >= c.window_txns) {
            refuse(pi, q.txn, ErrorCode::kBusy, msg.header.priority);  // outside the granted window
            return;
        }
        // More eager bytes than our limit (our HELLO gave it; a client that ignores it) is not
        // an error: keep the first eager_bytes_max and pull the rest when the application
        // reads, as if the client had announced less (SPEC.md 5.3). Refusing (BUSY) would
        // repeat forever if the client cannot honour the limit.
        uint32_t keep = min_u(q.eager_bytes, c.eager_bytes_max);
        if (p.pool_bytes + keep > c.window_bytes) {
            refuse(pi, q.txn, ErrorCode::kBusy, msg.header.priority);
            return;
        }
        r = alloc_req();
        if (!r) {
            refuse(pi, q.txn, ErrorCode::kBusy, msg.header.priority);
            return;
        }
        r->peer = pi;
        if (!pool_alloc(keep, r->pool_head, r->pool_blocks)) {
            // Not accepted: give the record back without marking the txn done.
            r->pool_head = 0;
            r->pool_blocks = 0;
            r->state = ReqState::kFree;
            r->gen = uint16_t(r->gen + 1 ? r->gen + 1 : 1);
            r->next_free = m.req_free;
            m.req_free = uint16_t(req_index(*r) + 1);
            st.requests_live--;
            refuse(pi, q.txn, ErrorCode::kBusy, msg.header.priority);
            return;
        }
        r->state = ReqState::kAssembling;
        r->heard = now;
        r->txn = q.txn;
        r->channel = q.channel;
        r->total = q.total_bytes;
        r->eager = keep;
        r->eager_wire = q.eager_bytes;
        if (keep < q.eager_bytes) st.eager_trimmed++;  // counted once per accepted request
        r->reply_max = q.reply_bytes_max;
        r->priority = msg.header.priority;
        r->deadline_wire = q.deadline_us;
        r->deadline = q.deadline_us == wire::kNoDeadline ? kNever : now + q.deadline_us;
        r->held = keep;
        p.pool_bytes += keep;
        p.reqs_live++;
        note_business(now, p);
        if (q.total_bytes > c.message_bytes_max || q.deadline_us == 0) {
            // Refused for good, but kept as a record so the refusal is delivered reliably.
            r->state = ReqState::kDelivered;
            set_reply(now, *r, q.deadline_us == 0 ? ErrorCode::kTimedOut : ErrorCode::kTooLarge, 0,
                      ConstChain{nullptr, 0});
            return;
        }
        store_eager(now, *r, msg, pkt);
    }
    void store_eager(Instant now, Req& r, const Message& msg, ConstChain pkt) {
        const wire::Request& q = msg.request;
        r.heard = now;
        if (q.eager_bytes != r.eager_wire || q.total_bytes != r.total) {
            st.dropped_unexpected++;  // the same txn with other sizes: not ours to merge
            return;
        }
        if (q.offset == 0 && msg.payload.bytes >= r.eager) {
            // Every byte we keep is in this packet (every small request): nothing to assemble.
            if (r.eager) eager_write(r, 0, pkt, msg.payload.offset, r.eager);
        } else {
            if (msg.payload.bytes && q.offset < r.eager) {
                // Only [0, eager) goes to the pool; announced bytes beyond it are pulled later.
                uint32_t n = min_u(msg.payload.bytes, r.eager - q.offset);
                eager_write(r, q.offset, pkt, msg.payload.offset, n);
                r.eager_have.insert(q.offset, q.offset + n);
            }
            if (!r.eager_have.covers(0, r.eager)) return;
        }
        if (r.deadline <= now) {
            free_req(r);  // complete only after its sender gave up: never delivered (5.6)
            return;
        }
        r.state = ReqState::kDelivered;
        Event& ev = new_event();
        ev.type = EventType::kRequest;
        ev.handle = make_handle(r.gen, req_index(r));
        ev.peer = ref_of(r.peer);
        ev.channel = r.channel;
        ev.size = r.total;
        ev.eager_bytes = r.eager;
        ev.reply_bytes_max = r.reply_max;
        ev.priority = r.priority;
        ev.deadline_us = r.deadline == kNever ? wire::kNoDeadline : uint32_t(r.deadline - now);
        st.requests_delivered++;
        queue_ack(now, peer_at(r.peer), r.txn, AckKind::kRequestReceived, c.ack_delay_us);
    }
    void set_reply(Instant now, Req& r, ErrorCode error, uint32_t status, ConstChain parts) {
        Peer& p = peer_at(r.peer);
        r.state = ReqState::kReplying;
        r.reading = false;
        r.in.active = false;
        r.reply_error = error;
        r.status = status;
        r.reply_parts = parts;
        r.reply_total = error == ErrorCode::kOk ? uint32_t(chain_size(parts)) : 0;
        r.reply_eager = min_u(min_u(r.reply_total, c.eager_bytes_max), r.reply_max);
        r.tx_reply = true;
        r.tx_offset = 0;
        want_tx(r);
        r.retries = 0;
        r.rto_us = p.rto_us;
        // As a request's (start_tx): the client's delayed acknowledgement must have time to come.
        r.rto_at = now + r.rto_us + c.ack_delay_us;
        r.reply_at = now;
        r.reply_resent = false;
        // The request's eager bytes are no longer needed: credit returns to the pool now.
        p.pool_bytes -= r.held;
        r.held = 0;
        pool_free(r.pool_head, r.pool_blocks);
        drop_ack(p, r.txn, AckKind::kRequestReceived);  // the reply acknowledges the request
    }

    // -- client: replies --
    // Inline in handle_datagram (its one caller): the calling node's path.
    __attribute__((always_inline)) void on_reply(Instant now, uint16_t pi, const Message& msg, ConstChain pkt) {
        Peer& p = peer_at(pi);
        const wire::Reply& y = msg.reply;
        Send* s = find_send(pi, y.txn);
        if (!s || s->is_pulse) {
            // Finished here already: our acknowledgement was lost. Say it again, once per
            // repetition: a server repeats a reply from its first segment (SPEC.md 5.1).
            if (y.error != ErrorCode::kBusy && txn_before(y.txn, p.next_txn)) {
                st.duplicates++;
                if (y.offset == 0) queue_ack(now, p, y.txn, AckKind::kReplyReceived, 0);
            } else {
                st.dropped_unexpected++;
            }
            return;
        }
        if (s->state == SendState::kClosing) {
            if (y.error == ErrorCode::kBusy) return;
            queue_ack(now, p, y.txn, AckKind::kReplyReceived, 0);
            free_send(*s);
            return;
        }
        if (s->state == SendState::kWaiting) {
            st.dropped_unexpected++;
            return;
        }
        if (y.error == ErrorCode::kBusy) {
            // Not accepted: stay blocked at home and offer it again later. The server is alive
            // and answering, so this restarts the count of repeats: the send waits for room
            // until its deadline (SPEC.md 6.2), never "host down" for it. A `busy` once the
            // server took the request (acknowledged it, its reply arriving) is a late duplicate.
            if (s->state != SendState::kSent) {
                st.dropped_unexpected++;
                return;
            }
            s->tx_request = false;
            s->retries = 0;
            s->rto_us = backoff(s->rto_us);
            s->rto_at = now + s->rto_us;
            return;
        }
        if (s->state != SendState::kReceiving) reply_time_sample(now, p, *s);
        if (y.error != ErrorCode::kOk) {
            s->reply_total = 0;
            s->reply_status = y.status;
            queue_ack(now, p, y.txn, AckKind::kReplyReceived, c.ack_delay_us);
            finish_send(now, *s, y.error);
            return;
        }
        uint32_t want = min_u(y.total_bytes, s->reply_cap);
        if (s->state != SendState::kReceiving && y.offset == 0 && msg.payload.bytes >= want) {
            // The whole reply we keep is in this one packet (every small reply): no transfer to
            // track, nothing to pull. The same outcome as the general path below.
            s->state = SendState::kReceiving;
            s->tx_request = false;
            s->reply_total = y.total_bytes;
            s->reply_status = y.status;
            if (want) chain_to_chain(pkt, msg.payload.offset, s->reply, 0, want);
            queue_ack(now, p, y.txn, AckKind::kReplyReceived, c.ack_delay_us);
            finish_send(now, *s, ErrorCode::kOk);
            return;
        }
        if (s->state != SendState::kReceiving) {
            s->state = SendState::kReceiving;
            s->tx_request = false;
            s->reply_total = y.total_bytes;
            s->reply_status = y.status;
            pull_start(now, s->in, 0, want, min_u(y.eager_bytes, want), p.rto_us);
        } else if (y.total_bytes != s->reply_total) {
            st.dropped_unexpected++;
            return;
        }
        uint32_t n = msg.payload.bytes;
        if (y.offset < want && n) {
            uint32_t take = min_u(n, want - y.offset);
            chain_to_chain(pkt, msg.payload.offset, s->reply, y.offset, take);
            pull_arrived(now, s->in, y.offset, take, p.rto_us);
        }
        if (s->in.pending_n) want_tx(*s);
        if (s->in.complete()) {
            queue_ack(now, p, y.txn, AckKind::kReplyReceived, c.ack_delay_us);
            finish_send(now, *s, ErrorCode::kOk);
        }
    }

    // -- pulls and data --
    void on_pull(Instant now, uint16_t pi, const Message& msg) {
        const wire::Pull& q = msg.pull;
        if (q.what == DataKind::kRequest) {
            Send* s = find_send(pi, q.txn);
            if (!s || (s->state != SendState::kSent && s->state != SendState::kServed)) {
                st.dropped_unexpected++;
                return;
            }
            s->state = SendState::kServed;  // a pull proves the server holds the request
            s->tx_request = false;
            s->rto_at = now + c.dead_after_us();
            for (uint8_t i = 0; i < q.count; i++) {
                uint32_t a = q.ranges[i].offset, b = a + q.ranges[i].bytes;
                if (b > s->total) b = s->total;
                if (a < b) s->out.insert(a, b);  // a full set drops it: the server asks again
            }
            want_tx(*s);
            return;
        }
        Req* r = find_req(pi, q.txn);
        if (!r || r->state != ReqState::kReplying || r->reply_error != ErrorCode::kOk) {
            st.dropped_unexpected++;
            return;
        }
        // The client is pulling: no need to repeat the eager part while it does, but the reply
        // stays timed until its acknowledgement (which may be lost after the last DATA).
        r->reply_heard = true;
        r->tx_reply = false;
        r->retries = 0;
        r->rto_us = peer_at(pi).rto_us;
        r->rto_at = now + r->rto_us * 4;
        for (uint8_t i = 0; i < q.count; i++) {
            uint32_t a = q.ranges[i].offset, b = a + q.ranges[i].bytes;
            if (b > r->reply_total) b = r->reply_total;
            if (a < b) r->out.insert(a, b);
        }
        want_tx(*r);
        (void)now;
    }
    void on_data(Instant now, uint16_t pi, const Message& msg, ConstChain pkt) {
        const wire::Data& d = msg.data;
        Peer& p = peer_at(pi);
        uint32_t n = msg.payload.bytes;
        if (d.what == DataKind::kReply) {
            Send* s = find_send(pi, d.txn);
            if (!s || s->state != SendState::kReceiving || !s->in.active) {
                st.dropped_unexpected++;
                return;
            }
            Transfer& t = s->in;
            if (d.offset >= t.hi || d.offset + n <= t.lo) return;
            uint32_t a = d.offset < t.lo ? t.lo : d.offset;
            uint32_t b = min_u(d.offset + n, t.hi);
            chain_to_chain(pkt, msg.payload.offset + (a - d.offset), s->reply, a, b - a);
            pull_arrived(now, t, a, b - a, p.rto_us);
            if (t.pending_n) want_tx(*s);
            if (t.complete()) {
                queue_ack(now, p, d.txn, AckKind::kReplyReceived, c.ack_delay_us);
                finish_send(now, *s, ErrorCode::kOk);
            }
            return;
        }
        Req* r = find_req(pi, d.txn);
        if (!r || !r->reading || !r->in.active) {
            st.dropped_unexpected++;
            return;
        }
        Transfer& t = r->in;
        if (d.offset >= t.hi || d.offset + n <= t.lo) return;
        uint32_t a = d.offset < t.lo ? t.lo : d.offset;
        uint32_t b = min_u(d.offset + n, t.hi);
        chain_to_chain(pkt, msg.payload.offset + (a - d.offset), r->read_dst, a - r->read_offset,
                       b - a);
        pull_arrived(now, t, a, b - a, p.rto_us);
        if (t.pending_n) want_tx(*r);
        if (t.complete()) read_done(*r);
    }
    void read_done(Req& r) {
        r.reading = false;
        r.in.active = false;
        Event& ev = new_event();
        ev.type = EventType::kReadDone;
        ev.handle = make_handle(r.gen, req_index(r));
        ev.peer = ref_of(r.peer);
        ev.channel = r.channel;
        ev.size = r.read_len;
        ev.bytes = r.read_len;
        r.read_dst = MutableChain{nullptr, 0};
    }

    // -- acknowledgements, cancels, pulses --
    void on_ack_entry(Instant now, uint16_t pi, uint32_t txn, AckKind kind) {
        if (kind == AckKind::kReplyReceived) {
            Req* r = find_req(pi, txn);
            if (r && r->state == ReqState::kReplying) {
                // The server's side of reply_time_sample: the client's acknowledgement cannot
                // come sooner than a round trip after the reply left (SPEC 5.2).
                Peer& p = peer_at(pi);
                if (!r->reply_resent && p.rtt_init && now >= r->reply_at && now - r->reply_at < p.srtt_us)
                    rtt_sample(p, r->reply_at, now);
                req_event(*r, EventType::kReplyDone, ErrorCode::kOk);
                free_req(*r);
            }
            return;
        }
        Send* s = find_send(pi, txn);
        if (!s) return;
        if (kind == AckKind::kRequestReceived && s->state == SendState::kSent && !s->is_pulse) {
            s->state = SendState::kServed;
            s->tx_request = false;
            s->rto_at = now + c.dead_after_us();
        } else if (kind == AckKind::kCancelReceived && s->state == SendState::kClosing) {
            free_send(*s);
        } else if (kind == AckKind::kPulseReceived && s->is_pulse) {
            free_send(*s);
        }
        (void)now;
    }
    void on_cancel(Instant now, uint16_t pi, const Message& msg) {
        Peer& p = peer_at(pi);
        uint32_t txn = msg.cancel.txn;
        Req* r = find_req(pi, txn);
        if (r) {
            abort_req(*r, msg.cancel.reason);
        } else if (p.base_set && txn_dist(p.base, txn) < kTxnWindowMax) {
            mark_done(p, txn);  // never run it if it comes later
        } else if (!p.base_set || !txn_before(txn, p.base)) {
            // Ahead of the request and of any window we know: no acknowledgement, so the
            // client repeats the CANCEL, which then finds the request (SPEC.md 5.6).
            return;
        }
        queue_ack(now, p, txn, AckKind::kCancelReceived, 0);
    }
    void on_pulse(Instant now, uint16_t pi, const Message& msg) {
        Peer& p = peer_at(pi);
        const wire::Pulse& q = msg.pulse;
        if (!p.base_set && c.auth) {
            st.dropped_unexpected++;  // as a REQUEST (on_request)
            ask_numbering(now, pi);
            return;
        }
        advance_low(now, pi, q.txn_low);
        if (is_done(p, q.txn)) {
            st.duplicates++;
            queue_ack(now, p, q.txn, AckKind::kPulseReceived, 0);
            return;
        }
        if (txn_dist(p.base, q.txn) >= c.window_txns) return;
        if (m.pulse_events >= c.pulse_events_max) return;  // not acknowledged: it comes again
        Event ev;
        ev.type = EventType::kPulse;
        ev.peer = ref_of(pi);
        ev.channel = q.channel;
        ev.code = q.code;
        ev.value = q.value;
        ev.source = q.source;
        ev.priority = msg.header.priority;
        if (!push_event(ev)) return;
        m.pulse_events++;
        mark_done(p, q.txn);
        queue_ack(now, p, q.txn, AckKind::kPulseReceived, 0);
    }

    // -- a client's numbering, with a key (SPEC 3.4) --
    // A REQUEST or PULSE says which numbering its client is at, but not when it was sent: one
    // recorded before we let the numbering go (the client's silence, 5.1; a peer forgotten)
    // would be taken as new and run again. So with a key, a server that has no numbering for a
    // client takes none from such a packet: it drops it and asks the client with a fresh nonce
    // (CHALLENGE), at most once per probe interval. The nonce stays while we go on asking
    // (answers cross our repeats), and is made anew once dead_after has passed since we last
    // asked; only an answer within that time is taken, and only once.
    void ask_numbering(Instant now, uint16_t pi) {
        Peer& p = peer_at(pi);
        if (p.numbering_nonce && now < p.numbering_asked_at + c.probe_interval_us) return;
        if (!p.numbering_nonce || now >= p.numbering_asked_at + c.dead_after_us()) p.numbering_nonce = next_nonce();
        p.numbering_asked_at = now;
        Message ch;
        ch.header.type = Type::kChallenge;
        ch.header.dst_endpoint = p.endpoint;
        ch.header.dst_incarnation = p.incarnation;
        ch.challenge.nonce = p.numbering_nonce;
        queue_control(p.ipv4, ch);
        st.challenges_sent++;
    }
    // The client's side: our numbering toward the asking server, as it is now (its txn low, our
    // next txn, and which txns between them are still unacknowledged: the server takes every
    // other one as finished, a cancelled one included). So that the call waits for no timer,
    // our requests and pulses not acknowledged yet go again at once, after the answer, for a
    // question not answered before. A CHALLENGE played back must make us send little: one
    // recorded 24-byte packet, played fast, would otherwise draw every unacknowledged request's
    // eager bytes each time (up to 16 x 64 KiB). So a nonce answered already (the server asks
    // again: our answer was lost; or a recording) draws the answer alone, our requests going
    // again on their own timers (the rules inside).
    void on_challenge(Instant now, uint16_t pi, const Message& msg) {
        if (!c.auth) {
            st.dropped_unexpected++;  // never asked without a key: nothing changes without one
            return;
        }
        Peer& p = peer_at(pi);
        // Only the nonce answered last, asked again within the half interval, goes unanswered (a
        // server never repeats its nonce sooner): another nonce is always answered, one small
        // packet for one, or a recording played just ahead of each real CHALLENGE would have
        // every real one dropped and our calls never taken. Our repeats go at most once per half
        // interval, and only for a nonce not answered before.
        const uint32_t nonce = msg.challenge.nonce;
        const bool recent = p.challenge_answered && uint32_t(now) - p.challenge_answered_at < c.probe_interval_us / 2;
        if (recent && nonce == p.challenge_answered) {
            st.dropped_unexpected++;
            return;
        }
        const bool fresh = !recent && nonce != p.challenge_answered;
        p.challenge_answered = nonce;
        p.challenge_answered_at = uint32_t(now);
        Message ans;
        ans.header.type = Type::kChallengeAck;
        ans.header.dst_endpoint = p.endpoint;
        ans.header.dst_incarnation = p.incarnation;
        wire::ChallengeAck& a = ans.challenge_ack;
        a.nonce = nonce;
        a.txn_low = txn_low(pi);
        a.txn_next = p.next_txn;
        a.open = 0;
        for (size_t i = 0; p.sends_live && i < m.sends_hi; i++) {
            Send& s = m.sends[i];
            if (s.state != SendState::kSent || s.peer != pi || !s.txn) continue;
            const uint32_t bit = txn_dist(a.txn_low, s.txn);
            if (bit < kTxnWindowMax) a.open |= uint64_t(1) << bit;
            if (!fresh) continue;
            s.tx_request = true;
            s.tx_offset = 0;
            s.retransmission = true;
            want_tx(s);
        }
        queue_control(p.ipv4, ans);
    }
    // The server's side: the answer to our CHALLENGE is fresh (it echoes the nonce), so its
    // numbering is the client's now. What a recording names is below it, or finished.
    void on_challenge_ack(Instant now, uint16_t pi, const Message& msg) {
        Peer& p = peer_at(pi);
        const wire::ChallengeAck& a = msg.challenge_ack;
        if (!p.numbering_nonce || a.nonce != p.numbering_nonce ||
            now >= p.numbering_asked_at + c.dead_after_us() || p.base_set) {
            st.dropped_unexpected++;  // a recording, a duplicate, or late
            return;
        }
        p.numbering_nonce = 0;
        p.base_set = true;
        p.base = a.txn_low;
        const uint32_t span = txn_dist(a.txn_low, a.txn_next);  // at most 64 (the decoder)
        const uint64_t between = span >= kTxnWindowMax ? ~uint64_t(0) : (uint64_t(1) << span) - 1;
        p.done = ~a.open & between;
        while (p.done & 1) {
            p.done >>= 1;
            p.base = txn_next(p.base);
        }
    }

    // -- HELLO and path MTU --
    void on_hello(Instant now, uint16_t pi, const Message& msg) {
        Peer& p = peer_at(pi);
        const wire::Hello& h = msg.hello;
        p.credit_bytes = h.window_bytes;
        p.credit_txns = h.window_txns > kTxnWindowMax ? kTxnWindowMax : h.window_txns;
        p.peer_mtu = h.mtu;
        p.peer_message_max = h.message_bytes_max;
        p.peer_eager_max = h.eager_bytes_max;
        p.credit_known = true;
        if (msg.header.type == Type::kHello) {
            queue_hello(p, Type::kHelloAck, p.incarnation, h.nonce);
            // A peer that says HELLO is about to call us: its first request need not wait for
            // the question its numbering would draw (SPEC 3.4), the answer comes with it.
            if (c.auth && !p.base_set) ask_numbering(now, pi);
        } else if (p.state == PeerState::kConnecting && h.nonce == p.hello_nonce) {
            p.unproven = false;  // our nonce echoed: this life is now (SPEC 3.4)
            if (p.hello_tries == 1) rtt_sample(p, p.hello_sent_at, now);
        }
        if (p.state != PeerState::kUp) {
            p.state = PeerState::kUp;
            p.hello_due = false;
            p.hello_at = kNever;
            mtu_start(now, p);
        }
        admit(now, pi);
    }
    void mtu_start(Instant now, Peer& p) {
        p.mtu_done = false;
        p.mtu_tries = 0;
        p.mtu_cand = 0;
        mtu_next_candidate(p);
        if (p.mtu_done) return;
        p.mtu_due = true;  // the first probe goes with the packets that follow the HELLO
        want_tx(p);
        p.mtu_tries = 1;
        p.mtu_at = now + p.rto_us;
    }
    void mtu_next_candidate(Peer& p) {
        uint16_t limit = c.mtu_max < p.peer_mtu ? c.mtu_max : p.peer_mtu;
        while (p.mtu_cand < kMtuCandidateCount && kMtuCandidates[p.mtu_cand] > limit) p.mtu_cand++;
        if (p.mtu_cand >= kMtuCandidateCount || kMtuCandidates[p.mtu_cand] <= p.mtu) {
            p.mtu_done = true;
            p.mtu_at = kNever;
        }
    }
    void on_probe_ack(Instant now, Peer& p, const Message& msg) {
        if (msg.probe.seq == p.probe_seq) rtt_sample(p, p.probe_sent_at, now);
        if (!p.mtu_done && msg.probe.seq == p.mtu_seq && p.mtu_cand < kMtuCandidateCount &&
            msg.probe.probe_bytes == kMtuCandidates[p.mtu_cand]) {
            p.mtu = msg.probe.probe_bytes;
            p.mtu_done = true;
            p.mtu_at = kNever;
        }
    }
};

}  // namespace

// ---- Inputs -----------------------------------------------------------------------------------
void Engine::handle_datagram(Instant now, uint32_t src_ipv4, uint32_t dst_ipv4, ConstChain packet) {
    if (!ok_) return;
    E e{*impl_, config_, stats_};
    impl_->now = now;
    impl_->nt_valid = false;
    stats_.packets_in++;
    const size_t packet_bytes = packet.count == 1 ? packet.parts[0].size : chain_size(packet);
    stats_.bytes_in += packet_bytes;
    e.flush_release();  // what the REQUEST before released comes first
    Message msg;
    wire::DecodeError err = wire::decode(packet, src_ipv4, dst_ipv4, msg);
    if (err != wire::DecodeError::kOk) {
        stats_.decode_errors[size_t(err)]++;
        return;
    }
    const wire::Header& h = msg.header;
    if (h.dst_endpoint != config_.local_endpoint) {
        stats_.dropped_not_mine++;
        return;
    }
    // Nothing from a packet without the right MAC is believed or answered (with a key), and
    // no AUTH packet is (without one: its MAC cannot be checked).
    if (config_.auth ? !wire::mac_ok(packet, src_ipv4, dst_ipv4, impl_->mac_key)
                     : (h.flags & wire::kFlagAuth) != 0) {
        stats_.dropped_auth++;
        return;
    }
    int found = e.find_peer(src_ipv4, h.src_endpoint);
    bool took_life = false;  // a new life of the peer's taken (with a key: its echo proved it)
    if (h.dst_incarnation != 0 && h.dst_incarnation != config_.incarnation) {
        // Meant for an earlier incarnation of ours: tell the sender (rate-limited), drop it.
        stats_.dropped_unexpected++;
        if (h.type == Type::kReset) return;
        if (found >= 0) {
            Peer& p = e.peer_at(uint16_t(found));
            if (p.reset_ok_at > now) return;
            p.reset_ok_at = now + config_.probe_interval_us;
        } else if (!e.reset_budget(now)) {
            return;
        }
        e.send_reset(src_ipv4, h, h.dst_incarnation, wire::ResetReason::kUnknownIncarnation);
        return;
    }
    // Stateless answers: a PROBE or NAME_QUERY needs no peer record.
    if (h.type == Type::kProbe || h.type == Type::kNameQuery) {
        Message ans;
        ans.header.dst_endpoint = h.src_endpoint;
        ans.header.dst_incarnation = h.src_incarnation;
        ans.header.priority = h.priority;
        if (h.type == Type::kProbe) {
            ans.header.type = Type::kProbeAck;
            ans.probe = msg.probe;
        } else {
            ans.header.type = Type::kNameReply;
            ans.name = msg.name;
            ans.name.error = ErrorCode::kNoSuchService;
            for (size_t i = 0; i < config_.names_max; i++) {
                const NameEntry& n = impl_->names[i];
                if (n.used && n.bytes == msg.name.name_bytes &&
                    equal_bytes(reinterpret_cast<const uint8_t*>(n.name),
                                reinterpret_cast<const uint8_t*>(msg.name.name), n.bytes)) {
                    ans.name.error = ErrorCode::kOk;
                    ans.name.channel = n.channel;
                }
            }
        }
        e.queue_control(src_ipv4, ans);
        if (found >= 0) {
            Peer& p = e.peer_at(uint16_t(found));
            if (p.incarnation == h.src_incarnation) {
                p.last_heard = now;
                if (!config_.auth) {  // with a key, a PROBE may be a recording: no proof of life
                    p.alive_at = now;
                    p.unanswered = 0;
                }
            }
        }
        return;
    }
    if (h.dst_incarnation == 0 && h.type != Type::kHello) {
        stats_.dropped_unexpected++;  // only HELLO, PROBE and NAME_QUERY may not know us
        return;
    }
    if (found >= 0) {
        Peer& p = e.peer_at(uint16_t(found));
        if (p.prev_incarnation && h.src_incarnation == p.prev_incarnation) {
            stats_.dropped_unexpected++;  // a late packet from before the peer's reboot
            return;
        }
        if (h.type == Type::kReset) {
            if (msg.reset.reason == wire::ResetReason::kNoPeerSlot) {
                // Alive, but without room for us now (it names our incarnation: this life's).
                if (msg.reset.named_incarnation == config_.incarnation) e.refused(now, uint16_t(found));
                return;
            }
            if (p.incarnation != 0 && msg.reset.named_incarnation == p.incarnation &&
                h.src_incarnation != p.incarnation) {
                if (!e.replace_unproven(uint16_t(found), h.src_incarnation))
                    e.rebooted(now, uint16_t(found), h.src_incarnation);
            }
            return;
        }
        if (config_.auth && p.state == PeerState::kConnecting &&
            (p.incarnation == 0 || (p.unproven && h.dst_incarnation == 0)) &&
            !(h.type == Type::kHelloAck && msg.hello.nonce == p.hello_nonce)) {
            // With a key, while we connect, only the echo of our HELLO's nonce names the peer's
            // incarnation (SPEC 3.4): a HELLO (perhaps a recording of a dead life's) is answered
            // but not believed, or our sends would go to that life and end `peer rebooted`.
            // So too when the incarnation we know is unproven (taken from such a HELLO): the
            // HELLO does not end our connecting (only a packet naming our incarnation, reaching
            // here with dst_incarnation set, or the echo does), else the echo that follows
            // proves nothing and every later send connects anew, its liveness count reset.
            stats_.dropped_unexpected++;
            if (h.type == Type::kHello) e.queue_hello(p, Type::kHelloAck, h.src_incarnation, msg.hello.nonce);
            return;
        }
        if (p.incarnation != 0 && p.incarnation != h.src_incarnation) {
            if (!e.new_life(now, uint16_t(found), msg)) return;
            took_life = true;
        } else if (p.base_set && !p.reqs_live && now - p.last_heard >= e.numbering_lapse())
            p.base_set = false;  // silent that long: no packet of its numbering is left, and it
                                 // may have forgotten it (5.1); the next txn low starts the
                                 // filter anew (advance_low)
    } else {
        if (h.type == Type::kReset) return;
        found = e.add_peer(now, src_ipv4, h.src_endpoint);
        if (found < 0) {
            // Every peer busy, or idle too recently to forget with no room to retire it: say
            // so, or the sender would take our silence for "host down" (SPEC.md 4.9). Never
            // larger than what it answers; the control queue bounds how many go out.
            stats_.dropped_no_peer_slot++;
            if (packet_bytes >= wire::kHeaderBytes + wire::kResetBytes + (config_.auth ? wire::kMacBytes : 0) &&
                e.reset_budget(now))
                e.send_reset(src_ipv4, h, h.src_incarnation, wire::ResetReason::kNoPeerSlot);
            return;
        }
        // A retired peer came back (add_peer restored it) as another incarnation: it rebooted.
        Peer& back = e.peer_at(uint16_t(found));
        if (back.incarnation != 0 && back.incarnation != h.src_incarnation) {
            if (!e.new_life(now, uint16_t(found), msg)) return;
            took_life = true;
        }
    }
    uint16_t pi = uint16_t(found);
    Peer& p = e.peer_at(pi);
    if (config_.auth) {
        // A packet naming this life of ours was sent during it; a HELLO naming none may be a
        // recording of any earlier life of the peer's (SPEC 3.4).
        if (h.dst_incarnation == config_.incarnation) p.unproven = false;
        else if (p.incarnation == 0) p.unproven = true;
    }
    p.incarnation = h.src_incarnation;
    p.last_heard = now;
    // With a key, only what a recording cannot repeat proves the peer alive now (SPEC 3.4): the
    // echo of one of our last few probes or of our nonce (a reboot taken: its claim's echo).
    if (!config_.auth || took_life ||
        (h.type == Type::kProbeAck && p.probe_seq - msg.probe.seq < kProbesFresh) ||
        (h.type == Type::kHelloAck && p.state == PeerState::kConnecting && msg.hello.nonce == p.hello_nonce)) {
        p.alive_at = now;
        p.unanswered = 0;
    }
    // (A REQUEST's own: after it, see on_request.)
    if (h.ack && h.type != Type::kRequest) e.on_ack_entry(now, pi, h.ack, AckKind::kReplyReceived);
    // REQUEST, REPLY, PULL, DATA and ACK mark exactly what they give to send (E::want_tx); the
    // rarer types have the next poll_transmit scan every table.
    if (h.type != Type::kRequest && h.type != Type::kReply && h.type != Type::kPull &&
        h.type != Type::kData && h.type != Type::kAck)
        impl_->tx_scan = true;
    switch (h.type) {
        case Type::kHello:
        case Type::kHelloAck: e.on_hello(now, pi, msg); break;
        case Type::kRequest: e.on_request(now, pi, msg, packet); break;
        case Type::kReply: e.on_reply(now, pi, msg, packet); break;
        case Type::kPull: e.on_pull(now, pi, msg); break;
        case Type::kData: e.on_data(now, pi, msg, packet); break;
        case Type::kAck:
            for (size_t i = 0; i < msg.ack.count; i++)
                e.on_ack_entry(now, pi, msg.ack.entries[i].txn, msg.ack.entries[i].kind);
            break;
        case Type::kCancel: e.on_cancel(now, pi, msg); break;
        case Type::kPulse: e.on_pulse(now, pi, msg); break;
        case Type::kProbeAck: e.on_probe_ack(now, p, msg); break;
        case Type::kNameReply: on_name_reply(now, pi, msg); break;
        case Type::kChallenge: e.on_challenge(now, pi, msg); break;
        case Type::kChallengeAck: e.on_challenge_ack(now, pi, msg); break;
        case Type::kProbe:
        case Type::kNameQuery:
        case Type::kReset: break;  // handled above
    }
}

void Engine::on_name_reply(Instant now, uint16_t pi, const wire::Message& msg) {
    E e{*impl_, config_, stats_};
    (void)now;
    uint32_t i = msg.name.query & 0xFFFF;
    if (i == 0 || i > config_.lookups_max) return;
    Lookup& l = impl_->lookups[i - 1];
    if (!l.used || l.gen != (msg.name.query >> 16) || l.bytes != msg.name.name_bytes ||
        !equal_bytes(reinterpret_cast<const uint8_t*>(l.name),
                     reinterpret_cast<const uint8_t*>(msg.name.name), l.bytes)) {
        stats_.dropped_unexpected++;
        return;
    }
    Event ev;
    ev.type = EventType::kNameResolved;
    ev.handle = msg.name.query;
    if (msg.name.error == ErrorCode::kOk) {
        // Remember it (the cache is bounded: the oldest entry gives way).
        size_t slot = 0;
        uint32_t oldest = ~uint32_t(0);
        for (size_t k = 0; k < config_.names_cache_max; k++) {
            NameEntry& n = impl_->cache[k];
            if (!n.used) { slot = k; oldest = 0; break; }
            if (n.age < oldest) { oldest = n.age; slot = k; }
        }
        if (config_.names_cache_max) {
            NameEntry& n = impl_->cache[slot];
            n.used = true;
            n.bytes = l.bytes;
            copy_bytes(reinterpret_cast<uint8_t*>(n.name), reinterpret_cast<const uint8_t*>(l.name), l.bytes);
            n.channel = msg.name.channel;
            n.peer = e.ref_of(pi);
            n.age = ++impl_->cache_clock;
        }
        ev.peer = e.ref_of(pi);
        e.take_ref(pi);  // the lookup's answer is a PeerRef to send with
        ev.channel = msg.name.channel;
    } else {
        // Each peer counts once, however often the query is repeated (every peer slot has its
        // bit: a table of more than 64 counted the later ones again at each repeat).
        const uint64_t bit = uint64_t(1) << (pi % 64);
        if (!(l.answered[pi / 64] & bit)) {
            l.answered[pi / 64] |= bit;
            l.negatives++;
        }
        if (l.negatives < l.answers_needed) return;
        ev.error = ErrorCode::kNoSuchService;
    }
    e.push_event(ev);
    l.used = false;
    l.gen = uint16_t(l.gen + 1 ? l.gen + 1 : 1);
}

// ---- Timers -----------------------------------------------------------------------------------
void Engine::handle_timeout(Instant now) {
    if (!ok_) return;
    E e{*impl_, config_, stats_};
    Impl& m = *impl_;
    e.flush_release();
    m.now = now;
    m.nt_valid = false;
    m.tx_scan = true;  // whatever a timer made due is found by one scan of every table
    const Config& c = config_;
    uint64_t dead_after = c.dead_after_us();
    for (uint16_t i = 0; i < m.peers_hi; i++) {
        Peer& p = m.peers[i];
        if (p.state == PeerState::kFree) continue;
        bool business = p.sends_live || p.reqs_live;
        if (p.state == PeerState::kConnecting) {
            if (p.hello_tries >= c.probes_dead && now - p.alive_at >= dead_after) {
                e.fail_peer(now, i, ErrorCode::kHostDown);
                continue;
            }
        } else if (business) {
            // Liveness (SPEC.md 5.5): probe a peer we have business with whenever it has been
            // silent for a probe interval; K unanswered probes in a row and dead_after of
            // silence declare it down.
            if (p.probe_at == kNever) p.probe_at = p.alive_at + c.probe_interval_us;
            if (now >= p.probe_at) {
                if (now - p.alive_at >= c.probe_interval_us) {
                    p.probe_due = true;
                    p.probe_at = now + c.probe_interval_us;
                } else {
                    p.probe_at = p.alive_at + c.probe_interval_us;
                }
            }
            if (p.unanswered >= c.probes_dead && now - p.alive_at >= dead_after) {
                e.fail_peer(now, i, ErrorCode::kHostDown);
                continue;
            }
        } else {
            p.probe_at = kNever;
            p.probe_due = false;
            p.unanswered = 0;
            if (!p.is_static && p.state == PeerState::kDown && p.nacks == 0 &&
                now - p.last_business >= c.peer_linger_us) {
                e.forget(now, i);  // a cache entry past its linger time
                continue;
            }
        }
        if (p.state == PeerState::kUp && !p.mtu_done && p.mtu_at <= now) {
            if (p.mtu_tries >= kMtuProbeTries) {
                p.mtu_cand++;
                p.mtu_tries = 0;
                e.mtu_next_candidate(p);
            }
            if (!p.mtu_done) {
                p.mtu_due = true;
                p.mtu_tries++;
                uint32_t wait = p.rto_us;
                if (p.rtt_init && 2 * p.srtt_us > wait) wait = 2 * p.srtt_us;
                p.mtu_at = now + wait;
            }
        }
    }
    for (size_t i = 0; i < m.sends_hi; i++) {
        Send& s = m.sends[i];
        if (s.state == SendState::kFree) continue;
        if (s.state != SendState::kClosing && s.deadline <= now) {
            if (s.is_pulse) e.free_send(s);
            else e.finish_send(now, s, ErrorCode::kTimedOut);
            continue;
        }
        if (s.state == SendState::kSent && s.tx_request && s.rto_at <= now) {
            s.rto_at = now + s.rto_us;  // its window is still leaving: the timer restarts then
        } else if ((s.state == SendState::kSent || s.state == SendState::kClosing) && s.rto_at <= now) {
            if (++s.retries > c.retries_max && s.is_pulse && s.state == SendState::kSent) {
                // Unacknowledged that long by a peer that answers its liveness probes: it has
                // no room for more pulses now (5.7). It repeats on until room comes, or the
                // peer is declared down (which ends it); it is never dropped unsaid.
                s.retries = c.retries_max;
            } else if (s.retries > c.retries_max) {
                if (s.state == SendState::kClosing) e.free_send(s);
                else {
                    s.state = SendState::kWaiting;  // no close: the peer is not answering
                    e.finish_send(now, s, ErrorCode::kHostDown);
                }
                continue;
            }
            if (s.state == SendState::kClosing) s.tx_cancel = true;
            else {
                s.tx_request = true;
                s.tx_offset = 0;
                s.retransmission = true;
            }
            s.rto_us = e.backoff(s.rto_us);
            s.rto_at = now + s.rto_us;
            stats_.retransmissions++;
        } else if (s.state == SendState::kServed && s.rto_at <= now) {
            // Still being served? Offer the first segment again: the server re-acknowledges it,
            // or answers "stale" if it ended the request (SPEC.md 5.1).
            s.tx_request = true;
            s.tx_offset = 0;
            s.retransmission = true;
            s.rto_at = now + c.dead_after_us();
        } else if (s.state == SendState::kReceiving && s.in.active && s.in.rto_at <= now) {
            if (s.in.retries >= c.retries_max) {
                e.finish_send(now, s, ErrorCode::kHostDown);
                continue;
            }
            e.pull_timeout(now, s.in);
        }
    }
    for (size_t i = 0; i < m.reqs_hi; i++) {
        Req& r = m.reqs[i];
        if (r.state == ReqState::kFree) continue;
        if (r.state != ReqState::kReplying && r.deadline <= now) {
            e.abort_req(r, ErrorCode::kTimedOut);
            continue;
        }
        if (r.state == ReqState::kAssembling && now - r.heard >= 4 * c.dead_after_us()) {
            // A live client repeats its eager segments at least every rto_max (200 ms): 20
            // rounds all lost at 30% loss is 3.5e-11. So this silence means the client gave up
            // on the request (it declared us down while we still heard it). Nobody was told of
            // it: just end it (marked finished, so a straggler gets `stale`).
            e.free_req(r);
            continue;
        }
        if (r.state == ReqState::kReplying && r.tx_reply && r.rto_at <= now) {
            r.rto_at = now + r.rto_us;  // its eager part is still leaving (as a request's)
        } else if (r.state == ReqState::kReplying && r.rto_at <= now) {
            if (++r.retries > c.retries_max) {
                e.abort_req(r, ErrorCode::kHostDown);
                continue;
            }
            r.tx_reply = true;
            r.tx_offset = 0;
            // A client that pulled has the header and pulls whatever else it misses (SPEC.md
            // 5.2): poll_req sends only the first segment again, for a lost final acknowledgement.
            r.reply_resent = true;
            r.rto_us = e.backoff(r.rto_us);
            r.rto_at = now + r.rto_us;
            stats_.retransmissions++;
        } else if (r.reading && r.in.active && r.in.rto_at <= now) {
            if (r.in.retries >= c.retries_max) {
                e.abort_req(r, ErrorCode::kHostDown);
                continue;
            }
            e.pull_timeout(now, r.in);
        }
    }
    for (size_t i = 0; i < m.lookups_hi; i++) {
        Lookup& l = m.lookups[i];
        if (!l.used || l.rto_at > now) continue;
        // Asked like a liveness probe (5.8): every probe interval, K times, so a live peer's
        // silence at 30% loss is as unlikely as a false "host down".
        if (++l.retries >= c.probes_dead) {
            Event ev;
            ev.type = EventType::kNameResolved;
            ev.handle = e.make_handle(l.gen, i);
            ev.error = l.negatives ? ErrorCode::kNoSuchService : ErrorCode::kHostDown;
            e.push_event(ev);
            // Asked of one peer in session that stayed silent as long as liveness allows: it is
            // down, as its probes would have said (its state and peers_down say so too, and a
            // next send starts with HELLO instead of waiting out the same silence).
            uint16_t pi = 0;
            if (ev.error == ErrorCode::kHostDown && l.where.valid() && e.peer_of_ref(l.where, pi) &&
                e.peer_at(pi).state == PeerState::kUp && now - e.peer_at(pi).alive_at >= dead_after)
                e.fail_peer(now, pi, ErrorCode::kHostDown);
            l.used = false;
            l.gen = uint16_t(l.gen + 1 ? l.gen + 1 : 1);
            continue;
        }
        l.tx_due = true;
        m.lookup_tx = true;
        l.cursor = 0;
        l.rto_at = now + c.probe_interval_us;
    }
}

Instant Engine::next_timeout() const {
    if (!ok_) return kNever;
    if (impl_->nt_valid) return impl_->nt_value;
    impl_->nt_value = next_timeout_scan();
    impl_->nt_valid = true;
    return impl_->nt_value;
}

Instant Engine::next_timeout_scan() const {
    const Impl& m = *impl_;
    const Config& c = config_;
    Instant t = kNever;   // served on time
    Instant rt = kNever;  // retransmission timers: may be served timer_slack_us late
    uint64_t dead_after = c.dead_after_us();
    for (size_t i = 0; i < m.peers_hi; i++) {
        const Peer& p = m.peers[i];
        if (p.state == PeerState::kFree) continue;
        bool business = p.sends_live || p.reqs_live;
        if (p.state == PeerState::kConnecting) {
            // HELLO is exact: its tries count toward declaring the peer down (as probes do),
            // and the down rule, served on time, waits for them.
            t = min_t(t, p.hello_at);
            t = min_t(t, p.alive_at + dead_after);
        } else if (business) {
            // The next probe: a probe interval after the peer was last heard, or after the last
            // probe sent (probe_at), whichever is later. probe_at alone would be stale while
            // the peer is heard from all the time, and wake the node every probe interval for
            // nothing (handle_timeout then only moves it).
            const Instant heard = p.alive_at + c.probe_interval_us;
            t = min_t(t, p.probe_at == kNever || p.probe_at < heard ? heard : p.probe_at);
            if (p.unanswered >= c.probes_dead) t = min_t(t, p.alive_at + dead_after);
        } else if (!p.is_static && p.state == PeerState::kDown) {
            t = min_t(t, p.last_business + c.peer_linger_us);
        }
        if (p.state == PeerState::kUp && !p.mtu_done) rt = min_t(rt, p.mtu_at);
        if (p.nacks) t = min_t(t, p.ack_due);
    }
    for (size_t i = 0; i < m.sends_hi; i++) {
        const Send& s = m.sends[i];
        if (s.state == SendState::kFree) continue;
        if (s.state != SendState::kClosing) t = min_t(t, s.deadline);
        if (s.state == SendState::kSent || s.state == SendState::kClosing || s.state == SendState::kServed)
            rt = min_t(rt, s.rto_at);
        if (s.state == SendState::kReceiving && s.in.active) rt = min_t(rt, s.in.rto_at);
    }
    for (size_t i = 0; i < m.reqs_hi; i++) {
        const Req& r = m.reqs[i];
        if (r.state == ReqState::kFree) continue;
        if (r.state != ReqState::kReplying) t = min_t(t, r.deadline);
        if (r.state == ReqState::kAssembling) t = min_t(t, r.heard + 4 * c.dead_after_us());
        if (r.state == ReqState::kReplying) rt = min_t(rt, r.rto_at);
        if (r.reading && r.in.active) rt = min_t(rt, r.in.rto_at);
    }
    for (size_t i = 0; i < m.lookups_hi; i++) {
        if (m.lookups[i].used) t = min_t(t, m.lookups[i].rto_at);  // asked like a probe (5.8)
    }
    if (rt != kNever) rt = rt + c.timer_slack_us < rt ? kNever - 1 : rt + c.timer_slack_us;
    return min_t(t, rt);
}

bool Engine::poll_event(Event& out) {
    if (!ok_) return false;
    Impl& m = *impl_;
    if (m.ev_count == 0) {
        if (!m.release.due) return false;
        E e{m, config_, stats_};
        e.flush_release_now();  // what a REQUEST released, now that its own events are taken
        if (m.ev_count == 0) return false;
    }
    out = m.events[m.ev_head];
    if (++m.ev_head == m.events_max) m.ev_head = 0;
    m.ev_count--;
    if (config_.eager_store && (out.type == EventType::kRequestCancelled || out.type == EventType::kReplyDone)) {
        E e{m, config_, stats_};
        e.unpark_req(out.handle);  // the application knows now: its area may be reused
    }
    if (out.type == EventType::kPulse && !config_.pulses_released_by_app) m.pulse_events--;
    return true;
}

void Engine::release_pulse() {
    if (ok_ && impl_->pulse_events) impl_->pulse_events--;
}

// ---- Outputs ----------------------------------------------------------------------------------
namespace {

// Fills the addressing part of the header for peer p, piggybacks one reply acknowledgement, and
// encodes. Returns the Transmit (bytes 0 if it did not fit, which sizing rules out).
Transmit emit(E& e, uint16_t pi, Message& msg, uint8_t* out, size_t cap, uint8_t flags,
              uint8_t priority) {
    Peer& p = e.peer_at(pi);
    p.refusal_ok = true;
    msg.header.flags = flags;
    msg.header.priority = priority;
    msg.header.dst_endpoint = p.endpoint;
    msg.header.src_endpoint = e.c.local_endpoint;
    // A HELLO to an unproven incarnation names none: whichever life is there echoes it.
    msg.header.dst_incarnation = msg.header.type == Type::kHello && p.unproven ? 0 : p.incarnation;
    msg.header.src_incarnation = e.c.incarnation;
    msg.header.ack = 0;
    if (msg.header.type != Type::kAck && msg.header.type != Type::kHello &&
        msg.header.type != Type::kProbe) {
        for (uint8_t i = 0; i < p.nacks; i++) {
            if (p.acks[i].kind == AckKind::kReplyReceived) {
                msg.header.ack = p.acks[i].txn;
                p.acks[i] = p.acks[--p.nacks];
                if (!p.nacks) p.ack_due = kNever;
                break;
            }
        }
    }
    Transmit t;
    t.bytes = wire::encode(msg, e.c.local_ipv4, p.ipv4, out, cap, e.c.auth ? &e.m.mac_key : nullptr);
    t.dst_ipv4 = p.ipv4;
    if (t.bytes) {
        e.st.packets_out++;
        e.st.bytes_out += t.bytes;
    }
    return t;
}

Transmit poll_peer(E& e, Instant now, uint16_t pi, uint8_t* out, size_t cap) {
    Peer& p = e.peer_at(pi);
    Message msg;
    if (p.state == PeerState::kConnecting && p.hello_due && p.hello_at <= now) {
        msg.header.type = Type::kHello;
        msg.hello = e.our_hello(p.hello_nonce);
        p.hello_tries++;
        p.hello_sent_at = now;
        uint64_t wait = uint64_t(p.rto_us) << (p.hello_tries < 5 ? p.hello_tries - 1 : 4);
        p.hello_at = now + min_u64(wait, e.c.probe_interval_us);
        if (p.hello_tries > 1) e.st.retransmissions++;
        return emit(e, pi, msg, out, cap, p.hello_tries > 1 ? wire::kFlagRetransmission : 0, 0);
    }
    if (p.probe_due) {
        p.probe_due = false;
        msg.header.type = Type::kProbe;
        msg.probe = wire::Probe{++p.probe_seq, 0};
        msg.pad_to_bytes = 0;
        msg.probe.probe_bytes = uint16_t(wire::kIpv4HeaderBytes + wire::kHeaderBytes + wire::kProbeFixedBytes +
                                         (e.c.auth ? wire::kMacBytes : 0));
        p.probe_sent_at = now;
        p.unanswered++;
        e.st.probes_sent++;
        return emit(e, pi, msg, out, cap, 0, 0);
    }
    if (p.mtu_due) {
        p.mtu_due = false;
        if (p.mtu_done || p.mtu_cand >= kMtuCandidateCount) return Transmit{};
        uint16_t size = kMtuCandidates[p.mtu_cand];
        if (size - wire::kIpv4HeaderBytes > cap) return Transmit{};
        msg.header.type = Type::kProbe;
        p.mtu_seq = ++p.probe_seq;
        // Its PROBE_ACK is a round-trip sample like a liveness probe's (on_probe_ack samples
        // the latest sequence): the time it left is this one's, not the last liveness probe's.
        p.probe_sent_at = now;
        msg.probe = wire::Probe{p.mtu_seq, size};
        msg.pad_to_bytes = size;
        return emit(e, pi, msg, out, cap, 0, 0);
    }
    if (p.nacks && p.ack_due <= now) {
        msg.header.type = Type::kAck;
        msg.ack.count = p.nacks;
        for (uint8_t i = 0; i < p.nacks; i++) msg.ack.entries[i] = p.acks[i];
        p.nacks = 0;
        p.ack_due = kNever;
        return emit(e, pi, msg, out, cap, 0, 0);
    }
    return Transmit{};
}


// A PULL for the ranges still missing of an incoming transfer (either direction); arms its RTO.
void put_pull(Message& msg, uint32_t txn, DataKind what, Transfer& in, Instant now) {
    msg.header.type = Type::kPull;
    msg.pull.txn = txn;
    msg.pull.what = what;
    msg.pull.count = in.pending_n;
    for (uint8_t i = 0; i < in.pending_n; i++) msg.pull.ranges[i] = in.pending[i];
    in.pending_n = 0;
    in.rto_at = now + in.rto_us;
}

// A DATA segment of the first range a peer pulled, read from the borrowed parts.
void put_data(Message& msg, const Peer& p, uint32_t txn, DataKind what, RangeSet& owed,
              ConstChain parts, bool auth) {
    size_t room = wire::payload_capacity(p.mtu, wire::kDataFixedBytes, auth);
    uint32_t off = owed.lo[0];
    uint32_t n = min_u(uint32_t(room), owed.hi[0] - off);
    owed.consume_front(n);
    msg.header.type = Type::kData;
    msg.data = wire::Data{txn, what, off};
    msg.gather = wire::Gather{parts, off, n};
}

// Whether poll_send / poll_req would give another packet now (the same tests, in order).
bool send_has_tx(const Send& s) {
    return s.tx_request || s.tx_cancel || (s.in.active && s.in.pending_n) || (s.out.n && s.msg.parts);
}
bool req_has_tx(const Req& r) {
    return r.tx_reply || (r.reading && r.in.active && r.in.pending_n) ||
           (r.out.n && r.state == ReqState::kReplying);
}

Transmit poll_send(E& e, Instant now, Send& s, uint8_t* out, size_t cap) {
    Peer& p = e.peer_at(s.peer);
    Message msg;
    uint8_t rflag = s.retransmission ? wire::kFlagRetransmission : 0;
    if (s.tx_request) {
        if (s.is_pulse) {
            s.tx_request = false;
            msg.header.type = Type::kPulse;
            msg.pulse = wire::Pulse{s.txn, e.txn_low(s.peer, &s), s.channel, s.code, s.value, s.source};
            return emit(e, s.peer, msg, out, cap, rflag, s.priority);
        }
        size_t room = wire::payload_capacity(p.mtu, wire::kRequestFixedBytes, e.c.auth);
        uint32_t n = min_u(uint32_t(room), s.eager - s.tx_offset);
        msg.header.type = Type::kRequest;
        uint32_t remaining = wire::kNoDeadline;
        if (s.deadline != kNever) {
            uint64_t left = s.deadline > now ? s.deadline - now : 0;
            remaining = left >= wire::kNoDeadline ? wire::kNoDeadline - 1 : uint32_t(left);
            if (remaining == 0) remaining = 1;  // 0 would mean "already expired"
        }
        msg.request = wire::Request{s.txn, e.txn_low(s.peer, &s), s.channel, s.total, s.eager,
                                    s.tx_offset, s.reply_cap, remaining};
        msg.gather = wire::Gather{s.msg, s.tx_offset, n};
        s.tx_offset += n;
        // A served request is re-offered by its first segment alone (SPEC.md 5.1: the server
        // answers a repetition at offset 0 and drops the rest).
        if (s.tx_offset >= s.eager || s.state == SendState::kServed) {
            s.tx_request = false;
            // The timer runs from the window's last segment, not its first, and the first time
            // also allows the receiver as long to take the window in as it took to send it: 64
            // KiB of eager segments can take longer to leave, and to be taken in, than rto +
            // ack_delay (a TX ring full, a busy receiver), and a timer started with the first
            // segment sent the whole window again (SPEC.md 5.2).
            if (s.state == SendState::kSent)
                s.rto_at = now + s.rto_us +
                           (s.retransmission ? 0 : e.c.ack_delay_us + e.window_time(now, s.tx_began));
        }
        if (!s.retransmission) s.sent_at = now;
        return emit(e, s.peer, msg, out, cap, rflag, s.priority);
    }
    if (s.tx_cancel) {
        s.tx_cancel = false;
        msg.header.type = Type::kCancel;
        msg.cancel = wire::Cancel{s.txn, s.cancel_reason};
        return emit(e, s.peer, msg, out, cap, s.retries ? wire::kFlagRetransmission : 0, s.priority);
    }
    if (s.in.active && s.in.pending_n) {
        put_pull(msg, s.txn, DataKind::kReply, s.in, now);
        return emit(e, s.peer, msg, out, cap, 0, s.priority);
    }
    if (s.out.n && s.msg.parts) {
        put_data(msg, p, s.txn, DataKind::kRequest, s.out, s.msg, e.c.auth);
        return emit(e, s.peer, msg, out, cap, 0, s.priority);
    }
    return Transmit{};
}

Transmit poll_req(E& e, Instant now, Req& r, uint8_t* out, size_t cap) {
    Peer& p = e.peer_at(r.peer);
    Message msg;
    if (r.tx_reply) {
        size_t room = wire::payload_capacity(p.mtu, wire::kReplyFixedBytes, e.c.auth);
        uint32_t n = min_u(uint32_t(room), r.reply_eager - r.tx_offset);
        msg.header.type = Type::kReply;
        msg.reply = wire::Reply{r.txn, r.reply_error, 0, r.status, r.reply_total, r.reply_eager,
                                r.tx_offset};
        msg.gather = wire::Gather{r.reply_parts, r.tx_offset, n};
        r.tx_offset += n;
        // Once the client pulled (reply_heard), only this timer re-sends, and the header suffices
        // (a duplicate REQUEST re-sends the whole eager part only before that).
        if (r.tx_offset >= r.reply_eager || r.reply_heard) {
            r.tx_reply = false;
            // From the last segment, as a request's (poll_send).
            r.rto_at = now + r.rto_us + (r.retries ? 0 : e.c.ack_delay_us + e.window_time(now, r.reply_at));
        }
        return emit(e, r.peer, msg, out, cap, r.retries ? wire::kFlagRetransmission : 0, r.priority);
    }
    if (r.reading && r.in.active && r.in.pending_n) {
        put_pull(msg, r.txn, DataKind::kRequest, r.in, now);
        e.drop_ack(p, r.txn, AckKind::kRequestReceived);  // a PULL acknowledges the request
        return emit(e, r.peer, msg, out, cap, 0, r.priority);
    }
    if (r.out.n && r.state == ReqState::kReplying) {
        put_data(msg, p, r.txn, DataKind::kReply, r.out, r.reply_parts, e.c.auth);
        return emit(e, r.peer, msg, out, cap, 0, r.priority);
    }
    return Transmit{};
}

Transmit poll_lookup(E& e, size_t li, Lookup& l, uint8_t* out, size_t cap) {
    uint16_t pi = 0;
    bool target = false;
    if (l.where.valid()) {
        if (l.cursor == 0 && e.peer_of_ref(l.where, pi)) target = true;
        l.cursor = 1;
    } else {
        while (l.cursor < e.c.peers_max && !target) {
            uint16_t i = l.cursor++;
            // A peer that said "not here" is not asked again (it was every probe interval).
            const bool answered = (l.answered[i / 64] >> (i % 64)) & 1;
            if (e.m.peers[i].state != PeerState::kFree && e.m.peers[i].is_static && !answered) {
                pi = i;
                target = true;
            }
        }
    }
    if (!target) {
        l.tx_due = false;
        return Transmit{};
    }
    Message msg;
    msg.header.type = Type::kNameQuery;
    msg.name.query = e.make_handle(l.gen, li);
    msg.name.error = ErrorCode::kOk;
    msg.name.channel = 0;
    msg.name.name_bytes = l.bytes;
    copy_bytes(reinterpret_cast<uint8_t*>(msg.name.name), reinterpret_cast<const uint8_t*>(l.name), l.bytes);
    return emit(e, pi, msg, out, cap, l.retries ? wire::kFlagRetransmission : 0, 0);  // a repeat says so (3.2)
}

}  // namespace

namespace {

// The work of poll_transmit, kept out of line so that the call that finds nothing marked (about
// every other call) costs a few loads, not this function's register saves.
__attribute__((noinline)) Transmit poll_transmit_work(E& e, Instant now, uint8_t* out, size_t cap) {
    Engine::Impl& m = e.m;
    Stats& stats_ = e.st;
    const Config& config_ = e.c;
    m.now = now;
    m.nt_valid = false;
    if (m.ctl_count) {
        Control& ctl = m.controls[m.ctl_head];
        m.ctl_head = (m.ctl_head + 1) % config_.control_max;
        m.ctl_count--;
        Message& msg = ctl.msg;
        msg.header.src_endpoint = config_.local_endpoint;
        msg.header.src_incarnation = config_.incarnation;
        Transmit t;
        t.bytes = wire::encode(msg, config_.local_ipv4, ctl.dst_ipv4, out, cap,
                               config_.auth ? &m.mac_key : nullptr);
        t.dst_ipv4 = ctl.dst_ipv4;
        if (t.bytes) {
            stats_.packets_out++;
            stats_.bytes_out += t.bytes;
            return t;
        }
    }
    if (m.tx_scan) {
        for (uint16_t i = 0; i < m.peers_hi; i++) {
            if (m.peers[i].state == PeerState::kFree) continue;
            Transmit t = poll_peer(e, now, i, out, cap);
            if (t.bytes) return t;
        }
        for (size_t i = 0; i < m.sends_hi; i++) {
            Send& s = m.sends[i];
            if (s.state == SendState::kFree || s.state == SendState::kWaiting) continue;
            Transmit t = poll_send(e, now, s, out, cap);
            if (t.bytes) return t;
        }
        for (size_t i = 0; i < m.reqs_hi; i++) {
            Req& r = m.reqs[i];
            if (r.state == ReqState::kFree) continue;
            Transmit t = poll_req(e, now, r, out, cap);
            if (t.bytes) return t;
        }
        // Every record was looked at and had nothing: the lists hold nothing either.
        m.tx_scan = false;
        while (m.txq_peer_head) E::tx_pop(m.peers, m.txq_peer_head, m.txq_peer_tail);
        while (m.txq_send_head) E::tx_pop(m.sends, m.txq_send_head, m.txq_send_tail);
        while (m.txq_req_head) E::tx_pop(m.reqs, m.txq_req_head, m.txq_req_tail);
    } else {
        // Only the marked records, oldest mark first. A record stays at the head while it has
        // packets to give (a request in several segments, a DATA run).
        while (m.txq_peer_head) {
            uint16_t i = uint16_t(m.txq_peer_head - 1);
            if (m.peers[i].state != PeerState::kFree) {
                Transmit t = poll_peer(e, now, i, out, cap);
                if (t.bytes) return t;
            }
            E::tx_pop(m.peers, m.txq_peer_head, m.txq_peer_tail);
        }
        while (m.txq_send_head) {
            Send& s = m.sends[m.txq_send_head - 1];
            if (s.state != SendState::kFree && s.state != SendState::kWaiting) {
                Transmit t = poll_send(e, now, s, out, cap);
                if (t.bytes) {
                    // Off the list at once when nothing more is due (saves the caller's next
                    // poll a visit); whatever becomes due later marks it again.
                    if (!send_has_tx(s)) E::tx_pop(m.sends, m.txq_send_head, m.txq_send_tail);
                    return t;
                }
            }
            E::tx_pop(m.sends, m.txq_send_head, m.txq_send_tail);
        }
        while (m.txq_req_head) {
            Req& r = m.reqs[m.txq_req_head - 1];
            if (r.state != ReqState::kFree) {
                Transmit t = poll_req(e, now, r, out, cap);
                if (t.bytes) {
                    if (!req_has_tx(r)) E::tx_pop(m.reqs, m.txq_req_head, m.txq_req_tail);
                    return t;
                }
            }
            E::tx_pop(m.reqs, m.txq_req_head, m.txq_req_tail);
        }
    }
    if (m.lookup_tx) {
        for (size_t i = 0; i < m.lookups_hi; i++) {
            Lookup& l = m.lookups[i];
            if (!l.used || !l.tx_due) continue;
            Transmit t = poll_lookup(e, i, l, out, cap);
            if (t.bytes) return t;
        }
        m.lookup_tx = false;
    }
    if (m.ctl_count) return poll_transmit_work(e, now, out, cap);  // one that did not fit was dropped
    return Transmit{};
}

}  // namespace

bool Engine::transmit_pending() const {
    if (!ok_) return false;
    const Impl& m = *impl_;
    return m.ctl_count || m.tx_scan || m.txq_peer_head || m.txq_send_head || m.txq_req_head ||
           m.lookup_tx;
}

Transmit Engine::poll_transmit(Instant now, uint8_t* out, size_t cap) {
    if (!transmit_pending()) return Transmit{};  // nothing marked: the common case after most packets
    E e{*impl_, config_, stats_};
    return poll_transmit_work(e, now, out, cap);
}

// ---- The local side ---------------------------------------------------------------------------
Result<PeerRef> Engine::peer(uint32_t ipv4, uint16_t endpoint) {
    if (!ok_) return {ErrorCode::kInvalid, {}};
    E e{*impl_, config_, stats_};
    impl_->nt_valid = false;  // a new peer has a linger time
    int i = e.find_peer(ipv4, endpoint);
    if (i < 0) i = e.add_peer(impl_->now, ipv4, endpoint);
    if (i < 0) return {ErrorCode::kNoResources, {}};
    e.take_ref(uint16_t(i));
    return {ErrorCode::kOk, e.ref_of(uint16_t(i))};
}

Result<PeerRef> Engine::peer_by_name(const char* node) {
    if (!ok_ || !node) return {ErrorCode::kInvalid, {}};
    size_t len = cstr_len(node, wire::kNameBytesMax);
    for (size_t i = 0; i < config_.static_peers_count; i++) {
        const StaticPeer& sp = config_.static_peers[i];
        if (cstr_len(sp.name, wire::kNameBytesMax) == len &&
            equal_bytes(reinterpret_cast<const uint8_t*>(sp.name), reinterpret_cast<const uint8_t*>(node), len))
            return peer(sp.ipv4, sp.endpoint);
    }
    return {ErrorCode::kNoSuchService, {}};
}

ErrorCode Engine::hold_peer(PeerRef ref) {
    if (!ok_) return ErrorCode::kInvalid;
    E e{*impl_, config_, stats_};
    uint16_t i = 0;
    if (!e.peer_of_ref(ref, i)) {
        uint32_t k = ref.value & 0xFFFF;
        bool reused = k && k <= config_.peers_max && impl_->peers[k - 1].state != PeerState::kFree;
        return reused ? ErrorCode::kPeerRebooted : ErrorCode::kInvalid;
    }
    e.take_ref(i);
    return ErrorCode::kOk;
}

void Engine::release_peer(PeerRef ref) {
    if (!ok_) return;
    E e{*impl_, config_, stats_};
    uint16_t i = 0;
    if (!e.peer_of_ref(ref, i)) return;  // gone, rebooted or reused: that ref held nothing
    Peer& p = impl_->peers[i];
    if (p.app_refs != 0 && p.app_refs != kRefsPinned) p.app_refs--;
}

PeerInfo Engine::peer_info(PeerRef ref) const {
    PeerInfo info;
    if (!ok_) return info;
    E e{*impl_, const_cast<Config&>(config_), const_cast<Stats&>(stats_)};
    uint16_t i = 0;
    if (!e.peer_of_ref(ref, i)) return info;
    const Peer& p = impl_->peers[i];
    info.state = p.state;
    info.ipv4 = p.ipv4;
    info.endpoint = p.endpoint;
    info.incarnation = p.incarnation;
    info.srtt_us = p.srtt_us;
    info.rto_us = p.rto_us;
    info.mtu = p.mtu;
    info.credit_bytes = p.credit_bytes;
    info.outstanding_bytes = p.out_bytes;
    info.app_refs = p.app_refs;
    return info;
}

size_t Engine::peer_list(PeerRef* out, size_t cap) const {
    if (!ok_) return 0;
    E e{*impl_, const_cast<Config&>(config_), const_cast<Stats&>(stats_)};
    size_t n = 0;
    for (uint16_t i = 0; i < impl_->peers_hi; i++) {
        if (impl_->peers[i].state == PeerState::kFree) continue;
        if (n < cap) out[n] = e.ref_of(i);
        ++n;
    }
    return n;
}

ErrorCode Engine::name_attach(const char* name, uint32_t channel) {
    if (!ok_ || !name) return ErrorCode::kInvalid;
    size_t len = cstr_len(name, wire::kNameBytesMax);
    if (len == 0 || len > wire::kNameBytesMax) return ErrorCode::kInvalid;
    NameEntry* slot = nullptr;
    for (size_t i = 0; i < config_.names_max; i++) {
        NameEntry& n = impl_->names[i];
        if (n.used && n.bytes == len &&
            equal_bytes(reinterpret_cast<const uint8_t*>(n.name), reinterpret_cast<const uint8_t*>(name), len))
            return ErrorCode::kInvalid;  // attached already
        if (!n.used && !slot) slot = &n;
    }
    if (!slot) return ErrorCode::kNoResources;
    slot->used = true;
    slot->bytes = uint8_t(len);
    copy_bytes(reinterpret_cast<uint8_t*>(slot->name), reinterpret_cast<const uint8_t*>(name), len);
    slot->channel = channel;
    return ErrorCode::kOk;
}

ErrorCode Engine::name_detach(const char* name) {
    if (!ok_ || !name) return ErrorCode::kInvalid;
    size_t len = cstr_len(name, wire::kNameBytesMax);
    for (size_t i = 0; i < config_.names_max; i++) {
        NameEntry& n = impl_->names[i];
        if (n.used && n.bytes == len &&
            equal_bytes(reinterpret_cast<const uint8_t*>(n.name), reinterpret_cast<const uint8_t*>(name), len)) {
            n.used = false;
            return ErrorCode::kOk;
        }
    }
    return ErrorCode::kNoSuchService;
}

ErrorCode Engine::cancel_lookup(LookupHandle h) {
    if (!ok_) return ErrorCode::kInvalid;
    const uint32_t i = h.value & 0xFFFF;
    if (i == 0 || i > config_.lookups_max) return ErrorCode::kInvalid;
    Lookup& l = impl_->lookups[i - 1];
    if (!l.used || l.gen != (h.value >> 16)) return ErrorCode::kInvalid;
    l.used = false;
    l.gen = uint16_t(l.gen + 1 ? l.gen + 1 : 1);  // a late NAME_REPLY names the old generation
    impl_->nt_valid = false;
    return ErrorCode::kOk;
}

Result<LookupHandle> Engine::name_lookup(Instant now, const char* name, PeerRef where) {
    if (!ok_ || !name) return {ErrorCode::kInvalid, {}};
    E e{*impl_, config_, stats_};
    impl_->now = now;
    impl_->nt_valid = false;
    impl_->tx_scan = true;  // rare: the next poll_transmit scans every table
    size_t len = cstr_len(name, wire::kNameBytesMax);
    if (len == 0 || len > wire::kNameBytesMax) return {ErrorCode::kInvalid, {}};
    size_t li = config_.lookups_max;
    for (size_t i = 0; i < config_.lookups_max && li == config_.lookups_max; i++) {
        if (!impl_->lookups[i].used) li = i;
    }
    if (li == config_.lookups_max) return {ErrorCode::kNoResources, {}};
    Lookup& l = impl_->lookups[li];
    LookupHandle h{e.make_handle(l.gen, li)};
    Event ev;
    ev.type = EventType::kNameResolved;
    ev.handle = h.value;
    auto same = [&](const NameEntry& n) {
        return n.used && n.bytes == len &&
               equal_bytes(reinterpret_cast<const uint8_t*>(n.name), reinterpret_cast<const uint8_t*>(name), len);
    };
    if (!where.valid()) {
        for (size_t i = 0; i < config_.names_max; i++) {
            if (same(impl_->names[i])) {
                ev.channel = impl_->names[i].channel;  // local: ev.peer stays "none"
                e.push_event(ev);
                l.gen = uint16_t(l.gen + 1 ? l.gen + 1 : 1);
                return {ErrorCode::kOk, h};
            }
        }
        uint16_t pi = 0;
        for (size_t i = 0; i < config_.names_cache_max; i++) {
            NameEntry& n = impl_->cache[i];
            if (!same(n)) continue;
            if (!e.peer_of_ref(n.peer, pi)) {
                n.used = false;  // its peer is gone or rebooted: ask again
                continue;
            }
            ev.peer = n.peer;
            ev.channel = n.channel;
            e.take_ref(pi);
            e.push_event(ev);
            l.gen = uint16_t(l.gen + 1 ? l.gen + 1 : 1);
            return {ErrorCode::kOk, h};
        }
    }
    l.used = true;
    if (li >= impl_->lookups_hi) impl_->lookups_hi = uint16_t(li + 1);
    impl_->lookup_tx = true;
    l.bytes = uint8_t(len);
    copy_bytes(reinterpret_cast<uint8_t*>(l.name), reinterpret_cast<const uint8_t*>(name), len);
    l.where = where;
    l.negatives = 0;
    for (size_t w = 0; w < answered_words(config_); w++) l.answered[w] = 0;
    l.retries = 0;
    l.cursor = 0;
    l.tx_due = true;
    l.rto_at = now + config_.probe_interval_us;
    l.answers_needed = 0;
    if (where.valid()) l.answers_needed = 1;
    else {
        for (size_t i = 0; i < impl_->peers_hi; i++) {
            if (impl_->peers[i].state != PeerState::kFree && impl_->peers[i].is_static) l.answers_needed++;
        }
    }
    if (l.answers_needed == 0) {
        ev.error = ErrorCode::kNoSuchService;
        e.push_event(ev);
        l.used = false;
        l.gen = uint16_t(l.gen + 1 ? l.gen + 1 : 1);
    }
    return {ErrorCode::kOk, h};
}

Result<SendHandle> Engine::start_send(Instant now, PeerRef peer, uint32_t channel,
                                      ConstChain message, MutableChain reply, Instant deadline,
                                      uint8_t priority) {
    if (!ok_) return {ErrorCode::kInvalid, {}};
    E e{*impl_, config_, stats_};
    impl_->now = now;
    impl_->nt_valid = false;
    uint16_t pi = 0;
    if (!e.peer_of_ref(peer, pi)) {
        uint32_t i = peer.value & 0xFFFF;
        bool reused = i && i <= config_.peers_max && impl_->peers[i - 1].state != PeerState::kFree;
        return {reused ? ErrorCode::kPeerRebooted : ErrorCode::kInvalid, {}};
    }
    Peer& p = e.peer_at(pi);
    size_t total = chain_size(message);
    size_t reply_cap = chain_size(reply);
    if (total > config_.message_bytes_max || (p.credit_known && total > p.peer_message_max))
        return {ErrorCode::kTooLarge, {}};
    if (reply_cap > wire::kMessageBytesMax) reply_cap = wire::kMessageBytesMax;
    if (deadline <= now) return {ErrorCode::kTimedOut, {}};
    size_t si = 0;
    Send* taken = impl_->take_send(&si);
    if (!taken) return {ErrorCode::kNoResources, {}};
    Send& s = *taken;
    s.peer = pi;
    s.channel = channel;
    s.msg = message;
    s.total = uint32_t(total);
    s.reply = reply;
    s.reply_cap = uint32_t(reply_cap);
    s.deadline = deadline;
    s.priority = priority;
    p.sends_live++;
    stats_.sends_live++;
    if (stats_.sends_live > stats_.sends_high) stats_.sends_high = stats_.sends_live;
    e.note_business(now, p);
    SendHandle h{e.make_handle(s.gen, si)};
    e.connect(now, pi);
    e.admit(now, pi);
    return {ErrorCode::kOk, h};
}

ErrorCode Engine::cancel(Instant now, SendHandle handle) {
    if (!ok_) return ErrorCode::kInvalid;
    E e{*impl_, config_, stats_};
    impl_->now = now;
    impl_->nt_valid = false;
    impl_->tx_scan = true;  // rare: the next poll_transmit scans every table
    size_t si = 0;
    Send* s = e.send_of(handle, si);
    if (!s || s->state == SendState::kClosing || s->is_pulse) return ErrorCode::kInvalid;
    e.finish_send(now, *s, ErrorCode::kCancelled);
    return ErrorCode::kOk;
}

ErrorCode Engine::pulse(Instant now, PeerRef peer, uint32_t channel, int8_t code, uint32_t value,
                        uint8_t priority, uint16_t source) {
    if (!ok_) return ErrorCode::kInvalid;
    E e{*impl_, config_, stats_};
    impl_->now = now;
    impl_->nt_valid = false;
    impl_->tx_scan = true;  // rare: the next poll_transmit scans every table
    uint16_t pi = 0;
    if (!e.peer_of_ref(peer, pi)) return ErrorCode::kPeerRebooted;
    for (size_t i = 0; i < impl_->sends_hi; i++) {
        Send& s = impl_->sends[i];
        if (s.state == SendState::kWaiting && s.is_pulse && s.peer == pi && s.channel == channel &&
            s.code == code && s.source == source) {
            s.value = value;  // coalesced: the newest value (and priority) wins
            s.priority = priority;
            return ErrorCode::kOk;
        }
    }
    size_t si = 0;
    Send* taken = impl_->take_send(&si);
    if (!taken) return ErrorCode::kNoResources;
    Send& s = *taken;
    s.is_pulse = true;
    s.peer = pi;
    s.channel = channel;
    s.code = code;
    s.value = value;
    s.priority = priority;
    s.source = source;
    Peer& p = e.peer_at(pi);
    p.sends_live++;
    stats_.sends_live++;
    if (stats_.sends_live > stats_.sends_high) stats_.sends_high = stats_.sends_live;
    e.note_business(now, p);
    e.connect(now, pi);
    e.admit(now, pi);
    return ErrorCode::kOk;
}

bool Engine::pulse_pending(PeerRef peer, uint32_t channel, int8_t code, uint16_t source) const {
    if (!ok_) return false;
    E e{*impl_, const_cast<Config&>(config_), const_cast<Stats&>(stats_)};
    uint16_t pi = 0;
    if (!e.peer_of_ref(peer, pi)) return false;
    for (size_t i = 0; i < impl_->sends_hi; i++) {
        const Send& s = impl_->sends[i];
        if (s.state != SendState::kFree && s.is_pulse && s.peer == pi && s.channel == channel &&
            s.code == code && s.source == source)
            return true;
    }
    return false;
}

ErrorCode Engine::read(Instant now, RequestHandle handle, uint32_t offset, MutableChain dst) {
    if (!ok_) return ErrorCode::kInvalid;
    E e{*impl_, config_, stats_};
    impl_->now = now;
    impl_->nt_valid = false;
    Req* r = e.req_settled(handle);
    if (!r || r->state != ReqState::kDelivered || r->reading) return ErrorCode::kInvalid;
    size_t want = chain_size(dst);
    uint32_t len = offset >= r->total ? 0 : uint32_t(min_u64(want, r->total - offset));
    r->reading = true;
    r->read_dst = dst;
    r->read_offset = offset;
    r->read_len = len;
    // 1. What arrived eagerly is in the pool: copy it now.
    uint32_t end = offset + len;
    if (offset < r->eager) e.eager_read(*r, offset, dst, 0, min_u(end, r->eager) - offset);
    // 2. The rest is pulled from the client's own buffers.
    uint32_t lo = offset > r->eager ? offset : r->eager;
    if (lo >= end) {
        e.read_done(*r);
        return ErrorCode::kOk;
    }
    e.pull_start(now, r->in, lo, end, lo, e.peer_at(r->peer).rto_us);
    if (r->in.pending_n) e.want_tx(*r);
    e.drop_ack(e.peer_at(r->peer), r->txn, AckKind::kRequestReceived);
    return ErrorCode::kOk;
}

size_t Engine::copy_eager(RequestHandle handle, uint32_t offset, MutableChain dst) {
    if (!ok_) return 0;
    E e{*impl_, config_, stats_};
    Req* r = e.req_settled(handle);
    if (!r || r->state != ReqState::kDelivered || offset >= r->eager) return 0;
    const uint32_t n = uint32_t(min_u64(chain_size(dst), r->eager - offset));
    if (n) e.eager_read(*r, offset, dst, 0, n);
    return n;
}

uint8_t* Engine::eager_in_place(RequestHandle handle) {
    if (!ok_ || !config_.eager_store) return nullptr;
    E e{*impl_, config_, stats_};
    Req* r = e.req_settled(handle);
    if (!r || (r->state != ReqState::kDelivered && r->state != ReqState::kReplying)) return nullptr;
    return e.eager_area(*r);
}

ErrorCode Engine::abandon_read(Instant now, RequestHandle handle) {
    if (!ok_) return ErrorCode::kInvalid;
    E e{*impl_, config_, stats_};
    impl_->now = now;
    impl_->nt_valid = false;
    Req* r = e.req_settled(handle);
    if (!r || r->state != ReqState::kDelivered || !r->reading) return ErrorCode::kInvalid;
    // As read_done without its event: the pull stops asking, its late DATA finds no reader.
    r->reading = false;
    r->in.active = false;
    r->read_dst = MutableChain{nullptr, 0};
    return ErrorCode::kOk;
}

ErrorCode Engine::reply(Instant now, RequestHandle handle, uint32_t status, ConstChain parts) {
    if (!ok_) return ErrorCode::kInvalid;
    E e{*impl_, config_, stats_};
    impl_->now = now;
    impl_->nt_valid = false;
    Req* r = e.req_settled(handle);
    if (!r || r->state != ReqState::kDelivered) return ErrorCode::kInvalid;
    if (chain_size(parts) > wire::kMessageBytesMax) return ErrorCode::kTooLarge;
    e.set_reply(now, *r, ErrorCode::kOk, status, parts);
    return ErrorCode::kOk;
}

ErrorCode Engine::error(Instant now, RequestHandle handle, ErrorCode code, uint32_t app_code) {
    if (!ok_) return ErrorCode::kInvalid;
    if (code != ErrorCode::kAppError && code != ErrorCode::kNoSuchChannel &&
        code != ErrorCode::kTooLarge && code != ErrorCode::kServerGone)
        return ErrorCode::kInvalid;
    E e{*impl_, config_, stats_};
    impl_->now = now;
    impl_->nt_valid = false;
    impl_->tx_scan = true;  // rare: the next poll_transmit scans every table
    Req* r = e.req_settled(handle);
    if (!r || r->state != ReqState::kDelivered) return ErrorCode::kInvalid;
    e.set_reply(now, *r, code, app_code, ConstChain{nullptr, 0});
    return ErrorCode::kOk;
}

bool Engine::quiescent() const {
    if (!ok_) return true;
    const Impl& m = *impl_;
    for (size_t i = 0; i < m.sends_hi; i++) {
        if (m.sends[i].state != SendState::kFree) return false;
    }
    for (size_t i = 0; i < m.reqs_hi; i++) {
        // (parked: its end event not polled yet; one never polled would be a record lost)
        if (m.reqs[i].state != ReqState::kFree || m.reqs[i].parked) return false;
    }
    for (size_t i = 0; i < m.lookups_hi; i++) {
        if (m.lookups[i].used) return false;
    }
    return m.pool_free_count == m.pool_block_count && stats_.pool_bytes_used == 0 &&
           stats_.requests_live == 0 && stats_.sends_live == 0;
}

}  // namespace smp
