// A deterministic two-node run of the real engine (protocol/engine.cc) on a virtual clock and a
// virtual wire, recorded as a pcap for the dissector's golden test, together with what each
// frame must show: the fields the engine's decoder reads, and the links the run itself knows
// (which frame a reply answers, which frame an exact copy repeats, where a message completes).
//
//   scenario SEED OUT.pcap OUT.jsonl
//
// The capture point is the wire between the two nodes: a packet the fault plan drops is in the
// capture (it was sent) and its retransmission follows; a packet it duplicates is in it twice.
// Covered: HELLO, names (found and not found), small, segmented and pulled requests and replies,
// errors, a pulse, a timed-out send (CANCEL), loss (retransmission), duplication, idle probes,
// a dead peer (host down) and a rebooted one (RESET, peer rebooted).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "protocol/engine.h"
#include "protocol/wire.h"

namespace {

using namespace smp;
using wire::DecodeError;
using wire::Message;
using wire::Type;

constexpr uint32_t kIpA = 0x0A4E0001;  // 10.78.0.1, client (only ever written to a file)
constexpr uint32_t kIpB = 0x0A4E0002;  // 10.78.0.2, server
constexpr uint16_t kEpA = 1;
constexpr uint16_t kEpB = 0;
constexpr Instant kLatencyUs = 150;
constexpr uint32_t kEchoChannel = 5;
constexpr uint32_t kAppErrorChannel = 8;
constexpr uint32_t kSilentChannel = 6;   // the server never answers: the client's deadline passes
constexpr uint32_t kPacketsMax = 20000;  // a runaway run stops here (and fails)
constexpr size_t kMtu = 1500;

// ---- output ---------------------------------------------------------------------------------
struct Frame {
    Instant at;
    uint32_t src, dst;
    std::vector<uint8_t> bytes;
    uint16_t ip_id;  // a copy made by the network keeps it; each send gets a new one
};

struct Expect {
    std::map<std::string, std::string> fields;
};

struct Wire;

struct Node {
    const char* name;
    uint32_t ip;
    uint16_t ep;
    Config config;
    std::vector<uint8_t> arena;
    Engine* engine = nullptr;
    bool alive = true;
    // Server side: requests being read, then echoed.
    struct Held {
        uint32_t handle;
        uint32_t channel;
        std::vector<uint8_t> data;
    };
    std::map<uint32_t, Held> held;
    std::vector<std::vector<uint8_t>> replies;  // reply buffers borrowed until kReplyDone
    std::vector<Event> events;
    // Borrowed by the engine until the event that ends each; never moved while borrowed.
    std::vector<MutableBytes> read_parts;
    std::vector<ConstBytes> reply_parts;

    void start(uint64_t incarnation, const StaticPeer* peers, uint16_t peer_count) {
        config = Config{};
        config.local_ipv4 = ip;
        config.local_endpoint = ep;
        config.incarnation = incarnation;
        config.static_peers = peers;
        config.static_peers_count = peer_count;
        config.probes_dead = 10;  // a short liveness bound keeps the capture small
        arena.assign(Engine::memory_bytes(config) + Engine::kMemoryAlign, 0);
        uintptr_t p = reinterpret_cast<uintptr_t>(arena.data());
        p = (p + Engine::kMemoryAlign - 1) & ~uintptr_t(Engine::kMemoryAlign - 1);
        delete engine;
        engine = new Engine(config, reinterpret_cast<void*>(p), Engine::memory_bytes(config));
        if (!engine->ok()) {
            fprintf(stderr, "scenario: engine %s did not start\n", name);
            exit(1);
        }
        held.clear();
        read_parts.assign(64, MutableBytes{nullptr, 0});
        reply_parts.assign(64, ConstBytes{nullptr, 0});
        alive = true;
    }
};

class Pcap {
public:
    void write(const char* path, const std::vector<Frame>& frames) {
        FILE* f = fopen(path, "wb");
        if (!f) { perror(path); exit(2); }
        uint32_t hdr[6] = {0xA1B2C3D4u, 2 | (4u << 16), 0, 0, 65535, 1};
        fwrite(hdr, 1, 24, f);
        for (const Frame& fr : frames) {
            uint8_t buf[14 + 20 + 65536];
            static const uint8_t kEth[14] = {2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0};
            memcpy(buf, kEth, 14);
            if (fr.src == kIpB) { buf[5] = 1; buf[11] = 2; }
            uint8_t* ip = buf + 14;
            size_t total = 20 + fr.bytes.size();
            ip[0] = 0x45; ip[1] = 0;
            ip[2] = uint8_t(total >> 8); ip[3] = uint8_t(total);
            ip[4] = uint8_t(fr.ip_id >> 8); ip[5] = uint8_t(fr.ip_id);
            ip[6] = 0x40; ip[7] = 0;
            ip[8] = 64; ip[9] = wire::kIpProtocol; ip[10] = ip[11] = 0;
            store32(ip + 12, fr.src);
            store32(ip + 16, fr.dst);
            uint16_t c = wire::ipv4_header_checksum(ip, 20);
            ip[10] = uint8_t(c >> 8); ip[11] = uint8_t(c);
            memcpy(ip + 20, fr.bytes.data(), fr.bytes.size());
            Instant t = fr.at + 1'700'000'000'000'000ull;
            uint32_t rec[4] = {uint32_t(t / 1'000'000), uint32_t(t % 1'000'000),
                               uint32_t(14 + total), uint32_t(14 + total)};
            fwrite(rec, 1, 16, f);
            fwrite(buf, 1, 14 + total, f);
        }
        fclose(f);
    }
};

// ---- the wire -------------------------------------------------------------------------------
struct InFlight {
    Instant at;
    uint32_t src, dst;
    std::vector<uint8_t> bytes;
};

struct Wire {
    Instant now = 0;
    std::vector<Frame> frames;
    std::vector<InFlight> flight;
    std::mt19937_64 rng;
    // Fault plan: drop / duplicate the n-th packet (1-based frame numbers of the capture), and
    // random faults in percent while a phase wants them.
    std::set<uint32_t> drop_frames, dup_frames;
    uint32_t random_drop_percent = 0, random_dup_percent = 0;
    // What each frame must show beyond its own fields.
    std::map<uint32_t, std::map<std::string, std::string>> derived;
    std::map<std::string, uint32_t> first_copy;  // exact bytes (with src, IP id) -> first frame
    uint16_t next_ip_id = 1;

    explicit Wire(uint64_t seed) : rng(seed) {}

    void send(uint32_t src, uint32_t dst, const uint8_t* p, size_t n, bool alive_dst) {
        int copies = 1;
        uint32_t frame = uint32_t(frames.size()) + 1;
        bool drop = drop_frames.count(frame) || (random_drop_percent && rng() % 100 < random_drop_percent);
        if (dup_frames.count(frame) || (random_dup_percent && rng() % 100 < random_dup_percent))
            copies = 2;
        uint16_t ip_id = next_ip_id++;
        for (int c = 0; c < copies; c++) {
            frame = uint32_t(frames.size()) + 1;
            frames.push_back(Frame{now + Instant(c), src, dst, std::vector<uint8_t>(p, p + n), ip_id});
            std::string key(reinterpret_cast<const char*>(p), n);
            key += char(src & 0xFF);
            key += char(ip_id & 0xFF);
            key += char(ip_id >> 8);
            auto it = first_copy.find(key);
            if (it != first_copy.end()) derived[frame]["simplemsg.duplicate_of"] = std::to_string(it->second);
            else first_copy[key] = frame;
            if (!drop && alive_dst)
                flight.push_back(InFlight{now + kLatencyUs + c, src, dst, std::vector<uint8_t>(p, p + n)});
        }
    }
};

// ---- running the two nodes -----------------------------------------------------------------
struct Run {
    Wire wire;
    Node a{"a", kIpA, kEpA}, b{"b", kIpB, kEpB};
    StaticPeer peers_of_a[1] = {{"b", kIpB, kEpB}};
    StaticPeer peers_of_b[1] = {{"a", kIpA, kEpA}};

    explicit Run(uint64_t seed) : wire(seed) {}

    Node& node_at(uint32_t ip) { return ip == kIpA ? a : b; }

    void pump_transmit(Node& n) {
        if (!n.alive) return;
        uint8_t buf[kMtu];
        for (int i = 0; i < 1000; i++) {
            Transmit t = n.engine->poll_transmit(wire.now, buf, sizeof buf);
            if (t.bytes == 0) return;
            Node& other = node_at(t.dst_ipv4);
            wire.send(n.ip, t.dst_ipv4, buf, t.bytes, true);
            (void)other;
            if (wire.frames.size() > kPacketsMax) {
                fprintf(stderr, "scenario: more than %u packets: runaway\n", kPacketsMax);
                exit(1);
            }
        }
    }

    void serve(Node& n) {
        Event e;
        while (n.alive && n.engine->poll_event(e)) {
            switch (e.type) {
                case EventType::kRequest: {
                    if (e.channel == kSilentChannel) break;  // never answered
                    if (e.channel != kEchoChannel) {
                        n.engine->error(wire.now, RequestHandle{e.handle},
                                        e.channel == kAppErrorChannel ? ErrorCode::kAppError
                                                                      : ErrorCode::kNoSuchChannel,
                                        42);
                        break;
                    }
                    Node::Held& h = n.held[e.handle];
                    h.handle = e.handle;
                    h.channel = e.channel;
                    h.data.assign(e.size, 0);
                    size_t slot = e.handle % n.read_parts.size();
                    n.read_parts[slot] = MutableBytes{h.data.data(), h.data.size()};
                    n.engine->read(wire.now, RequestHandle{e.handle}, 0,
                                   MutableChain{&n.read_parts[slot], 1});
                    break;
                }
                case EventType::kReadDone: {
                    auto it = n.held.find(e.handle);
                    if (it == n.held.end()) break;
                    size_t slot = e.handle % n.reply_parts.size();
                    n.reply_parts[slot] = ConstBytes{it->second.data.data(), it->second.data.size()};
                    n.engine->reply(wire.now, RequestHandle{e.handle}, 7,
                                    ConstChain{&n.reply_parts[slot], 1});
                    break;
                }
                case EventType::kReplyDone:
                case EventType::kRequestCancelled:
                    n.held.erase(e.handle);
                    break;
                default:
                    n.events.push_back(e);
                    break;
            }
        }
    }

    // Advances the virtual clock by at most `step_us`, delivering and timing as it goes.
    void step(Instant until) {
        while (wire.now < until) {
            pump_transmit(a);
            pump_transmit(b);
            serve(a);
            serve(b);
            pump_transmit(a);
            pump_transmit(b);
            Instant next = until;
            for (const InFlight& f : wire.flight) next = f.at < next ? f.at : next;
            if (a.alive) { Instant t = a.engine->next_timeout(); next = t < next ? t : next; }
            if (b.alive) { Instant t = b.engine->next_timeout(); next = t < next ? t : next; }
            wire.now = next > wire.now ? next : wire.now + 1;
            std::vector<InFlight> due, later;
            for (InFlight& f : wire.flight) (f.at <= wire.now ? due : later).push_back(std::move(f));
            wire.flight = std::move(later);
            for (InFlight& f : due) {
                Node& n = node_at(f.dst);
                if (n.alive) n.engine->handle_datagram(wire.now, f.src, f.dst, f.bytes.data(), f.bytes.size());
            }
            for (Node* n : {&a, &b})
                if (n->alive && n->engine->next_timeout() <= wire.now) n->engine->handle_timeout(wire.now);
        }
    }

    // Runs until event `type` for `handle` arrives at node n (or the guard passes).
    bool wait_for(Node& n, EventType type, uint32_t handle, Event* out, Instant guard_us) {
        Instant end = wire.now + guard_us;
        while (wire.now < end) {
            for (size_t i = 0; i < n.events.size(); i++) {
                if (n.events[i].type == type && (handle == 0 || n.events[i].handle == handle)) {
                    if (out) *out = n.events[i];
                    n.events.erase(n.events.begin() + long(i));
                    return true;
                }
            }
            step(wire.now + 500);
        }
        return false;
    }
};

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; i++) v[i] = uint8_t(seed + i * 7 + (i >> 8));
    return v;
}

[[noreturn]] void fail(const char* what) {
    fprintf(stderr, "scenario: %s\n", what);
    exit(1);
}

// One echo call from a to b: returns the send's end event.
Event call(Run& r, PeerRef peer, uint32_t channel, size_t bytes, Instant deadline_us, uint8_t seed) {
    static std::vector<uint8_t> msg, reply;
    static ConstBytes part;
    static MutableBytes rpart;
    msg = pattern(bytes, seed);
    reply.assign(bytes + 16, 0);
    part = ConstBytes{msg.data(), msg.size()};
    rpart = MutableBytes{reply.data(), reply.size()};
    Instant deadline = deadline_us == kNever ? kNever : r.wire.now + deadline_us;
    Result<SendHandle> s = r.a.engine->start_send(r.wire.now, peer, channel, ConstChain{&part, 1},
                                                  MutableChain{&rpart, 1}, deadline, 10);
    if (!s.ok()) fail("start_send refused");
    Event e;
    if (!r.wait_for(r.a, EventType::kSendDone, s.value.value, &e, 20'000'000)) fail("a send never ended");
    if (e.error == ErrorCode::kOk && (e.bytes != bytes || memcmp(reply.data(), msg.data(), bytes) != 0))
        fail("echo came back wrong");
    return e;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: scenario SEED OUT.pcap OUT.jsonl\n");
        return 2;
    }
    uint64_t seed = strtoull(argv[1], nullptr, 10);
    Run r(seed);
    r.a.start(0x1111111100000001ull + seed, r.peers_of_a, 1);
    r.b.start(0x2222222200000002ull + seed, r.peers_of_b, 1);
    if (r.b.engine->name_attach("echo", kEchoChannel) != ErrorCode::kOk) fail("name_attach");

    // 1. Names: found, then not found.
    Result<LookupHandle> l = r.a.engine->name_lookup(r.wire.now, "echo");
    if (!l.ok()) fail("name_lookup");
    Event e;
    if (!r.wait_for(r.a, EventType::kNameResolved, l.value.value, &e, 5'000'000) || e.error != ErrorCode::kOk)
        fail("echo not found");
    PeerRef peer = e.peer;
    l = r.a.engine->name_lookup(r.wire.now, "nosuch");
    if (!l.ok() || !r.wait_for(r.a, EventType::kNameResolved, l.value.value, &e, 5'000'000) ||
        e.error != ErrorCode::kNoSuchService)
        fail("a missing name was found");

    // 2. Small, segmented (eager, several packets) and pulled messages.
    for (size_t n : {size_t(0), size_t(100), size_t(5000), size_t(200000)}) {
        e = call(r, peer, kEchoChannel, n, kNever, uint8_t(n));
        if (e.error != ErrorCode::kOk) fail("an echo failed");
    }
    // 3. Errors from the server: no such channel, an application error.
    if (call(r, peer, 99, 10, kNever, 1).error != ErrorCode::kNoSuchChannel) fail("no-such-channel");
    if (call(r, peer, kAppErrorChannel, 10, kNever, 2).error != ErrorCode::kAppError) fail("app-error");
    // 4. A pulse.
    if (r.a.engine->pulse(r.wire.now, peer, kEchoChannel, 3, 0xBEEF) != ErrorCode::kOk) fail("pulse");
    r.step(r.wire.now + 50'000);
    // 5. A deadline that passes at the server (the channel never answers): CANCEL.
    if (call(r, peer, kSilentChannel, 10, 30'000, 3).error != ErrorCode::kTimedOut) fail("timeout");
    // 6. Loss and duplication: the next frames lose one packet and duplicate another, then a
    //    random phase (15% each) on a segmented and a pulled message.
    uint32_t next = uint32_t(r.wire.frames.size()) + 1;
    r.wire.drop_frames = {next + 1};
    r.wire.dup_frames = {next + 3};
    if (call(r, peer, kEchoChannel, 5000, kNever, 4).error != ErrorCode::kOk) fail("echo under loss");
    r.wire.random_drop_percent = 15;
    r.wire.random_dup_percent = 15;
    for (size_t n : {size_t(3000), size_t(40000)})
        if (call(r, peer, kEchoChannel, n, kNever, 5).error != ErrorCode::kOk) fail("echo under faults");
    r.wire.random_drop_percent = r.wire.random_dup_percent = 0;
    // 7. Idle: liveness probes.
    r.step(r.wire.now + 100'000);
    // 8. The server dies: the client's call ends with host down.
    r.b.alive = false;
    e = call(r, peer, kEchoChannel, 10, kNever, 6);
    if (e.error != ErrorCode::kHostDown) fail("a dead server did not give host down");
    // 9. The server comes back with a new incarnation: the old connection says peer rebooted,
    //    a new one works.
    r.b.start(0x3333333300000003ull + seed, r.peers_of_b, 1);
    r.b.engine->name_attach("echo", kEchoChannel);
    r.step(r.wire.now + 50'000);
    e = call(r, peer, kEchoChannel, 10, kNever, 7);
    if (e.error != ErrorCode::kPeerRebooted && e.error != ErrorCode::kHostDown)
        fprintf(stderr, "scenario: note: old connection after reboot ended with %s\n",
                wire::error_code_name(e.error));
    Result<PeerRef> fresh = r.a.engine->peer(kIpB, kEpB);
    if (fresh.ok() && call(r, fresh.value, kEchoChannel, 100, kNever, 8).error != ErrorCode::kOk)
        fail("a call to the rebooted server failed");
    r.step(r.wire.now + 50'000);

    Pcap().write(argv[2], r.wire.frames);
    FILE* out = fopen(argv[3], "w");
    if (!out) { perror(argv[3]); return 2; }
    for (size_t i = 0; i < r.wire.frames.size(); i++) {
        uint32_t frame = uint32_t(i) + 1;
        fprintf(out, "{\"frame\": %u, \"src\": %u, \"derived\": {", frame, r.wire.frames[i].src);
        bool first = true;
        for (auto& [k, v] : r.wire.derived[frame]) {
            fprintf(out, "%s\"%s\": \"%s\"", first ? "" : ", ", k.c_str(), v.c_str());
            first = false;
        }
        fprintf(out, "}}\n");
    }
    fclose(out);
    fprintf(stderr, "scenario: %zu frames\n", r.wire.frames.size());
    return 0;
}
