// libFuzzer target: an engine in an arbitrary state fed arbitrary datagrams. The first bytes
// choose a state (sends started, requests being served, a read in progress, peers known) reached
// through real traffic with a second engine, and whether the two have a cluster key (SPEC 3.4:
// the datagrams then carry a right MAC when they are fixed up, so the fuzzer reaches what lies
// behind it, challenges included) and whether the engine under test keeps eager bytes in an
// eager store; the rest is a sequence of datagrams (checksummed or not) and clock steps.
// Nothing may crash, leak past its bounds or assert.
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <memory>
#include <vector>

#include "protocol/engine.h"

using namespace smp;

namespace {

struct Node {
    Config config;
    std::vector<uint8_t> raw, store;
    Engine* engine = nullptr;
    Node(uint32_t ip, uint64_t inc, bool keyed, bool eager_store) {
        config.local_ipv4 = ip;
        config.incarnation = inc;
        config.peers_max = 4;
        config.sends_max = 8;
        config.requests_max = 8;
        config.pool_bytes = 64 * 1024;
        config.window_bytes = 16 * 1024;
        config.control_max = 8;
        config.lookups_max = 2;
        if (keyed) {
            config.auth = true;
            for (size_t i = 0; i < wire::kAuthKeyBytes; i++) config.auth_key.bytes[i] = uint8_t(i + 1);
        }
        if (eager_store) {
            store.resize(Engine::eager_store_bytes(config));
            config.eager_store = store.data();
        }
        raw.resize(Engine::memory_bytes(config) + 16);
        void* p = reinterpret_cast<void*>((uintptr_t(raw.data()) + 15) & ~uintptr_t(15));
        engine = new (&storage) Engine(config, p, Engine::memory_bytes(config));
    }
    ~Node() { engine->~Engine(); }
    alignas(Engine) unsigned char storage[sizeof(Engine)];
};

void check(const Node& n) {
    const Stats& s = n.engine->stats();
    if (s.pool_bytes_used > n.config.pool_bytes || s.requests_live > n.config.requests_max ||
        s.sends_live > n.config.sends_max || s.peers_live > n.config.peers_max)
        abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 4) return 0;
    constexpr uint32_t kA = 0x0A000001, kB = 0x0A000002;
    const bool keyed = data[3] & 0x40, stored = data[3] & 0x80;
    Node a(kA, 0x1111, keyed, stored), b(kB, 0x2222, keyed, false);
    const wire::MacKey mac = wire::mac_key(a.config.auth_key);
    Instant now = 1000;
    static std::vector<uint8_t> msg(40000, 0x42), rep(40000);
    ConstBytes mp[8];
    MutableBytes rp[8];
    // 1. A state, from the first bytes: sends of chosen sizes from b to a, some served by a.
    PeerRef to_a = b.engine->peer(kA, 0).value;
    int sends = data[0] % 6, serve = data[1] % 4, steps = data[2] % 64;
    for (int i = 0; i < sends; i++) {
        size_t len = (size_t(data[3]) * 157 * (i + 1)) % msg.size();
        mp[i] = ConstBytes{msg.data(), len};
        rp[i] = MutableBytes{rep.data(), rep.size() / 8};
        b.engine->start_send(now, to_a, uint32_t(i), ConstChain{&mp[i], 1}, MutableChain{&rp[i], 1},
                             i % 2 ? now + 500'000 : kNever, uint8_t(i));
    }
    uint8_t buf[2048];
    static uint8_t rbuf[40000];
    MutableBytes rpart{rbuf, sizeof rbuf};
    int served = 0;
    for (int k = 0; k < steps; k++) {
        for (Node* from : {&a, &b}) {
            Node* to = from == &a ? &b : &a;
            Transmit t = from->engine->poll_transmit(now, buf, sizeof buf);
            if (t.bytes) to->engine->handle_datagram(now, from->config.local_ipv4, t.dst_ipv4, buf, t.bytes);
            Event ev;
            while (from->engine->poll_event(ev)) {
                if (from == &a && ev.type == EventType::kRequest && served < serve) {
                    served++;
                    from->engine->read(now, RequestHandle{ev.handle}, 0, MutableChain{&rpart, 1});
                }
            }
        }
        now += 300;
        a.engine->handle_timeout(now);
        b.engine->handle_timeout(now);
    }
    // 2. Arbitrary datagrams to a: [flags][len: 2 bytes, big-endian][bytes...] records.
    size_t pos = 4;
    while (pos + 3 <= size) {
        uint8_t flags = data[pos];
        size_t len = load16(data + pos + 1) % 2048u;
        pos += 3;
        if (len > size - pos) len = size - pos;
        if (len > sizeof buf) len = sizeof buf;
        memcpy(buf, data + pos, len);
        pos += len;
        const uint32_t src = (flags & 8) ? kB : kB + 7;
        if ((flags & 1) && len >= wire::kHeaderBytes + (keyed ? wire::kMacBytes : 0)) {
            // Make it pass the early checks so the fuzzer reaches the state machines.
            buf[0] = wire::kVersion;
            store16(buf + 6, uint16_t(len));
            store16(buf + 8, 0);
            if (flags & 2) store64(buf + 16, a.config.incarnation);
            if (flags & 4) store64(buf + 24, b.config.incarnation);
            ConstBytes one{buf, len};
            if (keyed) {  // the key's MAC, as a node of the cluster would send it
                buf[2] |= wire::kFlagAuth;
                wire::packet_mac(ConstChain{&one, 1}, len, src, kA, mac, buf + len - wire::kMacBytes);
            }
            store16(buf + 4, wire::checksum(ConstChain{&one, 1}, src, kA));
        }
        a.engine->handle_datagram(now, src, kA, buf, len);
        if (flags & 16) {
            now += uint64_t(flags) * 997;
            a.engine->handle_timeout(now);
        }
        Transmit t;
        int guard = 0;
        while ((t = a.engine->poll_transmit(now, buf, sizeof buf)).bytes && guard++ < 1000) {}
        Event ev;
        while (a.engine->poll_event(ev)) {}
        check(a);
    }
    // 3. Time runs out: every timer fires and nothing is left unbounded.
    for (int k = 0; k < 200 && a.engine->next_timeout() != kNever; k++) {
        Instant t = a.engine->next_timeout();
        now = t > now ? t : now + 1;
        a.engine->handle_timeout(now);
        while (a.engine->poll_transmit(now, buf, sizeof buf).bytes) {}
        Event ev;
        while (a.engine->poll_event(ev)) {}
        check(a);
    }
    return 0;
}
