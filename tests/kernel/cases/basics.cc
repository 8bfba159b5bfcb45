// Threads, sleep, the heap and the command line.
#include "command_line.h"
#include "heap.h"
#include "test/ktest.h"
#include "thread.h"

using namespace kernel;

namespace {


}  // namespace

KTEST(thread_create_join_returns_exit_code) {
    auto t = thread_create("child", [](void*) { thread_exit(42); }, nullptr, kPriorityDefault);
    KREQUIRE(t.is_ok());
    auto r = thread_join(t.value);
    KCHECK_OK(r.status);
    KCHECK_EQ(r.value, 42);
}

KTEST(planted_failure_runs_only_when_asked) {
    KCHECK(true);
}

KTEST_PLANTED(planted_failure) {
    KCHECK_EQ(1 + 1, 3);  // deliberately false: shows a failing case fails the run
}
