// 1,000 senders blocked on one channel: the queue grows without one allocation (records are
// embedded in the threads), and comes out in priority order, FIFO within a priority.
#include "helpers.h"

using namespace kt;

namespace {
constexpr int kSenders = 1000;
constexpr uint8_t kPriorities = 15;  // 1..15, all below the test's own priority

struct Thousand {
    SendJob jobs[kSenders];
    Thread* threads[kSenders];
};
}  // namespace

KTEST(ipc_thousand_blocked_senders_without_allocation) {
    auto ch = channel_create();
    KREQUIRE(ch.is_ok());
    auto conn = connect(ch.value);
    KREQUIRE(conn.is_ok());
    auto* t = static_cast<Thousand*>(heap::allocate(sizeof(Thousand)));
    KREQUIRE(t);
    int created = 0;
    uint64_t allocations = 0;
    int allocation_errors = 0;
    for (int i = 0; i < kSenders; ++i) {
        new (&t->jobs[i]) SendJob{conn.value, static_cast<uint64_t>(i)};
        t->threads[i] = start_sender(&t->jobs[i], static_cast<uint8_t>(1 + i % kPriorities),
                                     kStackBytesSmall);
        if (!t->threads[i]) break;
        ++created;
        // Each sender runs (and blocks in send) while we sleep, before the next is made: so the
        // order of their sends is the order of creation. (Started all at once, senders of one
        // priority could be rotated by a time slice between their start and their send, and
        // send out of creation order: FIFO is the order of the sends.)
        allocations = heap::stats().allocation_count;
        if (!wait_queued(ch.value, static_cast<size_t>(created))) break;
        if (heap::stats().allocation_count != allocations) ++allocation_errors;
    }
    KCHECK_EQ(created, kSenders);
    KCHECK_EQ(allocation_errors, 0);  // a blocked sender costs no allocation
    KCHECK_EQ(channel_stats(ch.value).queued, static_cast<size_t>(created));
    KCHECK_EQ(channel_stats(ch.value).queued_high_water, static_cast<size_t>(created));
    int last_priority = 255;
    uint64_t last_value = 0;
    int order_errors = 0;
    int value_errors = 0;
    for (int i = 0; i < created; ++i) {
        uint64_t got = 0;
        MutPart in{&got, sizeof(got)};
        ReceiveInfo info{};
        if (receive(ch.value, one(in), 0, &info) != Status::kOk) {
            ++order_errors;
            break;
        }
        if (info.priority > last_priority) ++order_errors;
        if (info.priority == last_priority && got <= last_value) ++order_errors;
        if (info.priority != 1 + got % kPriorities) ++value_errors;
        last_priority = info.priority;
        last_value = got;
        uint64_t answer = got * 3;
        Part out{&answer, sizeof(answer)};
        if (reply(info.id, 0, one(out)) != Status::kOk) ++value_errors;
    }
    KCHECK_EQ(order_errors, 0);
    KCHECK_EQ(value_errors, 0);
    KCHECK_EQ(heap::stats().allocation_count, allocations);  // nor on receive and reply
    int result_errors = 0;
    for (int i = 0; i < created; ++i) {
        if (!thread_join(t->threads[i]).is_ok()) ++result_errors;
        if (!t->jobs[i].result.is_ok() || t->jobs[i].reply != static_cast<uint64_t>(i) * 3) ++result_errors;
    }
    KCHECK_EQ(result_errors, 0);
    heap::release(t);
    KCHECK_OK(disconnect(conn.value));
    KCHECK_OK(channel_destroy(ch.value));
}
