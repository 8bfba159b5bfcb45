// Channel destroy and server exit: every affected sender is unblocked with an error.
#include "helpers.h"

using namespace kt;

namespace {
struct Receiver {
    Channel* ch;
    Status status = Status::kWouldBlock;
};
void receive_once(void* arg) {
    auto* r = static_cast<Receiver*>(arg);
    uint64_t buf;
    MutPart in{&buf, sizeof(buf)};
    ReceiveInfo info{};
    r->status = receive(r->ch, one(in), kNoDeadline, &info);
}
}  // namespace

KTEST(ipc_channel_destroy_unblocks_queued_and_received_senders) {
    auto ch = channel_create();
    KREQUIRE(ch.is_ok());
    auto conn = connect(ch.value);
    KREQUIRE(conn.is_ok());
    SendJob held{conn.value, 1};
    Thread* th = start_sender(&held, kPriorityDefault + 1);
    KREQUIRE(th);
    uint64_t got = 0;
    MutPart in{&got, sizeof(got)};
    ReceiveInfo info{};
    KCHECK_OK(receive(ch.value, one(in), 0, &info));  // `held` is now received, not replied
    SendJob queued[3] = {{conn.value, 2}, {conn.value, 3}, {conn.value, 4}};
    Thread* tq[3];
    for (int i = 0; i < 3; ++i) tq[i] = start_sender(&queued[i], kPriorityDefault + 2);
    KREQUIRE(tq[0] && tq[1] && tq[2]);
    KCHECK(wait_queued(ch.value, 3));  // each queued sender raises us (the server): we must sleep
    KCHECK_OK(channel_destroy(ch.value));
    KCHECK_EQ(thread_priority(thread_current()), kPriorityDefault);  // nothing held any more
    for (int i = 0; i < 3; ++i) {
        KCHECK_OK(thread_join(tq[i]).status);
        KCHECK_STATUS(queued[i].result.status, Status::kChannelDestroyed);
    }
    KCHECK_OK(thread_join(th).status);
    KCHECK_STATUS(held.result.status, Status::kChannelDestroyed);
    uint64_t answer = 0;
    Part out{&answer, sizeof(answer)};
    KCHECK_STATUS(reply(info.id, 0, one(out)), Status::kBadReceiveId);
    // The connection outlives the channel and reports it.
    uint64_t v = 0;
    Part o{&v, sizeof(v)};
    KCHECK_STATUS(send(conn.value, one(o), none_mut(), kNoDeadline).status, Status::kChannelDestroyed);
    KCHECK_STATUS(pulse(conn.value, 1, 1), Status::kChannelDestroyed);
    KCHECK_OK(disconnect(conn.value));
}

KTEST(ipc_channel_destroy_wakes_blocked_receivers) {
    auto ch = channel_create();
    KREQUIRE(ch.is_ok());
    Receiver r1{ch.value}, r2{ch.value};
    auto t1 = thread_create("r1", receive_once, &r1, kPriorityDefault + 1);
    auto t2 = thread_create("r2", receive_once, &r2, kPriorityDefault + 1);
    KREQUIRE(t1.is_ok() && t2.is_ok());
    KCHECK_EQ(channel_stats(ch.value).receivers_waiting, 2u);
    KCHECK_OK(channel_destroy(ch.value));
    KCHECK_OK(thread_join(t1.value).status);
    KCHECK_OK(thread_join(t2.value).status);
    KCHECK_STATUS(r1.status, Status::kChannelDestroyed);
    KCHECK_STATUS(r2.status, Status::kChannelDestroyed);
}

namespace {
struct ExitingServer {
    Channel* ch;
    int count;
};
void receive_and_exit(void* arg) {
    auto* s = static_cast<ExitingServer*>(arg);
    for (int i = 0; i < s->count; ++i) {
        uint64_t buf;
        MutPart in{&buf, sizeof(buf)};
        ReceiveInfo info{};
        if (receive(s->ch, one(in), kNoDeadline, &info) != Status::kOk) thread_exit(1);
    }
    thread_exit(0);  // holding `count` un-replied messages
}
}  // namespace

KTEST(ipc_server_exit_unblocks_its_senders) {
    auto ch = channel_create();
    KREQUIRE(ch.is_ok());
    auto conn = connect(ch.value);
    KREQUIRE(conn.is_ok());
    SendJob jobs[2] = {{conn.value, 1}, {conn.value, 2}};
    Thread* s1 = start_sender(&jobs[0], kPriorityDefault + 1);
    Thread* s2 = start_sender(&jobs[1], kPriorityDefault + 1);
    KREQUIRE(s1 && s2);
    ExitingServer es{ch.value, 2};
    auto server = thread_create("server", receive_and_exit, &es, kPriorityDefault - 1);
    KREQUIRE(server.is_ok());
    auto code = thread_join(server.value);
    KCHECK_OK(code.status);
    KCHECK_EQ(code.value, 0);
    KCHECK_OK(thread_join(s1).status);
    KCHECK_OK(thread_join(s2).status);
    KCHECK_STATUS(jobs[0].result.status, Status::kServerExited);
    KCHECK_STATUS(jobs[1].result.status, Status::kServerExited);
    KCHECK_OK(disconnect(conn.value));
    KCHECK_OK(channel_destroy(ch.value));
}
