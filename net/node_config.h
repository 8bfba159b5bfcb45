// The node's configuration, from the kernel command line:
//   name=NAME          node name (letters, digits, '-', '_'; at most kNodeNameBytes-1)
//   ip=A.B.C.D/PREFIX  IPv4 address and prefix length (required for networking); a host
//                      address: not 0.0.0.0/8, loopback, multicast, 255.255.255.255, nor
//                      (prefix <= 30) the subnet's network or broadcast address
//   mac=XX:XX:XX:XX:XX:XX  the NIC's MAC (default: the device's own); unicast, not all zero
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "command_line.h"
#include "status.h"

namespace net {

constexpr size_t kNodeNameBytes = 32;

struct NodeConfig {
    char name[kNodeNameBytes];
    uint32_t ip;          // host byte order
    uint8_t prefix;       // 0..32
    uint8_t mac[6];
    bool has_mac;
};

// Fills *out. On a bad value returns kInvalidArgument and points *bad_key at the key.
kernel::Status node_config_parse(const kernel::CommandLine& cmdline, NodeConfig* out,
                                 const char** bad_key);
// "A.B.C.D" -> host-order address; false if malformed.
bool parse_ipv4(const char* text, uint32_t* out);
// Formats a host-order address into buffer (at least 16 bytes).
void format_ipv4(uint32_t ip, char* buffer, size_t size);
uint32_t prefix_to_netmask(uint8_t prefix);

}  // namespace net
