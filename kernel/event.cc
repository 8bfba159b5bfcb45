#include "event.h"

#include "scheduler.h"

namespace kernel {
namespace {
void wait_cancel(Thread* t) { List::remove(&t->run_link); }
}  // namespace

void Event::signal() {
    IrqGuard guard;
    if (ListNode* n = waiters_.pop_front()) {
        sched::wake(KERNEL_CONTAINER_OF(n, Thread, run_link), Status::kOk);
    } else {
        signalled_ = true;
    }
    // Also with no waiter: a thread that handed the CPU to a lower one (sched::handoff) is ready
    // and may be the one this signal is for; it takes the CPU back now.
    sched::reschedule();
}

void Event::signal_and_run() {
    IrqGuard guard;
    if (ListNode* n = waiters_.pop_front()) {
        Thread* t = KERNEL_CONTAINER_OF(n, Thread, run_link);
        sched::wake(t, Status::kOk);
        sched::handoff(t);
    } else {
        signalled_ = true;
        sched::reschedule();
    }
}

Status Event::wait(uint64_t deadline_ns) {
    IrqGuard guard;
    if (signalled_) {
        signalled_ = false;
        return Status::kOk;
    }
    if (deadline_ns == 0 || deadline_ns <= arch::now_ns()) return Status::kTimedOut;
    waiters_.push_back(&sched::current()->run_link);
    return sched::block(deadline_ns, wait_cancel, this);
}

size_t Event::waiter_count() const {
    IrqGuard guard;
    return waiters_.size();
}

}  // namespace kernel
