// `./smp bench engine`: the engine's own cost, with baselines measured in the same run.
//   rtt      64-byte request/reply round trips through two engines in memory, beside a loopback
//            UDP ping-pong between two sockets of this process (the cheapest kernel path)
//   bulk     1 MiB requests through two engines, beside memcpy of the same bytes
//   calls N  only N round trips (for callgrind: instructions per round trip)
//   scale    the simulation at 10, 100 and 1,000 nodes, each talking to 3 others
// Output: one `key value` per line; cluster/smpcli/commands/protocol.py makes the table.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "protocol/engine.h"
#include "tests/smp/sim.h"

using namespace smp;

namespace {

double seconds() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

struct Node {
    Config config;
    std::vector<uint8_t> raw;
    std::unique_ptr<Engine> engine;
    Node(uint32_t ip, uint64_t inc, bool auth) {
        config.local_ipv4 = ip;
        config.incarnation = inc;
        config.auth = auth;  // SPEC 3.4: a MAC on every packet
        for (size_t i = 0; i < wire::kAuthKeyBytes; i++) config.auth_key.bytes[i] = uint8_t(i + 1);
        config.sends_max = 8;
        config.requests_max = 8;
        config.peers_max = 4;
        raw.resize(Engine::memory_bytes(config) + 16);
        void* p = reinterpret_cast<void*>((uintptr_t(raw.data()) + 15) & ~uintptr_t(15));
        engine.reset(new Engine(config, p, Engine::memory_bytes(config)));
    }
};

// Two engines and an echo server on b; the wire is a function call. Time advances 1 us per
// packet so timers behave as on a fast LAN.
struct Pair {
    Node a, b;
    Instant now = 1;
    PeerRef peer;
    uint8_t buf[2048];
    std::vector<uint8_t> server_buf;
    MutableBytes server_part{};
    ConstBytes reply_part{};
    uint64_t packets = 0;

    explicit Pair(size_t size, bool auth = false)
        : a(0x0A000001, 1, auth), b(0x0A000002, 2, auth), server_buf(size) {
        peer = a.engine->peer(0x0A000002, 0).value;
        server_part = MutableBytes{server_buf.data(), server_buf.size()};
        reply_part = ConstBytes{server_buf.data(), 8 < size ? 8 : size};
    }
    bool move(Node& from, Node& to) {
        Transmit t = from.engine->poll_transmit(now, buf, sizeof buf);
        if (!t.bytes) return false;
        packets++;
        to.engine->handle_datagram(now, from.config.local_ipv4, t.dst_ipv4, buf, t.bytes);
        return true;
    }
    // One send, served by b, until a has the reply.
    bool call(ConstChain msg, MutableChain reply, bool echo) {
        if (!a.engine->start_send(now, peer, 1, msg, reply, kNever, 0).ok()) return false;
        for (int guard = 0; guard < 100000; guard++) {
            bool any = move(a, b) | move(b, a);
            Event ev;
            while (b.engine->poll_event(ev)) {
                if (ev.type == EventType::kRequest)
                    b.engine->read(now, RequestHandle{ev.handle}, 0, MutableChain{&server_part, 1});
                else if (ev.type == EventType::kReadDone) {
                    ConstBytes part = echo ? ConstBytes{server_buf.data(), ev.bytes} : reply_part;
                    reply_part = part;
                    b.engine->reply(now, RequestHandle{ev.handle}, 0, ConstChain{&reply_part, 1});
                }
                any = true;
            }
            while (a.engine->poll_event(ev)) {
                if (ev.type == EventType::kSendDone) return ev.error == ErrorCode::kOk;
            }
            if (!any) {
                now += 1000;
                a.engine->handle_timeout(now);
                b.engine->handle_timeout(now);
            }
        }
        return false;
    }
};

int bench_calls(long n) {
    Pair p(64);
    std::vector<uint8_t> msg(64, 1), rep(64);
    ConstBytes mp{msg.data(), msg.size()};
    MutableBytes rp{rep.data(), rep.size()};
    p.call(ConstChain{&mp, 1}, MutableChain{&rp, 1}, true);  // connect + MTU probe first
    for (long i = 0; i < n; i++) {
        if (!p.call(ConstChain{&mp, 1}, MutableChain{&rp, 1}, true)) return 1;
    }
    return 0;
}

double udp_pingpong(long n) {
    int s1 = socket(AF_INET, SOCK_DGRAM, 0), s2 = socket(AF_INET, SOCK_DGRAM, 0);
    sockaddr_in a{}, b{};
    a.sin_family = b.sin_family = AF_INET;
    a.sin_addr.s_addr = b.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(s1, (sockaddr*)&a, sizeof a) || bind(s2, (sockaddr*)&b, sizeof b)) return -1;
    getsockname(s1, (sockaddr*)&a, &len);
    getsockname(s2, (sockaddr*)&b, &len);
    char m[64] = {1};
    double t0 = seconds();
    for (long i = 0; i < n; i++) {
        sendto(s1, m, 64, 0, (sockaddr*)&b, sizeof b);
        if (recv(s2, m, 64, 0) != 64) return -1;
        sendto(s2, m, 64, 0, (sockaddr*)&a, sizeof a);
        if (recv(s1, m, 64, 0) != 64) return -1;
    }
    double t = seconds() - t0;
    close(s1);
    close(s2);
    return t;
}

void bench_rtt(bool auth) {
    const char* k = auth ? "_auth" : "";
    long n = 100000;
    Pair p(64, auth);
    std::vector<uint8_t> msg(64, 1), rep(64);
    ConstBytes mp{msg.data(), msg.size()};
    MutableBytes rp{rep.data(), rep.size()};
    p.call(ConstChain{&mp, 1}, MutableChain{&rp, 1}, true);
    uint64_t packets0 = p.packets;
    double t0 = seconds();
    for (long i = 0; i < n; i++) p.call(ConstChain{&mp, 1}, MutableChain{&rp, 1}, true);
    double t = seconds() - t0;
    printf("rtt_engine%s_per_s %.0f\n", k, n / t);
    printf("rtt_engine%s_ns %.0f\n", k, t / n * 1e9);
    if (auth) return;
    printf("rtt_packets_per_call %.3f\n", double(p.packets - packets0) / n);
    double u = udp_pingpong(n);
    if (u > 0) {
        printf("rtt_udp_loopback_per_s %.0f\n", n / u);
        printf("rtt_udp_loopback_ns %.0f\n", u / n * 1e9);
    }
}

void bench_bulk(bool auth) {
    const size_t size = 1 << 20;
    int n = 40;
    Pair p(size, auth);
    std::vector<uint8_t> msg(size, 7), rep(8);
    ConstBytes mp{msg.data(), msg.size()};
    MutableBytes rp{rep.data(), rep.size()};
    p.call(ConstChain{&mp, 1}, MutableChain{&rp, 1}, false);
    uint64_t packets0 = p.packets;
    double t0 = seconds();
    for (int i = 0; i < n; i++) p.call(ConstChain{&mp, 1}, MutableChain{&rp, 1}, false);
    double t = seconds() - t0;
    printf("bulk_engine%s_bytes_per_s %.0f\n", auth ? "_auth" : "", double(size) * n / t);
    if (auth) return;
    printf("bulk_packets_per_mib %.1f\n", double(p.packets - packets0) / n);
    std::vector<uint8_t> dst(size);
    int m = 2000;
    t0 = seconds();
    for (int i = 0; i < m; i++) {
        msg[i % size] = uint8_t(i);
        memcpy(dst.data(), msg.data(), size);
        asm volatile("" : : "r"(dst.data()) : "memory");
    }
    t = seconds() - t0;
    printf("bulk_memcpy_bytes_per_s %.0f\n", double(size) * m / t);
}

void bench_scale() {
    for (int nodes : {10, 100, 1000}) {
        sim::Options o;
        o.seed = 11;
        o.nodes = nodes;
        o.peers_per_node = 3;
        o.sends_per_node = 6;
        o.mode = 2;                   // one node crashes and stays down 3 s: callers see host-down
        o.crash_down_us = 3'000'000;
        o.crash_callers = true;       // its callers have calls in progress when it dies
        o.loss = 0.05;
        o.duplicate = 0.01;
        double t0 = seconds();
        sim::Result r = sim::run(o);
        double t = seconds() - t0;
        printf("scale_%d_ok %d\n", nodes, r.ok ? 1 : 0);
        if (!r.ok) printf("scale_%d_failure %s\n", nodes, r.failure.c_str());
        printf("scale_%d_memory_bytes %llu\n", nodes, (unsigned long long)r.engine_memory_bytes);
        printf("scale_%d_peers_high %llu\n", nodes, (unsigned long long)r.peers_high);
        printf("scale_%d_probes_per_node_s %.2f\n", nodes, r.probes_per_node_second);
        printf("scale_%d_liveness_bytes_per_node_s %.1f\n", nodes, r.liveness_bytes_per_node_second);
        printf("scale_%d_detection_max_ms %.1f\n", nodes, r.detection_max_us / 1000.0);
        printf("scale_%d_sends %llu\n", nodes, (unsigned long long)r.sends);
        printf("scale_%d_detections %llu\n", nodes, (unsigned long long)r.detections);
        printf("scale_%d_wall_s %.2f\n", nodes, t);
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc >= 2 && !strcmp(argv[1], "calls")) return bench_calls(argc >= 3 ? atol(argv[2]) : 1000);
    if (argc >= 2 && !strcmp(argv[1], "rtt")) return bench_rtt(false), bench_rtt(true), 0;
    if (argc >= 2 && !strcmp(argv[1], "bulk")) return bench_bulk(false), bench_bulk(true), 0;
    if (argc >= 2 && !strcmp(argv[1], "scale")) return bench_scale(), 0;
    fprintf(stderr, "usage: smp_bench_engine rtt|bulk|calls N|scale\n");
    return 2;
}
