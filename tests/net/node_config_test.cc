// The node's command-line configuration (net/node_config.cc), on the hosted kernel port.
#include <gtest/gtest.h>

#include "command_line.h"
#include "node_config.h"

namespace {

using kernel::Status;

struct Parsed {
    Status status;
    net::NodeConfig config;
    const char* bad_key;
};

Parsed parse(const char* text) {
    static kernel::CommandLine cl;  // large: keep it off the stack
    cl = kernel::CommandLine{};
    Parsed p{};
    p.bad_key = "";
    EXPECT_EQ(cl.parse(text), Status::kOk) << text;
    p.status = net::node_config_parse(cl, &p.config, &p.bad_key);
    return p;
}

TEST(NodeConfig, FullConfiguration) {
    Parsed p = parse("name=node1 ip=10.77.0.11/24 mac=52:54:00:77:00:0b");
    ASSERT_EQ(p.status, Status::kOk);
    EXPECT_STREQ(p.config.name, "node1");
    EXPECT_EQ(p.config.ip, (10u << 24) | (77u << 16) | 11u);
    EXPECT_EQ(p.config.prefix, 24);
    ASSERT_TRUE(p.config.has_mac);
    const uint8_t mac[6] = {0x52, 0x54, 0x00, 0x77, 0x00, 0x0b};
    EXPECT_EQ(memcmp(p.config.mac, mac, 6), 0);
}

TEST(NodeConfig, DefaultsPrefixAndMac) {
    Parsed p = parse("name=n-2_b ip=192.168.1.2");
    ASSERT_EQ(p.status, Status::kOk);
    EXPECT_EQ(p.config.prefix, 24);
    EXPECT_FALSE(p.config.has_mac);
    p = parse("ip=10.0.0.1/32");
    ASSERT_EQ(p.status, Status::kOk);
    EXPECT_STREQ(p.config.name, "node");
    EXPECT_EQ(p.config.prefix, 32);
}

TEST(NodeConfig, BadValuesNameTheirKey) {
    struct Case {
        const char* text;
        const char* key;
    } cases[] = {
        {"name=n1", "ip"},                                  // missing
        {"ip=10.77.0.300/24", "ip"},                        // octet out of range
        {"ip=10.77.0/24", "ip"},                            // three octets
        {"ip=10.77.0.1.5", "ip"},                           // five
        {"ip=10.77.0.1/33", "ip"},                          // prefix out of range
        {"ip=10.77.0.1/", "ip"},                            // empty prefix
        {"ip=10.77.0.1/24x", "ip"},                         // trailing garbage
        {"ip=0.0.0.0/24", "ip"},                            // unspecified address
        {"ip=10.0.0.1 mac=52:54:00:77:00", "mac"},          // short
        {"ip=10.0.0.1 mac=52:54:00:77:00:0b:01", "mac"},    // long
        {"ip=10.0.0.1 mac=53:54:00:77:00:0b", "mac"},       // multicast bit set
        {"ip=10.0.0.1 mac=52-54-00-77-00-0b", "mac"},       // wrong separator
        {"ip=10.0.0.1 mac=5g:54:00:77:00:0b", "mac"},       // not hex
        {"name=bad/name ip=10.0.0.1", "name"},              // character outside the set
        {"name=abcdefghijabcdefghijabcdefghijabc ip=10.0.0.1", "name"},  // too long
        // Addresses no host can have: the node would come up "ready" and be unreachable.
        {"ip=127.0.0.1/8", "ip"},                           // loopback
        {"ip=0.1.2.3/24", "ip"},                            // "this network" (0.0.0.0/8)
        {"ip=224.0.0.5/24", "ip"},                          // multicast
        {"ip=239.255.0.1/24", "ip"},                        // multicast
        {"ip=255.255.255.255/24", "ip"},                    // limited broadcast
        {"ip=10.77.0.255/24", "ip"},                        // the subnet's broadcast address
        {"ip=10.77.0.0/24", "ip"},                          // the subnet's own (network) address
        {"ip=10.77.0.127/25", "ip"},                        // broadcast of a /25
        {"ip=10.77.0.11/24 mac=00:00:00:00:00:00", "mac"},  // all-zero MAC
    };
    for (const Case& c : cases) {
        Parsed p = parse(c.text);
        EXPECT_EQ(p.status, Status::kInvalidArgument) << c.text;
        EXPECT_STREQ(p.bad_key, c.key) << c.text;
    }
}

TEST(NodeConfig, EdgeAddressesThatAreHosts) {
    // /31 (point to point) and /32 have no network or broadcast address to avoid; 0 and 255
    // octets are ordinary host addresses inside a wider prefix.
    for (const char* text : {"ip=10.77.0.0/31", "ip=10.77.0.1/31", "ip=10.77.0.255/32",
                             "ip=10.77.1.0/16", "ip=10.77.0.255/16", "ip=223.255.255.254/8"}) {
        Parsed p = parse(text);
        EXPECT_EQ(p.status, Status::kOk) << text;
    }
}

TEST(NodeConfig, AddressHelpers) {
    char text[16];
    net::format_ipv4(0x0a4d000bu, text, sizeof text);
    EXPECT_STREQ(text, "10.77.0.11");
    net::format_ipv4(0xffffffffu, text, sizeof text);
    EXPECT_STREQ(text, "255.255.255.255");
    EXPECT_EQ(net::prefix_to_netmask(0), 0u);
    EXPECT_EQ(net::prefix_to_netmask(24), 0xffffff00u);
    EXPECT_EQ(net::prefix_to_netmask(32), 0xffffffffu);
    uint32_t ip = 0;
    EXPECT_TRUE(net::parse_ipv4("1.2.3.4", &ip));
    EXPECT_EQ(ip, 0x01020304u);
    EXPECT_FALSE(net::parse_ipv4("1.2.3.4 ", &ip));
    EXPECT_FALSE(net::parse_ipv4("", &ip));
    EXPECT_FALSE(net::parse_ipv4("01234567890.1.1.1", &ip));
}

}  // namespace
