// The SMP engine: sans-IO (no sockets, no clock, no allocation after construction), in the shape
// of quinn-proto and smoltcp. The caller feeds it datagrams and time, pulls packets and events
// out, and calls it for the local side (send, cancel, read, reply, error, pulse, names).
//
// Two users: the kernel's bridge (protocol/kernel/, over an lwIP raw PCB, in the net thread) and
// libsmp (protocol/linux/, over a raw socket). Both give the engine a byte arena sized by
// Engine::memory_bytes(config); every table lives in it and every table has a limit in Config.
//
// Threading: one owner. No call is reentrant; events are pulled, never called back.
// Buffers: the engine BORROWS the caller's buffers (send parts, reply buffers, read destinations,
// reply parts) and never copies them into a pool; each stays valid until the event that ends it:
//   start_send(message, reply)  -> kSendDone        (message and reply chains AND their part arrays)
//   read(request, dst)          -> kReadDone        (dst chain and its part array)
//   reply(request, parts)       -> kReplyDone       (parts and its part array)
// Only eager request bytes (at most Config::eager_bytes_max per request, within each peer's
// credit) are copied: into the node-wide pool of Config::pool_bytes, or, with
// Config::eager_store, straight into the caller's memory, one area per request record.
// Freestanding: the engine needs only memcpy and memset from its environment (GCC and clang
// require those of any freestanding target; protocol/bytes.h calls them through builtins).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "protocol/bytes.h"
#include "protocol/wire.h"

namespace smp {

using wire::ErrorCode;

// Time in microseconds on the caller's monotonic clock. The engine never reads a clock.
using Instant = uint64_t;
constexpr Instant kNever = ~Instant(0);

// A peer as the engine knows it: slot index + generation. The generation changes when the slot
// is reused or the peer's incarnation changes, so a PeerRef made before a reboot fails with
// kPeerRebooted instead of reaching the new incarnation (SPEC.md section 2).
struct PeerRef {
    uint32_t value = 0;  // 0 = none
    bool valid() const { return value != 0; }
    friend bool operator==(PeerRef a, PeerRef b) { return a.value == b.value; }
};

// Handles: slot index + generation; 0 = none. A stale handle is reported as kInvalid.
struct SendHandle {
    uint32_t value = 0;
    bool valid() const { return value != 0; }
};
struct RequestHandle {
    uint32_t value = 0;
    bool valid() const { return value != 0; }
};
struct LookupHandle {
    uint32_t value = 0;
    bool valid() const { return value != 0; }
};

template <typename T>
struct Result {
    ErrorCode error;
    T value;
    bool ok() const { return error == ErrorCode::kOk; }
};

// A node of the static peer table given at start (SPEC.md section 2).
struct StaticPeer {
    const char* name;  // node name, e.g. "node2" (at most wire::kNameBytesMax bytes)
    uint32_t ipv4;     // host byte order
    uint16_t endpoint;
};

// Every limit the engine has. Defaults are the SPEC.md defaults (section 8).
struct Config {
    uint32_t local_ipv4 = 0;            // host byte order; used in the checksum's pseudo-header
    uint16_t local_endpoint = 0;        // 0 for a kernel node; Linux processes pick their own
    uint64_t incarnation = 0;           // random, non-zero, new at every start (caller's RNG)

    // Tables.
    uint16_t peers_max = 64;            // peers known at once (static + learned)
    uint16_t sends_max = 256;           // local sends and pulses in progress, node-wide
    uint16_t requests_max = 256;        // remote requests held, node-wide
    uint16_t pulse_events_max = 64;     // pulses waiting to be polled (or released, below)
    // true: a polled pulse still counts toward pulse_events_max until the application calls
    // release_pulse() (one that queues pulses itself, as libsmp: its queue then cannot fill)
    bool pulses_released_by_app = false;
    uint16_t names_max = 32;            // service names attached here
    uint16_t names_cache_max = 64;      // names learned from lookups
    uint16_t lookups_max = 16;          // name lookups in progress
    uint16_t control_max = 64;          // queued control answers (HELLO_ACK, PROBE_ACK, RESET...)

    // Authentication (SPEC.md 3.4): with `auth`, every packet sent carries AUTH and a MAC made
    // with `auth_key`, and every packet received must carry a right one (else it is dropped and
    // counted, dropped_auth, before it can cause anything, an answer included). Every node
    // that talks to another must have the same key. Off: packets carrying AUTH are dropped.
    bool auth = false;
    wire::AuthKey auth_key{};

    // Credit and sizes (SPEC.md section 6).
    uint32_t pool_bytes = 256 * 1024;   // node-wide memory for eager request bytes of others
    uint32_t pool_block_bytes = 256;    // allocation unit of the pool
    uint32_t window_bytes = 32 * 1024;  // eager bytes each peer may have outstanding here
    uint16_t window_txns = 16;          // transactions each peer may have outstanding here (<= 64)
    uint32_t eager_bytes_max = 8 * 1024;  // larger messages: the rest is pulled
    uint32_t message_bytes_max = wire::kMessageBytesMax;
    uint32_t pull_window_bytes = 256 * 1024;  // bytes requested and not yet received, per pull
    // The caller's memory for eager bytes (nullptr: the arena's pool holds them). With it,
    // request record i's eager bytes are written at eager_store + i x eager_bytes_max as their
    // segments arrive (Engine::eager_store_bytes(config) in all), and eager_in_place() hands
    // them to the application: no copy out of a pool. The pool then only counts (pool_bytes
    // still bounds what peers may have here, node-wide and per window) and takes no arena.
    // For a node whose application keeps each request's eager bytes apart anyway (the
    // kernel's bridge: a 64 KiB request then takes one copy less on its way to the server).
    uint8_t* eager_store = nullptr;
    uint16_t mtu_max = 1500;            // the local interface's MTU (largest IP packet)

    // Timers (SPEC.md section 5), microseconds.
    uint32_t rto_initial_us = 100'000;
    uint32_t rto_min_us = 2'000;
    uint32_t rto_max_us = 200'000;
    uint32_t ack_delay_us = 2'000;      // an ACK waits this long for a packet to ride on
    uint32_t probe_interval_us = 20'000;
    uint16_t probes_dead = 50;          // K: unanswered probes in a row before "host down"
    uint16_t retries_max = 64;          // retransmissions of one packet before "host down"
    uint32_t peer_linger_us = 10'000'000;  // an idle peer's state is kept at least this long
                                           // (in the table, or retired: SPEC.md 5.1)
    // Retransmission timers (requests, replies, pulls, cancels, pulses, path-MTU probes) may be
    // served up to this late (SPEC.md 5.2). A request's timer is replaced by the next
    // request's long before it is due, so a one-shot timer armed for it fires for nothing about
    // once per RTO; with slack, about once per RTO + slack. Liveness, delayed ACKs and call
    // deadlines are always served on time, and so are HELLO and name queries, which repeat like
    // probes. The kernel uses 10 ms; 0 serves every timer on time.
    uint32_t timer_slack_us = 0;

    const StaticPeer* static_peers = nullptr;
    uint16_t static_peers_count = 0;

    // The first txn number toward each peer (non-zero). Numbers run 1..2^32-1 and wrap to 1
    // (SPEC.md 5.1); tests start them just below the wrap.
    uint32_t first_txn = 1;

    // The detection bound: a dead peer is declared down at most this long after it died.
    uint64_t dead_after_us() const { return uint64_t(probe_interval_us) * probes_dead; }
};

enum class EventType : uint8_t {
    kRequest = 1,        // a request arrived: handle, peer, channel, size, eager_bytes,
                         // reply_bytes_max, priority, deadline_us (remaining, or wire::kNoDeadline)
    kRequestCancelled,   // the client cancelled, timed out, died or rebooted, or finished the
                         // transaction without us (it had declared us down): error says which.
                         // The request handle is dead; a read/reply/error on it returns kInvalid.
                         // (An application may still call reply() before it polls this event:
                         // kInvalid then too; it must not treat that as a bug.)
    kReadDone,           // read() finished: error, size = bytes placed
    kReplyDone,          // the client has the reply (error kOk) or never will: reply parts free
    kSendDone,           // a send ended: error, status (server's), size (reply's full size),
                         // bytes (placed in the reply buffer: min(size, reply buffer))
    kPulse,              // peer, channel, code, value
    kPeerDown,           // peer declared down (kHostDown) or rebooted (kPeerRebooted)
    kNameResolved,       // lookup handle, error, peer, channel
};

struct Event {
    EventType type = EventType::kSendDone;
    ErrorCode error = ErrorCode::kOk;
    uint32_t handle = 0;        // SendHandle / RequestHandle / LookupHandle value
    PeerRef peer;
    uint32_t channel = 0;
    uint32_t size = 0;
    uint32_t bytes = 0;
    uint32_t eager_bytes = 0;
    uint32_t status = 0;
    uint32_t reply_bytes_max = 0;
    uint32_t deadline_us = 0;
    uint8_t priority = 0;
    int8_t code = 0;
    uint32_t value = 0;
    uint16_t source = 0;        // kPulse: the sender's connection (SPEC.md 4.7; 0: none given)
};

// A packet to send: `bytes` bytes were written to the caller's buffer, for `dst_ipv4`.
struct Transmit {
    size_t bytes = 0;           // 0: nothing to send now
    uint32_t dst_ipv4 = 0;
};

enum class PeerState : uint8_t { kFree = 0, kConnecting, kUp, kDown };

struct PeerInfo {
    PeerState state = PeerState::kFree;
    uint32_t ipv4 = 0;
    uint16_t endpoint = 0;
    uint64_t incarnation = 0;
    uint32_t srtt_us = 0;
    uint32_t rto_us = 0;
    uint16_t mtu = 0;
    uint32_t credit_bytes = 0;  // granted by the peer
    uint32_t outstanding_bytes = 0;
    uint16_t app_refs = 0;      // PeerRefs the application holds (0xFFFF: too many to count)
};

// Counters for the shell's `stats` and for tests; high-water marks prove the bounds.
struct Stats {
    uint64_t packets_in = 0, packets_out = 0, bytes_in = 0, bytes_out = 0;
    uint64_t decode_errors[size_t(wire::DecodeError::kCount)] = {};
    uint64_t dropped_not_mine = 0;       // another endpoint's packet
    uint64_t dropped_auth = 0;           // AUTH flag without a key
    uint64_t dropped_no_peer_slot = 0;   // peer table full of busy peers: refused (RESET kNoPeerSlot)
    uint64_t peers_retired = 0;          // idle peers moved out early to make room (SPEC 5.1)
    uint64_t peers_restored = 0;         // retired peers back in the table, their state intact
    uint64_t refusals_received = 0;      // peers that had no room for us (we try again later)
    uint64_t dropped_unexpected = 0;     // valid packet that fits no state (counted, dropped)
    uint64_t dropped_control_full = 0;
    uint64_t resets_sent = 0;
    uint64_t lives_checked = 0;          // with a key: HELLOs claiming a peer's new incarnation,
                                         // answered with our own nonce to echo (SPEC 3.4)
    uint64_t resets_limited = 0;         // RESETs to sources with no peer record not sent: over
                                         // control_max per probe interval (SPEC 10)
    uint64_t challenges_sent = 0;        // with a key: clients asked for their numbering before a
                                         // request or pulse of theirs was taken (SPEC 3.4)
    uint64_t retransmissions = 0;
    uint64_t duplicates = 0;             // duplicate requests/pulses/replies suppressed
    uint64_t busy_sent = 0;
    uint64_t eager_trimmed = 0;  // requests announcing more eager bytes than eager_bytes_max
    uint64_t requests_delivered = 0;
    uint64_t sends_completed = 0;
    uint64_t peers_down = 0, peers_rebooted = 0;
    uint64_t probes_sent = 0;
    uint64_t pool_bytes_used = 0, pool_bytes_high = 0;
    uint64_t requests_live = 0, requests_high = 0;
    uint64_t sends_live = 0, sends_high = 0;
    uint64_t peers_live = 0, peers_high = 0;
};

class Engine {
public:
    // Bytes of arena the engine needs for `config` (a fixed formula: SPEC.md section 6.3).
    static size_t memory_bytes(const Config& config);
    static constexpr size_t kMemoryAlign = 16;
    // Bytes of caller memory Config::eager_store must point to: requests_max x eager_bytes_max.
    static size_t eager_store_bytes(const Config& config) {
        return size_t(config.requests_max) * config.eager_bytes_max;
    }
    // Checks a configuration; kOk or kInvalid.
    static ErrorCode check_config(const Config& config);

    // `memory` must be kMemoryAlign-aligned and hold memory_bytes(config). Check ok() after.
    Engine(const Config& config, void* memory, size_t bytes);
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;
    bool ok() const { return ok_; }

    // ---- I/O side ----
    // One received datagram: the IP payload (protocol 121), as one buffer or a chain (pbufs).
    void handle_datagram(Instant now, uint32_t src_ipv4, uint32_t dst_ipv4, ConstChain packet);
    void handle_datagram(Instant now, uint32_t src_ipv4, uint32_t dst_ipv4, const uint8_t* bytes,
                         size_t size) {
        ConstBytes one{bytes, size};
        handle_datagram(now, src_ipv4, dst_ipv4, ConstChain{&one, 1});
    }
    void handle_timeout(Instant now);
    // Writes at most one packet (the IP payload) into out; out needs Config::mtu_max bytes.
    Transmit poll_transmit(Instant now, uint8_t* out, size_t cap);
    // Whether poll_transmit may have a packet now (false: it has none).
    bool transmit_pending() const;
    // When handle_timeout must next be called (kNever: nothing timed): the earliest of every
    // due time, a retransmission timer's plus Config::timer_slack_us.
    Instant next_timeout() const;
    // The next event, oldest first. Drain them after every packet handled: the releases a
    // REQUEST's header made (its reply acknowledgement, txn_low: kReplyDone and the records
    // freed) wait until the event ring is empty here, after the request's own events and
    // whatever the caller sent in between (its server's reply), or until the next
    // handle_datagram or handle_timeout (or a reply, error or read naming a record they end:
    // that caller sees the record as if the release had come first).
    bool poll_event(Event& out);
    // With Config::pulses_released_by_app: the application is done with one polled pulse, and
    // the engine may acknowledge one more (SPEC.md 5.7).
    void release_pulse();

    // ---- Peers and names ----
    // A PeerRef from peer(), peer_by_name() or a lookup's answer (kNameResolved with a peer) is
    // held by the application until it gives it back with release_peer(); hold_peer() takes
    // one more for a copy it keeps apart. While any is held the peer stays in the table until
    // its linger time is over; once none is, an idle peer may be retired early to make room for
    // another (SPEC.md 5.1: its numbering and duplicate filter are kept aside, and come back if
    // it is added again). An application that never releases keeps every peer it was given for
    // peer_linger (then kNoResources once peers_max of them were given within that time). A
    // PeerRef used after it was released may find the slot reused (kPeerRebooted or kInvalid);
    // one made stale by a reboot holds nothing and needs no release.
    // The peer at (ipv4, endpoint): found or added (kNoResources if the table is full).
    Result<PeerRef> peer(uint32_t ipv4, uint16_t endpoint);
    ErrorCode hold_peer(PeerRef peer);
    void release_peer(PeerRef peer);
    // A node of the static peer table, by name (kNoSuchService if none).
    Result<PeerRef> peer_by_name(const char* node);
    PeerInfo peer_info(PeerRef peer) const;
    // Every peer in the table (static and learned, any state but free), in table order: writes
    // at most `cap` refs to `out`, returns how many there are (may exceed cap).
    size_t peer_list(PeerRef* out, size_t cap) const;
    ErrorCode name_attach(const char* name, uint32_t channel);
    ErrorCode name_detach(const char* name);
    // Resolves a service name: locally, in the cache, else by asking `where` (if valid) or every
    // static peer. Ends with a kNameResolved event (also when answered at once).
    Result<LookupHandle> name_lookup(Instant now, const char* name, PeerRef where = PeerRef{});
    // Ends a lookup whose caller gave up: its slot is free at once and no kNameResolved follows
    // (one already queued still comes; a late answer is dropped). kInvalid: unknown or finished.
    ErrorCode cancel_lookup(LookupHandle lookup);

    // ---- Client side ----
    // Starts a send of `message` to `channel` at `peer`; the reply goes into `reply`. Both chains
    // (and their part arrays) stay borrowed until kSendDone. deadline: absolute, or kNever.
    Result<SendHandle> start_send(Instant now, PeerRef peer, uint32_t channel, ConstChain message,
                                  MutableChain reply, Instant deadline, uint8_t priority);
    // Ends the send at once with kCancelled (kSendDone event) and tells the server.
    ErrorCode cancel(Instant now, SendHandle send);
    // A small notification; never blocks. A pulse to the same (peer, channel, code, source) that
    // has not left yet is coalesced (its value replaced). priority: the sender's, carried in the
    // header (the receiver queues the pulse by it). source: the caller's number for the
    // connection it comes from (SPEC.md 4.7; 0: none), carried to the receiver's kPulse event,
    // which keeps pulses of different sources apart. kNoResources if no send slot is free.
    ErrorCode pulse(Instant now, PeerRef peer, uint32_t channel, int8_t code, uint32_t value,
                    uint8_t priority = 0, uint16_t source = 0);
    // Whether a pulse to (peer, channel, code, source) is still unacknowledged (waiting for
    // credit or sent): a sender that wants to know it arrived waits until this is false, then
    // looks at the peer (a peer declared down or rebooted ends its pulses unacknowledged).
    bool pulse_pending(PeerRef peer, uint32_t channel, int8_t code, uint16_t source = 0) const;

    // ---- Server side ----
    // Copies request bytes [offset, offset + size(dst)) into dst, pulling from the client what is
    // not here; ends with kReadDone. One read at a time per request.
    ErrorCode read(Instant now, RequestHandle request, uint32_t offset, MutableChain dst);
    // Copies what of [offset, offset + size(dst)) arrived eagerly (the kRequest event's
    // eager_bytes are kept from kRequest until reply, error or kRequestCancelled) into dst, at
    // once: no pull, no kReadDone, no change of state. Returns the bytes copied (0 for an unknown
    // or finished request). A small request is whole after this; read() fetches the rest.
    size_t copy_eager(RequestHandle request, uint32_t offset, MutableChain dst);
    // With Config::eager_store: the request's area in it (eager_bytes_max bytes, the kRequest
    // event's eager_bytes of them filled), as copy_eager would find it; nullptr without a store
    // or for an unknown or finished request. The engine writes the area only while the request
    // assembles (before kRequest), so from kRequest until poll_event has handed out its
    // kReplyDone or kRequestCancelled the application may also keep other bytes there, such as
    // its reply (borrowed by reply()): a record ended meanwhile (a REQUEST's txn_low, a CANCEL,
    // a deadline) is not given to another request before that event is taken.
    uint8_t* eager_in_place(RequestHandle request);
    // Gives up the read in progress (the reader's deadline passed): from now on nothing is
    // written into its dst and no kReadDone follows; bytes of it that arrive later are dropped.
    // The request stays delivered: a later read() starts again. kInvalid when none is reading.
    ErrorCode abandon_read(Instant now, RequestHandle request);
    // Replies; `parts` stay borrowed until kReplyDone.
    ErrorCode reply(Instant now, RequestHandle request, uint32_t status, ConstChain parts);
    // Fails the request: code kAppError with app_code, or kNoSuchChannel / kTooLarge /
    // kServerGone. Ends with kReplyDone like a reply.
    ErrorCode error(Instant now, RequestHandle request, ErrorCode code, uint32_t app_code = 0);

    const Stats& stats() const { return stats_; }
    const Config& config() const { return config_; }
    uint64_t incarnation() const { return config_.incarnation; }

    // For tests: every record back in its free list (nothing left allocated).
    bool quiescent() const;

    struct Impl;  // internal tables, defined in engine.cc

private:
    void on_name_reply(Instant now, uint16_t peer_index, const wire::Message& msg);
    Instant next_timeout_scan() const;

    Config config_;
    Stats stats_;
    Impl* impl_ = nullptr;
    bool ok_ = false;
};

}  // namespace smp
