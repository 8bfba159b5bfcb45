// The deterministic simulation under GoogleTest. Sim.Seeds runs the seeds named by the
// environment (SMP_SIM_FIRST, SMP_SIM_COUNT, and SMP_SIM_TIMER_SLACK_US for every node's timer
// slack), so ctest splits 10,000+ seeds over several entries that -j2 runs side by side. A failure prints the seed; `./smp sim --seed S` replays it.
#include <gtest/gtest.h>
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>
#include <string>
#include <vector>

#include "protocol/wire.h"
#include "tests/smp/sim.h"

namespace smp::sim {
namespace {

uint64_t env(const char* name, uint64_t fallback) {
    const char* v = getenv(name);
    return v ? strtoull(v, nullptr, 10) : fallback;
}

TEST(Sim, Seeds) {
    uint64_t first = env("SMP_SIM_FIRST", 1), count = env("SMP_SIM_COUNT", 200);
    uint64_t failed = 0, lookups_cancelled = 0;
    for (uint64_t s = first; s < first + count; s++) {
        Options o;
        o.seed = s;
        o.timer_slack_us = uint32_t(env("SMP_SIM_TIMER_SLACK_US", 0));
        o.auth = env("SMP_SIM_AUTH", 0) != 0;
        Result r = run(o);
        lookups_cancelled += r.lookups_cancelled;
        if (!r.ok) {
            failed++;
            ADD_FAILURE() << r.failure << "\n  replay: ./smp sim --seed " << s;
        }
    }
    EXPECT_EQ(failed, 0u) << "of " << count << " seeds from " << first;
    // Some lookups were given up while in flight (the check that none ends afterwards ran).
    if (count >= 100) EXPECT_GT(lookups_cancelled, 0u);
}

// Every path MTU, with large messages, at the worst loss the protocol promises to survive.
TEST(Sim, MtusAtThirtyPercentLoss) {
    for (int mtu : {576, 1000, 1280, 1500}) {
        for (uint64_t s = 1; s <= 20; s++) {
            Options o;
            o.seed = s;
            o.mtu = mtu;
            o.loss = 0.30;
            o.mode = 0;
            o.size_max = 200 * 1024;
            Result r = run(o);
            EXPECT_TRUE(r.ok) << r.failure;
            EXPECT_EQ(r.host_down, 0u) << "false alarm at mtu " << mtu;
        }
    }
}

// Reads a pcap written by the simulation and returns the SMP message types in it.
std::vector<int> pcap_types(const std::string& path, size_t& bad_ip_checksums) {
    std::vector<int> types;
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) return types;
    uint32_t hdr[6];
    if (fread(hdr, sizeof hdr, 1, f) != 1 || hdr[5] != 228) {
        fclose(f);
        return types;
    }
    uint32_t rec[4];
    std::vector<uint8_t> pkt;
    while (fread(rec, sizeof rec, 1, f) == 1) {
        pkt.resize(rec[2]);
        if (fread(pkt.data(), 1, pkt.size(), f) != pkt.size()) break;
        if (wire::ipv4_header_checksum(pkt.data(), 20) != 0) bad_ip_checksums++;
        wire::Message m;
        uint32_t src = load32(&pkt[12]), dst = load32(&pkt[16]);
        if (pkt[9] == wire::kIpProtocol &&
            wire::decode(pkt.data() + 20, pkt.size() - 20, src, dst, m) == wire::DecodeError::kOk)
            types.push_back(int(m.header.type));
        else
            types.push_back(-1);
    }
    fclose(f);
    return types;
}

TEST(Sim, ScenarioCaptureHasEveryMessageType) {
    std::string path = testing::TempDir() + "smp_scenario.pcap";
    Result r = run_scenario(path);
    ASSERT_TRUE(r.ok) << r.failure;
    size_t bad = 0;
    std::vector<int> types = pcap_types(path, bad);
    remove(path.c_str());
    EXPECT_EQ(bad, 0u);
    EXPECT_GT(r.retransmissions, 0u);
    EXPECT_GT(r.duplicated, 0u);
    EXPECT_EQ(r.pulses, 1u);          // two pulses, coalesced
    EXPECT_EQ(r.names_resolved, 2u);  // one found, one not
    EXPECT_GT(r.rebooted, 0u);        // the crash and restart
    // CHALLENGE and CHALLENGE_ACK only with a key (SPEC 4.11): without one they never appear.
    auto keyed_only = [](int t) {
        return t == int(wire::Type::kChallenge) || t == int(wire::Type::kChallengeAck);
    };
    for (int t = 1; t <= wire::kTypeMax; t++) {
        const bool seen = std::find(types.begin(), types.end(), t) != types.end();
        EXPECT_EQ(seen, !keyed_only(t)) << wire::type_name(wire::Type(t)) << " in the scenario capture";
    }
    EXPECT_EQ(std::find(types.begin(), types.end(), -1), types.end()) << "an undecodable packet";
    // The same scenario with a cluster key: every first call draws a CHALLENGE (SPEC 3.4).
    r = run_scenario(path, true);
    ASSERT_TRUE(r.ok) << r.failure;
    types = pcap_types(path, bad);
    remove(path.c_str());
    for (int t = 1; t <= wire::kTypeMax; t++) {
        EXPECT_NE(std::find(types.begin(), types.end(), t), types.end())
            << "no " << wire::type_name(wire::Type(t)) << " in the keyed scenario capture";
    }
    EXPECT_EQ(std::find(types.begin(), types.end(), -1), types.end()) << "an undecodable packet";
}

// Scale: per-node memory and liveness traffic do not grow with the cluster; detection holds.
TEST(Sim, ThousandNodesEachTalkingToAFew) {
    double probes_small = 0;
    uint64_t memory_small = 0;
    for (int nodes : {10, 1000}) {
        Options o;
        o.seed = 7;
        o.nodes = nodes;
        o.peers_per_node = 3;
        o.sends_per_node = 3;
        o.mode = 2;  // one node crashes: its callers must notice within the bound
        o.loss = 0.05;
        Result r = run(o);
        ASSERT_TRUE(r.ok) << r.failure;
        if (nodes == 10) {
            probes_small = r.probes_per_node_second;
            memory_small = r.engine_memory_bytes;
        } else {
            EXPECT_EQ(r.engine_memory_bytes, memory_small);
            EXPECT_LE(r.peers_high, 16u);
            // Liveness traffic per node is set by the few peers a node talks to, not by N: allow
            // the sampling noise of a different random workload, not growth with N.
            EXPECT_LT(r.probes_per_node_second, 4 * probes_small + 20);
        }
    }
}

}  // namespace
}  // namespace smp::sim
