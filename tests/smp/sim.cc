// The simulated cluster. Reading order: the seeded random source; the network (loss,
// duplication, jitter, partition, MTU, pcap); the applications on each node (clients that send,
// servers that read and reply); the event loop; the invariants.
#include "tests/smp/sim.h"

#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <set>
#include <tuple>

#include "protocol/engine.h"

namespace smp::sim {
namespace {

constexpr uint32_t kBaseIpv4 = 0x0A4D0001;  // 10.77.0.1 + node index
constexpr uint64_t kLatencyUs = 50;
constexpr uint64_t kSlackUs = 1000;         // scheduling slack on top of the jitter
constexpr uint64_t kLateDupUs = 50'000;     // a late duplicate arrives at most this much later
constexpr uint32_t kIdBytes = 16;           // id (8) + reply size (4) + flags (4)
constexpr uint32_t kFlagAppError = 1, kFlagSlow = 2;
constexpr uint32_t kPulseValueBase = 1000;  // random runs' pulse values (unique) start here

struct Rng {
    uint64_t s;
    uint64_t next() {  // splitmix64
        uint64_t z = (s += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        return z ^ (z >> 31);
    }
    double uniform() { return double(next() >> 11) / double(1ull << 53); }
    uint64_t below(uint64_t n) { return n ? next() % n : 0; }
    bool chance(double p) { return uniform() < p; }
};

uint8_t msg_byte(uint64_t id, uint32_t i) { return uint8_t((id >> ((i % 8) * 8)) ^ i ^ (i >> 8)); }
uint8_t reply_byte(uint64_t id, uint32_t i) { return uint8_t(id * 13 + i * 3 + (i >> 9)); }
uint32_t reply_status(uint64_t id) { return uint32_t(id ^ 0x5A5A5A5Au); }

void put32(uint8_t* p, uint32_t v) { memcpy(p, &v, 4); }
uint32_t get32(const uint8_t* p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

struct ClientSend {
    uint64_t id = 0;
    int target = 0;
    uint32_t size = 0, reply_size = 0, flags = 0;
    std::vector<uint8_t> msg, reply;
    ConstBytes msg_part{};
    MutableBytes reply_part{};
    uint64_t started = 0;
    Instant deadline = kNever;
    bool cancel_planned = false, cancelled = false, short_deadline = false;
};

struct ServerWork {
    std::vector<uint8_t> buf, reply;
    MutableBytes part{};
    ConstBytes reply_part{};
    uint64_t id = 0;
    int from = 0;
    uint32_t eager = 0;  // the kRequest's eager_bytes
    bool replied = false;
    const uint8_t* area = nullptr;  // with an eager store: eager_in_place() at kRequest
    bool area_gone = false;         // eager_in_place() gave nothing at kReadDone (ended since)
};

struct PlannedSend {
    uint64_t at;
    int target;
    uint32_t size, reply_size, flags;
    bool cancel, short_deadline;
};

struct Node {
    int index = 0;
    bool alive = true;
    Config config;
    std::unique_ptr<uint8_t[]> raw;
    uint8_t* arena = nullptr;
    size_t arena_bytes = 0;
    std::vector<uint8_t> eager_store;  // Config::eager_store, when this node has one
    std::unique_ptr<Engine> engine;
    std::map<uint32_t, std::unique_ptr<ClientSend>> sends;  // by SendHandle value
    std::map<uint32_t, std::unique_ptr<ServerWork>> work;   // by RequestHandle value
    std::vector<PlannedSend> plan;
    uint64_t version = 0;
    uint64_t epoch = 0;
    uint64_t probes_before = 0;
    uint64_t probes_total = 0, retrans_total = 0, dups_total = 0;
    std::vector<int> targets;
    std::map<int, uint64_t> heard_from;  // by node index: when a packet of it last arrived here
};

struct Packet {
    uint64_t at, seq;
    int dst;
    uint32_t src_ip, dst_ip;
    std::vector<uint8_t> bytes;
};
struct PacketLater {
    bool operator()(const Packet* a, const Packet* b) const {
        return std::tie(a->at, a->seq) > std::tie(b->at, b->seq);
    }
};

enum class AppKind { kStartSend, kCancel, kReply, kCrash, kRestart, kPulse, kLookup, kRandomPulse, kRandomLookup,
                     kCancelLookup };
struct AppTimer {
    uint64_t at, seq;
    AppKind kind;
    int node;
    uint64_t key;
    uint64_t epoch;  // the node's life it belongs to: timers of a crashed life are void
    bool operator>(const AppTimer& o) const { return std::tie(at, seq) > std::tie(o.at, o.seq); }
};

class Sim {
public:
    explicit Sim(const Options& o) : o_(o) { rng_.s = o.seed * 0x2545F4914F6CDD1Dull + 1; }
    Result run();
    // Scenario mode hooks.
    std::function<void(Sim&)> scenario;
    std::function<bool(const Packet&)> drop_hook;  // true: lose this packet
    std::function<bool(const Packet&)> dup_hook;   // true: duplicate this packet

    Options o_;
    Rng rng_;
    Result res_;
    std::vector<Node> nodes_;
    uint64_t now_ = 0, seq_ = 0, next_id_ = 1;
    double loss_ = 0, dup_ = 0;
    uint64_t jitter_ = 0;
    int mtu_ = 1500;
    // Odd nodes use a 32 KiB eager limit against the others' 8 KiB (each HELLO gives it and
    // clients keep to the server's: SPEC.md 5.3). Taken from the seed, not the random stream, so other seeds draw as before.
    bool mixed_eager_ = false;
    bool eager_stores_ = false;  // odd nodes keep eager bytes in their own store, not the pool
    uint32_t first_txn_ = 1;  // 1 seed in 3 starts every peer's numbering just below the wrap
    Mode mode_ = Mode::kPlain;
    uint32_t size_max_ = 0;
    int pa_ = -1, pb_ = -1;
    uint64_t p_from_ = 0, p_to_ = 0;
    int crash_node_ = -1;
    uint64_t crash_at_ = 0, restart_at_ = 0;
    bool crashed_ = false;
    std::priority_queue<Packet*, std::vector<Packet*>, PacketLater> net_;
    std::priority_queue<std::tuple<uint64_t, int, uint64_t>, std::vector<std::tuple<uint64_t, int, uint64_t>>,
                        std::greater<>>
        timers_;
    std::priority_queue<AppTimer, std::vector<AppTimer>, std::greater<>> app_;
    std::map<uint64_t, int> executed_;
    // Sends that a fault must end within the detection bound: (node, handle) -> bound.
    std::map<std::pair<int, uint32_t>, std::pair<uint64_t, uint64_t>> must_end_by_;  // -> {bound, since}
    std::vector<int> dirty_;
    std::set<int> busy_at_crash_;
    std::set<uint32_t> pulse_sent_, pulse_seen_;
    std::map<std::pair<int, uint32_t>, int> lookups_;  // (node, lookup handle) -> target
    // (node, lookup handle) -> the PeerRef it asks, held until the lookup ends
    std::map<std::pair<int, uint32_t>, PeerRef> lookup_where_;
    std::set<std::pair<int, uint32_t>> lookups_cancelled_;  // (node, handle) given up: no event may follow
    std::map<std::tuple<int, int, int>, uint32_t> pulse_last_;  // (from, to, code) -> last value
    uint32_t next_pulse_ = kPulseValueBase;
    std::map<std::pair<int, uint32_t>, uint64_t> server_must_end_by_;  // held requests of a dead client
    FILE* pcap_ = nullptr;
    uint16_t ip_id_ = 0;
    bool stop_ = false;
    uint64_t spins_ = 0;

    void fail(const std::string& why) {
        if (!res_.ok) return;
        res_.ok = false;
        res_.failure = "seed " + std::to_string(o_.seed) + " at t=" + std::to_string(now_) + "us: " + why +
                       " [" + res_.summary + "]";
        stop_ = true;
    }
    void draw();
    void build_node(int i);
    void start_engine(Node& n);
    void send_packet(int from, const Transmit& t, const uint8_t* bytes);
    void pcap_write(const Packet& p);
    void pump(int i);
    void on_event(Node& n, const Event& ev);
    // A lookup ended (answered or cancelled): the reference to the peer it asked goes back.
    void release_where(Node& n, uint32_t handle) {
        auto w = lookup_where_.find({n.index, handle});
        if (w == lookup_where_.end()) return;
        n.engine->release_peer(w->second);
        lookup_where_.erase(w);
    }
    void app_timer(const AppTimer& t);
    void start_send(Node& n, const PlannedSend& ps);
    void crash(int i);
    void restart(int i);
    bool faulty_pair(int a, int b) const {
        if (mode_ == Mode::kPartition) return (a == pa_ && b == pb_) || (a == pb_ && b == pa_);
        if (mode_ == Mode::kCrash) return a == crash_node_ || b == crash_node_;
        return false;
    }
    void mark(int i) { dirty_.push_back(i); }
    void schedule(uint64_t at, AppKind kind, int node, uint64_t key) {
        app_.push(AppTimer{at, seq_++, kind, node, key, node >= 0 ? nodes_[node].epoch : 0});
    }
    bool finished() const;
    void server_ended(int node, uint32_t handle) {
        auto it = server_must_end_by_.find({node, handle});
        if (it == server_must_end_by_.end()) return;
        if (now_ > it->second) fail("server told of its dead client after the bound");
        server_must_end_by_.erase(it);
    }
    void pump_dirty() {
        while (!dirty_.empty() && !stop_) {
            std::vector<int> d;
            d.swap(dirty_);
            std::sort(d.begin(), d.end());
            d.erase(std::unique(d.begin(), d.end()), d.end());
            for (int i : d) pump(i);
        }
    }
    void finish_checks();
};

void Sim::draw() {
    Rng& r = rng_;
    int n = o_.nodes ? o_.nodes : int(2 + r.below(4));
    loss_ = o_.loss >= 0 ? o_.loss : (r.chance(0.2) ? 0 : r.uniform() * 0.30);
    dup_ = o_.duplicate >= 0 ? o_.duplicate : r.uniform() * 0.05;
    jitter_ = o_.jitter_us >= 0 ? uint64_t(o_.jitter_us) : r.below(2000);
    static const int kMtus[] = {1500, 1500, 1280, 1280, 1000, 576};
    mtu_ = o_.mtu ? o_.mtu : kMtus[r.below(6)];
    mixed_eager_ = o_.seed % 4 == 1;
    eager_stores_ = o_.seed % 5 == 3;
    first_txn_ = o_.seed % 3 == 2 ? 0xFFFFFFFFu - uint32_t(o_.seed % 97) : 1u;
    mode_ = o_.mode >= 0 ? Mode(o_.mode) : Mode(r.chance(0.6) ? 0 : r.chance(0.5) ? 1 : 2);
    if (n < 3 && mode_ != Mode::kPlain) n = 3;
    size_max_ = o_.size_max ? o_.size_max : (r.chance(0.1) ? 256 * 1024 : 24 * 1024);
    int per_node = o_.sends_per_node ? o_.sends_per_node : int(2 + r.below(5));
    nodes_.resize(n);
    for (int i = 0; i < n; i++) build_node(i);
    for (int i = 0; i < n; i++) {
        Node& node = nodes_[i];
        // Each node talks to a few others only (all others in small clusters).
        int want = o_.peers_per_node ? o_.peers_per_node : n - 1;
        if (want > n - 1) want = n - 1;
        std::set<int> t;
        while (int(t.size()) < want) {
            int j = int(r.below(uint64_t(n)));
            if (j != i) t.insert(j);
        }
        node.targets.assign(t.begin(), t.end());
        for (int k = 0; k < per_node; k++) {
            PlannedSend ps{};
            ps.at = r.below(2'000'000);
            ps.target = node.targets[r.below(node.targets.size())];
            auto size = [&](uint32_t cap) {
                double u = r.uniform();
                uint32_t s = u < 0.7 ? uint32_t(kIdBytes + r.below(1024)) :
                             u < 0.9 ? uint32_t(1024 + r.below(16 * 1024)) :
                                       uint32_t(16 * 1024 + r.below(cap));
                return s > cap ? cap : s;
            };
            ps.size = size(size_max_);
            ps.reply_size = size(size_max_);
            if (ps.size < kIdBytes) ps.size = kIdBytes;
            ps.flags = (r.chance(0.1) ? kFlagAppError : 0) | (r.chance(o_.slow_fraction) ? kFlagSlow : 0);
            ps.cancel = r.chance(0.05);
            ps.short_deadline = !ps.cancel && r.chance(0.05);
            node.plan.push_back(ps);
        }
        for (size_t k = 0; k < node.plan.size(); k++) schedule(node.plan[k].at, AppKind::kStartSend, i, k);
        // Name lookups at a chosen peer (even nodes have "svc<i>" attached).
        for (int k = int(r.below(3)); k > 0; k--)
            schedule(r.below(2'000'000), AppKind::kRandomLookup, i, uint64_t(node.targets[r.below(node.targets.size())]));
        // Pulses: bursts to one target with two codes, so some coalesce while waiting at home.
        int pulses = int(r.below(4));
        for (int k = 0; k < pulses; k++) {
            uint64_t at = r.below(2'000'000);
            int target = node.targets[r.below(node.targets.size())];
            for (int b = 0; b < 3; b++)
                schedule(at, AppKind::kRandomPulse, i, uint64_t(target) | (uint64_t(b % 2) << 16));
        }
    }
    if (mode_ == Mode::kPartition) {
        pa_ = int(r.below(uint64_t(n)));
        pb_ = int((pa_ + 1 + r.below(uint64_t(n - 1))) % n);
        p_from_ = 200'000 + r.below(1'500'000);
        p_to_ = p_from_ + (r.chance(0.5) ? 300'000 : 2'500'000);
        // Calls across the cut after it heals must get through: plan some between its sides.
        for (int side : {pa_, pb_}) {
            Node& node = nodes_[side];
            PlannedSend ps{};
            ps.at = p_to_ + kLateDupUs + 10'000 + r.below(500'000);
            ps.target = side == pa_ ? pb_ : pa_;
            ps.size = uint32_t(kIdBytes + r.below(4000));
            ps.reply_size = uint32_t(r.below(4000));
            node.plan.push_back(ps);
            schedule(ps.at, AppKind::kStartSend, side, node.plan.size() - 1);
        }
    } else if (mode_ == Mode::kCrash) {
        crash_node_ = int(r.below(uint64_t(n)));
        crash_at_ = 100'000 + r.below(1'800'000);
        restart_at_ = crash_at_ + (o_.crash_down_us ? o_.crash_down_us : r.chance(0.5) ? 200'000 : 2'000'000);
        schedule(crash_at_, AppKind::kCrash, crash_node_, 0);
        schedule(restart_at_, AppKind::kRestart, crash_node_, 0);
        if (o_.crash_callers) {
            for (Node& node : nodes_) {
                if (std::find(node.targets.begin(), node.targets.end(), crash_node_) == node.targets.end()) continue;
                PlannedSend ps{};
                ps.at = crash_at_ - 5'000;
                ps.target = crash_node_;
                ps.size = 64;
                ps.reply_size = 64;
                ps.flags = kFlagSlow;  // still being served when the node dies
                node.plan.push_back(ps);
                schedule(ps.at, AppKind::kStartSend, node.index, node.plan.size() - 1);
            }
        }
    }
    char buf[256];
    snprintf(buf, sizeof buf,
             "nodes=%d loss=%.3f dup=%.3f jitter_us=%llu mtu=%d mode=%s sends/node=%d size_max=%u%s%s%s", n,
             loss_, dup_, (unsigned long long)jitter_, mtu_,
             mode_ == Mode::kPlain ? "plain" : mode_ == Mode::kPartition ? "partition" : "crash", per_node,
             size_max_, mixed_eager_ ? " eager=8K/32K" : "", eager_stores_ ? " eager-stores" : "", first_txn_ != 1 ? " txn-wrap" : "");
    res_.summary = buf;
    if (mode_ == Mode::kCrash)
        res_.summary += " crash=" + std::to_string(crash_node_) + "@" + std::to_string(crash_at_) +
                        " restart@" + std::to_string(restart_at_);
    if (mode_ == Mode::kPartition)
        res_.summary += " partition=" + std::to_string(pa_) + "|" + std::to_string(pb_) + "@" +
                        std::to_string(p_from_) + ".." + std::to_string(p_to_);
}

void Sim::build_node(int i) {
    Node& n = nodes_[i];
    n.index = i;
    Config& c = n.config;
    c.local_ipv4 = kBaseIpv4 + uint32_t(i);
    c.local_endpoint = 0;
    c.peers_max = 16;
    c.sends_max = 64;
    c.requests_max = 64;
    c.pool_bytes = 128 * 1024;
    if (mixed_eager_ && i % 2 == 1) c.eager_bytes_max = c.window_bytes;
    c.first_txn = first_txn_;
    c.control_max = 64;
    c.names_max = 4;
    c.names_cache_max = 4;
    c.lookups_max = 4;
    c.timer_slack_us = o_.timer_slack_us;
    c.auth = o_.auth;
    for (size_t k = 0; k < wire::kAuthKeyBytes; k++) c.auth_key.bytes[k] = uint8_t(k * 7 + 3);
    if (eager_stores_ && i % 2 == 1 && nodes_.size() <= 64) {  // (a store per node is not small)
        n.eager_store.resize(Engine::eager_store_bytes(c));
        c.eager_store = n.eager_store.data();
    }
    n.arena_bytes = Engine::memory_bytes(c);
    n.raw.reset(new uint8_t[n.arena_bytes + Engine::kMemoryAlign]);
    n.arena = reinterpret_cast<uint8_t*>((uintptr_t(n.raw.get()) + Engine::kMemoryAlign - 1) &
                                         ~uintptr_t(Engine::kMemoryAlign - 1));
    if (i == 0) res_.engine_memory_bytes = n.arena_bytes;  // node 0 never has an eager store
    start_engine(n);
}

void Sim::start_engine(Node& n) {
    n.config.incarnation = rng_.next() | 1;
    memset(n.arena, 0xA5, n.arena_bytes);  // the engine must not rely on zeroed memory
    memset(n.eager_store.data(), 0x5A, n.eager_store.size());
    n.engine.reset(new Engine(n.config, n.arena, n.arena_bytes));
    if (!n.engine->ok()) fail("engine did not start");
    if (n.index % 2 == 0) {
        std::string name = "svc" + std::to_string(n.index);
        n.engine->name_attach(name.c_str(), 100u + uint32_t(n.index));
    }
    n.version++;
    timers_.emplace(n.engine->next_timeout(), n.index, n.version);
}

void Sim::pcap_write(const Packet& p) {
    if (!pcap_) return;
    uint8_t ip[20];
    uint16_t total = uint16_t(20 + p.bytes.size());
    ip[0] = 0x45;
    ip[1] = 0;
    store16(ip + 2, total);
    store16(ip + 4, ip_id_++);
    store16(ip + 6, 0x4000);  // DF: SMP never relies on fragmentation
    ip[8] = 64;
    ip[9] = wire::kIpProtocol;
    store16(ip + 10, 0);
    store32(ip + 12, p.src_ip);
    store32(ip + 16, p.dst_ip);
    store16(ip + 10, wire::ipv4_header_checksum(ip, 20));
    uint64_t t = 1'700'000'000ull * 1'000'000 + now_;
    uint32_t rec[4] = {uint32_t(t / 1'000'000), uint32_t(t % 1'000'000), total, total};
    fwrite(rec, sizeof rec, 1, pcap_);
    fwrite(ip, 20, 1, pcap_);
    fwrite(p.bytes.data(), 1, p.bytes.size(), pcap_);
}

void Sim::send_packet(int from, const Transmit& t, const uint8_t* bytes) {
    res_.packets++;
    int dst = int(t.dst_ipv4 - kBaseIpv4);
    Packet probe_pkt{now_, 0, dst, nodes_[from].config.local_ipv4, t.dst_ipv4, {bytes, bytes + t.bytes}};
    pcap_write(probe_pkt);
    if (o_.verbose) {
        wire::Message m;
        wire::DecodeError de = wire::decode(bytes, t.bytes, probe_pkt.src_ip, probe_pkt.dst_ip, m);
        printf("%10llu %d->%d %-10s len=%zu ack=%u txn=%u %s\n", (unsigned long long)now_, from, dst,
               de == wire::DecodeError::kOk ? wire::type_name(m.header.type) : wire::decode_error_name(de),
               t.bytes, m.header.ack,
               m.header.type == wire::Type::kRequest ? m.request.txn : m.header.type == wire::Type::kReply ? m.reply.txn : 0,
               m.header.type == wire::Type::kAck ? "(ack)" : "");
    }
    if (dst < 0 || dst >= int(nodes_.size())) return;
    if (t.bytes + wire::kIpv4HeaderBytes > size_t(mtu_)) {
        res_.too_big++;  // DF set and too big for the path: dropped, as a router would
        return;
    }
    if (mode_ == Mode::kPartition && now_ >= p_from_ && now_ < p_to_ &&
        ((from == pa_ && dst == pb_) || (from == pb_ && dst == pa_)))
        return;
    bool lose = drop_hook ? drop_hook(probe_pkt) : rng_.chance(loss_);
    if (lose) {
        res_.lost++;
        return;
    }
    int copies = 1 + ((dup_hook ? dup_hook(probe_pkt) : rng_.chance(dup_)) ? 1 : 0);
    if (copies == 2) res_.duplicated++;
    for (int k = 0; k < copies; k++) {
        Packet* p = new Packet(probe_pkt);
        p->at = now_ + kLatencyUs + (jitter_ ? rng_.below(jitter_) : 0);
        // Some duplicates come late (another path, a slow queue): well after the original.
        if (k == 1 && rng_.chance(0.3)) p->at += rng_.below(kLateDupUs);
        p->seq = seq_++;
        net_.push(p);
    }
}

void Sim::pump(int i) {
    Node& n = nodes_[i];
    if (!n.alive) return;
    uint8_t out[2048];
    for (int guard = 0; guard < 1'000'000; guard++) {
        bool any = false;
        Event ev;
        while (n.alive && n.engine->poll_event(ev)) {
            any = true;
            on_event(n, ev);
            if (stop_) return;
        }
        if (!n.alive) return;
        Transmit t = n.engine->poll_transmit(now_, out, sizeof out);
        if (t.bytes) {
            any = true;
            send_packet(i, t, out);
        }
        if (!any) break;
    }
    // Memory bounds, every step (SPEC.md 6.3).
    const Stats& st = n.engine->stats();
    if (st.pool_bytes_used > n.config.pool_bytes || st.requests_live > n.config.requests_max ||
        st.sends_live > n.config.sends_max || st.peers_live > n.config.peers_max)
        fail("memory bound exceeded on node " + std::to_string(i));
    n.version++;
    timers_.emplace(n.engine->next_timeout(), i, n.version);
}

void Sim::start_send(Node& n, const PlannedSend& ps) {
    auto cs = std::make_unique<ClientSend>();
    cs->id = (uint64_t(n.index) << 40) | next_id_++;
    cs->target = ps.target;
    cs->size = ps.size;
    cs->reply_size = ps.reply_size;
    cs->flags = ps.flags;
    cs->msg.resize(ps.size);
    for (uint32_t k = kIdBytes; k < ps.size; k++) cs->msg[k] = msg_byte(cs->id, k);
    memcpy(cs->msg.data(), &cs->id, 8);
    put32(cs->msg.data() + 8, ps.reply_size);
    put32(cs->msg.data() + 12, ps.flags);
    // The reply buffer is sometimes smaller than the reply (truncation is part of the contract).
    uint32_t cap = rng_.chance(0.1) ? uint32_t(rng_.below(ps.reply_size + 1)) : ps.reply_size;
    cs->reply.assign(cap, 0);
    cs->msg_part = ConstBytes{cs->msg.data(), cs->msg.size()};
    cs->reply_part = MutableBytes{cs->reply.data(), cs->reply.size()};
    cs->started = now_;
    cs->short_deadline = ps.short_deadline;
    cs->cancel_planned = ps.cancel;
    if (ps.short_deadline) cs->deadline = now_ + 1000 + rng_.below(50'000);
    else if (rng_.chance(0.5)) cs->deadline = now_ + 30'000'000;
    const Node& t = nodes_[ps.target];
    smp::Result<PeerRef> pr = n.engine->peer(t.config.local_ipv4, t.config.local_endpoint);
    if (!pr.ok()) {
        // A bounded refusal: this node calls more distinct nodes than its table holds (16 here,
        // with --peers above that) and every entry is busy (sends in progress, or a handshake),
        // or idle with no room left to retire it. Counted, not a failure.
        if (pr.error != ErrorCode::kNoResources) fail("peer(): " + std::string(wire::error_code_name(pr.error)));
        res_.sends++;
        res_.errors++;
        res_.other_errors++;
        return;
    }
    smp::Result<SendHandle> h = n.engine->start_send(now_, pr.value, 7, ConstChain{&cs->msg_part, 1},
                                                MutableChain{&cs->reply_part, 1}, cs->deadline, uint8_t(rng_.below(64)));
    // The send keeps its peer busy while it runs: the application needs no reference meanwhile,
    // and gives this one back so that, idle, the peer may be retired for another.
    n.engine->release_peer(pr.value);
    res_.sends++;
    if (!h.ok()) {
        // A definite error at once (no slot, peer rebooted...): the send ended exactly once.
        res_.errors++;
        if (h.error == ErrorCode::kPeerRebooted) res_.rebooted++;
        else res_.other_errors++;
        if (!faulty_pair(n.index, ps.target) && h.error != ErrorCode::kNoResources)
            fail(std::string("start_send failed: ") + wire::error_code_name(h.error));
        return;
    }
    uint32_t hv = h.value.value;
    if (n.sends.count(hv)) fail("send handle reused while in use");
    if (ps.cancel) schedule(now_ + rng_.below(5000), AppKind::kCancel, n.index, hv);
    // Started while its target is down, and it stays down past the bound: it must end in time.
    // (If the target comes back sooner, the send may reach the new incarnation and go on.)
    if (mode_ == Mode::kCrash && crashed_ && ps.target == crash_node_ &&
        restart_at_ > now_ + n.config.dead_after_us() + jitter_ + kLateDupUs + kSlackUs)
        must_end_by_[{n.index, hv}] = {now_ + n.config.dead_after_us() + jitter_ + kLateDupUs + kSlackUs, now_};
    n.sends[hv] = std::move(cs);
}

void Sim::on_event(Node& n, const Event& ev) {
    Engine& e = *n.engine;
    if (o_.verbose)
        printf("%10llu node %d event %d handle %08x error %s size %u\n", (unsigned long long)now_, n.index,
               int(ev.type), ev.handle, wire::error_code_name(ev.error), ev.size);
    switch (ev.type) {
        case EventType::kRequest: {
            auto w = std::make_unique<ServerWork>();
            w->buf.resize(ev.size);
            w->part = MutableBytes{w->buf.data(), w->buf.size()};
            w->from = int(e.peer_info(ev.peer).ipv4 - kBaseIpv4);
            w->eager = ev.eager_bytes;
            ServerWork* wp = w.get();
            if (!n.eager_store.empty()) wp->area = e.eager_in_place(RequestHandle{ev.handle});
            n.work[ev.handle] = std::move(w);
            if (ev.deadline_us == 0) fail("request delivered with no time left");
            // Refused only if the request ended in the same instant (a CANCEL right behind it):
            // then its kRequestCancelled follows and removes the entry.
            e.read(now_, RequestHandle{ev.handle}, 0, MutableChain{&wp->part, 1});
            break;
        }
        case EventType::kReadDone: {
            auto it = n.work.find(ev.handle);
            if (it == n.work.end()) {
                fail("read done for an unknown request");
                break;
            }
            ServerWork& w = *it->second;
            if (ev.bytes != w.buf.size()) fail("short read");
            if (w.buf.size() < kIdBytes) {
                fail("request without id");
                break;
            }
            memcpy(&w.id, w.buf.data(), 8);
            for (uint32_t k = kIdBytes; k < w.buf.size(); k++) {
                if (w.buf[k] != msg_byte(w.id, k)) {
                    fail("request bytes corrupted at offset " + std::to_string(k));
                    return;
                }
            }
            if (!n.eager_store.empty()) {
                // The eager bytes where the engine wrote them, in the area kRequest gave: the
                // application's until the request's end event is taken, whatever ended it
                // meanwhile (a CANCEL behind the read's last DATA: then eager_in_place() says
                // nothing any more, and kRequestCancelled follows). The same bytes read() gave.
                const uint8_t* in = e.eager_in_place(RequestHandle{ev.handle});
                if (in && in != w.area) fail("the request's eager area moved");
                if (!in) w.area_gone = true;
                if (!w.area || memcmp(w.area, w.buf.data(), std::min<size_t>(w.eager, w.buf.size())) != 0)
                    fail("the eager store does not hold the request's eager bytes");
            }
            if (++executed_[w.id] > 1) fail("request executed twice: id " + std::to_string(w.id));
            uint32_t flags = get32(w.buf.data() + 12);
            uint64_t delay = (flags & kFlagSlow) ? 300'000 : rng_.below(2000);
            schedule(now_ + delay, AppKind::kReply, n.index, ev.handle);
            break;
        }
        case EventType::kRequestCancelled:
            n.work.erase(ev.handle);
            server_ended(n.index, ev.handle);
            break;
        case EventType::kReplyDone: {
            auto it = n.work.find(ev.handle);
            if (it == n.work.end() || !it->second->replied) fail("reply done for a request never replied");
            else if (it->second->area_gone) fail("eager_in_place gave nothing for a request still live");
            n.work.erase(ev.handle);
            server_ended(n.index, ev.handle);
            break;
        }
        case EventType::kSendDone: {
            auto it = n.sends.find(ev.handle);
            if (it == n.sends.end()) {
                fail("send ended twice or never started (handle " + std::to_string(ev.handle) + ")");
                break;
            }
            ClientSend& cs = *it->second;
            if (cs.deadline != kNever && now_ > cs.deadline + kSlackUs) fail("send completed long after its deadline");
            // After a partition heals, new calls between its two sides must get through again,
            // but for SPEC 5.5's rule: a send that joined a connecting begun in the partition
            // ends `host down` with it if the peer's answers since the heal were all lost too
            // (nothing heard from it here for dead_after: seed 32042837, 20% loss).
            const auto heard = n.heard_from.find(cs.target);
            const bool silent = heard == n.heard_from.end() || now_ - heard->second >= n.config.dead_after_us();
            bool faulty = faulty_pair(n.index, cs.target) &&
                          (!(mode_ == Mode::kPartition && cs.started >= p_to_ + kLateDupUs) ||
                           (ev.error == ErrorCode::kHostDown && silent));
            if (ev.error == ErrorCode::kOk) {
                res_.replies++;
                if (cs.flags & kFlagAppError) fail("reply to a request that must fail");
                if (ev.status != reply_status(cs.id)) fail("wrong reply status");
                if (ev.size != cs.reply_size) fail("wrong reply size");
                uint32_t got = std::min<uint32_t>(cs.reply_size, uint32_t(cs.reply.size()));
                if (ev.bytes != got) fail("wrong reply byte count");
                for (uint32_t k = 0; k < got; k++) {
                    if (cs.reply[k] != reply_byte(cs.id, k)) {
                        fail("reply bytes corrupted at " + std::to_string(k));
                        break;
                    }
                }
            } else {
                res_.errors++;
                ErrorCode er = ev.error;
                if (er == ErrorCode::kHostDown) res_.host_down++;
                if (er == ErrorCode::kPeerRebooted) res_.rebooted++;
                if (er == ErrorCode::kTimedOut) res_.timed_out++;
                if (er == ErrorCode::kCancelled) res_.cancelled++;
                if (er == ErrorCode::kAppError) res_.app_errors++;
                if (er != ErrorCode::kHostDown && er != ErrorCode::kPeerRebooted &&
                    er != ErrorCode::kTimedOut && er != ErrorCode::kCancelled && er != ErrorCode::kAppError)
                    res_.other_errors++;
                bool expected = (er == ErrorCode::kAppError && (cs.flags & kFlagAppError) && ev.status == 77) ||
                                (er == ErrorCode::kCancelled && cs.cancelled) ||
                                (er == ErrorCode::kTimedOut && cs.deadline != kNever && now_ >= cs.deadline) ||
                                (faulty && (er == ErrorCode::kHostDown || er == ErrorCode::kPeerRebooted ||
                                            er == ErrorCode::kStale));
                if (!expected)
                    fail(std::string("unexpected send outcome ") + wire::error_code_name(er) + " node " +
                         std::to_string(n.index) + " -> " + std::to_string(cs.target) +
                         " size " + std::to_string(cs.size));
            }
            auto mb = must_end_by_.find({n.index, ev.handle});
            if (mb != must_end_by_.end()) {
                if (now_ > mb->second.first) fail("fault not detected within the bound");
                uint64_t since = mb->second.second;  // the fault, or the send's start if later
                if (mode_ == Mode::kCrash && since == crash_at_ && ev.error != ErrorCode::kOk) res_.detections++;
                if (now_ > since && now_ - since > res_.detection_max_us) res_.detection_max_us = now_ - since;
                must_end_by_.erase(mb);
            }
            n.sends.erase(it);
            break;
        }
        case EventType::kPeerDown: {
            uint16_t idx = 0;
            (void)idx;
            PeerInfo pi = e.peer_info(ev.peer);
            int other = int(pi.ipv4 - kBaseIpv4);
            // The generation changed on reboot, so peer_info may be empty: accept then.
            if (pi.state != PeerState::kFree && !faulty_pair(n.index, other))
                fail("false alarm: peer " + std::to_string(other) + " declared " +
                     wire::error_code_name(ev.error) + " by node " + std::to_string(n.index));
            if (mode_ == Mode::kPlain) fail("false alarm: a peer declared down with no fault");
            // Detection is measured for nodes that were waiting on the node when it crashed.
            if (mode_ == Mode::kCrash && other == crash_node_ && ev.error == ErrorCode::kHostDown &&
                now_ > crash_at_ && busy_at_crash_.count(n.index)) {
                // (The bound itself is checked on each send that was waiting: must_end_by_.)
                // (Counted per waiting send, where it ends: see kSendDone.)
            }
            break;
        }
        case EventType::kPulse: {
            res_.pulses++;
            if (ev.value < kPulseValueBase) break;  // the scenario's own pulses
            if (!pulse_sent_.count(ev.value)) fail("a pulse that was never sent arrived");
            if (!pulse_seen_.insert(ev.value).second) fail("a pulse arrived twice");
            break;
        }
        case EventType::kNameResolved: {
            res_.names_resolved++;
            if (ev.peer.valid()) e.release_peer(ev.peer);  // the answer's PeerRef: not kept
            release_where(n, ev.handle);
            if (lookups_cancelled_.count({n.index, ev.handle})) fail("a cancelled lookup ended with an event");
            auto it = lookups_.find({n.index, ev.handle});
            if (it == lookups_.end()) break;  // the scenario's own lookups
            int target = it->second;
            lookups_.erase(it);
            bool attached = target % 2 == 0;  // even nodes attach "svc<i>" (see start_engine)
            bool faulty = faulty_pair(n.index, target);
            if (ev.error == ErrorCode::kOk) {
                if (!attached || ev.channel != 100u + uint32_t(target)) fail("lookup found a name that is not there");
            } else if (ev.error == ErrorCode::kNoSuchService) {
                if (attached && !(faulty && mode_ == Mode::kCrash)) fail("lookup missed an attached name");
            } else if (!(faulty && ev.error == ErrorCode::kHostDown)) {
                fail(std::string("lookup failed: ") + wire::error_code_name(ev.error));
            }
            break;
        }
    }
}

void Sim::app_timer(const AppTimer& t) {
    Node& n = nodes_[t.node];
    switch (t.kind) {
        case AppKind::kStartSend: {
            if (!n.alive) {
                schedule(restart_at_ + 1, AppKind::kStartSend, t.node, t.key);  // after it restarts
                return;
            }
            start_send(n, n.plan[t.key]);
            break;
        }
        case AppKind::kCancel: {
            if (!n.alive || t.epoch != n.epoch) return;
            auto it = n.sends.find(uint32_t(t.key));
            if (it == n.sends.end()) return;  // ended already
            it->second->cancelled = true;
            if (n.engine->cancel(now_, SendHandle{uint32_t(t.key)}) != ErrorCode::kOk) fail("cancel refused");
            break;
        }
        case AppKind::kReply: {
            if (!n.alive || t.epoch != n.epoch) return;
            auto it = n.work.find(uint32_t(t.key));
            if (it == n.work.end()) return;  // cancelled meanwhile
            ServerWork& w = *it->second;
            uint32_t rsize = get32(w.buf.data() + 8);
            uint32_t flags = get32(w.buf.data() + 12);
            w.replied = true;
            ErrorCode er;
            if (flags & kFlagAppError) {
                er = n.engine->error(now_, RequestHandle{uint32_t(t.key)}, ErrorCode::kAppError, 77);
            } else {
                w.reply.resize(rsize);
                for (uint32_t k = 0; k < rsize; k++) w.reply[k] = reply_byte(w.id, k);
                w.reply_part = ConstBytes{w.reply.data(), w.reply.size()};
                // With an eager store, a reply that fits is kept in the request's own area until
                // kReplyDone (as the kernel's bridge keeps a small one): a request taken
                // meanwhile must not be written over it, nor it over that request's bytes.
                uint8_t* area = n.eager_store.empty() ? nullptr : n.engine->eager_in_place(RequestHandle{uint32_t(t.key)});
                if (area && rsize <= n.config.eager_bytes_max) {
                    memcpy(area, w.reply.data(), rsize);
                    w.reply_part = ConstBytes{area, rsize};
                }
                er = n.engine->reply(now_, RequestHandle{uint32_t(t.key)}, reply_status(w.id),
                                     ConstChain{&w.reply_part, 1});
            }
            if (er != ErrorCode::kOk)
                fail(std::string("reply refused: ") + wire::error_code_name(er) + " on node " + std::to_string(t.node) +
                     " from node " + std::to_string(int(w.id >> 40)));
            break;
        }
        case AppKind::kPulse:
        case AppKind::kLookup: {
            if (!n.alive) return;
            const Node& to = nodes_[t.key];
            smp::Result<PeerRef> pr = n.engine->peer(to.config.local_ipv4, to.config.local_endpoint);
            if (!pr.ok()) return;
            if (t.kind == AppKind::kPulse) {
                // Two pulses with the same code before the first leaves: they coalesce.
                n.engine->pulse(now_, pr.value, 7, 1, 10);
                n.engine->pulse(now_, pr.value, 7, 1, 11);
                n.engine->release_peer(pr.value);  // a pending pulse keeps its peer busy
            } else {
                nodes_[t.key].engine->name_attach("echo", 7);
                n.engine->name_lookup(now_, "echo", pr.value);
                n.engine->name_lookup(now_, "nothing", pr.value);
            }
            break;
        }
        case AppKind::kRandomPulse: {
            if (!n.alive) return;
            int target = int(t.key & 0xFFFF);
            int8_t code = int8_t(t.key >> 16);
            const Node& to = nodes_[target];
            smp::Result<PeerRef> pr = n.engine->peer(to.config.local_ipv4, to.config.local_endpoint);
            if (!pr.ok()) return;
            uint32_t value = next_pulse_++;
            const ErrorCode pe = n.engine->pulse(now_, pr.value, 9, code, value);
            n.engine->release_peer(pr.value);
            if (pe != ErrorCode::kOk) return;
            pulse_sent_.insert(value);
            pulse_last_[{n.index, target, code}] = value;
            break;
        }
        case AppKind::kRandomLookup: {
            if (!n.alive) return;
            int target = int(t.key);
            const Node& to = nodes_[target];
            smp::Result<PeerRef> pr = n.engine->peer(to.config.local_ipv4, to.config.local_endpoint);
            if (!pr.ok()) return;
            std::string name = "svc" + std::to_string(target);
            smp::Result<LookupHandle> h = n.engine->name_lookup(now_, name.c_str(), pr.value);
            if (!h.ok()) {
                n.engine->release_peer(pr.value);
                return;  // table full: the caller is told at once
            }
            lookup_where_[{n.index, h.value.value}] = pr.value;
            if (lookups_.count({n.index, h.value.value})) fail("lookup handle reused while in use");
            lookups_[{n.index, h.value.value}] = target;
            lookups_cancelled_.erase({n.index, h.value.value});  // a new lookup under an old value
            // A third of them are given up by their caller a while later (Engine::cancel_lookup).
            if (rng_.chance(0.33)) schedule(now_ + rng_.below(300'000), AppKind::kCancelLookup, t.node, h.value.value);
            break;
        }
        case AppKind::kCancelLookup: {
            if (!n.alive || t.epoch != n.epoch) return;
            auto it = lookups_.find({n.index, uint32_t(t.key)});
            if (it == lookups_.end()) return;  // it ended first: its event came
            if (n.engine->cancel_lookup(LookupHandle{uint32_t(t.key)}) == ErrorCode::kOk) {
                lookups_.erase(it);
                release_where(n, uint32_t(t.key));
                lookups_cancelled_.insert({n.index, uint32_t(t.key)});
                res_.lookups_cancelled++;
            }
            // kInvalid: it has just ended, its event is queued and must still come (lookups_)
            break;
        }
        case AppKind::kCrash: crash(t.node); return;
        case AppKind::kRestart: restart(t.node); return;
    }
    mark(t.node);
}

void Sim::crash(int i) {
    Node& n = nodes_[i];
    crashed_ = true;
    // Every send to it that is in progress elsewhere must end within the detection bound.
    for (Node& other : nodes_) {
        if (other.index == i || !other.alive) continue;
        // Looked up in the peer list, not with peer(): that would take a slot in `other`'s
        // table and hold it as the application's for the linger time (a table of 16 filled at
        // 80 nodes: "peer table full").
        bool known = false;
        PeerRef refs[256];
        const size_t count = other.engine->peer_list(refs, 256);
        for (size_t k = 0; k < count && !known; k++) {
            const smp::PeerInfo info = other.engine->peer_info(refs[k]);
            known = info.ipv4 == n.config.local_ipv4 && info.endpoint == n.config.local_endpoint &&
                    info.incarnation != 0;
        }
        bool late = restart_at_ > now_ + other.config.dead_after_us() + jitter_ + kLateDupUs + kSlackUs;
        for (auto& [h, cs] : other.sends) {
            if (cs->target == i && (known || late)) {
                busy_at_crash_.insert(other.index);
                must_end_by_[{other.index, h}] = {now_ + other.config.dead_after_us() + jitter_ + kLateDupUs + kSlackUs, now_};
            }
        }
    }
    // Requests it sent that servers hold must end there within the bound too.
    for (Node& other : nodes_) {
        if (other.index == i || !other.alive) continue;
        for (auto& [h, w] : other.work) {
            if (w->from == i)
                server_must_end_by_[{other.index, h}] =
                    now_ + other.config.dead_after_us() + jitter_ + kLateDupUs + kSlackUs;
        }
    }
    n.alive = false;
    n.epoch++;
    n.engine.reset();
    res_.sends -= 0;
    n.sends.clear();  // abandoned with the machine
    for (auto it = lookups_.begin(); it != lookups_.end();) it = it->first.first == i ? lookups_.erase(it) : std::next(it);
    for (auto it = lookup_where_.begin(); it != lookup_where_.end();)
        it = it->first.first == i ? lookup_where_.erase(it) : std::next(it);  // its engine is gone
    n.work.clear();
}

void Sim::restart(int i) {
    Node& n = nodes_[i];
    n.alive = true;
    start_engine(n);
    mark(i);
}

bool Sim::finished() const {
    if (!net_.empty() || !app_.empty()) return false;
    for (const Node& n : nodes_) {
        if (!n.sends.empty() || !n.work.empty()) return false;
        if (n.alive && !n.engine->quiescent()) return false;
    }
    return true;
}

Result Sim::run() {
    if (scenario) scenario(*this);
    else draw();
    if (!o_.pcap.empty()) {
        pcap_ = fopen(o_.pcap.c_str(), "wb");
        if (!pcap_) {
            fail("cannot write " + o_.pcap);
            return res_;
        }
        uint32_t hdr[6] = {0xA1B2C3D4u, 0x00040002u, 0, 0, 65535, 228};  // LINKTYPE_IPV4
        fwrite(hdr, sizeof hdr, 1, pcap_);
    }
    if (mode_ == Mode::kPartition) {
        // Sends between the two sides in progress at the cut must end within the bound.
        schedule(p_from_, AppKind::kStartSend, -1, 0);
    }
    while (!stop_) {
        uint64_t t = kNever;
        if (!net_.empty()) t = std::min(t, net_.top()->at);
        if (!app_.empty()) t = std::min(t, app_.top().at);
        while (!timers_.empty()) {
            auto [at, node, version] = timers_.top();
            if (version != nodes_[node].version || !nodes_[node].alive || at == kNever) {
                timers_.pop();
                continue;
            }
            t = std::min(t, at);
            break;
        }
        if (t == kNever) break;
        if (t < now_) t = now_;  // a timer already due fires now: time never runs backwards
        if (t == now_) {
            if (++spins_ > 100'000) {
                fail("timer spin: the same instant keeps coming back");
                break;
            }
        } else {
            spins_ = 0;
        }
        if (t > o_.time_limit_us) {
            std::string busy;
            for (Node& n : nodes_) {
                if (!n.alive) continue;
                if (!n.sends.empty() || !n.work.empty() || !n.engine->quiescent())
                    busy += " node" + std::to_string(n.index) + "(sends=" + std::to_string(n.sends.size()) +
                            " work=" + std::to_string(n.work.size()) +
                            " engine=" + (n.engine->quiescent() ? "idle" : "busy") + ")";
            }
            fail("hang: still busy at the simulated time limit:" + busy);
            break;
        }
        now_ = t;
        while (!net_.empty() && net_.top()->at == now_) {
            Packet* p = net_.top();
            net_.pop();
            Node& n = nodes_[p->dst];
            if (n.alive) {
                n.heard_from[int(p->src_ip - kBaseIpv4)] = now_;
                n.engine->handle_datagram(now_, p->src_ip, p->dst_ip, p->bytes.data(), p->bytes.size());
                mark(p->dst);
            }
            delete p;
        }
        pump_dirty();  // the applications see what arrived before their timers run
        while (!app_.empty() && app_.top().at == now_) {
            AppTimer a = app_.top();
            app_.pop();
            if (a.node < 0) {  // partition starts: record what it must end
                for (Node& n : nodes_) {
                    for (auto& [h, cs] : n.sends) {
                        if (faulty_pair(n.index, cs->target) && p_to_ - p_from_ > n.config.dead_after_us() + 2 * kSlackUs + kLateDupUs + jitter_)
                            must_end_by_[{n.index, h}] = {now_ + n.config.dead_after_us() + jitter_ + kLateDupUs + kSlackUs, now_};
                    }
                }
                continue;
            }
            app_timer(a);
        }
        while (!timers_.empty()) {
            auto [at, node, version] = timers_.top();
            if (at > now_ && at != kNever) break;
            timers_.pop();
            Node& n = nodes_[node];
            if (version != n.version || !n.alive) continue;
            n.engine->handle_timeout(now_);
            mark(node);
        }
        pump_dirty();
        for (auto& [key, bound] : server_must_end_by_) {
            if (now_ > bound) {
                fail("server still holds a dead client's request past the bound (node " +
                     std::to_string(key.first) + ")");
                break;
            }
        }
        for (auto& [key, bound] : must_end_by_) {
            if (now_ > bound.first) {
                fail("fault not detected within the bound (node " + std::to_string(key.first) + ")");
                break;
            }
        }
        if (finished()) break;
    }
    res_.sim_time_us = now_;
    finish_checks();
    while (!net_.empty()) {
        delete net_.top();
        net_.pop();
    }
    if (pcap_) fclose(pcap_);
    return res_;
}

void Sim::finish_checks() {
    uint64_t probes = 0, liveness_bytes = 0;
    for (Node& n : nodes_) {
        if (!n.alive) continue;
        const Stats& st = n.engine->stats();
        res_.retransmissions += st.retransmissions;
        res_.duplicates_suppressed += st.duplicates;
        res_.eager_trimmed += st.eager_trimmed;
        probes += st.probes_sent;
        liveness_bytes += st.probes_sent * 2 * (wire::kIpv4HeaderBytes + wire::kHeaderBytes + wire::kProbeFixedBytes);
        res_.pool_high_bytes = std::max<uint64_t>(res_.pool_high_bytes, st.pool_bytes_high);
        res_.requests_high = std::max<uint64_t>(res_.requests_high, st.requests_high);
        res_.peers_high = std::max<uint64_t>(res_.peers_high, st.peers_high);
        if (!stop_ && !n.engine->quiescent()) fail("records left allocated on node " + std::to_string(n.index));
        if (!stop_ && (!n.sends.empty() || !n.work.empty()))
            fail("send or request never ended on node " + std::to_string(n.index));
    }
    res_.probes = probes;
    double secs = now_ ? double(now_) / 1e6 : 1;
    res_.probes_per_node_second = double(probes) / double(nodes_.size()) / secs;
    res_.liveness_bytes_per_node_second = double(liveness_bytes) / double(nodes_.size()) / secs;
    if (!stop_ && !must_end_by_.empty()) fail("a send to a failed peer never ended");
    for (auto& [key, target] : lookups_) {
        if (stop_) break;
        if (nodes_[key.first].alive) fail("a name lookup never ended on node " + std::to_string(key.first));
    }
    if (!stop_ && mode_ == Mode::kPlain) {
        for (auto& [key, value] : pulse_last_) {
            if (!pulse_seen_.count(value))
                fail("the last pulse of a burst never arrived (node " + std::to_string(std::get<0>(key)) +
                     " -> " + std::to_string(std::get<1>(key)) + ")");
        }
    }
}

}  // namespace

Result run(const Options& options) {
    Sim sim(options);
    return sim.run();
}

Result run_scenario(const std::string& pcap, bool auth) {
    Options o;
    o.seed = 4242;
    o.pcap = pcap;
    o.auth = auth;
    Sim sim(o);
    // A scripted cluster of 3 nodes on a 1500-byte path, no random loss: the faults are chosen
    // packets, so every message type and every recovery appears in the capture.
    sim.scenario = [](Sim& s) {
        s.loss_ = 0;
        s.dup_ = 0;
        s.jitter_ = 0;
        s.mtu_ = 1500;
        s.mode_ = Mode::kCrash;
        s.nodes_.resize(3);
        for (int i = 0; i < 3; i++) s.build_node(i);
        s.res_.summary = "scenario";
        auto plan = [&](int from, uint64_t at, int to, uint32_t size, uint32_t reply, uint32_t flags, bool cancel) {
            s.nodes_[from].plan.push_back(PlannedSend{at, to, size, reply, flags, cancel, false});
            s.schedule(at, AppKind::kStartSend, from, s.nodes_[from].plan.size() - 1);
        };
        plan(0, 1000, 1, 64, 64, 0, false);                  // HELLO, REQUEST, REPLY, ACK
        plan(0, 50'000, 1, 6000, 100, 0, false);             // eager request in several segments
        plan(0, 100'000, 1, 100'000, 64, 0, false);          // PULL + DATA of a large request
        plan(1, 150'000, 0, 64, 200'000, 0, false);          // a large reply, pulled
        plan(0, 400'000, 1, 64, 64, kFlagAppError, false);   // an error reply
        plan(0, 450'000, 1, 64, 64, kFlagSlow, true);        // a CANCEL while the server works
        plan(2, 500'000, 1, 64, 64, kFlagSlow, false);       // slow server: PROBE / PROBE_ACK
        plan(0, 700'000, 2, 64, 64, 0, false);               // before the crash
        s.crash_node_ = 2;
        s.crash_at_ = 900'000;
        s.restart_at_ = 950'000;
        s.schedule(s.crash_at_, AppKind::kCrash, 2, 0);
        s.schedule(s.restart_at_, AppKind::kRestart, 2, 0);
        plan(0, 905'000, 2, 64, 64, kFlagSlow, false);      // to the crashed node: RESET after restart
        s.schedule(20'000, AppKind::kPulse, 2, 0);           // PULSE + ACK (coalesced while connecting)
        s.schedule(30'000, AppKind::kLookup, 0, 1);          // NAME_QUERY / NAME_REPLY
        int nth = 0;
        // Lose the 6th packet (a retransmission follows) and duplicate the 8th.
        s.drop_hook = [nth](const Packet&) mutable { return ++nth == 6; };
        int mth = 0;
        s.dup_hook = [mth](const Packet&) mutable { return ++mth == 8; };
    };
    Result r = sim.run();
    // Pulses and names are not part of the random runs: drive them here on node 0 -> 1.
    return r;
}

}  // namespace smp::sim
