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

KTEST(ipc_queued_sender_moves_when_its_priority_changes) {
    auto ch = channel_create();
    KREQUIRE(ch.is_ok());
    auto conn = connect(ch.value);
    KREQUIRE(conn.is_ok());
    SendJob a{conn.value, 1}, b{conn.value, 2};
    Thread* ta = start_sender(&a, 5);
    Thread* tb = start_sender(&b, 5);
    KREQUIRE(ta && tb);
    KCHECK(wait_queued(ch.value, 2));
    KCHECK_OK(thread_set_priority(tb, 10));  // b overtakes a
    uint64_t got = 0;
    MutPart in{&got, sizeof(got)};
    ReceiveInfo info{};
    KCHECK_OK(receive(ch.value, one(in), 0, &info));
    KCHECK_EQ(got, 2u);
    KCHECK_EQ(info.priority, 10);
    KCHECK_OK(reply(info.id, 0, none()));
    KCHECK_OK(receive(ch.value, one(in), 0, &info));
    KCHECK_EQ(got, 1u);
    KCHECK_OK(reply(info.id, 0, none()));
    KCHECK_OK(thread_join(ta).status);
    KCHECK_OK(thread_join(tb).status);
    KCHECK_OK(disconnect(conn.value));
    KCHECK_OK(channel_destroy(ch.value));
}

namespace {
struct Chain {
    Channel* ch1 = nullptr;
    Channel* ch2 = nullptr;
    Connection* conn2 = nullptr;
    Event release;
    bool s2_holding = false;
    Status s1_status = Status::kWouldBlock;
    Status s2_status = Status::kWouldBlock;
};

void chain_s1(void* arg) {  // receives on ch1, forwards to ch2, replies with the answer
    auto* c = static_cast<Chain*>(arg);
    uint64_t v = 0;
    MutPart in{&v, sizeof(v)};
    ReceiveInfo info{};
    if ((c->s1_status = receive(c->ch1, one(in), kNoDeadline, &info)) != Status::kOk) return;
    Part fwd{&v, sizeof(v)};
    uint64_t answer = 0;
    MutPart ans{&answer, sizeof(answer)};
    auto r = send(c->conn2, one(fwd), one(ans), kNoDeadline);
    Part out{&answer, sizeof(answer)};
    c->s1_status = r.is_ok() ? reply(info.id, 0, one(out)) : r.status;
}

void chain_s2(void* arg) {  // receives on ch2, holds the message until released
    auto* c = static_cast<Chain*>(arg);
    uint64_t v = 0;
    MutPart in{&v, sizeof(v)};
    ReceiveInfo info{};
    if ((c->s2_status = receive(c->ch2, one(in), kNoDeadline, &info)) != Status::kOk) return;
    c->s2_holding = true;
    (void)c->release.wait(kNoDeadline);
    uint64_t answer = v + 1000;
    Part out{&answer, sizeof(answer)};
    c->s2_status = reply(info.id, 0, one(out));
}
}  // namespace

KTEST(ipc_priority_inheritance_is_transitive_and_follows_changes) {
    Chain* c = new (heap::allocate(sizeof(Chain))) Chain;
    KREQUIRE(c);
    auto ch1 = channel_create();
    auto ch2 = channel_create();
    KREQUIRE(ch1.is_ok() && ch2.is_ok());
    c->ch1 = ch1.value;
    c->ch2 = ch2.value;
    auto conn1 = connect(c->ch1);
    auto conn2 = connect(c->ch2);
    KREQUIRE(conn1.is_ok() && conn2.is_ok());
    c->conn2 = conn2.value;
    auto s2 = thread_create("s2", chain_s2, c, 3);
    auto s1 = thread_create("s1", chain_s1, c, 2);
    KREQUIRE(s1.is_ok() && s2.is_ok());
    SendJob job{conn1.value, 7};
    Thread* client = start_sender(&job, 6);
    KREQUIRE(client);
    KCHECK(wait_until([&] { return c->s2_holding; }));
    KCHECK_EQ(thread_priority(s1.value), 6);  // holds the client's message
    KCHECK_EQ(thread_priority(s2.value), 6);  // holds s1's, which carries 6
    KCHECK_OK(thread_set_priority(client, 25));
    KCHECK_EQ(thread_priority(s1.value), 25);
    KCHECK_EQ(thread_priority(s2.value), 25);
    KCHECK_OK(thread_set_priority(client, 6));
    KCHECK_EQ(thread_priority(s1.value), 6);
    KCHECK_EQ(thread_priority(s2.value), 6);
    c->release.signal();
    KCHECK_OK(thread_join(client).status);
    KCHECK_OK(thread_join(s1.value).status);
    KCHECK_OK(thread_join(s2.value).status);
    KCHECK_OK(job.result.status);
    KCHECK_EQ(job.reply, 1007u);
    KCHECK_OK(c->s1_status);
    KCHECK_OK(c->s2_status);
    KCHECK_OK(disconnect(conn1.value));
    KCHECK_OK(disconnect(conn2.value));
    KCHECK_OK(channel_destroy(ch1.value));
    KCHECK_OK(channel_destroy(ch2.value));
    c->~Chain();
    heap::release(c);
}
