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

KTEST(errors_thread_limit_is_reported) {
    // Create minimal threads until the table is full: the next create says kLimitReached.
    Thread** threads = static_cast<Thread**>(heap::allocate(kThreadsMax * sizeof(Thread*)));
    KREQUIRE(threads);
    size_t n = 0;
    Status last = Status::kOk;
    while (n < kThreadsMax) {
        auto t = thread_create("filler", [](void*) {}, nullptr, kPriorityMin, kStackBytesMin);
        if (!t.is_ok()) {
            last = t.status;
            break;
        }
        threads[n++] = t.value;
    }
    KCHECK_STATUS(last, Status::kLimitReached);
    KCHECK_EQ(thread_count(), kThreadsMax);
    for (size_t i = 0; i < n; ++i) (void)thread_join(threads[i]);
    heap::release(threads);
    auto again = thread_create("after", [](void*) {}, nullptr, kPriorityDefault);
    KCHECK_OK(again.status);
    if (again.is_ok()) KCHECK_OK(thread_join(again.value).status);
}

namespace {
struct FakeBridge {
    int sends = 0;
    int pulses = 0;
    int closes = 0;
    uint8_t priority = 0;
    int32_t last_code = 0;
};

Result<size_t> bridge_send(void* handle, Parts message, MutParts reply, uint64_t, uint8_t priority,
                           int32_t* reply_code) {
    auto* b = static_cast<FakeBridge*>(handle);
    ++b->sends;
    b->priority = priority;
    if (parts_size(message) == 0) return Result<size_t>::error(Status::kHostDown);
    copy_parts(reply, message, 0);  // echo
    if (reply_code) *reply_code = 5;
    return Result<size_t>::ok(parts_size(message));
}
Status bridge_pulse(void* handle, int32_t code, int64_t, uint8_t) {
    auto* b = static_cast<FakeBridge*>(handle);
    ++b->pulses;
    b->last_code = code;
    return Status::kOk;
}
void bridge_close(void* handle) { ++static_cast<FakeBridge*>(handle)->closes; }
const RemoteConnectionOps kBridgeOps = {bridge_send, bridge_pulse, bridge_close};
}  // namespace

KTEST(ipc_remote_connection_calls_the_bridge) {
    FakeBridge bridge;
    set_remote_connection_ops(&kBridgeOps);
    auto conn = connect_remote(&bridge);
    KREQUIRE(conn.is_ok());
    uint64_t v = 42, r = 0;
    Part out{&v, sizeof(v)};
    MutPart in{&r, sizeof(r)};
    int32_t code = 0;
    auto res = send(conn.value, one(out), one(in), kNoDeadline, &code);
    KCHECK_OK(res.status);
    KCHECK_EQ(res.value, 8u);
    KCHECK_EQ(r, 42u);
    KCHECK_EQ(code, 5);
    KCHECK_EQ(bridge.priority, kPriorityDefault);
    KCHECK_STATUS(send(conn.value, none(), one(in), kNoDeadline).status, Status::kHostDown);
    KCHECK_OK(pulse(conn.value, 9, 1));
    KCHECK_EQ(bridge.last_code, 9);
    KCHECK_OK(disconnect(conn.value));
    KCHECK_EQ(bridge.sends, 2);
    KCHECK_EQ(bridge.closes, 1);
    set_remote_connection_ops(nullptr);
}
