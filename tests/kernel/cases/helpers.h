// Small helpers shared by the kernel test cases (header-only, freestanding).
#pragma once

#include <new>

#include "event.h"
#include "heap.h"
#include "ipc.h"
#include "test/ktest.h"
#include "thread.h"

namespace kt {

using namespace kernel;

inline Parts one(const Part& p) { return Parts{&p, 1}; }
inline MutParts one(const MutPart& p) { return MutParts{&p, 1}; }
inline Parts none() { return Parts{nullptr, 0}; }
inline MutParts none_mut() { return MutParts{nullptr, 0}; }

constexpr uint64_t kMs = 1'000'000;
constexpr int kPollsMax = 20000;  // bounded waiting: a broken kernel fails instead of hanging

// Sleeps in 100 us steps until pred() holds (true) or the poll limit passes (false).
template <typename F>
bool wait_until(F&& pred) {
    for (int i = 0; i < kPollsMax; ++i) {
        if (pred()) return true;
        sleep_for(100'000);
    }
    return pred();
}

inline bool wait_queued(Channel* ch, size_t n) {
    return wait_until([&] { return channel_stats(ch).queued >= n; });
}
inline bool wait_receivers(Channel* ch, size_t n) {
    return wait_until([&] { return channel_stats(ch).receivers_waiting >= n; });
}

// A sender thread's job: send `value` on conn, keep the outcome.
struct SendJob {
    Connection* conn;
    uint64_t value;
    uint64_t deadline_ns = kNoDeadline;
    uint64_t reply = 0;
    Result<size_t> result = Result<size_t>::error(Status::kWouldBlock);
    int32_t reply_code = -7;
};

inline void send_job_thread(void* arg) {
    auto* job = static_cast<SendJob*>(arg);
    Part out{&job->value, sizeof(job->value)};
    MutPart in{&job->reply, sizeof(job->reply)};
    job->result = send(job->conn, one(out), one(in), job->deadline_ns, &job->reply_code);
}

inline Thread* start_sender(SendJob* job, uint8_t priority, size_t stack = kStackBytesDefault) {
    auto t = thread_create("sender", send_job_thread, job, priority, stack);
    return t.is_ok() ? t.value : nullptr;
}

}  // namespace kt
