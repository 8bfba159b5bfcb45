// `./smp sim`: replays one seed of the simulation (or a range, or the scenario) and says what
// happened. Exit status 0 when every invariant held, 1 when one broke, 2 for a bad argument.
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <string>

#include "tests/smp/sim.h"

namespace {

constexpr const char* kUsage =
    "usage: smp_sim [--seed S | --seeds FIRST:COUNT] [--nodes N] [--loss P] [--dup P] [--jitter-us U] "
    "[--mtu M] [--mode plain|partition|crash] [--sends N] [--size-max B] [--peers N] "
    "[--timer-slack-us U] [--auth] [--pcap FILE] [--scenario] [--expect-failure] [--verbose]\n";

// A bad argument: one line and status 2 (--help prints the usage).
[[noreturn]] void usage(const char* why) {
    fprintf(stderr, "smp_sim: %s (see smp_sim --help)\n", why);
    exit(2);
}

bool number(const char* s, double& out) {
    char* end = nullptr;
    out = strtod(s, &end);
    return end && *end == 0 && end != s;
}

// A whole number in min..max, decimal digits only. (The integer options used to go through
// strtod: `--seed 1.5` ran seed 1, and `--seed 99999999999999999999999` some other seed, the
// double's conversion past uint64_t being undefined.)
bool whole(const char* s, uint64_t min, uint64_t max, uint64_t& out) {
    if (!*s) return false;
    uint64_t v = 0;
    for (; *s; ++s) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10) return false;
        v = v * 10 + uint64_t(*s - '0');
    }
    out = v;
    return v >= min && v <= max;
}

void print(const smp::sim::Result& r, bool verbose) {
    if (!r.ok) printf("FAIL %s\n", r.failure.c_str());
    if (verbose || !r.ok) {
        printf("  %s\n  sends=%llu replies=%llu errors=%llu (host-down=%llu rebooted=%llu timed-out=%llu "
               "cancelled=%llu app-error=%llu other=%llu)\n  packets=%llu lost=%llu duplicated=%llu too-big=%llu retransmissions=%llu "
               "duplicates-suppressed=%llu eager-trimmed=%llu probes=%llu sim-time=%.3fs detection-max=%.3fs\n",
               r.summary.c_str(), (unsigned long long)r.sends, (unsigned long long)r.replies,
               (unsigned long long)r.errors, (unsigned long long)r.host_down, (unsigned long long)r.rebooted,
               (unsigned long long)r.timed_out, (unsigned long long)r.cancelled,
               (unsigned long long)r.app_errors, (unsigned long long)r.other_errors, (unsigned long long)r.packets,
               (unsigned long long)r.lost, (unsigned long long)r.duplicated, (unsigned long long)r.too_big,
               (unsigned long long)r.retransmissions, (unsigned long long)r.duplicates_suppressed,
               (unsigned long long)r.eager_trimmed, (unsigned long long)r.probes, r.sim_time_us / 1e6, r.detection_max_us / 1e6);
    }
}

}  // namespace

int main(int argc, char** argv) {
    smp::sim::Options o;
    uint64_t first = 1, count = 1;
    bool scenario = false;
    bool expect_failure = false;  // for the planted-bug check: succeed iff some seed fails
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto value = [&]() -> const char* {
            if (i + 1 >= argc) usage(("missing value for " + a).c_str());
            return argv[++i];
        };
        double d = 0;
        uint64_t n = 0;
        if (a == "--seed") {
            if (!whole(value(), 0, UINT64_MAX, first)) usage("bad --seed (a whole number)");
            count = 1;
        } else if (a == "--seeds") {
            const std::string v = value();
            const size_t colon = v.find(':');
            if (colon == std::string::npos || !whole(v.substr(0, colon).c_str(), 0, UINT64_MAX, first) ||
                !whole(v.substr(colon + 1).c_str(), 1, UINT64_MAX - first, count))
                usage("bad --seeds (FIRST:COUNT, COUNT at least 1)");
        } else if (a == "--nodes") {
            if (!whole(value(), 2, 5000, n)) usage("bad --nodes (2..5000)");
            o.nodes = int(n);
        } else if (a == "--loss") {
            if (!number(value(), d) || d < 0 || d > 0.9) usage("bad --loss (0..0.9)");
            o.loss = d;
        } else if (a == "--dup") {
            if (!number(value(), d) || d < 0 || d > 0.9) usage("bad --dup (0..0.9)");
            o.duplicate = d;
        } else if (a == "--jitter-us") {
            if (!whole(value(), 0, 10'000'000, n)) usage("bad --jitter-us (0..10000000)");
            o.jitter_us = int64_t(n);
        } else if (a == "--mtu") {
            if (!whole(value(), 576, 9000, n)) usage("bad --mtu (576..9000)");
            o.mtu = int(n);
        } else if (a == "--mode") {
            std::string m = value();
            o.mode = m == "plain" ? 0 : m == "partition" ? 1 : m == "crash" ? 2 : -2;
            if (o.mode == -2) usage("bad --mode");
        } else if (a == "--sends") {
            if (!whole(value(), 1, 1'000'000, n)) usage("bad --sends (1..1000000)");
            o.sends_per_node = int(n);
        } else if (a == "--size-max") {
            if (!whole(value(), 16, 16 * 1024 * 1024, n)) usage("bad --size-max (16..16Mi)");
            o.size_max = uint32_t(n);
        } else if (a == "--peers") {
            if (!whole(value(), 1, 5000, n)) usage("bad --peers (1..5000)");
            o.peers_per_node = int(n);
        } else if (a == "--pcap") {
            o.pcap = value();
        } else if (a == "--scenario") {
            scenario = true;
        } else if (a == "--timer-slack-us") {
            if (!whole(value(), 0, 200'000, n)) usage("bad --timer-slack-us (0..200000)");
            o.timer_slack_us = uint32_t(n);
        } else if (a == "--auth") {
            o.auth = true;
        } else if (a == "--expect-failure") {
            expect_failure = true;
        } else if (a == "--verbose") {
            o.verbose = true;
        } else if (a == "--help" || a == "-h") {
            fputs(kUsage, stdout);
            return 0;
        } else {
            usage(("unknown argument " + a).c_str());
        }
    }
    if (!o.pcap.empty()) {
        // Refused before anything runs: a destination that cannot be written used to be reported
        // as the seed failing (FAIL seed 1 ..., "1 seeds, 1 failed").
        FILE* f = fopen(o.pcap.c_str(), "ab");
        if (!f) {
            fprintf(stderr, "smp_sim: --pcap: cannot write %s: %s\n", o.pcap.c_str(), strerror(errno));
            return 2;
        }
        fclose(f);
    }
    if (scenario) {
        smp::sim::Result r = smp::sim::run_scenario(o.pcap, o.auth);
        print(r, true);
        if (!o.pcap.empty()) printf("capture: %s\n", o.pcap.c_str());
        return r.ok ? 0 : 1;
    }
    uint64_t failed = 0;
    for (uint64_t s = first; s < first + count; s++) {
        o.seed = s;
        smp::sim::Result r = smp::sim::run(o);
        if (!r.ok) failed++;
        print(r, o.verbose || count == 1);
        if (!r.ok && expect_failure) {
            printf("caught: first failing seed %llu\n", (unsigned long long)s);
            return 0;
        }
    }
    if (expect_failure) {
        printf("NOT caught in %llu seeds\n", (unsigned long long)count);
        return 1;
    }
    printf("%llu seeds, %llu failed\n", (unsigned long long)count, (unsigned long long)failed);
    return failed ? 1 : 0;
}
