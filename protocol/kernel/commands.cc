// The bridge's shell commands (net/shell's table): peers, names, stats, threads, call, calltest,
// servicestat. Output lines start with the command's name; calltest prints exactly one line.
#include "arch/arch.h"
#include "bridge.h"
#include "command_line.h"
#include "heap.h"
#include "ipc.h"
#include "net_thread.h"
#include "panic.h"
#include "shell.h"
#include "thread.h"

namespace bridge {
namespace {

using kernel::Status;

constexpr uint64_t kCallTimeoutNs = 30'000'000'000ull;    // `call`: a generous guard
constexpr uint64_t kOpenTimeoutNs = 10'000'000'000ull;
constexpr size_t kCallReplyBytes = 256;
constexpr uint64_t kNamesTimeoutNs = 2'000'000'000ull;  // per peer: past the 1 s detection bound, so a down
                                                        // peer says host-down (and costs this much)
constexpr size_t kCalltestSendersMax = 128;
constexpr size_t kCalltestCallsMax = 100000;
constexpr size_t kCalltestSizeMax = size_t{16} << 20;
constexpr size_t kStatusSlots = 64;                        // error kinds counted by calltest
constexpr uint64_t kCalltestGapUsMax = 1'000'000;          // GAP_US: at most a second per call
constexpr size_t kSinkReplyBytes = 8;                      // the sink's reply: the count it took

bool parse_u64(const char* s, uint64_t* out) {
    if (!s || !*s) return false;
    uint64_t v = 0;
    for (; *s; ++s) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10) return false;
        v = v * 10 + static_cast<uint64_t>(*s - '0');
    }
    *out = v;
    return true;
}

void cmd_peers(int, char**) { print_peers(); }
// This node's names, then each static peer's (its `_names` service), one line per node. A peer
// that does not answer (`host` with no smpctl serving there, a node down) is a fact of the
// listing, not a failure of the command: "no answer (host-down)", no "error:".
void cmd_names(int, char**) {
    print_names();
    const char* peers[32];
    const size_t n = static_peer_names(peers, 32);
    for (size_t i = 0; i < n; ++i) {
        char target[48];
        kernel::format(target, sizeof target, "%s/_names", peers[i]);
        auto c = name_open(target, kernel::deadline_after(kNamesTimeoutNs));
        if (!c.is_ok()) {
            kernel::print("names: %s: no answer (%s)\n", peers[i], kernel::status_name(c.status));
            continue;
        }
        static char list[kCallReplyBytes + 1];
        kernel::MutPart rp{list, kCallReplyBytes};
        auto r = kernel::send(c.value, kernel::Parts{nullptr, 0}, kernel::MutParts{&rp, 1},
                              kernel::deadline_after(kNamesTimeoutNs));
        kernel::disconnect(c.value);
        if (!r.is_ok()) {
            kernel::print("names: %s: no answer (%s)\n", peers[i], kernel::status_name(r.status));
            continue;
        }
        size_t len = r.value < kCallReplyBytes ? r.value : kCallReplyBytes;
        for (size_t k = 0; k < len; ++k)
            if (list[k] == '\n') list[k] = ' ';
        list[len] = 0;
        kernel::print("names: %s: %s\n", peers[i], list);
    }
}
void cmd_stats(int, char**) { print_stats(); }
void cmd_lat(int argc, char** argv) {
    if (argc == 1) return print_lat(-1);
    if (argc == 2 && kernel::string_equal(argv[1], "on")) return print_lat(1);
    if (argc == 2 && kernel::string_equal(argv[1], "off")) return print_lat(0);
    kernel::print("lat: error: usage: lat [on|off]\n");
}

void cmd_threads(int, char**) {
    static kernel::ThreadInfo rows[64];
    size_t live = kernel::thread_snapshot(rows, 64);
    const kernel::SchedulerStats st = kernel::scheduler_stats();
    kernel::print("threads: %zu live context_switches=%lu preemptions=%lu timer_interrupts=%lu "
                  "early_timer_interrupts=%lu\n", live,
                  static_cast<unsigned long>(st.context_switches),
                  static_cast<unsigned long>(st.preemptions),
                  static_cast<unsigned long>(st.timer_interrupts),
                  static_cast<unsigned long>(st.early_timer_interrupts));
    const kernel::heap::Stats h = kernel::heap::stats();
    kernel::print("heap: in_use=%zu high=%zu total=%zu failed=%lu\n", h.bytes_in_use,
                  h.bytes_in_use_high, h.bytes_total, static_cast<unsigned long>(h.failure_count));
    for (size_t i = 0; i < live && i < 64; ++i) {
        kernel::print("  %4u %-16s prio=%u/%u %s\n", rows[i].id, rows[i].name, rows[i].base_priority,
                      rows[i].priority, kernel::thread_state_name(rows[i].state));
    }
}

// One send of `text` on `conn`, answered with the shell contract's line (README):
// "reply N bytes rtt_us=T: TEXT" or "error: <status>".
void call_and_print(kernel::Connection* conn, const char* text, size_t n) {
    static char reply[kCallReplyBytes + 1];
    kernel::Part part{text, n};
    kernel::MutPart rpart{reply, kCallReplyBytes};
    const uint64_t t0 = kernel::now_ns();
    auto r = kernel::send(conn, kernel::Parts{&part, 1}, kernel::MutParts{&rpart, 1},
                          kernel::deadline_after(kCallTimeoutNs));
    const uint64_t rtt = kernel::now_ns() - t0;
    if (!r.is_ok()) {
        kernel::print("error: %s\n", kernel::status_name(r.status));
        return;
    }
    size_t shown = r.value < kCallReplyBytes ? r.value : kCallReplyBytes;
    reply[shown] = 0;
    kernel::print("reply %zu bytes rtt_us=%lu: %s\n", r.value, static_cast<unsigned long>(rtt / 1000),
                  reply);
}

void cmd_call(int argc, char** argv) {
    if (argc < 3) {
        kernel::print("call: error: usage: call [NODE/]SERVICE TEXT\n");
        return;
    }
    // The message is the rest of the line: the words joined by single spaces.
    static char text[160];
    size_t n = 0;
    for (int i = 2; i < argc; ++i) {
        for (const char* p = argv[i]; *p && n + 1 < sizeof text; ++p) text[n++] = *p;
        if (i + 1 < argc && n + 1 < sizeof text) text[n++] = ' ';
    }
    text[n] = 0;
    auto c = name_open(argv[1], kernel::deadline_after(kOpenTimeoutNs));
    if (!c.is_ok()) {
        kernel::print("error: %s\n", kernel::status_name(c.status));
        return;
    }
    call_and_print(c.value, text, n);
    kernel::disconnect(c.value);
}

// ---- calltest ----

uint64_t fnv1a(const uint8_t* p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; ++i) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

void fill_pattern(uint8_t* p, size_t n, uint32_t sender, uint32_t call) {
    uint32_t x = 0x9e3779b9u ^ (sender * 0x85ebca6bu) ^ (call * 0xc2b2ae35u);
    for (size_t i = 0; i < n; ++i) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = static_cast<uint8_t>(x);
    }
}

struct CallSender {
    uint32_t index;
    kernel::Connection* conn;
    size_t size;
    uint32_t count;
    uint8_t* message;
    uint8_t* reply;
    uint64_t* times_ns;   // count entries
    bool oneway;          // sendtest: the reply is the 8-byte count the sink took
    uint64_t gap_ns;      // sleep before each call (not timed)
    uint32_t ok, failed, done_calls;
    uint64_t first_start_ns, last_end_ns;  // the first send's start, the last one's end
    uint32_t errors[kStatusSlots];
    kernel::Thread* thread;
};

void sender_main(void* arg) {
    auto* s = static_cast<CallSender*>(arg);
    for (uint32_t c = 0; c < s->count; ++c) {
        if (s->gap_ns) kernel::sleep_for(s->gap_ns);
        // One way, the sink checks only the count: the pattern is written once (a 1 MiB fill
        // takes tens of ms under TCG and would compete with the other senders' transfers).
        if (!s->oneway || c == 0) fill_pattern(s->message, s->size, s->index, c);
        const uint64_t want = s->oneway ? 0 : fnv1a(s->message, s->size);
        kernel::Part part{s->message, s->size};
        const size_t reply_bytes = s->oneway ? kSinkReplyBytes : s->size;
        kernel::MutPart rpart{s->reply, reply_bytes};
        const uint64_t t0 = kernel::now_ns();
        auto r = kernel::send(s->conn, kernel::Parts{&part, 1}, kernel::MutParts{&rpart, 1},
                              kernel::kNoDeadline);
        const uint64_t t1 = kernel::now_ns();
        s->times_ns[s->done_calls++] = t1 - t0;
        if (c == 0) s->first_start_ns = t0;
        s->last_end_ns = t1;
        bool good = r.is_ok() && r.value == reply_bytes;
        if (good && s->oneway) {
            uint64_t took = 0;
            for (size_t i = 0; i < kSinkReplyBytes; ++i) took |= uint64_t(s->reply[i]) << (8 * i);
            good = took == s->size;
        } else if (good) {
            good = fnv1a(s->reply, s->size) == want;
        }
        if (good) {
            ++s->ok;
        } else {
            ++s->failed;
            // A reply that arrived but does not match is counted as message-error.
            Status st = r.is_ok() ? Status::kMessageError : r.status;
            uint32_t slot = static_cast<uint32_t>(st);
            ++s->errors[slot < kStatusSlots ? slot : kStatusSlots - 1];
        }
    }
    kernel::thread_exit(0);
}

void sort_u64(uint64_t* a, size_t n) {
    // Shell sort (n is at most kCalltestCallsMax).
    for (size_t gap = n / 2; gap > 0; gap /= 2) {
        for (size_t i = gap; i < n; ++i) {
            uint64_t v = a[i];
            size_t j = i;
            for (; j >= gap && a[j - gap] > v; j -= gap) a[j] = a[j - gap];
            a[j] = v;
        }
    }
}

// calltest (echo: the reply must equal the message) and sendtest (one way: a sink replies with
// the 8-byte count it took), the same loop and the same one-line answer.
void run_calltest(const char* cmd, bool oneway, int argc, char** argv) {
    uint64_t size = 0, count = 0, senders = 1, gap_us = 0;
    if (argc < 4 || argc > 6 || !parse_u64(argv[2], &size) || !parse_u64(argv[3], &count) ||
        (argc >= 5 && !parse_u64(argv[4], &senders)) || (argc == 6 && !parse_u64(argv[5], &gap_us)) ||
        count == 0 || senders == 0 || size > kCalltestSizeMax || senders > kCalltestSendersMax ||
        count * senders > kCalltestCallsMax || gap_us > kCalltestGapUsMax) {
        kernel::print("%s: error: usage: %s TARGET SIZE COUNT [SENDERS [GAP_US]] (SIZE <= %zu, "
                      "SENDERS <= %zu, COUNT*SENDERS <= %zu, GAP_US <= %lu)\n",
                      cmd, cmd, kCalltestSizeMax, kCalltestSendersMax, kCalltestCallsMax,
                      static_cast<unsigned long>(kCalltestGapUsMax));
        return;
    }
    uint32_t peer = 0;
    auto c = name_open(argv[1], kernel::deadline_after(kOpenTimeoutNs), &peer);
    if (!c.is_ok()) {
        kernel::print("%s: error: cannot open %s: %s\n", cmd, argv[1], kernel::status_name(c.status));
        return;
    }
    const size_t total_calls = count * senders;
    auto* all = static_cast<CallSender*>(kernel::heap::allocate(sizeof(CallSender) * senders));
    auto* times = static_cast<uint64_t*>(kernel::heap::allocate(sizeof(uint64_t) * total_calls));
    bool memory_ok = all && times;
    size_t made = 0;
    for (; memory_ok && made < senders; ++made) {
        CallSender& s = all[made];
        s = CallSender{};
        s.index = static_cast<uint32_t>(made);
        s.conn = c.value;
        s.size = size;
        s.count = static_cast<uint32_t>(count);
        s.times_ns = times + made * count;
        s.oneway = oneway;
        s.gap_ns = gap_us * 1000;
        s.message = static_cast<uint8_t*>(kernel::heap::allocate(size ? size : 1));
        s.reply = static_cast<uint8_t*>(
            kernel::heap::allocate(oneway ? kSinkReplyBytes : size ? size : 1));
        if (!s.message || !s.reply) {
            kernel::heap::release(s.message);
            kernel::heap::release(s.reply);
            memory_ok = false;
            break;
        }
    }
    if (!memory_ok) {
        for (size_t i = 0; i < made; ++i) {
            kernel::heap::release(all[i].message);
            kernel::heap::release(all[i].reply);
        }
        kernel::heap::release(all);
        kernel::heap::release(times);
        kernel::disconnect(c.value);
        kernel::print("%s: error: no-memory for %lu senders x 2 x %lu bytes (boot with a "
                      "larger -m)\n",
                      cmd, static_cast<unsigned long>(senders), static_cast<unsigned long>(size));
        return;
    }
    size_t started = 0;
    for (size_t i = 0; i < senders; ++i) {
        auto t = kernel::thread_create(cmd, sender_main, &all[i], kernel::kPriorityDefault);
        all[i].thread = t.is_ok() ? t.value : nullptr;
        if (t.is_ok()) ++started;
    }
    uint64_t ok = 0, failed = 0;
    uint32_t errors[kStatusSlots] = {};
    for (size_t i = 0; i < senders; ++i) {
        CallSender& s = all[i];
        if (s.thread) {
            kernel::thread_join(s.thread);
        } else {
            s.failed = s.count;  // the thread could not start: its calls count as failed
            errors[static_cast<uint32_t>(Status::kLimitReached)] += s.count;
        }
        ok += s.ok;
        failed += s.failed;
        for (size_t k = 0; k < kStatusSlots; ++k) errors[k] += s.errors[k];
        kernel::heap::release(s.message);
        kernel::heap::release(s.reply);
    }
    // The span from the first send's start to the last one's end over all senders: with
    // several senders, bytes over this span is the aggregate throughput.
    uint64_t span_start = 0, span_end = 0;
    for (size_t i = 0; i < senders; ++i) {
        if (!all[i].done_calls) continue;
        if (!span_start || all[i].first_start_ns < span_start) span_start = all[i].first_start_ns;
        if (all[i].last_end_ns > span_end) span_end = all[i].last_end_ns;
    }
    const uint64_t span_ns = span_end > span_start ? span_end - span_start : 0;
    size_t timed = 0;
    for (size_t i = 0; i < senders; ++i) {
        for (size_t k = 0; k < all[i].done_calls; ++k) times[timed++] = all[i].times_ns[k];
    }
    sort_u64(times, timed);
    // Per-call times measured in the node (kernel::now_ns around send), so a bench can compare
    // them with the node's own ping statistics: same clock, no serial console in the figure.
    uint64_t sum_ns = 0;
    for (size_t k = 0; k < timed; ++k) sum_ns += times[k];
    const uint64_t median_ns = timed ? times[timed / 2] : 0;
    const uint64_t p90_ns = timed ? times[net::percentile_rank(static_cast<uint32_t>(timed), 90)] : 0;
    const uint64_t p99_ns = timed ? times[net::percentile_rank(static_cast<uint32_t>(timed), 99)] : 0;
    const uint64_t mean_ns = timed ? sum_ns / timed : 0;
    const uint64_t min_ns = timed ? times[0] : 0;
    const uint64_t median_us = median_ns / 1000;
    kernel::heap::release(all);
    kernel::heap::release(times);
    kernel::disconnect(c.value);
    (void)started;

    // The target node's high-water marks, from its `_stats` service (or ours when local).
    static char line[160];
    size_t line_len = 0;
    const char* service = argv[1];
    for (const char* p = argv[1]; *p; ++p)
        if (*p == '/') service = p + 1;
    if (peer == 0) {
        line_len = format_stats_line(service, line, sizeof line);
    } else {
        auto sc = connect_peer_channel(peer, kStatsChannel);
        if (sc.is_ok()) {
            kernel::Part q{service, 0};
            while (service[q.size]) ++q.size;
            kernel::MutPart a{line, sizeof line - 1};
            auto r = kernel::send(sc.value, kernel::Parts{&q, 1}, kernel::MutParts{&a, 1},
                                  kernel::deadline_after(kOpenTimeoutNs));
            if (r.is_ok()) line_len = r.value < sizeof line - 1 ? r.value : sizeof line - 1;
            kernel::disconnect(sc.value);
        }
        // Only a kernel node answers `_stats` (a Linux peer may answer anything, or nothing).
        static const char kPrefix[] = "hwm_queue=";
        for (size_t i = 0; i + 1 < sizeof kPrefix && line_len; ++i)
            if (i >= line_len || line[i] != kPrefix[i]) line_len = 0;
        if (line_len == 0)
            line_len = kernel::format(line, sizeof line,
                                      "hwm_queue=0 hwm_proto_bytes=0 bound_proto_bytes=0");
    }
    line[line_len] = 0;

    static char errs[256];
    size_t e = 0;
    errs[0] = 0;
    for (size_t k = 0; k < kStatusSlots; ++k) {
        if (!errors[k]) continue;
        e += kernel::format(errs + e, sizeof errs - e, "%s%s:%u", e ? "," : "",
                            kernel::status_name(static_cast<Status>(k)), errors[k]);
        if (e >= sizeof errs - 1) break;
    }
    kernel::print("%s ok=%lu failed=%lu errors=%s bytes=%lu us_per_call=%lu min_ns=%lu "
                  "mean_ns=%lu median_ns=%lu p90_ns=%lu p99_ns=%lu span_ns=%lu %s\n",
                  cmd, static_cast<unsigned long>(ok), static_cast<unsigned long>(failed), errs,
                  static_cast<unsigned long>(ok * size), static_cast<unsigned long>(median_us),
                  static_cast<unsigned long>(min_ns), static_cast<unsigned long>(mean_ns),
                  static_cast<unsigned long>(median_ns), static_cast<unsigned long>(p90_ns),
                  static_cast<unsigned long>(p99_ns), static_cast<unsigned long>(span_ns), line);
}

void cmd_calltest(int argc, char** argv) { run_calltest("calltest", false, argc, argv); }
void cmd_sendtest(int argc, char** argv) { run_calltest("sendtest", true, argc, argv); }

void cmd_servicestat(int argc, char** argv) {
    uint64_t requests = 0, pulses = 0;
    size_t hwm = 0;
    if (argc != 2) {
        kernel::print("servicestat: error: usage: servicestat SERVICE\n");
        return;
    }
    if (!service_stat(argv[1], &requests, &hwm, &pulses)) {
        kernel::print("servicestat: error: no service '%s' on this node\n", argv[1]);
        return;
    }
    kernel::print("service %s requests=%lu hwm_queue=%zu pulses=%lu\n", argv[1],
                  static_cast<unsigned long>(requests), hwm, static_cast<unsigned long>(pulses));
}

// `hold TARGET` keeps one open connection; `heldcall TEXT` sends on it. Shows what a connection
// opened before its peer rebooted does (peer-rebooted, never the new incarnation).
kernel::Connection* g_held_conn;

void cmd_hold(int argc, char** argv) {
    if (argc != 2) {
        kernel::print("hold: error: usage: hold NODE/SERVICE\n");
        return;
    }
    auto c = name_open(argv[1], kernel::deadline_after(kOpenTimeoutNs));
    if (!c.is_ok()) {
        kernel::print("hold: error: %s\n", kernel::status_name(c.status));
        return;
    }
    if (g_held_conn) kernel::disconnect(g_held_conn);
    g_held_conn = c.value;
    kernel::print("hold: connection to %s open\n", argv[1]);
}

void cmd_heldcall(int argc, char** argv) {
    if (argc != 2 || !g_held_conn) {
        kernel::print("heldcall: error: usage: heldcall WORD (after hold NODE/SERVICE)\n");
        return;
    }
    size_t n = 0;
    while (argv[1][n]) ++n;
    call_and_print(g_held_conn, argv[1], n);
}

bool parse_pulse(const char* code_text, const char* value_text, uint64_t* code, uint64_t* value) {
    return parse_u64(code_text, code) && parse_u64(value_text, value) && *code <= 127 &&
           *value <= UINT32_MAX;
}

void print_pulse_status(const char* cmd, Status s) {
    if (s != Status::kOk) kernel::print("%s: error: %s\n", cmd, kernel::status_name(s));
    else kernel::print("%s: sent\n", cmd);
}

// A pulse on the held connection: pulses from one connection coalesce at the receiver while
// pending, from different ones (`pulse` opens its own each time) they stay apart.
void cmd_heldpulse(int argc, char** argv) {
    uint64_t code = 0, value = 0;
    if (argc != 3 || !g_held_conn || !parse_pulse(argv[1], argv[2], &code, &value)) {
        kernel::print("heldpulse: error: usage: heldpulse CODE(0..127) VALUE(32 bits) (after hold "
                      "NODE/SERVICE)\n");
        return;
    }
    print_pulse_status("heldpulse", kernel::pulse(g_held_conn, static_cast<int32_t>(code),
                                                  static_cast<int64_t>(value)));
}

void cmd_pulse(int argc, char** argv) {
    uint64_t code = 0, value = 0;
    if (argc != 4 || !parse_pulse(argv[2], argv[3], &code, &value)) {
        kernel::print("pulse: error: usage: pulse NODE/SERVICE CODE(0..127) VALUE(32 bits)\n");
        return;
    }
    auto c = name_open(argv[1], kernel::deadline_after(kOpenTimeoutNs));
    if (!c.is_ok()) {
        kernel::print("pulse: error: %s\n", kernel::status_name(c.status));
        return;
    }
    Status s = kernel::pulse(c.value, static_cast<int32_t>(code), static_cast<int64_t>(value));
    kernel::disconnect(c.value);
    print_pulse_status("pulse", s);
}

const net::ShellCommand kCommands[] = {
    {"hold", "hold NODE/SERVICE", "open a connection and keep it (heldcall, heldpulse)", cmd_hold},
    {"heldcall", "heldcall WORD", "send WORD on the held connection", cmd_heldcall},
    {"pulse", "pulse NODE/SERVICE CODE VALUE", "send a pulse on a new connection", cmd_pulse},
    {"heldpulse", "heldpulse CODE VALUE", "send a pulse on the held connection", cmd_heldpulse},
    {"peers", "peers", "protocol peers: state, RTT estimate, credit", cmd_peers},
    {"names", "names", "service names attached on this node", cmd_names},
    {"stats", "stats", "protocol counters, drops by reason, high-water marks", cmd_stats},
    {"threads", "threads", "kernel threads", cmd_threads},
    {"lat", "lat [on|off]", "where round trips spent their time since the last lat (then reset)",
     cmd_lat},
    {"call", "call [NODE/]SERVICE TEXT", "send TEXT, print the reply (a bare SERVICE: this node, then the others)", cmd_call},
    {"calltest", "calltest TARGET SIZE COUNT [SENDERS [GAP_US]]", "hash-checked echo calls",
     cmd_calltest},
    {"sendtest", "sendtest TARGET SIZE COUNT [SENDERS [GAP_US]]",
     "one-way calls to a sink (reply: the byte count it took)", cmd_sendtest},
    {"servicestat", "servicestat SERVICE", "requests served, queue high-water mark",
     cmd_servicestat},
};

}  // namespace

void register_commands() {
    for (const net::ShellCommand& c : kCommands) {
        if (!net::shell_register(c)) kernel::print("bridge: cannot register shell command %s\n", c.name);
    }
}

}  // namespace bridge
