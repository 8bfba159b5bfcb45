// An auto-reset event: signal() wakes one waiter, or, with none, leaves the event signalled for
// the next wait(). signal() may be called from interrupt context (a NIC driver waking the
// network thread); it may switch to the woken thread before returning, as the timer does.
#pragma once

#include "list.h"
#include "status.h"

namespace kernel {

class Event {
public:
    Event() { waiters_.init(); }
    Event(const Event&) = delete;
    Event& operator=(const Event&) = delete;

    void signal();
    // As signal(), and the waiter it wakes runs at once, before the caller continues, even when
    // it ranks lower (sched::handoff: the caller gets the CPU back when that thread blocks, at
    // the next reschedule, or within a time slice). Not from interrupt context.
    void signal_and_run();
    // kOk when signalled, kTimedOut when the deadline passed first (0: poll).
    Status wait(uint64_t deadline_ns);
    size_t waiter_count() const;

private:
    List waiters_;      // Threads, through run_link
    bool signalled_ = false;
};

}  // namespace kernel
