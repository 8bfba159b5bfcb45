// Services started from the kernel command line (`services=echo,kv,sink`): each a kernel thread on its
// own channel, attached by name so that any node can open NODE/SERVICE.
#include "arch/arch.h"
#include "bridge.h"
#include "command_line.h"
#include "heap.h"
#include "ipc.h"
#include "panic.h"
#include "thread.h"

namespace bridge {
namespace {

using kernel::Status;

constexpr size_t kServicesMax = 4;
constexpr size_t kSmallBytes = 512;          // receive buffer; larger messages are read()
constexpr size_t kKvEntriesMax = 64;         // kv: a full table refuses new keys
constexpr size_t kKvKeyBytes = 32;
constexpr size_t kKvValueBytes = 128;
constexpr uint64_t kAttachRetryNs = 10'000'000;

struct Service {
    char name[kServiceNameBytes];
    kernel::Channel* channel;
    uint64_t requests;
    uint64_t pulses;          // user pulses received (coalesced ones counted)
    void (*serve)(Service*);
};
Service g_services[kServicesMax];
size_t g_service_count;

bool attach(Service* s) {
    auto ch = kernel::channel_create();
    if (!ch.is_ok()) return false;
    s->channel = ch.value;
    // The net thread (and with it the bridge) starts after node_extensions: wait for it.
    while (!running()) kernel::sleep_for(kAttachRetryNs);
    Status st = name_attach(s->name, s->channel);
    if (st != Status::kOk) {
        kernel::print("service %s: name_attach failed: %s\n", s->name, kernel::status_name(st));
        return false;
    }
    kernel::print("service %s: attached\n", s->name);
    return true;
}

// The service's next message, its first `bytes` in `buf`; pulses (the unblock pulses of
// senders that gave up: nothing is held for them) are counted and skipped.
kernel::ReceiveInfo next_message(Service* s, void* buf, size_t bytes) {
    for (;;) {
        kernel::ReceiveInfo info;
        kernel::MutPart part{buf, bytes};
        if (kernel::receive(s->channel, kernel::MutParts{&part, 1}, kernel::kNoDeadline, &info) !=
            Status::kOk)
            continue;
        if (info.kind == kernel::ReceiveKind::kMessage) {
            ++s->requests;
            return info;
        }
        if (info.pulse_code >= 0) s->pulses += info.pulse_count;
    }
}

// echo: replies with the message itself (any size up to the protocol's maximum).
void serve_echo(Service* s) {
    static uint8_t small[kSmallBytes];
    for (;;) {
        const kernel::ReceiveInfo info = next_message(s, small, sizeof small);
        if (info.size <= sizeof small) {
            kernel::Part r{small, info.copied};
            kernel::reply(info.id, 0, kernel::Parts{&r, 1});
            continue;
        }
        auto* buf = static_cast<uint8_t*>(kernel::heap::allocate(info.size));
        if (!buf) {
            kernel::error(info.id, Status::kNoMemory);
            continue;
        }
        for (size_t i = 0; i < info.copied; ++i) buf[i] = small[i];
        size_t have = info.copied;
        Status st = Status::kOk;
        while (have < info.size) {
            kernel::MutPart rest{buf + have, info.size - have};
            auto r = kernel::read(info.id, have, kernel::MutParts{&rest, 1}, kernel::kNoDeadline);
            if (!r.is_ok() || r.value == 0) {
                st = r.is_ok() ? Status::kMessageError : r.status;
                break;
            }
            have += r.value;
        }
        if (st == Status::kOk) {
            kernel::Part r{buf, info.size};
            kernel::reply(info.id, 0, kernel::Parts{&r, 1});
        } else if (st != Status::kSenderUnblocked) {
            kernel::error(info.id, st);
        }
        kernel::heap::release(buf);
    }
}

// sink: takes the whole message (receive, then read() of the rest into one buffer, as echo
// does) and replies with 8 bytes only, the count of bytes it took (little-endian): a one-way
// transfer, the like of TCP's discard service for throughput measurements (calltest's sendtest).
void serve_sink(Service* s) {
    static uint8_t small[kSmallBytes];
    for (;;) {
        const kernel::ReceiveInfo info = next_message(s, small, sizeof small);
        uint64_t have = info.copied;
        Status st = Status::kOk;
        if (info.size > have) {
            auto* buf = static_cast<uint8_t*>(kernel::heap::allocate(info.size));
            if (!buf) {
                kernel::error(info.id, Status::kNoMemory);
                continue;
            }
            while (have < info.size) {
                kernel::MutPart rest{buf + have, info.size - have};
                auto r = kernel::read(info.id, have, kernel::MutParts{&rest, 1}, kernel::kNoDeadline);
                if (!r.is_ok() || r.value == 0) {
                    st = r.is_ok() ? Status::kMessageError : r.status;
                    break;
                }
                have += r.value;
            }
            kernel::heap::release(buf);
        }
        if (st == Status::kOk) {
            uint8_t count[8];
            for (size_t i = 0; i < sizeof count; ++i) count[i] = static_cast<uint8_t>(have >> (8 * i));
            kernel::Part r{count, sizeof count};
            kernel::reply(info.id, 0, kernel::Parts{&r, 1});
        } else if (st != Status::kSenderUnblocked) {
            kernel::error(info.id, st);
        }
    }
}

// kv: "put KEY VALUE" -> "ok"; "get KEY" -> the value or "error: no such key"; "del KEY".
struct KvEntry {
    char key[kKvKeyBytes];
    char value[kKvValueBytes];
    bool used;
};
KvEntry g_kv[kKvEntriesMax];

bool word(const char*& p, const char* end, char* out, size_t cap, bool rest_of_line) {
    while (p < end && *p == ' ') ++p;
    size_t n = 0;
    while (p < end && (rest_of_line || *p != ' ') && *p != '\n' && *p != 0) {
        if (n + 1 >= cap) return false;
        out[n++] = *p++;
    }
    out[n] = 0;
    return n > 0;
}

size_t kv_handle(const char* msg, size_t len, char* out, size_t cap) {
    const char* p = msg;
    const char* end = msg + len;
    char cmd[8], key[kKvKeyBytes], value[kKvValueBytes];
    if (!word(p, end, cmd, sizeof cmd, false) || !word(p, end, key, sizeof key, false))
        return kernel::format(out, cap, "error: usage: put KEY VALUE | get KEY | del KEY");
    KvEntry* found = nullptr;
    KvEntry* free_entry = nullptr;
    for (KvEntry& e : g_kv) {
        if (e.used && kernel::string_equal(e.key, key)) found = &e;
        if (!e.used && !free_entry) free_entry = &e;
    }
    if (kernel::string_equal(cmd, "get")) {
        if (!found) return kernel::format(out, cap, "error: no such key");
        return kernel::format(out, cap, "%s", found->value);
    }
    if (kernel::string_equal(cmd, "del")) {
        if (!found) return kernel::format(out, cap, "error: no such key");
        found->used = false;
        return kernel::format(out, cap, "ok");
    }
    if (kernel::string_equal(cmd, "put")) {
        if (!word(p, end, value, sizeof value, true))
            return kernel::format(out, cap, "error: put needs a value (at most %zu bytes)",
                                  kKvValueBytes - 1);
        KvEntry* e = found ? found : free_entry;
        if (!e) return kernel::format(out, cap, "error: table full (%zu keys)", kKvEntriesMax);
        for (size_t i = 0; i < kKvKeyBytes; ++i) e->key[i] = key[i];
        for (size_t i = 0; i < kKvValueBytes; ++i) e->value[i] = value[i];
        e->used = true;
        return kernel::format(out, cap, "ok");
    }
    return kernel::format(out, cap, "error: unknown command '%s'", cmd);
}

void serve_kv(Service* s) {
    static char msg[kSmallBytes];
    static char answer[kSmallBytes];
    for (;;) {
        const kernel::ReceiveInfo info = next_message(s, msg, sizeof msg);
        size_t n = kv_handle(msg, info.copied, answer, sizeof answer);
        kernel::Part r{answer, n};
        kernel::reply(info.id, 0, kernel::Parts{&r, 1});
    }
}

void service_main(void* arg) {
    auto* s = static_cast<Service*>(arg);
    if (attach(s)) s->serve(s);
    kernel::thread_exit(1);
}

}  // namespace

void services_start(const char* list) {
    const char* p = list;
    while (*p) {
        char name[kServiceNameBytes];
        size_t n = 0;
        while (*p && *p != ',' && n + 1 < sizeof name) name[n++] = *p++;
        name[n] = 0;
        while (*p && *p != ',') ++p;
        if (*p == ',') ++p;
        void (*serve)(Service*) = nullptr;
        if (kernel::string_equal(name, "echo")) serve = serve_echo;
        if (kernel::string_equal(name, "kv")) serve = serve_kv;
        if (kernel::string_equal(name, "sink")) serve = serve_sink;
        if (!serve) {
            kernel::print("services: error: unknown service '%s' (known: echo, kv, sink)\n", name);
            continue;
        }
        if (g_service_count == kServicesMax) {
            kernel::print("services: error: at most %zu services\n", kServicesMax);
            return;
        }
        Service* s = &g_services[g_service_count++];
        for (size_t i = 0; i <= n; ++i) s->name[i] = name[i];
        s->serve = serve;
        auto t = kernel::thread_create(s->name, service_main, s, kernel::kPriorityDefault);
        if (!t.is_ok())
            kernel::print("services: error: cannot start %s: %s\n", name,
                          kernel::status_name(t.status));
    }
}

bool service_stat(const char* name, uint64_t* requests, size_t* hwm_queue, uint64_t* pulses) {
    for (size_t i = 0; i < g_service_count; ++i) {
        Service& s = g_services[i];
        if (!kernel::string_equal(s.name, name) || !s.channel) continue;
        *requests = s.requests;
        *pulses = s.pulses;
        *hwm_queue = kernel::channel_stats(s.channel).queued_high_water;
        return true;
    }
    return false;
}

}  // namespace bridge
