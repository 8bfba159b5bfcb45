// GoogleTest driver for the kernel's KTEST cases: one gtest test per case, each booting a fresh
// hosted kernel with `test=1 case=NAME` (so the in-kernel runner, its leak checks and its exit
// status are exercised exactly as under QEMU), plus tests of the runner and of kernel::start.
#include <gtest/gtest.h>

#include <string>

#include "hosted.h"
#include "panic.h"
#include "test/ktest.h"

namespace {

class CaseTest : public testing::Test {
public:
    explicit CaseTest(const char* name) : name_(name) {}
    void TestBody() override {
        std::string cmdline = std::string("test=1 case=") + name_;
        hosted::RunResult r = hosted::run(cmdline.c_str());
        EXPECT_EQ(r.status, kernel::kExitSuccess) << r.console;
        EXPECT_NE(r.console.find("1 passed, 0 failed"), std::string::npos) << r.console;
    }

private:
    const char* name_;
};

TEST(KernelRunner, PlantedFailureIsReportedWithFailureStatus) {
    hosted::RunResult r = hosted::run("test=1 case=planted_failure plant=1");
    EXPECT_EQ(r.status, kernel::kExitTestsFailed) << r.console;
    EXPECT_NE(r.console.find("0 passed, 1 failed"), std::string::npos) << r.console;
}

TEST(KernelRunner, PlantedCaseIsSkippedUnlessAsked) {
    hosted::RunResult r = hosted::run("test=1 case=planted_failure");
    EXPECT_EQ(r.status, kernel::kExitTestsFailed) << r.console;  // no case matched
    EXPECT_NE(r.console.find("no test case named 'planted_failure'"), std::string::npos) << r.console;
}

TEST(KernelRunner, AllCasesInOneBootPass) {
    hosted::RunResult r = hosted::run("test=1");
    EXPECT_EQ(r.status, kernel::kExitSuccess) << r.console;
    EXPECT_NE(r.console.find(" passed, 0 failed"), std::string::npos) << r.console;
}

TEST(KernelStart, BadCommandLineGetsOneLineAndStatus) {
    hosted::RunResult r = hosted::run("test=1 oops");
    EXPECT_EQ(r.status, kernel::kExitBadCommandLine);
    EXPECT_EQ(r.console, "kernel: bad command-line argument 'oops' (expected key=value, each key once)\n");
    r = hosted::run("test=1 test=0");
    EXPECT_EQ(r.status, kernel::kExitBadCommandLine);
    r = hosted::run("bench=nope");
    EXPECT_EQ(r.status, kernel::kExitBadCommandLine);
    EXPECT_NE(r.console.find("unknown benchmark 'nope'"), std::string::npos) << r.console;
}

TEST(KernelStart, IpcBenchRunsAndCountsNoErrors) {
    hosted::RunResult r = hosted::run("bench=ipc rounds=1000");
    EXPECT_EQ(r.status, kernel::kExitSuccess) << r.console;
    EXPECT_NE(r.console.find("bench ipc: rounds=1000 "), std::string::npos) << r.console;
    EXPECT_NE(r.console.find(" errors=0 "), std::string::npos) << r.console;
}

TEST(KernelStart, TooSmallHeapPanicsInsteadOfCrashing) {
    hosted::RunResult r = hosted::run("test=1", 4096);
    EXPECT_EQ(r.status, kernel::kExitPanic) << r.console;
    EXPECT_NE(r.console.find("kernel panic: cannot create the idle thread"), std::string::npos)
        << r.console;
}

}  // namespace

int main(int argc, char** argv) {
    testing::InitGoogleTest(&argc, argv);
    for (const ktest::Case* c = ktest::cases_begin(); c && c != ktest::cases_end(); ++c) {
        if (c->planted) continue;
        testing::RegisterTest("KernelCase", c->name, nullptr, nullptr, c->file, 0,
                              [c]() -> testing::Test* { return new CaseTest(c->name); });
    }
    return RUN_ALL_TESTS();
}
