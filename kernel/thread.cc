// The scheduler: one ready queue per priority with a bitmap, a sorted deadline list, and a time
// slice armed only while another thread of the running thread's priority is ready (so the IPC
// ping-pong path, with nothing else ready, never touches the timer).
#include <new>

#include "heap.h"
#include "ipc_internal.h"
#include "panic.h"
#include "scheduler.h"

namespace kernel {
namespace {

struct SchedulerState {
    List ready[kPriorityCount];
    uint32_t ready_mask;           // bit p set <=> ready[p] is not empty
    List timers;                   // blocked threads with a deadline, earliest first
    List all;
    size_t thread_count;
    Thread* current;
    Thread* idle;
    uint32_t next_id;
    uint64_t slice_end_ns;         // kNoDeadline: no slice armed
    uint64_t programmed_ns;        // the deadline last given to arch::set_timer_deadline
    SchedulerStats stats;
    arch::Context boot_context;    // where start() ran; never resumed
};

SchedulerState g;

int highest_bit(uint32_t mask) { return mask ? 31 - __builtin_clz(mask) : -1; }

void enqueue_ready(Thread* t, bool front) {
    t->state = ThreadState::kReady;
    if (front) g.ready[t->priority].push_front(&t->run_link);
    else g.ready[t->priority].push_back(&t->run_link);
    g.ready_mask |= 1u << t->priority;
}

void dequeue_ready(Thread* t) {
    List::remove(&t->run_link);
    if (g.ready[t->priority].empty()) g.ready_mask &= ~(1u << t->priority);
}

void program_timer() {
    uint64_t next = g.slice_end_ns;
    if (ListNode* n = g.timers.front()) {
        uint64_t d = KERNEL_CONTAINER_OF(n, Thread, timer_link)->wake_deadline_ns;
        if (d < next) next = d;
    }
    if (next != g.programmed_ns) {
        g.programmed_ns = next;
        arch::set_timer_deadline(next);
    }
}

// Arms the time slice when the running thread has a peer of its priority ready. Disarming is
// lazy: a slice that expires with no peer is simply dropped, and a thread switched in keeps the
// slice already running (it lasts at most kTimeSliceNs either way). So threads that hand the CPU
// to each other by blocking (the IPC ping-pong) do not reprogram the timer on every switch.
void update_slice() {
    if (g.slice_end_ns != kNoDeadline || !g.current || g.current == g.idle) return;
    if (g.ready[g.current->priority].empty()) return;
    g.slice_end_ns = deadline_after(kTimeSliceNs);
    program_timer();
}

// Leaves the current thread (already re-queued, blocked or exited) for the best ready one.
void switch_away() {
    int p = highest_bit(g.ready_mask);
    if (p < 0) panic("scheduler: nothing ready (the idle thread must always be)");
    Thread* next = KERNEL_CONTAINER_OF(g.ready[p].front(), Thread, run_link);
    dequeue_ready(next);
    Thread* prev = g.current;
    next->state = ThreadState::kRunning;
    if (next == prev) return;
    g.current = next;
    update_slice();
    ++g.stats.context_switches;
    arch::context_switch(&prev->context, &next->context);
}

void trampoline(void* arg) {
    Thread* t = static_cast<Thread*>(arg);
    t->entry(t->arg);
    thread_exit(0);
}

void idle_loop(void*) {
    for (;;) {
        uint64_t irq = arch::irq_save();
        if (g.ready_mask & ~1u) {
            // Something woke up: let it run (idle re-queues itself at the back of priority 0).
            enqueue_ready(g.current, false);
            switch_away();
        } else {
            arch::idle_wait();
        }
        arch::irq_restore(irq);
    }
}

void copy_name(char* out, const char* name) {
    size_t i = 0;
    for (; name && name[i] && i + 1 < kThreadNameBytes; ++i) out[i] = name[i];
    out[i] = '\0';
}

Thread* new_thread(const char* name, ThreadEntry entry, void* arg, uint8_t priority,
                   size_t stack_bytes, Status* status) {
    if (g.thread_count >= kThreadsMax) {
        *status = Status::kLimitReached;
        return nullptr;
    }
    stack_bytes = (stack_bytes + 15) & ~size_t{15};
    size_t header = (sizeof(Thread) + 63) & ~size_t{63};
    void* block = heap::allocate(header + stack_bytes);
    if (!block) {
        *status = Status::kNoMemory;
        return nullptr;
    }
    Thread* t = new (block) Thread{};
    t->id = g.next_id++;
    t->base_priority = t->priority = priority;
    t->held.init();
    t->entry = entry;
    t->arg = arg;
    t->stack_bytes = stack_bytes;
    t->wake_deadline_ns = kNoDeadline;
    copy_name(t->name, name);
    if (Status s = ipc::thread_init(t); s != Status::kOk) {
        t->~Thread();
        heap::release(block);
        *status = s;
        return nullptr;
    }
    arch::context_init(&t->context, static_cast<char*>(block) + header, stack_bytes, trampoline, t);
    g.all.push_back(&t->all_link);
    ++g.thread_count;
    *status = Status::kOk;
    return t;
}

void free_thread(Thread* t) {
    List::remove(&t->all_link);
    --g.thread_count;
    ipc::thread_fini(t);
    t->~Thread();
    heap::release(t);
}

}  // namespace

// ---- Internal interface --------------------------------------------------------------------

namespace sched {

void init() {
    new (&g) SchedulerState{};
    for (List& l : g.ready) l.init();
    g.timers.init();
    g.all.init();
    g.next_id = 1;
    g.slice_end_ns = kNoDeadline;
    g.programmed_ns = kNoDeadline;
}

Thread* current() { return g.current; }
List& all_threads() { return g.all; }
int best_ready_priority() { return highest_bit(g.ready_mask); }

void make_ready(Thread* t) {
    enqueue_ready(t, false);
    if (g.current && t->priority == g.current->priority) update_slice();
}

Status block(uint64_t deadline_ns, void (*cancel)(Thread*), void* wait_object) {
    Thread* t = g.current;
    t->state = ThreadState::kBlocked;
    t->wait_cancel = cancel;
    t->wait_object = wait_object;
    t->wait_result = Status::kOk;
    t->wake_deadline_ns = deadline_ns;
    if (deadline_ns != kNoDeadline) {
        // Sorted insert, scanning from the back: FIFO among equal deadlines.
        ListNode* pos = g.timers.back();
        while (pos && KERNEL_CONTAINER_OF(pos, Thread, timer_link)->wake_deadline_ns > deadline_ns)
            pos = g.timers.prev(pos);
        g.timers.insert_after(pos, &t->timer_link);
        program_timer();
    }
    switch_away();
    return t->wait_result;
}

void wake(Thread* t, Status status) {
    if (t->timer_link.linked()) {
        bool was_first = g.timers.front() == &t->timer_link;
        List::remove(&t->timer_link);
        if (was_first) program_timer();
    }
    t->wait_cancel = nullptr;
    t->wait_object = nullptr;
    t->wait_result = status;
    make_ready(t);
}

void reschedule() {
    Thread* cur = g.current;
    if (highest_bit(g.ready_mask) > static_cast<int>(cur->priority)) {
        enqueue_ready(cur, true);  // preempted, not expired: it keeps the head of its queue
        switch_away();
    }
}

void handoff(Thread* t) {
    Thread* cur = g.current;
    if (t == cur || t->state != ThreadState::kReady) return;
    if (t->priority > cur->priority) {  // no hand-off needed: it outranks us and runs now
        reschedule();
        return;
    }
    // The bound: any timer interrupt ends the hand-off (on_timer and on_timer_early reschedule).
    // The one-shot is usually armed for sooner anyway: the net thread's protocol timers, armed
    // for a deadline since replaced, still fire (x86_64 arms lazily). Only when nothing will
    // fire within kHandoffBoundNs is a slice armed. (A slice armed at every hand-off was never
    // disarmed by the blocking thread, fired every 10 ms of back-to-back remote calls, and the
    // interrupts cost round trips: protocol/kernel/README.md, Benchmark notes.)
    if (g.slice_end_ns == kNoDeadline && !arch::timer_fires_by(arch::now_ns() + kHandoffBoundNs)) {
        g.slice_end_ns = deadline_after(kTimeSliceNs);
        program_timer();
    }
    enqueue_ready(cur, true);  // first in line: it runs as soon as t stops
    dequeue_ready(t);
    t->state = ThreadState::kRunning;
    g.current = t;
    ++g.stats.context_switches;
    arch::context_switch(&cur->context, &t->context);
}

void set_effective_priority(Thread* t, uint8_t priority) {
    if (t->priority == priority) return;
    if (t->state == ThreadState::kReady) {
        dequeue_ready(t);
        t->priority = priority;
        enqueue_ready(t, false);
    } else {
        t->priority = priority;
        // A blocked sender's record moves in its queue, or passes the change on to the server
        // holding it (and so on down a chain of servers: transitive inheritance).
        if (t->state == ThreadState::kBlocked) ipc::priority_changed(t);
    }
    if (t == g.current || t->state == ThreadState::kReady) update_slice();
}

void run_main(ThreadEntry main_entry, void* arg) {
    Status s;
    g.idle = new_thread("idle", idle_loop, nullptr, kPriorityIdle, kStackBytesDefault, &s);
    if (!g.idle) panic("cannot create the idle thread (heap too small?)");
    Thread* main = new_thread("main", main_entry, arg, kPriorityDefault, kStackBytesDefault, &s);
    if (!main) panic("cannot create the main thread (heap too small?)");
    enqueue_ready(g.idle, false);
    g.current = main;
    main->state = ThreadState::kRunning;
    arch::context_switch(&g.boot_context, &main->context);
    panic("the boot context was resumed");
}

}  // namespace sched

void on_timer_early() {
    ++g.stats.early_timer_interrupts;
    Thread* cur = g.current;
    if (cur && cur->state == ThreadState::kRunning) sched::reschedule();
}

void on_timer(uint64_t now_ns) {
    ++g.stats.timer_interrupts;
    while (ListNode* n = g.timers.front()) {
        Thread* t = KERNEL_CONTAINER_OF(n, Thread, timer_link);
        if (t->wake_deadline_ns > now_ns) break;
        List::remove(n);
        if (t->wait_cancel) t->wait_cancel(t);
        sched::wake(t, Status::kTimedOut);
    }
    Thread* cur = g.current;
    if (g.slice_end_ns != kNoDeadline && g.slice_end_ns <= now_ns) {
        g.slice_end_ns = kNoDeadline;
        if (cur && cur != g.idle && !g.ready[cur->priority].empty() &&
            cur->state == ThreadState::kRunning) {
            ++g.stats.preemptions;
            enqueue_ready(cur, false);  // round robin: to the back of its priority
            switch_away();
            program_timer();
            return;
        }
    }
    program_timer();
    if (cur && cur->state == ThreadState::kRunning) sched::reschedule();
}

// ---- Public interface ----------------------------------------------------------------------

Result<Thread*> thread_create(const char* name, ThreadEntry entry, void* arg, uint8_t priority,
                              size_t stack_bytes) {
    if (!entry || priority < kPriorityMin || priority > kPriorityMax || stack_bytes < kStackBytesMin)
        return Result<Thread*>::error(Status::kInvalidArgument);
    IrqGuard guard;
    Status s;
    Thread* t = new_thread(name, entry, arg, priority, stack_bytes, &s);
    if (!t) return Result<Thread*>::error(s);
    sched::make_ready(t);
    sched::reschedule();
    return Result<Thread*>::ok(t);
}

void thread_exit(int code) {
    arch::irq_save();
    Thread* t = g.current;
    if (t == g.idle) panic("the idle thread exited");
    ipc::thread_exiting(t);
    t->exit_code = code;
    t->state = ThreadState::kExited;
    if (t->joiner) sched::wake(t->joiner, Status::kOk);
    switch_away();
    panic("an exited thread was resumed");
}

Result<int> thread_join(Thread* t) {
    IrqGuard guard;
    if (!t || t == g.current || t->has_joiner || t == g.idle)
        return Result<int>::error(Status::kInvalidArgument);
    t->has_joiner = true;
    if (t->state != ThreadState::kExited) {
        t->joiner = g.current;
        sched::block(kNoDeadline, nullptr, t);
    }
    int code = t->exit_code;
    free_thread(t);
    return Result<int>::ok(code);
}

Thread* thread_current() { return g.current; }
uint32_t thread_id(const Thread* t) { return t->id; }
const char* thread_name(const Thread* t) { return t->name; }
uint8_t thread_priority(const Thread* t) { return t->priority; }
uint8_t thread_base_priority(const Thread* t) { return t->base_priority; }
size_t thread_count() { return g.thread_count; }

Status thread_set_priority(Thread* t, uint8_t priority) {
    if (!t || priority < kPriorityMin || priority > kPriorityMax) return Status::kInvalidArgument;
    IrqGuard guard;
    t->base_priority = priority;
    sched::set_effective_priority(t, ipc::inherited_priority(t));
    sched::reschedule();
    return Status::kOk;
}

void yield() {
    IrqGuard guard;
    enqueue_ready(g.current, false);
    switch_away();
}

Status sleep_until(uint64_t deadline_ns) {
    IrqGuard guard;
    if (arch::now_ns() >= deadline_ns) return Status::kOk;
    Status s = sched::block(deadline_ns, nullptr, nullptr);
    return s == Status::kTimedOut ? Status::kOk : s;
}

Status sleep_for(uint64_t duration_ns) { return sleep_until(deadline_after(duration_ns)); }

uint64_t now_ns() { return arch::now_ns(); }

uint64_t deadline_after(uint64_t duration_ns) {
    uint64_t now = arch::now_ns();
    return duration_ns >= kNoDeadline - now ? kNoDeadline : now + duration_ns;
}

void busy_until(uint64_t deadline_ns) {
    while (arch::now_ns() < deadline_ns) {
        // The clock read is the work; with interrupts enabled the time slice can expire here.
    }
}

size_t thread_snapshot(ThreadInfo* out, size_t capacity) {
    IrqGuard guard;
    size_t i = 0;
    for (ListNode* n = g.all.front(); n; n = g.all.next(n), ++i) {
        if (i >= capacity) continue;
        Thread* t = KERNEL_CONTAINER_OF(n, Thread, all_link);
        out[i].id = t->id;
        out[i].base_priority = t->base_priority;
        out[i].priority = t->priority;
        out[i].state = static_cast<ThreadRunState>(t->state);
        copy_name(out[i].name, t->name);
    }
    return i;
}

const char* thread_state_name(ThreadRunState state) {
    switch (state) {
    case ThreadRunState::kReady: return "ready";
    case ThreadRunState::kRunning: return "running";
    case ThreadRunState::kBlocked: return "blocked";
    case ThreadRunState::kExited: return "exited";
    }
    return "?";
}

SchedulerStats scheduler_stats() {
    IrqGuard guard;
    return g.stats;
}

}  // namespace kernel
