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
        sched::reschedule();
    } else {
        signalled_ = true;
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
