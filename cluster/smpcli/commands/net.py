"""Network node and cluster: lwIP set-up, `./smp up/down/status/console/capture/exec`, bench net."""
import json
import os
import subprocess
import sys

from .. import common
from .. import net_bench
from .. import net_cluster
from .. import net_setup

PACKAGES = {
    "net": ["qemu-system-x86", "iproute2", "nftables", "tcpdump", "iputils-ping",
            "netcat-openbsd", "dpkg-dev", "xz-utils", "tshark", "wireshark-common",
            "util-linux", "procps"],
}
SETUP_STEPS = {"net": net_setup.fetch_lwip}
TEST_GROUPS = ["net"]
BENCHES = {"net": net_bench.bench_net}


def cmd_up(args):
    if common.is_root():
        common.setup(["build", "net"])  # a fresh machine: packages, lwIP, then the build
    net_cluster.cluster_up(args.n, args.nic, args.memory, args.kernel, wait=not args.no_wait,
                           extra_append=args.append)
    print(f"cluster up: {args.n} node(s), NIC {args.nic}; ./smp status, ./smp console NODE, "
          f"./smp capture FILE, ./smp down")


def cmd_down(args):
    net_cluster.cluster_down()


def cmd_status(args):
    state = net_cluster.load_state()
    if state is None:
        if args.json:
            print(json.dumps({"up": False, "nodes": []}))
            return 0
        print("no cluster is up")
        return 0
    rows = net_cluster.node_status(state)
    if args.json:
        print(json.dumps({"up": True, "mode": state["mode"], "nic": state["nic"],
                          "memory_mb": state["memory_mb"], "nodes": rows}, indent=1))
        return 0
    print(f"mode {state['mode']}, NIC {state['nic']}, {state['memory_mb']} MiB per node")
    print(f"{'NAME':8} {'ADDRESS':12} {'STATE':8} {'UPTIME':>8}  LOG")
    for r in rows:
        print(f"{r['name']:8} {r['ip']:12} {r['state']:8} {r['uptime_s']:>7}s  {r['log']}")
    return 0


def cmd_console(args):
    state = net_cluster.require_state()
    node = net_cluster.find_node(state, args.node)
    if args.cmd:
        out, ok = net_cluster.console_command(node, args.cmd, args.until, args.timeout)
        sys.stdout.write(out)
        if not ok:
            common.die(f"no reply matching '{args.until}' from {node['name']} within "
                       f"{args.timeout} s (log: {node['log']})")
        return 0
    if args.interactive:
        net_cluster.console_interactive(node)
        return 0
    sys.stdout.write(net_cluster.log_text(node["log"]))
    return 0


def cmd_capture(args):
    if args.seconds is not None and args.seconds <= 0:
        common.die("--seconds must be positive", 2)
    net_cluster.save_capture(args.file, args.seconds)


def cmd_exec(args):
    state = net_cluster.require_state()
    if not args.command:
        common.die("usage: ./smp exec CMD [ARGS...]", 2)
    # The command takes this process's place: signals and the exit status are its own.
    return common.exec_replace(net_cluster.ns_prefix(state) + args.command)


def register(sub, modules):
    p = sub.add_parser("up", help="boot a cluster of N nodes on a private network")
    p.add_argument("-n", type=int, default=3, help="number of nodes (default 3)")
    p.add_argument("--nic", choices=["virtio", "e1000"], default="virtio")
    p.add_argument("--memory", type=int, default=net_cluster.NODE_MEMORY_MB,
                   help=f"MiB per node (default {net_cluster.NODE_MEMORY_MB})")
    p.add_argument("--kernel", help="kernel image (default: the build's kernel/kernel.elf)")
    p.add_argument("--no-wait", action="store_true", help="do not wait for the nodes to be ready")
    p.add_argument("--append", default="",
                   help="more key=value words for every node's kernel command line "
                        "(e.g. services=echo,kv)")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("down", help="stop every node and anything else still running in the cluster's "
                                    "namespace; remove the namespace, bridge and taps")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("status", help="each node's name, address, state, uptime")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("console", help="a node's serial console: its log, a command, or interactive")
    p.add_argument("node")
    p.add_argument("-i", "--interactive", action="store_true", help="type commands (Ctrl-D leaves)")
    p.add_argument("-c", "--cmd", help="send one shell command and print its reply")
    p.add_argument("--until", default=r"^\S+> ", help="regex ending the reply (default: prompt)")
    p.add_argument("--timeout", type=float, default=30.0)
    p.set_defaults(func=cmd_console)

    p = sub.add_parser("capture", help="save the cluster's ring capture (or record live) as pcap")
    p.add_argument("file", nargs="?", default="cluster.pcap")
    p.add_argument("--seconds", type=float, help="record live for this long instead")
    p.set_defaults(func=cmd_capture)

    p = sub.add_parser("exec", help="run a command inside the cluster's network namespace")
    p.add_argument("command", nargs="...")
    p.set_defaults(func=cmd_exec)
