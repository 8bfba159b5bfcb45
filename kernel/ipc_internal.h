// IPC internals the scheduler needs (not a public interface).
#pragma once

#include "ipc.h"

namespace kernel {

// Where a thread blocked in receive() wants its message.
struct ReceiveWait {
    MutParts parts;
    ReceiveInfo* info;
    Channel* channel;
};

namespace ipc {
void init();
Status thread_init(Thread* thread);      // registers the thread's embedded record
void thread_fini(Thread* thread);        // before the thread's memory is freed
void thread_exiting(Thread* thread);     // fails messages it holds (kServerExited)
uint8_t inherited_priority(const Thread* thread);
// A blocked thread's effective priority changed: updates its send record (queue position, or
// the priority of the server holding it).
void priority_changed(Thread* thread);
}  // namespace ipc

}  // namespace kernel
