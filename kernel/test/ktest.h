// Kernel test cases written once, run twice: by GoogleTest on the hosted port (one fresh kernel
// per case) and by the in-kernel runner (`test=1` on the command line) under QEMU.
//
//   KTEST(ipc_send_receive_reply) { ... KCHECK(cond); KCHECK_EQ(a, b); KCHECK_OK(status); }
//
// A case runs in its own thread at kPriorityDefault; the runner then checks that it joined
// every thread it created and freed every heap block (a leak fails the case). Checks do not stop
// the case (like EXPECT_*); KREQUIRE returns from the case function on failure.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "../status.h"

namespace ktest {

struct Case {
    const char* name;
    void (*fn)();
    const char* file;
    bool planted;  // the deliberately failing case: runs only when asked for (plant=1)
};

// Records a failed check (prints "FAIL file:line: text").
void fail(const char* file, int line, const char* text);
void fail_eq(const char* file, int line, const char* text, int64_t a, int64_t b);
void fail_status(const char* file, int line, const char* text, kernel::Status s);
uint64_t failures();  // in the current case so far

// The cases linked in (a linker section, so no static constructors are needed).
const Case* cases_begin();
const Case* cases_end();

// Runs the cases (all, or only `only` when non-null; the planted one only if plant) and prints
// one line per case and "N passed, N failed". Returns the number failed.
size_t run_all(const char* only, bool plant);

}  // namespace ktest

#define KTEST_CONCAT2(a, b) a##b
#define KTEST_CONCAT(a, b) KTEST_CONCAT2(a, b)

#define KTEST_DEFINE(name, planted)                                                      \
    static void ktest_fn_##name();                                                       \
    __attribute__((used, section("ktest_cases"), aligned(8)))                            \
    static const ::ktest::Case ktest_case_##name = {#name, ktest_fn_##name, __FILE__, planted}; \
    static void ktest_fn_##name()

#define KTEST(name) KTEST_DEFINE(name, false)
#define KTEST_PLANTED(name) KTEST_DEFINE(name, true)

#define KCHECK(cond) \
    do { if (!(cond)) ::ktest::fail(__FILE__, __LINE__, #cond); } while (0)
#define KREQUIRE(cond) \
    do { if (!(cond)) { ::ktest::fail(__FILE__, __LINE__, #cond); return; } } while (0)
#define KCHECK_EQ(a, b)                                                                   \
    do {                                                                                  \
        auto ktest_a = (a);                                                               \
        auto ktest_b = (b);                                                               \
        if (!(ktest_a == ktest_b))                                                        \
            ::ktest::fail_eq(__FILE__, __LINE__, #a " == " #b, static_cast<int64_t>(ktest_a), \
                             static_cast<int64_t>(ktest_b));                              \
    } while (0)
// Status comparisons print the names.
#define KCHECK_STATUS(s, expected)                                                        \
    do {                                                                                  \
        ::kernel::Status ktest_s = (s);                                                   \
        if (ktest_s != (expected)) ::ktest::fail_status(__FILE__, __LINE__, #s " == " #expected, ktest_s); \
    } while (0)
#define KCHECK_OK(s) KCHECK_STATUS(s, ::kernel::Status::kOk)
