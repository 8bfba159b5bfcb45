// Queue order by priority (FIFO within one) and priority inheritance.
#include "helpers.h"

using namespace kt;

KTEST(ipc_queue_is_priority_ordered_fifo_within_priority) {
    auto ch = channel_create();
    KREQUIRE(ch.is_ok());
    auto conn = connect(ch.value);
    KREQUIRE(conn.is_ok());
    constexpr int kN = 6;
    const uint8_t prio[kN] = {5, 10, 10, 20, 5, 10};
    SendJob jobs[kN];
    Thread* threads[kN];
    for (int i = 0; i < kN; ++i) {
        jobs[i] = SendJob{conn.value, static_cast<uint64_t>(i)};
        threads[i] = start_sender(&jobs[i], prio[i]);
        KREQUIRE(threads[i]);
    }
    KCHECK(wait_queued(ch.value, kN));  // lower-priority senders run while we sleep
    // Expected: 20 (3), then 10 in send order (1, 2, 5), then 5 (0, 4).
    const uint64_t expected[kN] = {3, 1, 2, 5, 0, 4};
    for (int i = 0; i < kN; ++i) {
        uint64_t got = 99;
        MutPart in{&got, sizeof(got)};
        ReceiveInfo info{};
        KCHECK_OK(receive(ch.value, one(in), 0, &info));
        KCHECK_EQ(got, expected[i]);
        KCHECK_EQ(info.priority, prio[expected[i]]);
        KCHECK_OK(reply(info.id, 0, none()));
    }
    for (int i = 0; i < kN; ++i) {
        KCHECK_OK(thread_join(threads[i]).status);
        KCHECK_OK(jobs[i].result.status);
    }
    KCHECK_OK(disconnect(conn.value));
    KCHECK_OK(channel_destroy(ch.value));
}

namespace {
struct PiState {
    Channel* ch = nullptr;
    Event go_medium;
    bool medium_ran = false;
    bool medium_ran_before_reply = true;
    uint8_t priority_while_serving = 0;
    uint8_t priority_after_reply = 0;
};

void pi_server(void* arg) {  // base priority 5
    auto* s = static_cast<PiState*>(arg);
    uint64_t buf;
    MutPart in{&buf, sizeof(buf)};
    ReceiveInfo info{};
    if (receive(s->ch, one(in), kNoDeadline, &info) != Status::kOk) return;
    s->priority_while_serving = thread_priority(thread_current());
    s->go_medium.signal();                // the medium thread is ready from here on...
    busy_until(deadline_after(3 * kMs));  // ...but must not run while we serve the high sender
    s->medium_ran_before_reply = s->medium_ran;
    (void)reply(info.id, 0, none());
    s->priority_after_reply = thread_priority(thread_current());
}

void pi_medium(void* arg) {  // priority 10
    auto* s = static_cast<PiState*>(arg);
    if (s->go_medium.wait(kNoDeadline) == Status::kOk) s->medium_ran = true;
}
}  // namespace

KTEST(ipc_priority_inheritance_server_runs_at_sender_priority) {
    auto ch = channel_create();
    KREQUIRE(ch.is_ok());
    auto conn = connect(ch.value);
    KREQUIRE(conn.is_ok());
    PiState* s = new (heap::allocate(sizeof(PiState))) PiState;
    KREQUIRE(s);
    s->ch = ch.value;
    KREQUIRE(s);
    auto medium = thread_create("medium", pi_medium, s, 10);
    auto server = thread_create("server", pi_server, s, 5);
    KREQUIRE(medium.is_ok() && server.is_ok());
    KCHECK(wait_receivers(ch.value, 1));
    SendJob high{conn.value, 1};
    Thread* h = start_sender(&high, 20);  // preempts us, hands the message to the server
    KREQUIRE(h);
    KCHECK_OK(thread_join(h).status);
    KCHECK_OK(high.result.status);
    KCHECK_OK(thread_join(server.value).status);
    KCHECK_OK(thread_join(medium.value).status);
    KCHECK_EQ(s->priority_while_serving, 20);
    KCHECK(!s->medium_ran_before_reply);
    KCHECK_EQ(s->priority_after_reply, 5);
    KCHECK(s->medium_ran);
    s->~PiState();
    heap::release(s);
    KCHECK_OK(disconnect(conn.value));
    KCHECK_OK(channel_destroy(ch.value));
}
