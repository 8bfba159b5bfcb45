// kernel::start: heap, command line, scheduler, IPC, then a main thread that does what the
// command line asks: `test=1 [case=NAME] [plant=1]` runs the in-kernel test cases;
// `bench=ipc [rounds=N]` runs the IPC round-trip loop; otherwise kernel::node_main.
#include <new>

#include "arch/arch.h"
#include "command_line.h"
#include "heap.h"
#include "ipc.h"
#include "ipc_internal.h"
#include "panic.h"
#include "scheduler.h"
#include "start.h"
#include "test/ktest.h"

namespace kernel {
namespace {

CommandLine g_command_line;

struct BenchServer {
    Channel* channel;
    uint64_t rounds;
};

void bench_server(void* arg) {
    auto* b = static_cast<BenchServer*>(arg);
    uint64_t in = 0;
    MutPart in_part{&in, sizeof(in)};
    for (uint64_t i = 0; i < b->rounds; ++i) {
        ReceiveInfo info;
        if (receive(b->channel, MutParts{&in_part, 1}, kNoDeadline, &info) != Status::kOk) return;
        uint64_t out = in + 1;
        Part out_part{&out, sizeof(out)};
        (void)reply(info.id, 0, Parts{&out_part, 1});
    }
}

// 8-byte send + receive + reply round trips between two threads of one priority.
int run_ipc_bench(const CommandLine& cl) {
    uint64_t rounds = 100000;
    uint64_t warmup = 1000;
    if (cl.get("rounds") && !cl.get_u64("rounds", &rounds)) {
        print("kernel: bad value for rounds= (expected a number)\n");
        return kExitBadCommandLine;
    }
    auto ch = channel_create();
    if (!ch.is_ok()) return kExitPanic;
    auto conn = connect(ch.value);
    if (!conn.is_ok()) return kExitPanic;
    BenchServer server{ch.value, rounds + warmup};
    auto t = thread_create("bench-server", bench_server, &server, kPriorityDefault);
    if (!t.is_ok()) return kExitPanic;
    uint64_t value = 0;
    uint64_t answer = 0;
    Part out{&value, sizeof(value)};
    MutPart in{&answer, sizeof(answer)};
    uint64_t errors = 0;
    uint64_t start = 0;
    for (uint64_t i = 0; i < rounds + warmup; ++i) {
        if (i == warmup) start = arch::cycle_counter();
        value = i;
        auto r = send(conn.value, Parts{&out, 1}, MutParts{&in, 1}, kNoDeadline);
        if (!r.is_ok() || answer != i + 1) ++errors;
    }
    uint64_t cycles = arch::cycle_counter() - start;
    (void)thread_join(t.value);
    (void)disconnect(conn.value);
    (void)channel_destroy(ch.value);
    uint64_t tenths = rounds ? cycles * 10 / rounds : 0;
    print("bench ipc: rounds=%lu cycles=%lu per_round_trip=%lu.%lu errors=%lu "
          "(8-byte send+receive+reply, single address space)\n",
          rounds, cycles, tenths / 10, tenths % 10, errors);
    return errors ? kExitTestsFailed : kExitSuccess;
}

void main_thread(void* arg) {
    const CommandLine& cl = *static_cast<const CommandLine*>(arg);
    if (cl.flag("test")) {
        size_t failed = ktest::run_all(cl.get("case"), cl.flag("plant"));
        arch::exit(failed ? kExitTestsFailed : kExitSuccess);
    }
    if (const char* bench = cl.get("bench")) {
        if (!string_equal(bench, "ipc")) {
            print("kernel: unknown benchmark '%s' (known: ipc)\n", bench);
            arch::exit(kExitBadCommandLine);
        }
        arch::exit(run_ipc_bench(cl));
    }
    arch::exit(node_main(cl));
}

}  // namespace

__attribute__((weak)) int node_main(const CommandLine&) {
    print("kernel: no node_main linked in and no test=1 or bench= on the command line\n");
    return kExitSuccess;
}

const CommandLine& command_line() { return g_command_line; }

void start(const BootInfo& boot) {
    heap::init(boot.heap_base, boot.heap_bytes);
    new (&g_command_line) CommandLine{};
    if (g_command_line.parse(boot.command_line) != Status::kOk) {
        print("kernel: bad command-line argument '%s' (expected key=value, each key once)\n",
              g_command_line.error_word());
        arch::exit(kExitBadCommandLine);
    }
    sched::init();
    ipc::init();
    sched::run_main(main_thread, &g_command_line);
}

const char* status_name(Status s) {
    switch (s) {
    case Status::kOk: return "ok";
    case Status::kTimedOut: return "timed-out";
    case Status::kNoMemory: return "no-memory";
    case Status::kLimitReached: return "limit-reached";
    case Status::kInvalidArgument: return "invalid-argument";
    case Status::kBadReceiveId: return "bad-receive-id";
    case Status::kSenderUnblocked: return "sender-unblocked";
    case Status::kChannelDestroyed: return "channel-destroyed";
    case Status::kServerExited: return "server-exited";
    case Status::kNotSupported: return "not-supported";
    case Status::kWouldBlock: return "would-block";
    case Status::kMessageError: return "message-error";
    case Status::kHostDown: return "host-down";
    case Status::kPeerRebooted: return "peer-rebooted";
    case Status::kNoSuchService: return "no-such-service";
    case Status::kMessageTooLarge: return "message-too-large";
    case Status::kNoSuchNode: return "no-such-node";
    }
    return "unknown-status";
}

}  // namespace kernel
