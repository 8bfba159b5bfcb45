// A network node's normal boot (kernel::start calls this weak hook): read the configuration
// from the command line, bring up the NIC, lwIP and its services, then run the serial shell.
#include "arch/arch.h"
#include "command_line.h"
#include "net_thread.h"
#include "node_config.h"
#include "panic.h"
#include "shell.h"
#include "start.h"

namespace kernel {

int node_main(const CommandLine& cmdline) {
    net::NodeConfig config;
    const char* bad_key = "";
    if (net::node_config_parse(cmdline, &config, &bad_key) != Status::kOk) {
        print("node: error: bad or missing '%s=' on the kernel command line "
              "(expected name=NAME ip=A.B.C.D/PREFIX [mac=XX:XX:XX:XX:XX:XX])\n", bad_key);
        return kExitBadCommandLine;
    }
    char addr[16];
    net::format_ipv4(config.ip, addr, sizeof addr);
    print("node: name=%s ip=%s/%u mac=", config.name, addr, config.prefix);
    if (config.has_mac) {
        print("%02x:%02x:%02x:%02x:%02x:%02x\n", config.mac[0], config.mac[1], config.mac[2],
              config.mac[3], config.mac[4], config.mac[5]);
    } else {
        print("(device default)\n");
    }
    net::node_extensions();  // other areas' net clients and shell commands (weak hook)
    Status s = net::net_start(config);
    if (s != Status::kOk) {
        print("node: error: network start-up failed (%s); the shell runs without it\n",
              status_name(s));
    } else {
        print("node: ready\n");
    }
    net::shell_run(config.name);
}

}  // namespace kernel
