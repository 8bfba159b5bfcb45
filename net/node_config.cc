#include "node_config.h"

#include "panic.h"

namespace net {
namespace {

bool parse_decimal(const char*& p, uint32_t max, uint32_t* out) {
    uint32_t v = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + static_cast<uint32_t>(*p - '0');
        if (++digits > 10 || v > max) return false;
        ++p;
    }
    if (!digits) return false;
    *out = v;
    return true;
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

bool parse_mac(const char* p, uint8_t mac[6]) {
    for (int i = 0; i < 6; ++i) {
        int hi = hex_value(p[0]), lo = hex_value(p[1]);
        if (hi < 0 || lo < 0) return false;
        mac[i] = static_cast<uint8_t>(hi * 16 + lo);
        p += 2;
        if (i < 5 && *p++ != ':') return false;
    }
    if (*p != '\0' || (mac[0] & 1)) return false;  // a unicast address
    for (int i = 0; i < 6; ++i) {
        if (mac[i]) return true;
    }
    return false;  // 00:00:00:00:00:00 is no station's address
}

// Whether ip/prefix can be a host's own address: not 0.0.0.0/8 ("this network"), loopback,
// multicast or the limited broadcast, and (prefixes up to /30) not the subnet's network or
// broadcast address. Such an address was accepted and the node came up "ready", unreachable.
bool host_address(uint32_t ip, uint32_t prefix) {
    const uint32_t first = ip >> 24;
    if (first == 0 || first == 127 || (first >= 224 && first <= 239) || ip == 0xffffffffu) {
        return false;
    }
    if (prefix == 0 || prefix > 30) return true;
    const uint32_t host = ip & ~prefix_to_netmask(static_cast<uint8_t>(prefix));
    return host != 0 && host != ~prefix_to_netmask(static_cast<uint8_t>(prefix));
}

bool parse_name(const char* p, char* out) {
    size_t n = 0;
    for (; p[n]; ++n) {
        char c = p[n];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_';
        if (!ok || n + 1 >= kNodeNameBytes) return false;
        out[n] = c;
    }
    out[n] = '\0';
    return n > 0;
}

}  // namespace

bool parse_ipv4(const char* text, uint32_t* out) {
    const char* p = text;
    uint32_t ip = 0;
    for (int i = 0; i < 4; ++i) {
        uint32_t octet;
        if (!parse_decimal(p, 255, &octet)) return false;
        ip = (ip << 8) | octet;
        if (i < 3 && *p++ != '.') return false;
    }
    if (*p != '\0') return false;
    *out = ip;
    return true;
}

void format_ipv4(uint32_t ip, char* buffer, size_t size) {
    kernel::format(buffer, size, "%u.%u.%u.%u", (ip >> 24) & 0xff, (ip >> 16) & 0xff,
                   (ip >> 8) & 0xff, ip & 0xff);
}

uint32_t prefix_to_netmask(uint8_t prefix) {
    return prefix == 0 ? 0 : 0xffffffffu << (32 - prefix);
}

kernel::Status node_config_parse(const kernel::CommandLine& cmdline, NodeConfig* out,
                                 const char** bad_key) {
    *out = NodeConfig{};
    const char* name = cmdline.get("name");
    if (!parse_name(name ? name : "node", out->name)) {
        *bad_key = "name";
        return kernel::Status::kInvalidArgument;
    }
    const char* ip = cmdline.get("ip");
    if (!ip) {
        *bad_key = "ip";
        return kernel::Status::kInvalidArgument;
    }
    char address[16];
    size_t i = 0;
    for (; ip[i] && ip[i] != '/' && i + 1 < sizeof address; ++i) address[i] = ip[i];
    address[i] = '\0';
    const char* p = ip + i;
    uint32_t prefix = 24;
    if (*p == '/') {
        ++p;
        if (!parse_decimal(p, 32, &prefix) || *p != '\0') {
            *bad_key = "ip";
            return kernel::Status::kInvalidArgument;
        }
    } else if (*p != '\0') {
        *bad_key = "ip";
        return kernel::Status::kInvalidArgument;
    }
    if (!parse_ipv4(address, &out->ip) || !host_address(out->ip, prefix)) {
        *bad_key = "ip";
        return kernel::Status::kInvalidArgument;
    }
    out->prefix = static_cast<uint8_t>(prefix);
    const char* mac = cmdline.get("mac");
    if (mac) {
        if (!parse_mac(mac, out->mac)) {
            *bad_key = "mac";
            return kernel::Status::kInvalidArgument;
        }
        out->has_mac = true;
    }
    return kernel::Status::kOk;
}

}  // namespace net
