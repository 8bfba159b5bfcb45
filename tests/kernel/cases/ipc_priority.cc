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

namespace {
// A low-priority server busy with one request; a high sender queues behind it; a medium CPU
// thread would starve the server unless the queued high sender raises it.
struct QueuedPi {
    Channel* ch = nullptr;
    Connection* conn = nullptr;
    bool holding = false;
    bool medium_done = false;
    bool medium_done_at_high_reply = true;
    Status high_status = Status::kWouldBlock;
    Status server_status = Status::kWouldBlock;
};

void qpi_server(void* arg) {  // base 5: holds the first request while busy, then serves the next
    auto* s = static_cast<QueuedPi*>(arg);
    uint64_t v = 0;
    MutPart in{&v, sizeof(v)};
    ReceiveInfo info{};
    for (int i = 0; i < 2; ++i) {
        if ((s->server_status = receive(s->ch, one(in), kNoDeadline, &info)) != Status::kOk) return;
        if (i == 0) {
            s->holding = true;
            // Busy until the high sender is queued (the main thread sees it); bounded.
            for (int k = 0; k < kPollsMax && channel_stats(s->ch).queued == 0; ++k)
                busy_until(deadline_after(100'000));
            busy_until(deadline_after(2 * kMs));
        }
        if ((s->server_status = reply(info.id, 0, none())) != Status::kOk) return;
    }
}

void qpi_medium(void* arg) {  // priority 10: pure CPU work
    auto* s = static_cast<QueuedPi*>(arg);
    busy_until(deadline_after(50 * kMs));
    s->medium_done = true;
}

void qpi_high(void* arg) {  // priority 20
    auto* s = static_cast<QueuedPi*>(arg);
    uint64_t v = 2;
    Part out{&v, sizeof(v)};
    s->high_status = send(s->conn, one(out), none_mut(), kNoDeadline).status;
    s->medium_done_at_high_reply = s->medium_done;
}
}  // namespace

KTEST(ipc_queued_sender_raises_the_busy_server) {
    auto ch = channel_create();
    KREQUIRE(ch.is_ok());
    auto conn = connect(ch.value);
    KREQUIRE(conn.is_ok());
    QueuedPi* s = new (heap::allocate(sizeof(QueuedPi))) QueuedPi;
    KREQUIRE(s);
    s->ch = ch.value;
    s->conn = conn.value;
    auto server = thread_create("server", qpi_server, s, 5);
    KREQUIRE(server.is_ok());
    KCHECK(wait_receivers(ch.value, 1));
    SendJob low{conn.value, 1};
    Thread* l = start_sender(&low, 5);
    KREQUIRE(l);
    KCHECK(wait_until([&] { return s->holding; }));
    KCHECK_EQ(thread_priority(server.value), 5);
    // The high sender preempts us and queues; raised to 20, the server then outranks us too.
    auto high = thread_create("high", qpi_high, s, 20);
    KREQUIRE(high.is_ok());
    auto medium = thread_create("medium", qpi_medium, s, 10);
    KREQUIRE(medium.is_ok());
    KCHECK_OK(thread_join(high.value).status);
    KCHECK_OK(s->high_status);
    KCHECK(!s->medium_done_at_high_reply);  // the server was not starved by the medium thread
    KCHECK_OK(thread_join(server.value).status);
    KCHECK_OK(s->server_status);
    KCHECK_OK(thread_join(l).status);
    KCHECK_OK(low.result.status);
    KCHECK_OK(thread_join(medium.value).status);
    KCHECK(s->medium_done);
    s->~QueuedPi();
    heap::release(s);
    KCHECK_OK(disconnect(conn.value));
    KCHECK_OK(channel_destroy(ch.value));
}

namespace {
struct HoldOne {
    Channel* ch = nullptr;
    Event release;
    bool holding = false;
    Status status = Status::kWouldBlock;
};

void hold_one_server(void* arg) {  // receives one message, holds it until released
    auto* h = static_cast<HoldOne*>(arg);
    uint64_t v = 0;
    MutPart in{&v, sizeof(v)};
    ReceiveInfo info{};
    if ((h->status = receive(h->ch, one(in), kNoDeadline, &info)) != Status::kOk) return;
    h->holding = true;
    (void)h->release.wait(kNoDeadline);
    h->status = reply(info.id, 0, none());
}
}  // namespace

KTEST(ipc_queued_sender_raise_ends_when_it_leaves_the_queue) {
    auto ch = channel_create();
    KREQUIRE(ch.is_ok());
    auto conn = connect(ch.value);
    KREQUIRE(conn.is_ok());
    HoldOne* h = new (heap::allocate(sizeof(HoldOne))) HoldOne;
    KREQUIRE(h);
    h->ch = ch.value;
    auto server = thread_create("server", hold_one_server, h, 4);
    KREQUIRE(server.is_ok());
    KCHECK(wait_receivers(ch.value, 1));
    SendJob first{conn.value, 1};
    Thread* f = start_sender(&first, 6);
    KREQUIRE(f);
    KCHECK(wait_until([&] { return h->holding; }));
    KCHECK_EQ(thread_priority(server.value), 6);
    SendJob quick{conn.value, 2};
    quick.deadline_ns = deadline_after(20 * kMs);
    Thread* q = start_sender(&quick, 22);
    KREQUIRE(q);
    KCHECK_EQ(thread_priority(server.value), 22);  // while queued
    KCHECK_OK(thread_set_priority(q, 12));          // follows the queued sender's changes
    KCHECK_EQ(thread_priority(server.value), 12);
    KCHECK_OK(thread_join(q).status);               // its deadline takes it off the queue
    KCHECK(quick.result.status == Status::kTimedOut);
    KCHECK_EQ(channel_stats(ch.value).queued, 0u);
    KCHECK_EQ(thread_priority(server.value), 6);    // back to the held message's priority
    h->release.signal();
    KCHECK_OK(thread_join(server.value).status);
    KCHECK_OK(h->status);
    KCHECK_OK(thread_join(f).status);
    KCHECK_OK(first.result.status);
    h->~HoldOne();
    heap::release(h);
    KCHECK_OK(disconnect(conn.value));
    KCHECK_OK(channel_destroy(ch.value));
}

KTEST(ipc_queued_sender_raise_is_transitive) {
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
    KCHECK_EQ(thread_priority(s2.value), 6);
    SendJob late{conn1.value, 8};
    late.deadline_ns = deadline_after(20 * kMs);
    Thread* lt = start_sender(&late, 24);  // queues on ch1, whose server s1 waits on s2
    KREQUIRE(lt);
    KCHECK_EQ(thread_priority(s1.value), 24);
    KCHECK_EQ(thread_priority(s2.value), 24);
    KCHECK_OK(thread_join(lt).status);
    KCHECK(late.result.status == Status::kTimedOut);
    KCHECK_EQ(thread_priority(s1.value), 6);
    KCHECK_EQ(thread_priority(s2.value), 6);
    c->release.signal();
    KCHECK_OK(thread_join(client).status);
    KCHECK_OK(thread_join(s1.value).status);
    KCHECK_OK(thread_join(s2.value).status);
    KCHECK_OK(job.result.status);
    KCHECK_EQ(job.reply, 1007u);
    KCHECK_OK(disconnect(conn1.value));
    KCHECK_OK(disconnect(conn2.value));
    KCHECK_OK(channel_destroy(ch1.value));
    KCHECK_OK(channel_destroy(ch2.value));
    c->~Chain();
    heap::release(c);
}
