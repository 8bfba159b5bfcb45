// A deterministic simulated cluster of SMP engines (issue 4). One seed drives every fault: loss,
// duplication, reordering (delay jitter), partitions, crash and restart with a new incarnation,
// path MTUs. Every run checks the invariants listed in run(); a failure names the seed, and
// `./smp sim --seed S` replays it.
#pragma once

#include <stdint.h>

#include <string>
#include <vector>

namespace smp::sim {

enum class Mode : int { kPlain = 0, kPartition = 1, kCrash = 2 };

struct Options {
    uint64_t seed = 1;
    // Anything left at its "from the seed" value is drawn from the seed.
    int nodes = 0;                 // 0: from the seed (2..5)
    double loss = -1;              // -1: from the seed (0 .. 0.30)
    double duplicate = -1;
    int64_t jitter_us = -1;
    int mtu = 0;                   // path MTU of the simulated network; 0: from the seed
    int mode = -1;                 // Mode; -1: from the seed
    int sends_per_node = 0;        // 0: from the seed
    uint32_t size_max = 0;         // largest request/reply; 0: from the seed
    int peers_per_node = 0;        // 0: every other node (small clusters)
    double slow_fraction = 0.05;   // requests the server takes 300 ms to answer
    uint64_t crash_down_us = 0;    // crash mode: how long the node stays down; 0: from the seed
    bool crash_callers = false;    // crash mode: its callers have slow calls in progress when it dies
    uint64_t time_limit_us = 600'000'000;  // simulated; passing it is a "hang" failure
    uint32_t timer_slack_us = 0;   // every node's Config::timer_slack_us (the kernel's: 10 ms)
    bool auth = false;             // every node keyed (SPEC 3.4): every packet carries a MAC
    std::string pcap;              // write every packet sent to this file (raw IPv4 linktype)
    bool verbose = false;
};

struct Result {
    bool ok = true;
    std::string failure;           // the first invariant broken, with the seed
    std::string summary;           // one line: the scenario drawn from the seed
    uint64_t sends = 0, replies = 0, errors = 0, host_down = 0, rebooted = 0, timed_out = 0,
             cancelled = 0, app_errors = 0, other_errors = 0;  // the kinds add up to errors
    uint64_t packets = 0, lost = 0, duplicated = 0, too_big = 0;
    uint64_t retransmissions = 0, duplicates_suppressed = 0, probes = 0;
    uint64_t eager_trimmed = 0;        // requests whose announced eager part exceeded the receiver's
    uint64_t pulses = 0, names_resolved = 0, lookups_cancelled = 0;
    uint64_t sim_time_us = 0;
    uint64_t detection_max_us = 0;     // crash/partition to the last outstanding send's end
    uint64_t detections = 0;           // sends waiting on the crashed node that were told
    uint64_t engine_memory_bytes = 0;  // per node (same config everywhere)
    uint64_t pool_high_bytes = 0, requests_high = 0, peers_high = 0;
    double probes_per_node_second = 0;
    double liveness_bytes_per_node_second = 0;
};

Result run(const Options& options);

// A fixed scenario that makes every message type, a retransmission, a duplicate, segmentation,
// a pull of a large request and of a large reply, error replies, a cancel, a pulse, liveness
// probes, MTU probes, a crash and restart (RESET) and a name lookup; for the dissector's goldens.
Result run_scenario(const std::string& pcap, bool auth = false);

}  // namespace smp::sim
