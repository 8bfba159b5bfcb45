#include "shell.h"

#include "arch/arch.h"
#include "arch/x86_64/platform.h"
#include "event.h"
#include "net_thread.h"
#include "node_config.h"
#include "panic.h"
#include "thread.h"

#include "lwip/stats.h"

namespace net {
namespace {

// ---- COM1 input (the port's serial code only writes; reading is ours) --------------------------
constexpr uint16_t kCom1 = 0x3f8;
constexpr uint8_t kCom1Irq = 4;
constexpr uint8_t kIerReceiveData = 0x01;
constexpr uint8_t kMcrDtrRtsOut2 = 0x0b;     // OUT2 gates the UART's interrupt to the PIC
constexpr uint8_t kLsrDataReady = 0x01;
// How long ping waits for the last reply (and udpping for each): generous, because two busy
// QEMU TCG nodes on a loaded host can take far longer than a real link; a complete run returns
// as soon as every reply is in.
constexpr uint64_t kEchoWaitNs = 3'000'000'000;

char g_input[kSerialInputBytes];
volatile size_t g_input_head, g_input_tail;  // head: written by the IRQ; tail: by the shell
volatile uint64_t g_input_dropped;
kernel::Event g_input_event;

void serial_irq(void*) {
    while (x86::inb(kCom1 + 5) & kLsrDataReady) {
        char c = static_cast<char>(x86::inb(kCom1));
        size_t next = (g_input_head + 1) % kSerialInputBytes;
        if (next == g_input_tail) {
            g_input_dropped = g_input_dropped + 1;
        } else {
            g_input[g_input_head] = c;
            g_input_head = next;
        }
    }
    g_input_event.signal();
}

char read_char() {
    for (;;) {
        uint64_t s = arch::irq_save();
        if (g_input_tail != g_input_head) {
            char c = g_input[g_input_tail];
            g_input_tail = (g_input_tail + 1) % kSerialInputBytes;
            arch::irq_restore(s);
            return c;
        }
        arch::irq_restore(s);
        g_input_event.wait(kernel::kNoDeadline);
    }
}

// ---- The command table -------------------------------------------------------------------------
ShellCommand g_commands[kShellCommandsMax];
size_t g_command_count;

bool streq(const char* a, const char* b) { return kernel::string_equal(a, b); }

bool parse_u64(const char* s, uint64_t* out) {
    uint64_t v = 0;
    if (!*s) return false;
    for (; *s; ++s) {
        if (*s < '0' || *s > '9' || v > UINT64_MAX / 10 - 9) return false;
        v = v * 10 + static_cast<uint64_t>(*s - '0');
    }
    *out = v;
    return true;
}

bool arg_ip(const char* cmd, const char* text, uint32_t* ip) {
    if (parse_ipv4(text, ip)) return true;
    kernel::print("%s: error: bad IPv4 address '%s'\n", cmd, text);
    return false;
}

// The peer of ping, udpping and tcpsend: a host on this node's subnet other than the node itself
// (lwIP here has no loopback interface, the node no gateway, and each command measures one
// peer). Anything else used to be sent anyway and only ran into the command's time-out: e.g.
// `tcpsend 0.0.0.0` waited 30 s and said "timed-out", `ping` of the node's own address lost
// every echo.
bool arg_peer(const char* cmd, const char* text, uint32_t* ip) {
    if (!arg_ip(cmd, text, ip)) return false;
    const NodeConfig& c = net_config();
    const uint32_t mask = prefix_to_netmask(c.prefix);
    const uint32_t first = *ip >> 24;
    const char* why = nullptr;
    if (first == 0) {
        why = "is not a host address";
    } else if (first == 127) {
        why = "is a loopback address (the node has no loopback interface)";
    } else if (first >= 224 && first <= 239) {
        why = "is a multicast address";
    } else if (*ip == 0xffffffffu) {
        why = "is the broadcast address";
    } else if (*ip == c.ip) {
        why = "is this node's own address (the node has no loopback interface)";
    } else if ((*ip & mask) != (c.ip & mask)) {
        char net[16];
        format_ipv4(c.ip & mask, net, sizeof net);
        kernel::print("%s: error: %s is not on this node's subnet %s/%u (the node has no gateway)\n",
                      cmd, text, net, c.prefix);
        return false;
    } else if (c.prefix <= 30 && (*ip & ~mask) == ~mask) {
        why = "is the subnet's broadcast address";
    } else if (c.prefix <= 30 && (*ip & ~mask) == 0) {
        why = "is the subnet's network address";
    }
    if (!why) return true;
    kernel::print("%s: error: %s %s\n", cmd, text, why);
    return false;
}

bool arg_number(const char* cmd, const char* text, uint64_t min, uint64_t max, uint64_t* out) {
    if (parse_u64(text, out) && *out >= min && *out <= max) return true;
    kernel::print("%s: error: '%s' is not a number in %lu..%lu\n", cmd, text,
                  static_cast<unsigned long>(min), static_cast<unsigned long>(max));
    return false;
}

void print_echo(const char* cmd, uint32_t ip, const EchoStats& s, kernel::Status status) {
    char addr[16];
    format_ipv4(ip, addr, sizeof addr);
    uint64_t avg = s.received ? s.rtt_sum_ns / s.received : 0;
    // The _ns fields keep the precision a bench ratio needs (a 250 us RTT in whole us is coarse).
    kernel::print("%s: %s sent=%u received=%u rtt_min_us=%lu rtt_avg_us=%lu rtt_max_us=%lu "
                  "rtt_min_ns=%lu rtt_avg_ns=%lu rtt_median_ns=%lu rtt_p90_ns=%lu rtt_p99_ns=%lu status=%s\n",
                  cmd, addr, s.sent, s.received, static_cast<unsigned long>(s.rtt_min_ns / 1000),
                  static_cast<unsigned long>(avg / 1000),
                  static_cast<unsigned long>(s.rtt_max_ns / 1000),
                  static_cast<unsigned long>(s.rtt_min_ns), static_cast<unsigned long>(avg),
                  static_cast<unsigned long>(s.rtt_median_ns), static_cast<unsigned long>(s.rtt_p90_ns),
                  static_cast<unsigned long>(s.rtt_p99_ns), kernel::status_name(status));
}

void cmd_help(int, char**) {
    for (size_t i = 0; i < g_command_count; ++i) {
        kernel::print("  %-32s %s\n", g_commands[i].usage, g_commands[i].help);
    }
}

void cmd_netstat(int, char**) {
    Nic* nic = net_nic();
    if (!nic) {
        kernel::print("netstat: error: no network interface\n");
        return;
    }
    nic_update_counters(nic);
    const NicCounters& c = nic->counters;
    LwipCounters l = net_lwip_counters();
    kernel::print("netstat: if=en0 driver=%s rx_frames=%lu rx_bytes=%lu rx_drops=%lu rx_errors=%lu "
                  "tx_frames=%lu tx_bytes=%lu tx_drops=%lu tx_errors=%lu interrupts=%lu "
                  "device_missed=%lu kicks=%lu spurious_interrupts=%lu\n",
                  nic_kind_name(nic->kind), (unsigned long)c.rx_frames, (unsigned long)c.rx_bytes,
                  (unsigned long)c.rx_drops, (unsigned long)c.rx_errors, (unsigned long)c.tx_frames,
                  (unsigned long)c.tx_bytes, (unsigned long)c.tx_drops, (unsigned long)c.tx_errors,
                  (unsigned long)c.interrupts, (unsigned long)c.rx_device_missed,
                  (unsigned long)c.kicks, (unsigned long)x86::irq_spurious_count());
    kernel::print("netstat: lwip rx_no_pbuf=%lu rx_own_frames=%lu udp_echoed=%lu tcp_discard_bytes=%lu "
                  "ip_recv=%u ip_drop=%u icmp_recv=%u udp_recv=%u tcp_recv=%u tcp_drop=%u "
                  "console_input_dropped=%lu tcp_pcbs=%u\n",
                  (unsigned long)l.rx_no_pbuf, (unsigned long)l.rx_own_frames,
                  (unsigned long)l.udp_echoed,
                  (unsigned long)l.tcp_discard_bytes, (unsigned)lwip_stats.ip.recv,
                  (unsigned)lwip_stats.ip.drop, (unsigned)lwip_stats.icmp.recv,
                  (unsigned)lwip_stats.udp.recv, (unsigned)lwip_stats.tcp.recv,
                  (unsigned)lwip_stats.tcp.drop, (unsigned long)g_input_dropped,
                  (unsigned)lwip_stats.memp[MEMP_TCP_PCB]->used);
}

void cmd_info(int, char**) {
    const NodeConfig& c = net_config();
    char addr[16];
    format_ipv4(c.ip, addr, sizeof addr);
    Nic* nic = net_nic();
    const uint8_t* m = nic ? nic->mac : c.mac;
    kernel::print("info: name=%s ip=%s/%u mac=%02x:%02x:%02x:%02x:%02x:%02x uptime_ms=%lu\n", c.name,
                  addr, c.prefix, m[0], m[1], m[2], m[3], m[4], m[5],
                  static_cast<unsigned long>(arch::now_ns() / 1000000));
}

void cmd_ping(int argc, char** argv) {
    uint32_t ip;
    uint64_t count = 5, interval_ms = 100;
    if (argc < 2 || argc > 4) {
        kernel::print("ping: error: usage: ping IP [COUNT] [INTERVAL_MS]\n");
        return;
    }
    if (!arg_peer("ping", argv[1], &ip)) return;
    if (argc > 2 && !arg_number("ping", argv[2], 1, 1000, &count)) return;
    // INTERVAL_MS 0: back to back (each echo sent when the previous reply arrived).
    if (argc > 3 && !arg_number("ping", argv[3], 0, 10000, &interval_ms)) return;
    EchoStats s;
    kernel::Status st = net_ping(ip, static_cast<uint32_t>(count), interval_ms * 1000000,
                                 kEchoWaitNs, &s);
    print_echo("ping", ip, s, st);
}

void cmd_udpping(int argc, char** argv) {
    uint32_t ip;
    uint64_t count = 5;
    if (argc < 2 || argc > 3) {
        kernel::print("udpping: error: usage: udpping IP [COUNT]\n");
        return;
    }
    if (!arg_peer("udpping", argv[1], &ip)) return;
    if (argc > 2 && !arg_number("udpping", argv[2], 1, 1000, &count)) return;
    EchoStats s;
    kernel::Status st = net_udp_ping(ip, static_cast<uint32_t>(count), kEchoWaitNs, &s);
    print_echo("udpping", ip, s, st);
}

void cmd_tcpsend(int argc, char** argv) {
    uint32_t ip;
    uint64_t bytes = 1 << 20;
    if (argc < 2 || argc > 3) {
        kernel::print("tcpsend: error: usage: tcpsend IP [BYTES]\n");
        return;
    }
    if (!arg_peer("tcpsend", argv[1], &ip)) return;
    if (argc > 2 && !arg_number("tcpsend", argv[2], 1, 1ull << 32, &bytes)) return;
    uint64_t elapsed = 0;
    kernel::Status st = net_tcp_send(ip, bytes, 30000000000ull, &elapsed);
    uint64_t kbps = elapsed ? bytes * 8 * 1000000ull / elapsed : 0;  // kbit/s
    kernel::print("tcpsend: bytes=%lu elapsed_us=%lu kbit_per_s=%lu status=%s\n",
                  static_cast<unsigned long>(bytes), static_cast<unsigned long>(elapsed / 1000),
                  static_cast<unsigned long>(kbps), kernel::status_name(st));
}

const ShellCommand kBuiltins[] = {
    {"help", "help", "list commands", cmd_help},
    {"info", "info", "node name, address, MAC, uptime", cmd_info},
    {"netstat", "netstat", "interface and lwIP counters", cmd_netstat},
    {"ping", "ping IP [COUNT] [INTERVAL_MS]", "ICMP echo from this node (interval 0: back to back)",
     cmd_ping},
    {"udpping", "udpping IP [COUNT]", "UDP echo round trips to IP port 7", cmd_udpping},
    {"tcpsend", "tcpsend IP [BYTES]", "TCP bulk send to IP port 9, prints throughput",
     cmd_tcpsend},
};

void dispatch(char* line) {
    char* argv[kShellArgsMax];
    int argc = 0;
    for (char* p = line; *p;) {
        while (*p == ' ' || *p == '\t') *p++ = '\0';
        if (!*p) break;
        if (argc == static_cast<int>(kShellArgsMax)) {
            kernel::print("shell: error: too many arguments (at most %u)\n",
                          static_cast<unsigned>(kShellArgsMax));
            return;
        }
        argv[argc++] = p;
        while (*p && *p != ' ' && *p != '\t') ++p;
    }
    if (argc == 0) return;
    for (size_t i = 0; i < g_command_count; ++i) {
        if (streq(g_commands[i].name, argv[0])) {
            // A command whose usage is its bare name takes no arguments: one given is an error,
            // not silently ignored.
            if (argc > 1 && streq(g_commands[i].usage, g_commands[i].name)) {
                kernel::print("%s: error: takes no arguments\n", argv[0]);
                return;
            }
            g_commands[i].run(argc, argv);
            return;
        }
    }
    kernel::print("shell: error: unknown command '%s' (try help)\n", argv[0]);
}

}  // namespace

bool shell_register(const ShellCommand& command) {
    // The built-in commands come first in the table (and in help), whoever registers first.
    static bool builtins_added = false;
    if (!builtins_added) {
        builtins_added = true;
        for (const ShellCommand& c : kBuiltins) shell_register(c);
    }
    if (g_command_count == kShellCommandsMax) return false;
    for (size_t i = 0; i < g_command_count; ++i) {
        if (streq(g_commands[i].name, command.name)) return false;
    }
    g_commands[g_command_count++] = command;
    return true;
}

void shell_run(const char* prompt_name) {
    shell_register(kBuiltins[0]);  // makes sure the built-ins are in (a repeat is refused)
    if (!x86::irq_register(kCom1Irq, serial_irq, nullptr)) {
        kernel::print("shell: cannot register IRQ %u: no console input\n", kCom1Irq);
    }
    x86::outb(kCom1 + 4, kMcrDtrRtsOut2);
    x86::outb(kCom1 + 1, kIerReceiveData);
    char line[kShellLineBytes];
    bool prompt = true;
    for (;;) {
        if (prompt) kernel::print("%s> ", prompt_name);
        size_t n = 0;
        bool overflow = false;
        for (;;) {
            char c = read_char();
            if (c == '\r' || c == '\n') break;
            if ((c == '\b' || c == 0x7f) && n > 0) {
                --n;
                continue;
            }
            if (c < ' ' || c > '~') continue;
            if (n + 1 < sizeof line) {
                line[n++] = c;
            } else {
                overflow = true;
            }
        }
        line[n] = '\0';
        prompt = n > 0 || overflow;
        if (!prompt) continue;  // an empty line (or the LF of a CR LF): nothing to do
        kernel::print("%s\n", line);  // the console does not echo keystrokes: echo the line
        if (overflow) {
            kernel::print("shell: error: line longer than %u characters ignored\n",
                          static_cast<unsigned>(kShellLineBytes - 1));
            continue;
        }
        dispatch(line);
    }
}

}  // namespace net
