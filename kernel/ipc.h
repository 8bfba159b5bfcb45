// Synchronous message passing: channels, connections, send / receive / reply / error / read,
// and pulses. A sender stays blocked until its reply, so a channel's queue can never overflow:
// it holds at most one record per blocked thread (plus, later, the remote records the bridge
// granted credit for).
//
// ---- The calls ---------------------------------------------------------------------------
//   send(conn, send parts, reply parts, deadline)  -> reply's full size (or an error)
//   receive(channel, parts, deadline, &info)       -> a message (info.id) or a pulse
//   reply(id, code, parts) / error(id, status)     -> ends the sender's send
//   read(id, offset, parts, deadline)              -> more of a received sender's message
//   pulse(conn, code, value)                       -> never blocks; coalesces per connection
// Deadlines are absolute now_ns() values; kNoDeadline waits forever, 0 only polls.
// Messages are copied ONCE, straight from the sender's parts into the receiver's parts (and the
// reply straight back), by copy_parts() alone: that routine will become the fault-safe copy
// when threads get their own address spaces. Nothing on these paths allocates.
//
// ---- Semantics ---------------------------------------------------------------------------
// - Queue order: by the sender's effective priority, FIFO within one priority (a sender whose
//   priority changes while queued moves to the end of its new priority). Pulses are delivered
//   before messages, FIFO.
// - Priority inheritance: a thread that received a message runs at least at the sender's
//   priority until it replies (or errors) it; transitively, if that server is itself blocked
//   sending to another server, and when the sender's priority changes meanwhile.
//   Queued senders count too (QNX's rule): a channel's SERVERS are the threads holding a
//   received-but-unreplied message from it, and its last receiver (the thread that last took a
//   message from it, until another thread does, it receives from another channel, exits, or the
//   channel goes). Each server runs at least at the priority of the channel's highest queued
//   sender, for as long as such a sender is queued (it leaves by being received, timing out or
//   the channel's destruction). A thread blocked in receive needs no raise: a sender never queues
//   while a receiver waits. Transitive like the rest: a raised server queued on another channel
//   raises that channel's servers. Propagation through chains of servers stops after
//   kInheritanceDepthMax links (only reachable through a chain that deep or a cycle of sends,
//   i.e. a deadlock).
// - Truncation is not an error: receive copies min(size, capacity) and reports the full size;
//   read() fetches the rest; the sender's send returns the reply's full size even when its reply
//   buffers took less.
// - A sender whose deadline passes returns kTimedOut, also after the server received it; the
//   server then gets an unblock pulse (code kPulseCodeUnblock, value = the receive id) at once
//   and its later reply/error/read on that id returns kSenderUnblocked. (Steps numbered in
//   ipc.cc, "The timeout race".) Every abandonment is told to its own channel, also when the
//   same sender's earlier one still waits on another channel, or its thread has ended since:
//   such pulses coalesce in the channel's overflow slot (value = the newest id, count = how
//   many). A send whose deadline has already passed (0: a poll) delivers nothing.
// - channel_destroy() fails every queued and every received-but-unreplied sender with
//   kChannelDestroyed and wakes blocked receivers with kChannelDestroyed; later sends on its
//   connections return kChannelDestroyed. A thread that exits holding received messages fails
//   their senders with kServerExited.
//
// ---- Hooks for the remote bridge (issue 8) -------------------------------------------------
// Remote SENDERS (a thread on another node sending here): the bridge owns a bounded pool of
// SenderRecords of kind kRemote, registers each once (record_register), fills the common fields
// (priority, send_size, reply_capacity, sender) plus remote_context, and calls enqueue_remote():
// the record then waits in the channel's queue exactly like a local thread's record. The kernel
// reaches its data and delivers its outcome only through RemoteSenderOps (set_remote_sender_ops):
//   copy_out  - bytes already on this node (the eager part), non-blocking, called from receive
//               (possibly in the bridge's own thread when a receiver was already waiting);
//               interrupts are disabled during the call;
//   read      - may block up to a deadline while the bridge pulls data from the sender's node;
//               called in the reading thread with interrupts enabled (the record may be
//               cancelled meanwhile: the bridge re-checks it);
//   complete  - the reply or error (reply parts valid only during the call, unless complete()
//               holds them, see ReplyHold; must not block; interrupts disabled). After
//               complete() the record is idle and reusable.
// Errors reach a remote record through complete() too: kChannelDestroyed, kServerExited, or
// the status a server gave error().
// If the remote sender gives up (deadline, host down), the bridge calls cancel_remote(): a
// queued record leaves the queue; a received one is abandoned (unblock pulse, kSenderUnblocked
// for the server) exactly as for a local timeout.
// Remote PULSES: the bridge owns a PulseSlot per remote sender it tells apart and calls
// pulse_remote(), so pulses from different remote senders stay apart (each with its sender and
// priority) as pulses from different local connections do, and pulses from one coalesce.
// Remote CONNECTIONS (a local thread sending to another node): connect_remote(handle) gives a
// Connection whose send/pulse/disconnect call RemoteConnectionOps (set_remote_connection_ops)
// in the caller's thread; the bridge blocks the caller itself (e.g. on an Event) until the reply.
// Without registered ops, such calls return kNotSupported.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "list.h"
#include "status.h"
#include "thread.h"

namespace kernel {

// ---- Limits ----
constexpr size_t kPartsMax = 16;                         // parts per send/receive/reply/read
constexpr size_t kMessageBytesMax = size_t{64} << 20;    // 64 MiB per message (and per reply)
constexpr size_t kRemoteRecordsMax = 1024;               // bridge's pool bound
constexpr size_t kRecordsMax = kThreadsMax + kRemoteRecordsMax;
constexpr size_t kInheritanceDepthMax = 16;             // server links a priority change crosses
static_assert(kRecordsMax < (1u << 16), "a receive id keeps the record index in 16 bits");

constexpr int32_t kPulseCodeUnblock = -1;  // kernel's pulse: value = the abandoned receive id
// User pulse codes are >= 0.

struct Part {
    const void* data;
    size_t size;
};
struct MutPart {
    void* data;
    size_t size;
};
struct Parts {
    const Part* parts;
    size_t count;
};
struct MutParts {
    const MutPart* parts;
    size_t count;
};

// Who sent a message: node 0 is this node; thread is the sender's thread id there.
struct SenderId {
    uint32_t node;
    uint32_t thread;
};

// (index << 0) | (serial << 16): unique per received message; 0 is never a valid id.
using ReceiveId = uint64_t;

struct Channel;
struct Connection;
struct Thread;

enum class ReceiveKind : uint8_t { kMessage, kPulse };

struct ReceiveInfo {
    ReceiveKind kind;
    ReceiveId id;             // messages only (pulses: 0)
    SenderId sender;
    uint8_t priority;         // the sender's priority
    size_t size;              // the message's full size
    size_t copied;            // bytes placed in the receive parts: min(size, their capacity)
    size_t reply_capacity;    // bytes the sender's reply parts can take
    int32_t pulse_code;       // pulses only
    int64_t pulse_value;      // pulses only: the latest value
    uint32_t pulse_count;     // pulses only: how many pulses coalesced into this one (>= 1)
};

// ---- Records of blocked senders (public for the bridge) ----

enum class SenderKind : uint8_t { kLocalThread, kRemote };
enum class RecordState : uint8_t { kIdle, kQueued, kReceived };

// A pending pulse. Connections embed one (pulses from one connection coalesce into it), every
// SenderRecord embeds one for its unblock pulse, and every channel one for unblock pulses whose
// record's slot is taken, so queuing a pulse never allocates.
struct PulseSlot {
    ListNode link;            // the channel's pulse queue
    Channel* queued_on;       // that channel, while linked
    int32_t code;
    int64_t value;
    uint32_t count;
    uint8_t priority;
    SenderId sender;
};

struct SenderRecord {
    ListNode link;            // kQueued: the channel's queue; kReceived: the server's held list
    ListNode channel_link;    // kReceived: the channel's list of held records
    SenderKind kind;
    RecordState state;
    uint8_t priority;
    uint16_t index;           // in the record registry (part of the receive id)
    uint64_t serial;          // of the current message (receive id = index | serial << 16)
    uint64_t abandoned_serial;  // last message whose sender gave up after it was received
    Channel* channel;
    Thread* server;           // kReceived: the thread that received it
    size_t send_size;
    size_t reply_capacity;
    SenderId sender;
    PulseSlot unblock;
    // kLocalThread
    Thread* thread;
    Parts send;
    MutParts reply;
    Status result;
    size_t reply_size;
    int32_t reply_code;
    // kRemote: the bridge's own state for this record
    void* remote_context;
};

// A reply sent from the replier's own buffers, not copied: reply() passes one to complete(),
// which sets `held` when it keeps the reply's parts (a large reply the sender's node pulls), and
// reply() then waits on `done` (the replier stays blocked, so its parts stay valid) and returns
// `result`, set by the bridge before it signals: kOk once the sender's node has the whole reply,
// kSenderUnblocked if that node gave up or died first. Lives on the replier's stack: the bridge
// touches it no more once it has signalled.
struct ReplyHold {
    Event done;
    Status result = Status::kOk;
    bool held = false;
};

struct RemoteSenderOps {
    size_t (*copy_out)(SenderRecord* record, size_t offset, MutParts destination);
    // serial: the record's serial when the receive id was checked (interrupts enabled since:
    // the bridge re-checks it, as the record may have ended and served another sender meanwhile)
    Result<size_t> (*read)(SenderRecord* record, uint64_t serial, size_t offset,
                           MutParts destination, uint64_t deadline_ns);
    // hold: non-null for a reply() (may be held); null for errors and the kernel's own outcomes.
    void (*complete)(SenderRecord* record, Status status, int32_t code, Parts reply,
                     ReplyHold* hold);
};

struct RemoteConnectionOps {
    Result<size_t> (*send)(void* handle, Parts message, MutParts reply, uint64_t deadline_ns,
                           uint8_t priority, int32_t* reply_code);
    Status (*pulse)(void* handle, int32_t code, int64_t value, uint8_t priority);
    void (*close)(void* handle);
};

// ---- Channels and connections (these allocate; data paths do not) ----
Result<Channel*> channel_create();
Status channel_destroy(Channel* channel);
Result<Connection*> connect(Channel* channel);
Result<Connection*> connect_remote(void* bridge_handle);
Status disconnect(Connection* connection);

// ---- Data path ----
// Blocks until the reply (kOk: value = the reply's full size; *reply_code = reply's code) or an
// error: kTimedOut, kChannelDestroyed, kServerExited, the server's error(), kInvalidArgument,
// kMessageTooLarge, or (remote) kHostDown, kPeerRebooted, kNoSuchService, kNotSupported.
Result<size_t> send(Connection* connection, Parts message, MutParts reply, uint64_t deadline_ns,
                    int32_t* reply_code = nullptr);
// kOk and *info filled; or kTimedOut, kChannelDestroyed, kInvalidArgument.
Status receive(Channel* channel, MutParts parts, uint64_t deadline_ns, ReceiveInfo* info);
// kOk; kBadReceiveId; kSenderUnblocked (the sender timed out after receive, or, for a large
// reply to another node, that node gave up or died before it had the whole reply);
// kInvalidArgument. A large reply to another node is not copied: reply() returns once it is
// delivered (see ReplyHold).
Status reply(ReceiveId id, int32_t code, Parts reply);
// The sender's send returns `status` (must not be kOk).
Status error(ReceiveId id, Status status);
// Bytes of the message from offset on; value = bytes copied (0 at or past the end).
Result<size_t> read(ReceiveId id, size_t offset, MutParts parts, uint64_t deadline_ns);
// Queues (or coalesces into) the connection's pending pulse. code >= 0. Never blocks.
Status pulse(Connection* connection, int32_t code, int64_t value);

// THE copy between a sender's and a receiver's buffers: bytes src[src_offset..] into dst, as
// many as fit. Returns bytes copied.
size_t copy_parts(MutParts dst, Parts src, size_t src_offset);
size_t parts_size(Parts parts);
size_t parts_size(MutParts parts);

// ---- Bridge hooks ----
void set_remote_sender_ops(const RemoteSenderOps* ops);
void set_remote_connection_ops(const RemoteConnectionOps* ops);
// Called first by channel_destroy, in the destroying thread with interrupts enabled (it may
// wait): the bridge detaches the service names attached for the channel, so no remote request
// or pulse, and no name_open, reaches it after.
void set_channel_destroy_hook(void (*hook)(Channel* channel));
Status record_register(SenderRecord* record);
void record_unregister(SenderRecord* record);
// run_receiver_now: a receiver waiting on the channel takes the message and runs at once, before
// the caller continues (sched::handoff); the bridge's net thread passes true so a server answers
// within the pass that received the request.
Status enqueue_remote(Channel* channel, SenderRecord* record, bool run_receiver_now = false);
void cancel_remote(SenderRecord* record);
// Queues (or coalesces into) `slot`, a pending pulse the bridge owns, with the remote sender's
// identity and priority: kOk, or kInvalidArgument (no channel or slot, code < 0). Never blocks,
// never allocates. The slot stays the bridge's: pending (slot->link linked) until a receive
// takes it or channel_destroy drops it; reuse it for another sender only while not pending.
Status pulse_remote(Channel* channel, PulseSlot* slot, int32_t code, int64_t value,
                    uint8_t priority, SenderId sender);

// ---- Observability ----
struct ChannelStats {
    size_t queued;            // senders waiting now
    size_t queued_high_water;
    size_t pulses_pending;
    size_t receivers_waiting;
};
ChannelStats channel_stats(const Channel* channel);

// Node-wide counters (since boot) for the console's `stats` command.
struct IpcStats {
    uint64_t sends;           // local sends started
    uint64_t replies;         // reply() and error() that completed a send
    uint64_t pulses;          // pulse() calls on local connections (coalesced ones included)
    uint64_t send_timeouts;   // sends ended by their deadline (queued or after receive)
    uint64_t unblock_pulses;  // of those, ones a server had received (the unblock race)
    uint64_t remote_pulses;   // pulse_remote() calls (coalesced ones included)
};
IpcStats ipc_stats();

}  // namespace kernel
