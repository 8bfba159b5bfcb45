// Pulses: non-blocking, coalescing per connection, delivered before messages.
#include "helpers.h"

using namespace kt;

KTEST(ipc_pulses_coalesce_per_connection) {
    auto ch = channel_create();
    KREQUIRE(ch.is_ok());
    auto c1 = connect(ch.value);
    auto c2 = connect(ch.value);
    KREQUIRE(c1.is_ok() && c2.is_ok());
    uint64_t allocs = heap::stats().allocation_count;
    KCHECK_OK(pulse(c1.value, 1, 10));
    KCHECK_OK(pulse(c1.value, 2, 20));
    KCHECK_OK(pulse(c1.value, 3, 30));
    KCHECK_OK(pulse(c2.value, 7, 70));
    KCHECK_EQ(heap::stats().allocation_count, allocs);  // pulses never allocate
    KCHECK_EQ(channel_stats(ch.value).pulses_pending, 2u);
    ReceiveInfo info{};
    KCHECK_OK(receive(ch.value, none_mut(), 0, &info));
    KCHECK(info.kind == ReceiveKind::kPulse);
    KCHECK_EQ(info.id, 0u);
    KCHECK_EQ(info.pulse_code, 3);      // the latest of the coalesced ones
    KCHECK_EQ(info.pulse_value, 30);
    KCHECK_EQ(info.pulse_count, 3u);
    KCHECK_OK(receive(ch.value, none_mut(), 0, &info));
    KCHECK_EQ(info.pulse_code, 7);
    KCHECK_EQ(info.pulse_count, 1u);
    KCHECK_STATUS(receive(ch.value, none_mut(), 0, &info), Status::kTimedOut);
    // After delivery the connection's slot is free again.
    KCHECK_OK(pulse(c1.value, 4, 40));
    KCHECK_OK(receive(ch.value, none_mut(), 0, &info));
    KCHECK_EQ(info.pulse_count, 1u);
    KCHECK_EQ(info.pulse_value, 40);
    KCHECK_STATUS(pulse(c1.value, -5, 0), Status::kInvalidArgument);  // negative codes are the kernel's
    KCHECK_STATUS(pulse(nullptr, 1, 0), Status::kInvalidArgument);
    KCHECK_OK(pulse(c2.value, 1, 1));
    KCHECK_OK(disconnect(c2.value));  // a pending pulse leaves with its connection
    KCHECK_EQ(channel_stats(ch.value).pulses_pending, 0u);
    KCHECK_OK(disconnect(c1.value));
    KCHECK_OK(channel_destroy(ch.value));
}

KTEST(ipc_pulse_wakes_waiting_receiver_and_precedes_messages) {
    auto ch = channel_create();
    KREQUIRE(ch.is_ok());
    auto conn = connect(ch.value);
    KREQUIRE(conn.is_ok());
    struct Waiter {
        Channel* ch;
        ReceiveInfo info{};
        Status status = Status::kWouldBlock;
    } w{ch.value};
    auto t = thread_create("waiter", [](void* arg) {
        auto* p = static_cast<Waiter*>(arg);
        p->status = receive(p->ch, none_mut(), kNoDeadline, &p->info);
    }, &w, kPriorityDefault + 1);
    KREQUIRE(t.is_ok());
    KCHECK_OK(pulse(conn.value, 5, -1234567890123ll));  // never blocks, wakes the receiver
    KCHECK_OK(thread_join(t.value).status);
    KCHECK_OK(w.status);
    KCHECK(w.info.kind == ReceiveKind::kPulse);
    KCHECK_EQ(w.info.pulse_value, -1234567890123ll);
    // A queued message and then a pulse: the pulse is received first.
    SendJob job{conn.value, 3};
    Thread* s = start_sender(&job, kPriorityDefault + 1);
    KREQUIRE(s);
    KCHECK_OK(pulse(conn.value, 6, 0));
    uint64_t got = 0;
    MutPart in{&got, sizeof(got)};
    ReceiveInfo info{};
    KCHECK_OK(receive(ch.value, one(in), 0, &info));
    KCHECK(info.kind == ReceiveKind::kPulse);
    KCHECK_OK(receive(ch.value, one(in), 0, &info));
    KCHECK(info.kind == ReceiveKind::kMessage);
    KCHECK_OK(error(info.id, Status::kMessageError));
    KCHECK_OK(thread_join(s).status);
    KCHECK_STATUS(job.result.status, Status::kMessageError);
    KCHECK_OK(disconnect(conn.value));
    KCHECK_OK(channel_destroy(ch.value));
}
