// Unblock pulses (ipc.h), a polling send and the last receiver's raise: cases from the thirteenth
// session's review of the kernel IPC, each failing on the code before it.
#include "helpers.h"

using namespace kt;

namespace {
// One thread that sends on conn_a, then on conn_b, each with its own relative deadline.
struct TwoSends {
    Connection* a;
    Connection* b;
    uint64_t rel_a, rel_b;
    Status first = Status::kWouldBlock, second = Status::kWouldBlock;
};
void two_sends_thread(void* arg) {
    auto* j = static_cast<TwoSends*>(arg);
    uint64_t v = 1, r = 0;
    Part out{&v, sizeof(v)};
    MutPart in{&r, sizeof(r)};
    j->first = send(j->a, one(out), one(in), deadline_after(j->rel_a)).status;
    j->second = send(j->b, one(out), one(in), deadline_after(j->rel_b)).status;
}
}  // namespace

// ipc.h: "A sender whose deadline passes returns kTimedOut, also after the server received it;
// the server then gets an unblock pulse ... at once". A sender abandoned after receive on
// channel A (server of A not receiving yet) and then on channel B: B's server must get its
// unblock pulse. The record's one unblock slot is still linked in A's pulse queue, so
// queue_pulse() only bumps its count: B gets nothing, A gets B's receive id.
KTEST(unblock_pulse_of_a_second_channel_goes_to_that_channel) {
    auto a = channel_create();
    auto b = channel_create();
    KREQUIRE(a.is_ok() && b.is_ok());
    auto ca = connect(a.value);
    auto cb = connect(b.value);
    KREQUIRE(ca.is_ok() && cb.is_ok());
    TwoSends job{ca.value, cb.value, 5 * kMs, 20 * kMs};
    auto t = thread_create("two", two_sends_thread, &job, kPriorityDefault + 1);
    KREQUIRE(t.is_ok());
    uint64_t got = 0;
    MutPart in{&got, sizeof(got)};
    ReceiveInfo ia{}, ib{};
    KCHECK_OK(receive(a.value, one(in), kNoDeadline, &ia));  // A's server holds it, busy
    KCHECK_OK(receive(b.value, one(in), deadline_after(50 * kMs), &ib));  // after A's timeout
    KCHECK(ib.kind == ReceiveKind::kMessage);
    KCHECK_OK(sleep_for(40 * kMs));  // the sender gives up on B too
    KCHECK_STATUS(job.first, Status::kTimedOut);
    KCHECK_STATUS(job.second, Status::kTimedOut);
    // (Checked before the join: thread_fini unlinks the sender's pending unblock pulse.)
    // B's server must be told about ib.id ...
    KCHECK_EQ(channel_stats(b.value).pulses_pending, 1u);
    ReceiveInfo p{};
    Status sb = receive(b.value, none_mut(), 0, &p);
    KCHECK_OK(sb);
    if (sb == Status::kOk) {
        KCHECK_EQ(p.pulse_code, kPulseCodeUnblock);
        KCHECK_EQ(static_cast<uint64_t>(p.pulse_value), ib.id);
    }
    // ... and A's server about ia.id, once.
    ReceiveInfo q{};
    KCHECK_OK(receive(a.value, none_mut(), 0, &q));
    KCHECK_EQ(static_cast<uint64_t>(q.pulse_value), ia.id);
    KCHECK_EQ(q.pulse_count, 1u);
    KCHECK_OK(thread_join(t.value).status);
    KCHECK_OK(disconnect(ca.value));
    KCHECK_OK(disconnect(cb.value));
    KCHECK_OK(channel_destroy(a.value));
    KCHECK_OK(channel_destroy(b.value));
}

// Same slot, B's server already waiting in receive: it gets the pulse directly, but the slot
// stays linked in A's queue with count 0, and A's server later receives a pulse with
// pulse_count 0 (documented >= 1) carrying B's id.
KTEST(unblock_pulse_count_is_never_zero) {
    auto a = channel_create();
    auto b = channel_create();
    KREQUIRE(a.is_ok() && b.is_ok());
    auto ca = connect(a.value);
    auto cb = connect(b.value);
    KREQUIRE(ca.is_ok() && cb.is_ok());
    TwoSends job{ca.value, cb.value, 5 * kMs, 20 * kMs};
    auto t = thread_create("two", two_sends_thread, &job, kPriorityDefault + 1);
    KREQUIRE(t.is_ok());
    uint64_t got = 0;
    MutPart in{&got, sizeof(got)};
    ReceiveInfo ia{}, ib{};
    KCHECK_OK(receive(a.value, one(in), kNoDeadline, &ia));
    KCHECK_OK(receive(b.value, one(in), deadline_after(50 * kMs), &ib));
    KCHECK(ib.kind == ReceiveKind::kMessage);
    ReceiveInfo p{};
    KCHECK_OK(receive(b.value, none_mut(), deadline_after(50 * kMs), &p));  // waits: gets it
    KCHECK(p.kind == ReceiveKind::kPulse);
    KCHECK_EQ(static_cast<uint64_t>(p.pulse_value), ib.id);
    ReceiveInfo q{};
    KCHECK_OK(receive(a.value, none_mut(), 0, &q));
    KCHECK_EQ(static_cast<uint64_t>(q.pulse_value), ia.id);
    KCHECK_EQ(q.pulse_count, 1u);
    KCHECK_OK(thread_join(t.value).status);
    KCHECK_OK(disconnect(ca.value));
    KCHECK_OK(disconnect(cb.value));
    KCHECK_OK(channel_destroy(a.value));
    KCHECK_OK(channel_destroy(b.value));
}

// ipc.h: the last receiver is raised by the channel's queue "until another thread does, it
// receives from another channel, ...". deliver_message() clears A->last_receiver when T takes a
// message from B but never recomputes T's priority: T keeps A's queue top while it serves B,
// even after that queued sender has left A's queue.
KTEST(last_receiver_raise_ends_when_it_receives_elsewhere) {
    const uint8_t P = kPriorityDefault;
    KREQUIRE(thread_priority(thread_current()) == P);
    auto a = channel_create();
    auto b = channel_create();
    KREQUIRE(a.is_ok() && b.is_ok());
    auto ca = connect(a.value);
    auto cb = connect(b.value);
    KREQUIRE(ca.is_ok() && cb.is_ok());
    SendJob low{ca.value, 1};
    SendJob onb{cb.value, 2};
    SendJob high{ca.value, 3};
    high.deadline_ns = deadline_after(10 * kMs);
    Thread* tl = start_sender(&low, P + 1);
    Thread* tb = start_sender(&onb, P + 1);
    KREQUIRE(tl && tb);
    uint64_t got = 0;
    MutPart in{&got, sizeof(got)};
    ReceiveInfo i1{};
    KCHECK_OK(receive(a.value, one(in), 0, &i1));  // T: A's last receiver, at P+1
    Thread* th = start_sender(&high, P + 5);        // queues on A: raises T to P+5 (correct)
    KREQUIRE(th);
    KCHECK_EQ(thread_priority(thread_current()), P + 5);
    KCHECK_OK(reply(i1.id, 0, none()));
    KCHECK_EQ(thread_priority(thread_current()), P + 5);  // still A's last receiver
    ReceiveInfo i2{};
    KCHECK_OK(receive(b.value, one(in), 0, &i2));   // T receives from another channel
    KCHECK_EQ(thread_priority(thread_current()), P + 1);  // only B's sender counts now
    KCHECK_OK(sleep_for(20 * kMs));                 // the high sender times out, leaves A
    KCHECK_EQ(channel_stats(a.value).queued, 0u);
    KCHECK_EQ(thread_priority(thread_current()), P + 1);  // still raised to P+5 on the old code
    KCHECK_OK(reply(i2.id, 0, none()));
    KCHECK_EQ(thread_priority(thread_current()), P);
    KCHECK_OK(thread_join(tl).status);
    KCHECK_OK(thread_join(tb).status);
    KCHECK_OK(thread_join(th).status);
    KCHECK_STATUS(high.result.status, Status::kTimedOut);
    KCHECK_OK(disconnect(ca.value));
    KCHECK_OK(disconnect(cb.value));
    KCHECK_OK(channel_destroy(a.value));
    KCHECK_OK(channel_destroy(b.value));
}

// ipc.h: "Deadlines are absolute now_ns() values; kNoDeadline waits forever, 0 only polls."
// A polling send (deadline 0) to a channel with a receiver waiting hands the message to the
// server, then times out at once: the server is woken for a message whose sender is already
// gone (and gets an unblock pulse). The remote path (engine start_send: deadline <= now ->
// kTimedOut) never delivers. A poll should either complete or not deliver at all.
KTEST(polling_send_delivers_nothing) {
    auto ch = channel_create();
    KREQUIRE(ch.is_ok());
    auto conn = connect(ch.value);
    KREQUIRE(conn.is_ok());
    struct Waiter {
        Channel* ch;
        ReceiveInfo info{};
        uint64_t buf = 0;
        Status status = Status::kWouldBlock;
    } w{ch.value};
    auto t = thread_create("waiter", [](void* arg) {
        auto* p = static_cast<Waiter*>(arg);
        MutPart in{&p->buf, sizeof(p->buf)};
        p->status = receive(p->ch, one(in), deadline_after(5 * kMs), &p->info);
    }, &w, kPriorityDefault + 1);
    KREQUIRE(t.is_ok());
    KREQUIRE(wait_receivers(ch.value, 1) || w.status != Status::kWouldBlock);
    uint64_t v = 42, r = 0;
    Part out{&v, sizeof(v)};
    MutPart in{&r, sizeof(r)};
    auto res = send(conn.value, one(out), one(in), 0);
    KCHECK_OK(thread_join(t.value).status);
    if (res.status == Status::kTimedOut) {
        // Timed out: the server must not have been handed the message.
        KCHECK(!(w.status == Status::kOk && w.info.kind == ReceiveKind::kMessage));
    }
    KCHECK_OK(disconnect(conn.value));
    KCHECK_OK(channel_destroy(ch.value));
}

// ipc.h: the server "gets an unblock pulse (code kPulseCodeUnblock, value = the receive id) at
// once". If the sender thread ends and is joined before the server's next receive, thread_fini
// unlinked the pending pulse (it lives in the freed Thread): the server was never told. It now
// moves to the channel's overflow slot.
KTEST(unblock_pulse_survives_its_senders_exit) {
    auto ch = channel_create();
    KREQUIRE(ch.is_ok());
    auto conn = connect(ch.value);
    KREQUIRE(conn.is_ok());
    SendJob job{conn.value, 5};
    job.deadline_ns = deadline_after(5 * kMs);
    Thread* t = start_sender(&job, kPriorityDefault + 1);
    KREQUIRE(t);
    uint64_t got = 0;
    MutPart in{&got, sizeof(got)};
    ReceiveInfo info{};
    KCHECK_OK(receive(ch.value, one(in), kNoDeadline, &info));
    KCHECK_OK(sleep_for(20 * kMs));  // the sender gives up, returns, exits
    KCHECK_EQ(channel_stats(ch.value).pulses_pending, 1u);
    KCHECK_OK(thread_join(t).status);  // e.g. a client pool reaping its finished workers
    KCHECK_EQ(channel_stats(ch.value).pulses_pending, 1u);
    ReceiveInfo p{};
    KCHECK_OK(receive(ch.value, none_mut(), 0, &p));
    KCHECK_EQ(p.pulse_code, kPulseCodeUnblock);
    KCHECK_EQ(static_cast<uint64_t>(p.pulse_value), info.id);
    // The sender's record went with its thread: the id is unknown now (still a clear error).
    const Status late = reply(info.id, 0, none());
    KCHECK(late == Status::kSenderUnblocked || late == Status::kBadReceiveId);
    KCHECK_OK(disconnect(conn.value));
    KCHECK_OK(channel_destroy(ch.value));
}

// The bridge's pattern (protocol/kernel/bridge.cc on_request_cancelled + free_rec + on_request):
// one pooled kRemote record serves request X on channel A, X's client gives up after receive
// (cancel_remote: unblock pulse pending on A), the record is freed and reused for request Y
// from ANOTHER client on channel B, which also gives up after receive. B's server is never told.
namespace {
size_t pooled_copy_out(SenderRecord*, size_t, MutParts) { return 0; }
Result<size_t> pooled_read(SenderRecord*, uint64_t, size_t, MutParts, uint64_t) { return Result<size_t>::ok(0); }
void pooled_complete(SenderRecord*, Status, int32_t, Parts, ReplyHold*) {}
const RemoteSenderOps kPooledOps = {pooled_copy_out, pooled_read, pooled_complete};
}  // namespace

KTEST(pooled_remote_record_unblock_pulses_stay_apart) {
    set_remote_sender_ops(&kPooledOps);
    auto a = channel_create();
    auto b = channel_create();
    KREQUIRE(a.is_ok() && b.is_ok());
    auto* rec = new (heap::allocate(sizeof(SenderRecord))) SenderRecord{};
    KREQUIRE(rec);
    rec->kind = SenderKind::kRemote;
    rec->priority = kPriorityDefault;
    KREQUIRE(record_register(rec) == Status::kOk);
    ReceiveInfo ix{}, iy{}, p{};
    rec->sender = SenderId{1, 0};  // client X on node 1
    KCHECK_OK(enqueue_remote(a.value, rec));
    KCHECK_OK(receive(a.value, none_mut(), 0, &ix));
    cancel_remote(rec);           // X gives up: unblock pulse pending on A
    rec->sender = SenderId{2, 0};  // pool reuse: client Y on node 2
    KCHECK_OK(enqueue_remote(b.value, rec));
    KCHECK_OK(receive(b.value, none_mut(), 0, &iy));
    cancel_remote(rec);           // Y gives up
    KCHECK_EQ(channel_stats(b.value).pulses_pending, 1u);
    KCHECK_OK(receive(b.value, none_mut(), 0, &p));
    KCHECK_EQ(static_cast<uint64_t>(p.pulse_value), iy.id);
    KCHECK_OK(receive(a.value, none_mut(), 0, &p));
    KCHECK_EQ(static_cast<uint64_t>(p.pulse_value), ix.id);
    KCHECK_EQ(p.sender.node, 1u);
    KCHECK_EQ(p.pulse_count, 1u);
    KCHECK_OK(channel_destroy(a.value));
    KCHECK_OK(channel_destroy(b.value));
    record_unregister(rec);
    heap::release(rec);
    set_remote_sender_ops(nullptr);
}
