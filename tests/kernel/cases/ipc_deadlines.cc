// Deadlines on both sides, and the timeout race (a sender that gives up after being received).
#include "helpers.h"

using namespace kt;

KTEST(ipc_receive_deadline_times_out) {
    auto ch = channel_create();
    KREQUIRE(ch.is_ok());
    uint64_t buf = 0;
    MutPart in{&buf, sizeof(buf)};
    ReceiveInfo info{};
    KCHECK_STATUS(receive(ch.value, one(in), 0, &info), Status::kTimedOut);  // poll
    uint64_t start = now_ns();
    uint64_t deadline = start + 3 * kMs;
    KCHECK_STATUS(receive(ch.value, one(in), deadline, &info), Status::kTimedOut);
    KCHECK(now_ns() >= deadline);
    KCHECK_EQ(channel_stats(ch.value).receivers_waiting, 0u);
    KCHECK_OK(channel_destroy(ch.value));
}

KTEST(ipc_send_deadline_while_queued) {
    auto ch = channel_create();
    KREQUIRE(ch.is_ok());
    auto conn = connect(ch.value);
    KREQUIRE(conn.is_ok());
    uint64_t v = 1, r = 0;
    Part out{&v, sizeof(v)};
    MutPart in{&r, sizeof(r)};
    KCHECK_STATUS(send(conn.value, one(out), one(in), 0).status, Status::kTimedOut);  // poll
    uint64_t deadline = deadline_after(2 * kMs);
    KCHECK_STATUS(send(conn.value, one(out), one(in), deadline).status, Status::kTimedOut);
    KCHECK(now_ns() >= deadline);
    ChannelStats st = channel_stats(ch.value);
    KCHECK_EQ(st.queued, 0u);         // the record left the queue
    KCHECK_EQ(st.pulses_pending, 0u);  // never received: no unblock pulse
    KCHECK_EQ(st.queued_high_water, 1u);
    KCHECK_OK(disconnect(conn.value));
    KCHECK_OK(channel_destroy(ch.value));
}

KTEST(ipc_send_deadline_after_receive_unblocks_server) {
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
    KCHECK_EQ(thread_priority(thread_current()), kPriorityDefault + 1);  // inherited
    // Work past the sender's deadline: the sender gives up meanwhile.
    ReceiveInfo pulse{};
    KCHECK_OK(receive(ch.value, none_mut(), deadline_after(50 * kMs), &pulse));
    KCHECK(pulse.kind == ReceiveKind::kPulse);
    KCHECK_EQ(pulse.pulse_code, kPulseCodeUnblock);
    KCHECK_EQ(static_cast<uint64_t>(pulse.pulse_value), info.id);
    KCHECK_EQ(pulse.pulse_count, 1u);
    KCHECK_EQ(thread_priority(thread_current()), kPriorityDefault);  // inheritance ended
    uint64_t answer = 9;
    Part out{&answer, sizeof(answer)};
    MutPart more{&got, sizeof(got)};
    KCHECK_STATUS(read(info.id, 0, one(more), kNoDeadline).status, Status::kSenderUnblocked);
    KCHECK_STATUS(reply(info.id, 0, one(out)), Status::kSenderUnblocked);
    KCHECK_STATUS(error(info.id, Status::kMessageError), Status::kSenderUnblocked);
    KCHECK_EQ(job.reply, 0u);  // the abandoned sender's buffer was never written
    // (Checked before the join: once a thread is freed, ids of its messages read as unknown.)
    KCHECK_OK(thread_join(t).status);
    KCHECK_STATUS(job.result.status, Status::kTimedOut);
    KCHECK_OK(disconnect(conn.value));
    KCHECK_OK(channel_destroy(ch.value));
}

KTEST(ipc_abandoned_id_is_not_confused_with_next_message) {
    auto ch = channel_create();
    KREQUIRE(ch.is_ok());
    auto conn = connect(ch.value);
    KREQUIRE(conn.is_ok());
    // One thread sends twice: the first message times out after receive, the second is served.
    struct Twice {
        Connection* conn;
        Status first = Status::kWouldBlock;
        Status second = Status::kWouldBlock;
        uint64_t reply = 0;
    } job{conn.value};
    auto t = thread_create("twice", [](void* arg) {
        auto* j = static_cast<Twice*>(arg);
        uint64_t v = 1;
        Part out{&v, sizeof(v)};
        MutPart in{&j->reply, sizeof(j->reply)};
        j->first = send(j->conn, one(out), one(in), deadline_after(2 * kMs)).status;
        v = 2;
        j->second = send(j->conn, one(out), one(in), kNoDeadline).status;
    }, &job, kPriorityDefault + 1);
    KREQUIRE(t.is_ok());
    uint64_t got = 0;
    MutPart in{&got, sizeof(got)};
    ReceiveInfo first{};
    KCHECK_OK(receive(ch.value, one(in), kNoDeadline, &first));
    KCHECK_EQ(got, 1u);
    sleep_for(5 * kMs);  // the first send times out; the thread sends its second message
    ReceiveInfo a{}, b{};
    KCHECK_OK(receive(ch.value, one(in), kNoDeadline, &a));  // the unblock pulse comes first
    KCHECK(a.kind == ReceiveKind::kPulse);
    KCHECK_OK(receive(ch.value, one(in), kNoDeadline, &b));
    KCHECK(b.kind == ReceiveKind::kMessage);
    KCHECK_EQ(got, 2u);
    KCHECK(b.id != first.id);
    uint64_t answer = 100;
    Part out{&answer, sizeof(answer)};
    KCHECK_STATUS(reply(first.id, 0, one(out)), Status::kSenderUnblocked);  // not the 2nd message
    KCHECK_OK(reply(b.id, 0, one(out)));
    KCHECK_OK(thread_join(t.value).status);
    KCHECK_STATUS(job.first, Status::kTimedOut);
    KCHECK_OK(job.second);
    KCHECK_EQ(job.reply, 100u);
    KCHECK_OK(disconnect(conn.value));
    KCHECK_OK(channel_destroy(ch.value));
}

KTEST(ipc_stats_count_sends_replies_and_timeouts) {
    IpcStats before = ipc_stats();
    auto ch = channel_create();
    KREQUIRE(ch.is_ok());
    auto conn = connect(ch.value);
    KREQUIRE(conn.is_ok());
    uint64_t v = 0;
    Part out{&v, sizeof(v)};
    KCHECK_STATUS(send(conn.value, one(out), none_mut(), deadline_after(kMs)).status, Status::kTimedOut);
    KCHECK_OK(pulse(conn.value, 1, 1));
    IpcStats after = ipc_stats();
    KCHECK_EQ(after.sends, before.sends + 1);
    KCHECK_EQ(after.send_timeouts, before.send_timeouts + 1);
    KCHECK_EQ(after.unblock_pulses, before.unblock_pulses);
    KCHECK_EQ(after.pulses, before.pulses + 1);
    KCHECK_EQ(after.replies, before.replies);
    KCHECK_OK(disconnect(conn.value));
    KCHECK_OK(channel_destroy(ch.value));
}
