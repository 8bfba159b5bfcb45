// Every error path of the IPC calls.
#include "helpers.h"

using namespace kt;

KTEST(ipc_errors_invalid_arguments_and_ids) {
    auto ch = channel_create();
    KREQUIRE(ch.is_ok());
    auto conn = connect(ch.value);
    KREQUIRE(conn.is_ok());
    uint64_t v = 0;
    Part out{&v, sizeof(v)};
    MutPart in{&v, sizeof(v)};
    Part many[kPartsMax + 1];
    for (auto& p : many) p = out;
    ReceiveInfo info{};
    KCHECK_STATUS(send(nullptr, one(out), one(in), 0).status, Status::kInvalidArgument);
    KCHECK_STATUS(send(conn.value, Parts{many, kPartsMax + 1}, one(in), 0).status, Status::kInvalidArgument);
    KCHECK_STATUS(send(conn.value, Parts{nullptr, 1}, one(in), 0).status, Status::kInvalidArgument);
    Part huge{&v, kMessageBytesMax + 1};
    KCHECK_STATUS(send(conn.value, one(huge), one(in), 0).status, Status::kMessageTooLarge);
    KCHECK_STATUS(receive(nullptr, one(in), 0, &info), Status::kInvalidArgument);
    KCHECK_STATUS(receive(ch.value, one(in), 0, nullptr), Status::kInvalidArgument);
    KCHECK_STATUS(reply(0, 0, none()), Status::kBadReceiveId);
    KCHECK_STATUS(reply(0xffffffffffffffffull, 0, none()), Status::kBadReceiveId);
    KCHECK_STATUS(reply(12345ull << 16, 0, none()), Status::kBadReceiveId);
    KCHECK_STATUS(error(77, Status::kMessageError), Status::kBadReceiveId);
    KCHECK_STATUS(read(77, 0, one(in), 0).status, Status::kBadReceiveId);
    KCHECK_STATUS(reply(77, 0, Parts{many, kPartsMax + 1}), Status::kInvalidArgument);
    KCHECK_STATUS(channel_destroy(nullptr), Status::kInvalidArgument);
    KCHECK_STATUS(connect(nullptr).status, Status::kInvalidArgument);
    KCHECK_STATUS(disconnect(nullptr), Status::kInvalidArgument);
    // error() needs a real error, and delivers it to the sender.
    SendJob job{conn.value, 1};
    Thread* t = start_sender(&job, kPriorityDefault + 1);
    KREQUIRE(t);
    KCHECK_OK(receive(ch.value, one(in), 0, &info));
    KCHECK_STATUS(error(info.id, Status::kOk), Status::kInvalidArgument);
    KCHECK_OK(error(info.id, Status::kNoSuchService));
    KCHECK_STATUS(error(info.id, Status::kNoSuchService), Status::kBadReceiveId);
    KCHECK_OK(thread_join(t).status);
    KCHECK_STATUS(job.result.status, Status::kNoSuchService);
    KCHECK_OK(disconnect(conn.value));
    KCHECK_OK(channel_destroy(ch.value));
}

KTEST(ipc_remote_connection_without_bridge_is_not_supported) {
    int handle = 0;
    auto conn = connect_remote(&handle);
    KREQUIRE(conn.is_ok());
    uint64_t v = 0;
    Part out{&v, sizeof(v)};
    KCHECK_STATUS(send(conn.value, one(out), none_mut(), kNoDeadline).status, Status::kNotSupported);
    KCHECK_STATUS(pulse(conn.value, 1, 2), Status::kNotSupported);
    KCHECK_OK(disconnect(conn.value));
}

KTEST(errors_out_of_memory_is_reported_and_recoverable) {
    // Fill the heap, then every creating call must fail cleanly with kNoMemory.
    constexpr int kBlocksMax = 4096;
    void** blocks = static_cast<void**>(heap::allocate(kBlocksMax * sizeof(void*)));
    KREQUIRE(blocks);
    int n = 0;
    for (size_t size = size_t{1} << 24; size >= 64 && n < kBlocksMax; ) {
        void* b = heap::allocate(size);
        if (b) blocks[n++] = b; else size /= 2;
    }
    uint64_t failures = heap::stats().failure_count;
    KCHECK_STATUS(channel_create().status, Status::kNoMemory);
    KCHECK_STATUS(thread_create("x", [](void*) {}, nullptr, kPriorityDefault).status, Status::kNoMemory);
    KCHECK(heap::stats().failure_count > failures);
    for (int i = 0; i < n; ++i) heap::release(blocks[i]);
    heap::release(blocks);
    auto ch = channel_create();
    KCHECK_OK(ch.status);
    if (ch.is_ok()) KCHECK_OK(channel_destroy(ch.value));
}

KTEST(errors_thread_calls) {
    KCHECK_STATUS(thread_create("x", nullptr, nullptr, kPriorityDefault).status, Status::kInvalidArgument);
    KCHECK_STATUS(thread_create("x", [](void*) {}, nullptr, 0).status, Status::kInvalidArgument);
    KCHECK_STATUS(thread_create("x", [](void*) {}, nullptr, kPriorityCount).status, Status::kInvalidArgument);
    KCHECK_STATUS(thread_create("x", [](void*) {}, nullptr, kPriorityDefault, 100).status, Status::kInvalidArgument);
    KCHECK_STATUS(thread_join(nullptr).status, Status::kInvalidArgument);
    KCHECK_STATUS(thread_join(thread_current()).status, Status::kInvalidArgument);
    KCHECK_STATUS(thread_set_priority(thread_current(), 0), Status::kInvalidArgument);
}
