#include "ktest.h"

#include "../command_line.h"
#include "../heap.h"
#include "../panic.h"
#include "../thread.h"

// Bounds of the "ktest_cases" section, provided by the linker (weak: a program without cases).
extern "C" {
extern const ktest::Case __start_ktest_cases[] __attribute__((weak));
extern const ktest::Case __stop_ktest_cases[] __attribute__((weak));
}

namespace ktest {
namespace {

uint64_t g_failures = 0;

void case_thread(void* arg) { static_cast<const Case*>(arg)->fn(); }

const char* base_name(const char* path) {
    const char* base = path;
    for (const char* p = path; *p; ++p) if (*p == '/') base = p + 1;
    return base;
}

// Runs one case in its own thread; true when it passed (checks and no leaks).
bool run_one(const Case& c) {
    g_failures = 0;
    size_t threads_before = kernel::thread_count();
    kernel::heap::Stats heap_before = kernel::heap::stats();
    auto created = kernel::thread_create(c.name, case_thread, const_cast<Case*>(&c),
                                         kernel::kPriorityDefault);
    if (!created.is_ok()) {
        fail(c.file, 0, "could not create the case's thread");
    } else {
        (void)kernel::thread_join(created.value);
    }
    size_t threads_after = kernel::thread_count();
    kernel::heap::Stats heap_after = kernel::heap::stats();
    if (threads_after != threads_before)
        fail_eq(c.file, 0, "threads left behind (after == before)", static_cast<int64_t>(threads_after),
                static_cast<int64_t>(threads_before));
    if (heap_after.blocks_in_use != heap_before.blocks_in_use)
        fail_eq(c.file, 0, "heap blocks leaked (after == before)",
                static_cast<int64_t>(heap_after.blocks_in_use), static_cast<int64_t>(heap_before.blocks_in_use));
    return g_failures == 0;
}

}  // namespace

void fail(const char* file, int line, const char* text) {
    ++g_failures;
    kernel::print("  FAIL %s:%d: %s\n", base_name(file), line, text);
}

void fail_eq(const char* file, int line, const char* text, int64_t a, int64_t b) {
    ++g_failures;
    kernel::print("  FAIL %s:%d: %s (%ld vs %ld)\n", base_name(file), line, text,
                  static_cast<long>(a), static_cast<long>(b));
}

void fail_status(const char* file, int line, const char* text, kernel::Status s) {
    ++g_failures;
    kernel::print("  FAIL %s:%d: %s (got %s)\n", base_name(file), line, text, kernel::status_name(s));
}

uint64_t failures() { return g_failures; }

const Case* cases_begin() { return __start_ktest_cases; }
const Case* cases_end() { return __stop_ktest_cases; }

size_t run_all(const char* only, bool plant) {
#ifdef KTEST_PLANT_FAILURE
    plant = true;
#endif
    size_t passed = 0;
    size_t failed = 0;
    size_t matched = 0;
    for (const Case* c = cases_begin(); c && c != cases_end(); ++c) {
        if (only && !kernel::string_equal(only, c->name)) continue;
        if (c->planted && !plant) continue;
        ++matched;
        bool ok = run_one(*c);
        kernel::print("[%s] %s\n", ok ? " OK " : "FAIL", c->name);
        if (ok) ++passed; else ++failed;
    }
    if (only && matched == 0) {
        kernel::print("no test case named '%s'\n", only);
        ++failed;
    }
    kernel::print("%zu passed, %zu failed\n", passed, failed);
    return failed;
}

}  // namespace ktest
