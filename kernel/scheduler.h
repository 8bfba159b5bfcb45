// Scheduler internals shared by thread.cc, ipc.cc and event.cc (not a public interface).
// Every function here is called with interrupts disabled (IrqGuard), which on one CPU makes it
// atomic against interrupts and other threads.
#pragma once

#include "arch/arch.h"
#include "ipc_internal.h"
#include "list.h"
#include "thread.h"

namespace kernel {

enum class ThreadState : uint8_t { kReady, kRunning, kBlocked, kExited };
static_assert(static_cast<int>(ThreadState::kExited) == static_cast<int>(ThreadRunState::kExited));

struct Thread {
    arch::Context context;
    ListNode run_link;        // a ready queue, or the queue the thread is blocked on
    ListNode timer_link;      // the deadline list, while blocked with a deadline
    ListNode all_link;        // every live thread
    List held;                // SenderRecords received and not yet replied (inheritance, exit)
    uint64_t wake_deadline_ns;
    uint32_t id;
    uint8_t base_priority;
    uint8_t priority;         // effective
    ThreadState state;
    bool has_joiner;
    Status wait_result;
    // Called (interrupts disabled) when the deadline passes while blocked, before the thread is
    // made ready with kTimedOut: unlinks it from whatever it waited on.
    void (*wait_cancel)(Thread*);
    void* wait_object;
    ThreadEntry entry;
    void* arg;
    size_t stack_bytes;
    int exit_code;
    Thread* joiner;
    char name[kThreadNameBytes];
    SenderRecord sender;      // the thread's one send record (a thread sends one message at a time)
    ReceiveWait receive;      // where a blocked receive wants its message
    Channel* served;          // the channel this thread last received a message from, while it
                              // is that channel's last receiver (queued senders raise it)
};

class IrqGuard {
public:
    IrqGuard() : state_(arch::irq_save()) {}
    ~IrqGuard() { arch::irq_restore(state_); }
    IrqGuard(const IrqGuard&) = delete;
    IrqGuard& operator=(const IrqGuard&) = delete;

private:
    uint64_t state_;
};

namespace sched {

void init();
Thread* current();
// Puts a blocked (or new) thread on its ready queue; does not switch.
void make_ready(Thread* thread);
// Blocks the current thread until wake() or the deadline. cancel runs if the deadline passes
// first. Returns the wake status (kTimedOut on deadline).
Status block(uint64_t deadline_ns, void (*cancel)(Thread*), void* wait_object);
// Ends a block: leaves the deadline list, records status, makes the thread ready. No switch.
void wake(Thread* thread, Status status);
// Switches to the best ready thread if it outranks the current one.
void reschedule();
// Runs `thread`, just made ready, at once even if it ranks below the current thread (a direct
// hand-off, as L4's IPC fast path does): the current thread stays first in line at its priority
// and gets the CPU back when `thread` blocks, at the next reschedule (any wake-up, any signal,
// the timer), and within kHandoffBoundNs at the latest. The net thread hands a remote request to
// the server receiving it, and a remote reply to its sender, this way: the other side's work
// then runs inside the pass that received the packet, not in a pass of its own.
void handoff(Thread* thread);
// Changes effective priority, moving the thread between ready queues if needed. No switch.
void set_effective_priority(Thread* thread, uint8_t priority);
// The highest ready priority, or -1.
int best_ready_priority();
// Iterates over every live thread (for channel destroy).
template <typename F>
void for_each_thread(F&& f);
List& all_threads();
// Creates the idle thread and adopts the boot context's continuation as the main thread.
[[noreturn]] void run_main(ThreadEntry main_entry, void* arg);

}  // namespace sched

template <typename F>
void sched::for_each_thread(F&& f) {
    List& all = all_threads();
    for (ListNode* n = all.front(); n; n = all.next(n)) f(KERNEL_CONTAINER_OF(n, Thread, all_link));
}

}  // namespace kernel
