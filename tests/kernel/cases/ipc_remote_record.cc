// The bridge's hook for remote senders (issue 8): a record of kind kRemote, filled and enqueued
// the way the network bridge will, waits in the same queue as local threads and is reached only
// through RemoteSenderOps. Here the "remote" data lives in this test's buffer.
#include "helpers.h"

using namespace kt;

namespace {
struct RemoteSender {
    SenderRecord record;  // first member: the ops get back to RemoteSender from the record
    char data[32];
    size_t eager_bytes;   // how much of data "arrived" with the request
    int completions = 0;
    Status completed_status = Status::kWouldBlock;
    int32_t completed_code = 0;
    char reply[16] = {};
    size_t reply_size = 0;
    bool hold_replies = false;     // keep a reply's parts, as the bridge does with large ones
    ReplyHold* held = nullptr;
    Parts held_parts{nullptr, 0};
};

RemoteSender* self_of(SenderRecord* r) { return reinterpret_cast<RemoteSender*>(r); }

size_t remote_copy_out(SenderRecord* r, size_t offset, MutParts dst) {
    RemoteSender* s = self_of(r);
    if (offset >= s->eager_bytes) return 0;
    Part src{s->data + offset, s->eager_bytes - offset};
    return copy_parts(dst, one(src), 0);
}

Result<size_t> remote_read(SenderRecord* r, uint64_t, size_t offset, MutParts dst, uint64_t) {
    RemoteSender* s = self_of(r);
    if (offset >= sizeof(s->data)) return Result<size_t>::ok(0);
    Part src{s->data, sizeof(s->data)};
    return Result<size_t>::ok(copy_parts(dst, one(src), offset));
}

void remote_complete(SenderRecord* r, Status status, int32_t code, Parts reply, ReplyHold* hold) {
    RemoteSender* s = self_of(r);
    ++s->completions;
    s->completed_status = status;
    s->completed_code = code;
    s->reply_size = parts_size(reply);
    if (s->hold_replies && hold && s->reply_size) {
        hold->held = true;  // the replier waits; its parts stay valid until we signal
        s->held = hold;
        s->held_parts = reply;
        return;
    }
    MutPart dst{s->reply, sizeof(s->reply)};
    copy_parts(one(dst), reply, 0);
}

const RemoteSenderOps kOps = {remote_copy_out, remote_read, remote_complete};

void init_remote(RemoteSender* s, uint8_t priority) {
    s->record.kind = SenderKind::kRemote;
    s->record.priority = priority;
    s->record.send_size = sizeof(s->data);
    s->record.reply_capacity = sizeof(s->reply);
    s->record.sender = SenderId{7, 99};
    for (size_t i = 0; i < sizeof(s->data); ++i) s->data[i] = static_cast<char>('a' + i % 26);
    s->eager_bytes = 8;
}

// A registered remote sender on the heap, with the test ops installed (nullptr if out of memory).
RemoteSender* new_registered_remote(uint8_t priority) {
    set_remote_sender_ops(&kOps);
    auto* s = new (heap::allocate(sizeof(RemoteSender))) RemoteSender{};
    if (!s) return nullptr;
    init_remote(s, priority);
    if (record_register(&s->record) != Status::kOk) {
        heap::release(s);
        return nullptr;
    }
    return s;
}
}  // namespace

KTEST(ipc_remote_sender_record_uses_bridge_ops) {
    set_remote_sender_ops(&kOps);
    auto ch = channel_create();
    KREQUIRE(ch.is_ok());
    auto conn = connect(ch.value);
    KREQUIRE(conn.is_ok());
    auto* s = new (heap::allocate(sizeof(RemoteSender))) RemoteSender{};
    KREQUIRE(s);
    init_remote(s, kPriorityDefault + 3);
    KCHECK_STATUS(enqueue_remote(ch.value, &s->record), Status::kInvalidArgument);  // unregistered
    KREQUIRE(record_register(&s->record) == Status::kOk);
    // A local sender at a lower priority queues behind the remote one.
    SendJob local{conn.value, 5};
    Thread* lt = start_sender(&local, kPriorityDefault + 1);
    KREQUIRE(lt);
    KCHECK_OK(enqueue_remote(ch.value, &s->record));
    KCHECK_EQ(channel_stats(ch.value).queued, 2u);
    char buf[20] = {};
    MutPart in{buf, sizeof(buf)};
    ReceiveInfo info{};
    KCHECK_OK(receive(ch.value, one(in), 0, &info));
    KCHECK_EQ(info.sender.node, 7u);
    KCHECK_EQ(info.size, 32u);
    KCHECK_EQ(info.copied, 8u);  // only the eager part is here
    KCHECK_EQ(buf[7], 'h');
    auto more = read(info.id, 8, one(in), kNoDeadline);
    KCHECK_OK(more.status);
    KCHECK_EQ(more.value, 20u);
    KCHECK_EQ(buf[0], 'i');
    const char* answer = "pong";
    Part out{answer, 4};
    KCHECK_OK(reply(info.id, 3, one(out)));
    KCHECK_EQ(s->completions, 1);
    KCHECK_OK(s->completed_status);
    KCHECK_EQ(s->completed_code, 3);
    KCHECK_EQ(s->reply_size, 4u);
    KCHECK_EQ(s->reply[3], 'g');
    KCHECK(s->record.state == RecordState::kIdle);
    // The remote sender gives up after receive: the server gets the unblock pulse.
    KCHECK_OK(enqueue_remote(ch.value, &s->record));
    uint64_t local_got = 0;
    MutPart lin{&local_got, sizeof(local_got)};
    KCHECK_OK(receive(ch.value, one(in), 0, &info));
    KCHECK_EQ(info.sender.node, 7u);  // outranks the local sender still queued
    cancel_remote(&s->record);
    ReceiveInfo p{};
    KCHECK_OK(receive(ch.value, one(lin), 0, &p));
    KCHECK(p.kind == ReceiveKind::kPulse);
    KCHECK_EQ(p.pulse_code, kPulseCodeUnblock);
    KCHECK_STATUS(reply(info.id, 0, one(out)), Status::kSenderUnblocked);
    KCHECK_EQ(s->completions, 1);
    // Channel destroy completes a queued remote record with an error through the ops.
    KCHECK_OK(enqueue_remote(ch.value, &s->record));
    KCHECK_OK(receive(ch.value, one(lin), 0, &p));  // the local sender (lower priority) is behind
    KCHECK(p.sender.node == 7u);
    KCHECK_OK(error(p.id, Status::kHostDown));
    KCHECK_STATUS(s->completed_status, Status::kHostDown);
    KCHECK_OK(enqueue_remote(ch.value, &s->record));
    KCHECK_OK(channel_destroy(ch.value));
    KCHECK_STATUS(s->completed_status, Status::kChannelDestroyed);
    KCHECK_EQ(s->completions, 3);
    KCHECK_OK(thread_join(lt).status);
    KCHECK_STATUS(local.result.status, Status::kChannelDestroyed);
    record_unregister(&s->record);
    set_remote_sender_ops(nullptr);
    heap::release(s);
    KCHECK_OK(disconnect(conn.value));
}

namespace {
struct LowServer {
    Channel* ch;
    int served = 0;
};
void low_server(void* arg) {
    auto* l = static_cast<LowServer*>(arg);
    for (int i = 0; i < 2; ++i) {
        char buf[8];
        MutPart in{buf, sizeof(buf)};
        ReceiveInfo info{};
        if (receive(l->ch, one(in), kNoDeadline, &info) != Status::kOk) return;
        Part out{"ok", 2};
        reply(info.id, 0, one(out));
        ++l->served;
    }
}
}  // namespace

// The net thread's hand-off: with run_receiver_now, a lower-priority server waiting in receive
// serves the remote request before enqueue_remote returns; without it, only once the caller
// blocks.
KTEST(ipc_remote_enqueue_can_run_the_receiver_at_once) {
    auto ch = channel_create();
    KREQUIRE(ch.is_ok());
    RemoteSender* s = new_registered_remote(kPriorityDefault);
    KREQUIRE(s);
    LowServer l{ch.value};
    auto t = thread_create("lowsrv", low_server, &l, kPriorityDefault - 2);
    KREQUIRE(t.is_ok());
    KREQUIRE(wait_receivers(ch.value, 1));
    KCHECK_OK(enqueue_remote(ch.value, &s->record));
    KCHECK_EQ(s->completions, 0);  // ordinary wake: the lower server has not run yet
    KREQUIRE(wait_until([&] { return s->completions == 1 && channel_stats(ch.value).receivers_waiting == 1; }));
    KCHECK_OK(enqueue_remote(ch.value, &s->record, true));
    KCHECK_EQ(s->completions, 2);  // served and replied inside the call
    KCHECK_EQ(s->reply_size, 2u);
    KCHECK_OK(thread_join(t.value).status);
    KCHECK_EQ(l.served, 2);
    record_unregister(&s->record);
    set_remote_sender_ops(nullptr);
    heap::release(s);
    KCHECK_OK(channel_destroy(ch.value));
}

// Remote pulses (pulse_remote): the bridge's slot per remote sender keeps senders apart (each
// delivery carries its sender and priority) and coalesces one sender's pulses, as connections
// do locally; slots never allocate and channel_destroy drops pending ones.
KTEST(ipc_remote_pulses_stay_apart_per_sender_slot) {
    auto ch = channel_create();
    KREQUIRE(ch.is_ok());
    PulseSlot a{}, b{};
    const SenderId node3{3, 0}, node5{5, 0};
    const uint64_t allocs = heap::stats().allocation_count;
    const uint64_t before = ipc_stats().remote_pulses;
    KCHECK_OK(pulse_remote(ch.value, &a, 1, 10, kPriorityDefault + 2, node3));
    KCHECK_OK(pulse_remote(ch.value, &b, 7, 70, kPriorityDefault, node5));
    KCHECK_OK(pulse_remote(ch.value, &a, 2, 20, kPriorityDefault + 2, node3));  // coalesces into a
    KCHECK_EQ(heap::stats().allocation_count, allocs);
    KCHECK_EQ(ipc_stats().remote_pulses, before + 3);
    KCHECK_EQ(channel_stats(ch.value).pulses_pending, 2u);
    KCHECK(a.link.linked() && b.link.linked());
    ReceiveInfo info{};
    KCHECK_OK(receive(ch.value, none_mut(), 0, &info));
    KCHECK(info.kind == ReceiveKind::kPulse);
    KCHECK_EQ(info.sender.node, 3u);
    KCHECK_EQ(info.pulse_code, 2);
    KCHECK_EQ(info.pulse_value, 20);
    KCHECK_EQ(info.pulse_count, 2u);
    KCHECK_EQ(info.priority, kPriorityDefault + 2);
    KCHECK(!a.link.linked());  // taken: the bridge may give the slot to another sender
    KCHECK_OK(receive(ch.value, none_mut(), 0, &info));
    KCHECK_EQ(info.sender.node, 5u);
    KCHECK_EQ(info.pulse_value, 70);
    KCHECK_EQ(info.pulse_count, 1u);
    KCHECK_STATUS(receive(ch.value, none_mut(), 0, &info), Status::kTimedOut);
    KCHECK_STATUS(pulse_remote(ch.value, &a, -1, 0, kPriorityDefault, node3), Status::kInvalidArgument);
    KCHECK_STATUS(pulse_remote(nullptr, &a, 1, 0, kPriorityDefault, node3), Status::kInvalidArgument);
    KCHECK_STATUS(pulse_remote(ch.value, nullptr, 1, 0, kPriorityDefault, node3), Status::kInvalidArgument);
    KCHECK_OK(pulse_remote(ch.value, &b, 8, 80, kPriorityDefault, node5));
    KCHECK_OK(channel_destroy(ch.value));  // drops the pending one: the slot is free again
    KCHECK(!b.link.linked());
    KCHECK_EQ(b.count, 0u);
}

namespace {
struct HeldReplier {
    Channel* ch;
    char answer[24];
    Status replied = Status::kWouldBlock;  // what reply() returned
};
void held_replier(void* arg) {
    auto* h = static_cast<HeldReplier*>(arg);
    char buf[8];
    MutPart in{buf, sizeof(buf)};
    ReceiveInfo info{};
    if (receive(h->ch, one(in), kNoDeadline, &info) != Status::kOk) return;
    Part out{h->answer, sizeof(h->answer)};
    h->replied = reply(info.id, 0, one(out));
}
}  // namespace

// A reply the bridge holds (a large one to another node: sent from the replier's own buffer,
// not copied): reply() blocks until the bridge signals, its parts readable meanwhile, and
// returns the outcome the bridge gives (kOk delivered, kSenderUnblocked the sender's node gone).
KTEST(ipc_remote_held_reply_blocks_the_replier_until_released) {
    auto ch = channel_create();
    KREQUIRE(ch.is_ok());
    RemoteSender* s = new_registered_remote(kPriorityDefault);
    KREQUIRE(s);
    s->hold_replies = true;
    const Status outcomes[] = {Status::kSenderUnblocked, Status::kOk};
    for (Status outcome : outcomes) {
        s->held = nullptr;
        HeldReplier h{ch.value, {}};
        for (size_t i = 0; i < sizeof(h.answer); ++i) h.answer[i] = static_cast<char>('A' + i);
        KCHECK_OK(enqueue_remote(ch.value, &s->record));
        auto t = thread_create("replier", held_replier, &h, kPriorityDefault + 1);  // runs at once
        KREQUIRE(t.is_ok());
        KREQUIRE(s->held != nullptr);             // it replied and is held in reply()
        KCHECK_STATUS(h.replied, Status::kWouldBlock);
        KCHECK(s->record.state == RecordState::kIdle);
        char got[24] = {};
        MutPart g{got, sizeof(got)};
        KCHECK_EQ(copy_parts(one(g), s->held_parts, 0), sizeof(got));  // its buffer, not a copy
        KCHECK_EQ(got[23], 'X');
        s->held->result = outcome;
        s->held->done.signal();
        KCHECK_OK(thread_join(t.value).status);
        KCHECK_STATUS(h.replied, outcome);
    }
    record_unregister(&s->record);
    set_remote_sender_ops(nullptr);
    heap::release(s);
    KCHECK_OK(channel_destroy(ch.value));
}
