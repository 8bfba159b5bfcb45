// Channels and send / receive / reply. Shape after seL4's endpoint: a channel is either idle,
// holding queued senders/pulses, or holding waiting receivers (never both); each call checks a
// few guards and then commits. Everything runs with interrupts disabled (IrqGuard).
#include <new>

#include "heap.h"
#include "ipc_internal.h"
#include "panic.h"
#include "scheduler.h"

namespace kernel {

struct Channel {
    List senders;      // SenderRecords, by priority then FIFO
    List receivers;    // Threads blocked in receive (through run_link)
    List pulses;       // PulseSlots, FIFO
    List connections;  // Connections to this channel (through Connection::link)
    List held;         // received, unreplied SenderRecords (channel_link): their servers inherit
                       // the priority of the queue's front
    Thread* last_receiver;  // the thread that last received a message here (its served == this)
    // Unblock pulses for this channel whose sender's own slot is taken: still pending on
    // another channel (a sender abandoned there first), or gone with its thread. They coalesce
    // here (value = the newest id, count = how many), so no abandonment goes untold.
    PulseSlot unblock_overflow;
    size_t queued;
    size_t queued_high_water;
};

enum class ConnectionKind : uint8_t { kLocal, kRemote };

struct Connection {
    ListNode link;       // kLocal: the channel's connection list
    ConnectionKind kind;
    Channel* channel;    // kLocal; nullptr once the channel is destroyed
    void* remote_handle; // kRemote
    PulseSlot pulse;     // coalescing pulse of this connection
};

namespace {

struct IpcState {
    SenderRecord* records[kRecordsMax];  // registry: receive id index -> record
    uint16_t free_indices[kRecordsMax];
    size_t free_count;
    uint64_t next_serial;
    const RemoteSenderOps* sender_ops;
    void (*destroy_hook)(Channel*);  // set_channel_destroy_hook
    const RemoteConnectionOps* connection_ops;
    IpcStats stats;
    size_t inheritance_depth;  // nesting of priority propagation (bounded: kInheritanceDepthMax)
};

IpcState g;

ReceiveId make_id(const SenderRecord* r) { return (r->serial << 16) | r->index; }

// Finds the received record an id names. *abandoned tells "the sender gave up" apart from a
// plain bad id.
SenderRecord* lookup(ReceiveId id, bool* abandoned) {
    *abandoned = false;
    size_t index = id & 0xffff;
    uint64_t serial = id >> 16;
    if (index >= kRecordsMax || serial == 0) return nullptr;
    SenderRecord* r = g.records[index];
    if (!r) return nullptr;
    if (r->serial == serial && r->state == RecordState::kReceived) return r;
    *abandoned = r->abandoned_serial == serial;
    return nullptr;
}

void queue_pulse(Channel* ch, PulseSlot* slot);

// ---- Record kinds: the only places that look at a record's kind ----

size_t record_copy_out(SenderRecord* r, size_t offset, MutParts dst) {
    if (r->kind == SenderKind::kLocalThread) return copy_parts(dst, r->send, offset);
    return g.sender_ops ? g.sender_ops->copy_out(r, offset, dst) : 0;
}

// Ends a send: the record goes idle and its sender learns the outcome.
void record_complete(SenderRecord* r, Status status, int32_t code, Parts reply,
                     ReplyHold* hold = nullptr) {
    r->state = RecordState::kIdle;
    r->server = nullptr;
    if (r->kind == SenderKind::kRemote) {
        if (g.sender_ops) g.sender_ops->complete(r, status, code, reply, hold);
        return;
    }
    r->result = status;
    r->reply_code = code;
    r->reply_size = 0;
    if (status == Status::kOk) {
        r->reply_size = parts_size(reply);
        copy_parts(r->reply, reply, 0);
    }
    sched::wake(r->thread, Status::kOk);
}

// ---- Queue and hand-over ----

uint8_t queue_top_priority(const Channel* ch) {
    ListNode* n = ch->senders.front();
    return n ? KERNEL_CONTAINER_OF(n, SenderRecord, link)->priority : 0;
}

// The queue's front changed: every server of ch (holder of a received record from it)
// recomputes its inherited priority. Bounded: at most kRecordsMax held records, and nesting
// through chains of servers stops at kInheritanceDepthMax.
void queue_changed(Channel* ch) {
    if ((ch->held.empty() && !ch->last_receiver) || g.inheritance_depth >= kInheritanceDepthMax)
        return;
    ++g.inheritance_depth;
    if (Thread* last = ch->last_receiver)
        sched::set_effective_priority(last, ipc::inherited_priority(last));
    for (ListNode* n = ch->held.front(); n; n = ch->held.next(n)) {
        Thread* server = KERNEL_CONTAINER_OF(n, SenderRecord, channel_link)->server;
        sched::set_effective_priority(server, ipc::inherited_priority(server));
    }
    --g.inheritance_depth;
}

void enqueue_sender(Channel* ch, SenderRecord* r) {
    // From the back: the last record of priority >= ours is where we go after (FIFO within one).
    ListNode* pos = ch->senders.back();
    while (pos && KERNEL_CONTAINER_OF(pos, SenderRecord, link)->priority < r->priority)
        pos = ch->senders.prev(pos);
    ch->senders.insert_after(pos, &r->link);
    r->state = RecordState::kQueued;
    if (++ch->queued > ch->queued_high_water) ch->queued_high_water = ch->queued;
    queue_changed(ch);
}

void dequeue_sender(Channel* ch, SenderRecord* r) {
    List::remove(&r->link);
    --ch->queued;
    r->state = RecordState::kIdle;
    queue_changed(ch);
}

// Gives record r to receiving thread t: one copy into t's parts, the record joins t's held list,
// and t inherits the sender's priority.
void deliver_message(SenderRecord* r, Thread* t, MutParts parts, ReceiveInfo* info) {
    size_t copied = record_copy_out(r, 0, parts);
    r->state = RecordState::kReceived;
    r->server = t;
    t->held.push_back(&r->link);
    Channel* ch = r->channel;
    ch->held.push_back(&r->channel_link);
    if (ch->last_receiver != t) {  // t becomes ch's last receiver (and stops being another's)
        if (t->served) t->served->last_receiver = nullptr;
        Thread* previous = ch->last_receiver;
        ch->last_receiver = t;
        t->served = ch;
        if (previous) {
            previous->served = nullptr;
            sched::set_effective_priority(previous, ipc::inherited_priority(previous));
        }
        // What raised t as another channel's last receiver raises it no more (it kept that
        // queue's top while serving here, also after those senders left).
        sched::set_effective_priority(t, ipc::inherited_priority(t));
    } else if (r->priority > t->priority) {
        // The rest of the queue is at most r's priority (it was the front, or the queue is empty).
        sched::set_effective_priority(t, r->priority);
    }
    info->kind = ReceiveKind::kMessage;
    info->id = make_id(r);
    info->sender = r->sender;
    info->priority = r->priority;
    info->size = r->send_size;
    info->copied = copied;
    info->reply_capacity = r->reply_capacity;
    info->pulse_code = 0;
    info->pulse_value = 0;
    info->pulse_count = 0;
}

void deliver_pulse(PulseSlot* p, ReceiveInfo* info) {
    info->kind = ReceiveKind::kPulse;
    info->id = 0;
    info->sender = p->sender;
    info->priority = p->priority;
    info->size = 0;
    info->copied = 0;
    info->reply_capacity = 0;
    info->pulse_code = p->code;
    info->pulse_value = p->value;
    info->pulse_count = p->count;
    p->count = 0;
}

Thread* pop_receiver(Channel* ch) {
    ListNode* n = ch->receivers.pop_front();
    return n ? KERNEL_CONTAINER_OF(n, Thread, run_link) : nullptr;
}

// A new pulse (or an update of a pending one) for channel ch.
void queue_pulse(Channel* ch, PulseSlot* slot) {
    if (Thread* t = pop_receiver(ch)) {
        ++slot->count;
        deliver_pulse(slot, t->receive.info);
        sched::wake(t, Status::kOk);
        return;
    }
    ++slot->count;
    if (!slot->link.linked()) {
        ch->pulses.push_back(&slot->link);
        slot->queued_on = ch;
    }
}

void unlink_pulse(PulseSlot* slot) {
    if (slot->link.linked()) List::remove(&slot->link);
    slot->count = 0;
}

// Lowers (or keeps) a server's priority after it let go of a record.
void drop_held(Thread* server, SenderRecord* r) {
    List::remove(&r->link);
    List::remove(&r->channel_link);
    sched::set_effective_priority(server, ipc::inherited_priority(server));
}

// The timeout race, for a sender S blocked in send with deadline D on channel C:
//  1. S's record is kQueued in C or kReceived by server thread R (in R's held list).
//  2. The timer interrupt at or after D takes S off the deadline list and calls abandon_record
//     (interrupts are disabled: no reply/receive can run in between) before S is made ready.
//  3a. kQueued: the record leaves C's queue; no server ever saw it. Done.
//  3b. kReceived: the record leaves R's held list and R's inherited priority is recomputed;
//      abandoned_serial remembers this message; the record's unblock pulse (code
//      kPulseCodeUnblock, value = the receive id) is queued on C, or handed at once to a thread
//      blocked in receive on C, so R is told immediately.
//  4. S becomes ready with kTimedOut; its record is kIdle, so no reply can touch S's buffers.
//  5. R's later reply/error/read with that id finds no kReceived record with that serial, sees
//     abandoned_serial and returns kSenderUnblocked (a clear error, never a reply to the wrong
//     request: S's next message gets a new serial).
//  6. If S sends again on C and is abandoned again before R consumed the first unblock pulse,
//     the two pulses coalesce (value = the newest id, count = 2). Abandoned on another channel
//     meanwhile, S's pulse goes to that channel's overflow slot (its own still waits on C), and
//     a pending pulse whose thread ends moves there too (hand_over_unblock).
void abandon_record(SenderRecord* r) {
    Channel* ch = r->channel;
    if (r->state == RecordState::kReceived) ++g.stats.unblock_pulses;
    if (r->state == RecordState::kQueued) {
        dequeue_sender(ch, r);
    } else if (r->state == RecordState::kReceived) {
        Thread* server = r->server;
        ReceiveId id = make_id(r);
        drop_held(server, r);
        r->state = RecordState::kIdle;
        r->server = nullptr;
        r->abandoned_serial = r->serial;
        // The record's own slot, unless it still waits on another channel (this sender was
        // abandoned there first, and that server has not received since): then this
        // channel's overflow slot. Coalescing into the other channel's told the wrong server.
        PulseSlot* slot = &r->unblock;
        if (slot->link.linked() && slot->queued_on != ch) slot = &ch->unblock_overflow;
        slot->code = kPulseCodeUnblock;
        slot->value = static_cast<int64_t>(id);
        slot->priority = r->priority;
        slot->sender = r->sender;
        queue_pulse(ch, slot);
    }
}

// A record's unblock slot that is still pending when the record goes away (its thread ends):
// its news moves to the channel's overflow slot instead of being lost.
void hand_over_unblock(PulseSlot* slot) {
    if (!slot->link.linked()) return;
    Channel* ch = slot->queued_on;
    PulseSlot* o = &ch->unblock_overflow;
    List::remove(&slot->link);
    if (!o->link.linked()) {
        o->code = slot->code;
        o->value = slot->value;
        o->priority = slot->priority;
        o->sender = slot->sender;
        o->count = 0;
        ch->pulses.push_back(&o->link);
        o->queued_on = ch;
    }
    o->count += slot->count;
    slot->count = 0;
}

void send_cancel(Thread* t) {
    ++g.stats.send_timeouts;
    abandon_record(&t->sender);
}

void receive_cancel(Thread* t) { List::remove(&t->run_link); }

bool parts_valid(const void* parts, size_t count) { return count <= kPartsMax && (parts || !count); }

Result<size_t> remote_send(Connection* c, Parts message, MutParts reply, uint64_t deadline_ns,
                           int32_t* reply_code) {
    if (!g.connection_ops) return Result<size_t>::error(Status::kNotSupported);
    return g.connection_ops->send(c->remote_handle, message, reply, deadline_ns,
                                  thread_priority(thread_current()), reply_code);
}

}  // namespace

// ---- Internal interface --------------------------------------------------------------------

namespace ipc {

void init() {
    new (&g) IpcState{};
    for (size_t i = 0; i < kRecordsMax; ++i) g.free_indices[i] = static_cast<uint16_t>(kRecordsMax - 1 - i);
    g.free_count = kRecordsMax;
    g.next_serial = 1;
}

Status thread_init(Thread* t) {
    SenderRecord* r = &t->sender;
    r->kind = SenderKind::kLocalThread;
    r->thread = t;
    r->sender = SenderId{0, t->id};
    return record_register(r);
}

void thread_fini(Thread* t) {
    IrqGuard guard;
    hand_over_unblock(&t->sender.unblock);  // its server is still to be told
    record_unregister(&t->sender);
}

void thread_exiting(Thread* t) {
    if (t->served) {
        t->served->last_receiver = nullptr;
        t->served = nullptr;
    }
    while (ListNode* n = t->held.pop_front()) {
        SenderRecord* r = KERNEL_CONTAINER_OF(n, SenderRecord, link);
        List::remove(&r->channel_link);
        record_complete(r, Status::kServerExited, 0, Parts{nullptr, 0});
    }
}

// Base priority, raised by every held message's sender and by the front of the queue of every
// channel it holds a message from (queued senders: see ipc.h). At most kRecordsMax held records.
uint8_t inherited_priority(const Thread* t) {
    uint8_t p = t->base_priority;
    for (ListNode* n = t->held.front(); n; n = t->held.next(n)) {
        const SenderRecord* r = KERNEL_CONTAINER_OF(n, SenderRecord, link);
        uint8_t q = r->priority;
        uint8_t top = queue_top_priority(r->channel);
        if (top > q) q = top;
        if (q > p) p = q;
    }
    if (t->served) {
        uint8_t top = queue_top_priority(t->served);
        if (top > p) p = top;
    }
    return p;
}

void priority_changed(Thread* t) {
    SenderRecord* r = &t->sender;
    if (r->state == RecordState::kIdle || r->priority == t->priority) return;
    r->priority = t->priority;
    if (r->state == RecordState::kQueued) {
        Channel* ch = r->channel;
        dequeue_sender(ch, r);
        enqueue_sender(ch, r);  // last among its new priority
    } else {
        // Held by a server: recompute it. Chains of "held by" are acyclic (a thread blocked in
        // send cannot receive), but queued senders also raise servers (queue_changed), and a
        // cycle of sends (a deadlock) could then loop: the nesting is capped.
        if (g.inheritance_depth >= kInheritanceDepthMax) return;
        ++g.inheritance_depth;
        Thread* server = r->server;
        sched::set_effective_priority(server, inherited_priority(server));
        --g.inheritance_depth;
    }
}

}  // namespace ipc

// ---- Copy ----------------------------------------------------------------------------------

size_t parts_size(Parts p) {
    size_t total = 0;
    for (size_t i = 0; i < p.count; ++i) total += p.parts[i].size;
    return total;
}

size_t parts_size(MutParts p) {
    size_t total = 0;
    for (size_t i = 0; i < p.count; ++i) total += p.parts[i].size;
    return total;
}

// FIXME: becomes a fault-safe user copy when threads get their own address spaces.
static inline void copy_bytes(void* dst, const void* src, size_t n) { __builtin_memcpy(dst, src, n); }

size_t copy_parts(MutParts dst, Parts src, size_t src_offset) {
    if (src.count == 1 && dst.count == 1) {  // the common case: one buffer each side
        if (src_offset >= src.parts[0].size) return 0;
        size_t n = src.parts[0].size - src_offset;
        if (n > dst.parts[0].size) n = dst.parts[0].size;
        if (n) copy_bytes(dst.parts[0].data, static_cast<const char*>(src.parts[0].data) + src_offset, n);
        return n;
    }
    size_t copied = 0;
    size_t si = 0;
    while (si < src.count && src_offset >= src.parts[si].size) src_offset -= src.parts[si++].size;
    size_t di = 0;
    size_t doff = 0;
    while (si < src.count && di < dst.count) {
        size_t s_left = src.parts[si].size - src_offset;
        size_t d_left = dst.parts[di].size - doff;
        size_t n = s_left < d_left ? s_left : d_left;
        if (n) {
            copy_bytes(static_cast<char*>(dst.parts[di].data) + doff,
                       static_cast<const char*>(src.parts[si].data) + src_offset, n);
        }
        copied += n;
        src_offset += n;
        doff += n;
        if (src_offset == src.parts[si].size) ++si, src_offset = 0;
        if (doff == dst.parts[di].size) ++di, doff = 0;
    }
    return copied;
}

// ---- Channels and connections --------------------------------------------------------------

Result<Channel*> channel_create() {
    void* block = heap::allocate(sizeof(Channel));
    if (!block) return Result<Channel*>::error(Status::kNoMemory);
    Channel* ch = new (block) Channel{};
    ch->senders.init();
    ch->receivers.init();
    ch->pulses.init();
    ch->connections.init();
    ch->held.init();
    return Result<Channel*>::ok(ch);
}

Status channel_destroy(Channel* ch) {
    if (!ch) return Status::kInvalidArgument;
    if (g.destroy_hook) g.destroy_hook(ch);  // its names leave first (the bridge)
    IrqGuard guard;
    while (ListNode* n = ch->senders.front()) {
        SenderRecord* r = KERNEL_CONTAINER_OF(n, SenderRecord, link);
        dequeue_sender(ch, r);
        record_complete(r, Status::kChannelDestroyed, 0, Parts{nullptr, 0});
    }
    sched::for_each_thread([ch](Thread* t) {
        ListNode* n = t->held.front();
        while (n) {
            ListNode* next = t->held.next(n);
            SenderRecord* r = KERNEL_CONTAINER_OF(n, SenderRecord, link);
            if (r->channel == ch) {
                drop_held(t, r);
                record_complete(r, Status::kChannelDestroyed, 0, Parts{nullptr, 0});
            }
            n = next;
        }
    });
    if (Thread* last = ch->last_receiver) {
        last->served = nullptr;
        ch->last_receiver = nullptr;
        sched::set_effective_priority(last, ipc::inherited_priority(last));
    }
    while (Thread* t = pop_receiver(ch)) sched::wake(t, Status::kChannelDestroyed);
    while (ListNode* n = ch->pulses.pop_front()) KERNEL_CONTAINER_OF(n, PulseSlot, link)->count = 0;
    while (ListNode* n = ch->connections.pop_front()) KERNEL_CONTAINER_OF(n, Connection, link)->channel = nullptr;
    ch->~Channel();
    heap::release(ch);
    sched::reschedule();
    return Status::kOk;
}

Result<Connection*> connect(Channel* ch) {
    if (!ch) return Result<Connection*>::error(Status::kInvalidArgument);
    void* block = heap::allocate(sizeof(Connection));
    if (!block) return Result<Connection*>::error(Status::kNoMemory);
    IrqGuard guard;
    Connection* c = new (block) Connection{};
    c->kind = ConnectionKind::kLocal;
    c->channel = ch;
    ch->connections.push_back(&c->link);
    return Result<Connection*>::ok(c);
}

Result<Connection*> connect_remote(void* bridge_handle) {
    void* block = heap::allocate(sizeof(Connection));
    if (!block) return Result<Connection*>::error(Status::kNoMemory);
    Connection* c = new (block) Connection{};
    c->kind = ConnectionKind::kRemote;
    c->remote_handle = bridge_handle;
    return Result<Connection*>::ok(c);
}

Status disconnect(Connection* c) {
    if (!c) return Status::kInvalidArgument;
    {
        IrqGuard guard;
        unlink_pulse(&c->pulse);
        if (c->link.linked()) List::remove(&c->link);
    }
    if (c->kind == ConnectionKind::kRemote && g.connection_ops) g.connection_ops->close(c->remote_handle);
    c->~Connection();
    heap::release(c);
    return Status::kOk;
}

// ---- Data path -----------------------------------------------------------------------------

Result<size_t> send(Connection* c, Parts message, MutParts reply, uint64_t deadline_ns,
                    int32_t* reply_code) {
    if (!c || !parts_valid(message.parts, message.count) || !parts_valid(reply.parts, reply.count))
        return Result<size_t>::error(Status::kInvalidArgument);
    if (c->kind == ConnectionKind::kRemote) return remote_send(c, message, reply, deadline_ns, reply_code);
    size_t size = parts_size(message);
    if (size > kMessageBytesMax) return Result<size_t>::error(Status::kMessageTooLarge);
    IrqGuard guard;
    Channel* ch = c->channel;
    if (!ch) return Result<size_t>::error(Status::kChannelDestroyed);
    Thread* self = sched::current();
    SenderRecord* r = &self->sender;
    ++g.stats.sends;
    r->serial = g.next_serial++;
    r->channel = ch;
    r->priority = self->priority;
    r->send = message;
    r->reply = reply;
    r->send_size = size;
    r->reply_capacity = parts_size(reply);
    r->result = Status::kTimedOut;
    // A deadline already past (0: a poll) cannot wait for any reply: nothing is delivered, as
    // on a remote connection (a server woken for it would find its sender gone at once).
    if (deadline_ns == 0 || deadline_ns <= arch::now_ns()) return Result<size_t>::error(Status::kTimedOut);
    if (Thread* t = pop_receiver(ch)) {
        deliver_message(r, t, t->receive.parts, t->receive.info);
        sched::wake(t, Status::kOk);
    } else {
        enqueue_sender(ch, r);
    }
    if (sched::block(deadline_ns, send_cancel, r) == Status::kTimedOut)
        return Result<size_t>::error(Status::kTimedOut);
    if (reply_code) *reply_code = r->reply_code;
    if (r->result != Status::kOk) return Result<size_t>::error(r->result);
    return Result<size_t>::ok(r->reply_size);
}

Status receive(Channel* ch, MutParts parts, uint64_t deadline_ns, ReceiveInfo* info) {
    if (!ch || !info || !parts_valid(parts.parts, parts.count)) return Status::kInvalidArgument;
    IrqGuard guard;
    if (ListNode* n = ch->pulses.pop_front()) {
        deliver_pulse(KERNEL_CONTAINER_OF(n, PulseSlot, link), info);
        return Status::kOk;
    }
    Thread* self = sched::current();
    if (ListNode* n = ch->senders.front()) {
        SenderRecord* r = KERNEL_CONTAINER_OF(n, SenderRecord, link);
        dequeue_sender(ch, r);
        deliver_message(r, self, parts, info);
        return Status::kOk;
    }
    if (deadline_ns == 0 || deadline_ns <= arch::now_ns()) return Status::kTimedOut;
    self->receive = ReceiveWait{parts, info, ch};
    ch->receivers.push_back(&self->run_link);
    return sched::block(deadline_ns, receive_cancel, ch);
}

// The received record that reply() or error() answers, off its server's held list (interrupts
// disabled); nullptr and *why (kSenderUnblocked: its sender gave up, or kBadReceiveId) if none.
SenderRecord* take_answered(ReceiveId id, Status* why) {
    bool abandoned;
    SenderRecord* r = lookup(id, &abandoned);
    if (!r) {
        *why = abandoned ? Status::kSenderUnblocked : Status::kBadReceiveId;
        return nullptr;
    }
    drop_held(r->server, r);
    ++g.stats.replies;
    return r;
}

Status reply(ReceiveId id, int32_t code, Parts reply_parts) {
    if (!parts_valid(reply_parts.parts, reply_parts.count)) return Status::kInvalidArgument;
    if (parts_size(reply_parts) > kMessageBytesMax) return Status::kMessageTooLarge;
    ReplyHold hold;
    {
        IrqGuard guard;
        Status why;
        SenderRecord* r = take_answered(id, &why);
        if (!r) return why;
        record_complete(r, Status::kOk, code, reply_parts, &hold);
        sched::reschedule();
    }
    if (!hold.held) return Status::kOk;
    hold.done.wait(kNoDeadline);  // the bridge signals when the sender's node has it, or is gone
    return hold.result;
}

Status error(ReceiveId id, Status status) {
    if (status == Status::kOk) return Status::kInvalidArgument;
    IrqGuard guard;
    Status why;
    SenderRecord* r = take_answered(id, &why);
    if (!r) return why;
    record_complete(r, status, 0, Parts{nullptr, 0});
    sched::reschedule();
    return Status::kOk;
}

Result<size_t> read(ReceiveId id, size_t offset, MutParts parts, uint64_t deadline_ns) {
    if (!parts_valid(parts.parts, parts.count)) return Result<size_t>::error(Status::kInvalidArgument);
    SenderRecord* remote = nullptr;
    uint64_t serial = 0;
    {
        IrqGuard guard;
        bool abandoned;
        SenderRecord* r = lookup(id, &abandoned);
        if (!r) return Result<size_t>::error(abandoned ? Status::kSenderUnblocked : Status::kBadReceiveId);
        if (r->kind == SenderKind::kLocalThread) {
            if (offset >= r->send_size) return Result<size_t>::ok(0);
            return Result<size_t>::ok(copy_parts(parts, r->send, offset));
        }
        remote = r;
        serial = r->serial;
    }
    // A remote read may block while the bridge pulls data: called with interrupts enabled. The
    // bridge re-checks the record (its sender may give up meanwhile: cancel_remote).
    if (!g.sender_ops) return Result<size_t>::error(Status::kNotSupported);
    return g.sender_ops->read(remote, serial, offset, parts, deadline_ns);
}

Status pulse(Connection* c, int32_t code, int64_t value) {
    if (!c || code < 0) return Status::kInvalidArgument;
    if (c->kind == ConnectionKind::kRemote) {
        if (!g.connection_ops) return Status::kNotSupported;
        return g.connection_ops->pulse(c->remote_handle, code, value, thread_priority(thread_current()));
    }
    IrqGuard guard;
    Channel* ch = c->channel;
    if (!ch) return Status::kChannelDestroyed;
    Thread* self = sched::current();
    ++g.stats.pulses;
    c->pulse.code = code;
    c->pulse.value = value;
    c->pulse.priority = self->priority;
    c->pulse.sender = SenderId{0, self->id};
    queue_pulse(ch, &c->pulse);
    sched::reschedule();
    return Status::kOk;
}

// ---- Bridge hooks --------------------------------------------------------------------------

Status pulse_remote(Channel* ch, PulseSlot* slot, int32_t code, int64_t value, uint8_t priority,
                    SenderId sender) {
    if (!ch || !slot || code < 0) return Status::kInvalidArgument;
    IrqGuard guard;
    ++g.stats.remote_pulses;
    slot->code = code;
    slot->value = value;
    slot->priority = priority;
    slot->sender = sender;
    queue_pulse(ch, slot);
    sched::reschedule();
    return Status::kOk;
}

void set_remote_sender_ops(const RemoteSenderOps* ops) { g.sender_ops = ops; }
void set_channel_destroy_hook(void (*hook)(Channel*)) { g.destroy_hook = hook; }
void set_remote_connection_ops(const RemoteConnectionOps* ops) { g.connection_ops = ops; }

Status record_register(SenderRecord* r) {
    IrqGuard guard;
    if (g.free_count == 0) return Status::kLimitReached;
    r->index = g.free_indices[--g.free_count];
    r->state = RecordState::kIdle;
    g.records[r->index] = r;
    return Status::kOk;
}

void record_unregister(SenderRecord* r) {
    IrqGuard guard;
    if (g.records[r->index] != r) return;
    if (r->state != RecordState::kIdle) abandon_record(r);  // never leave a dangling queue entry
    g.records[r->index] = nullptr;
    g.free_indices[g.free_count++] = r->index;
}

Status enqueue_remote(Channel* ch, SenderRecord* r, bool run_receiver_now) {
    if (!ch || !r || r->kind != SenderKind::kRemote || g.records[r->index] != r)
        return Status::kInvalidArgument;
    IrqGuard guard;
    if (r->state != RecordState::kIdle) return Status::kInvalidArgument;
    r->serial = g.next_serial++;
    r->channel = ch;
    if (Thread* t = pop_receiver(ch)) {
        deliver_message(r, t, t->receive.parts, t->receive.info);
        sched::wake(t, Status::kOk);
        if (run_receiver_now) sched::handoff(t);
        else sched::reschedule();
    } else {
        enqueue_sender(ch, r);
    }
    return Status::kOk;
}

void cancel_remote(SenderRecord* r) {
    IrqGuard guard;
    abandon_record(r);
    r->state = RecordState::kIdle;
}

IpcStats ipc_stats() {
    IrqGuard guard;
    return g.stats;
}

ChannelStats channel_stats(const Channel* ch) {
    IrqGuard guard;
    return ChannelStats{ch->queued, ch->queued_high_water, ch->pulses.size(), ch->receivers.size()};
}

}  // namespace kernel
