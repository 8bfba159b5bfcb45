"""Network node and cluster: lwIP set-up, `./smp up/down/status/console/capture/exec`, a node's
crash and new boot (`kill/boot/restart`), faults on the network (`fault`), bench net."""
import json
import os
import re
import subprocess
import sys

from .. import common
from .. import net_bench
from .. import net_cluster
from .. import net_faults
from .. import net_setup

PACKAGES = {
    "net": ["qemu-system-x86", "iproute2", "nftables", "tcpdump", "iputils-ping",
            "netcat-openbsd", "dpkg-dev", "xz-utils", "tshark", "wireshark-common",
            "util-linux", "procps"],
}
SETUP_STEPS = {"net": net_setup.fetch_lwip}
TEST_GROUPS = ["net"]
BENCHES = {"net": net_bench.bench_net}
BENCH_CHECKS = {"net": lambda: net_bench.check_cluster_bench("net")}


def cmd_up(args):
    if common.is_root():
        common.setup(["build", "net"])  # a fresh machine: packages, lwIP, then the build
    net_cluster.cluster_up(args.n, args.nic, args.memory, args.kernel, wait=not args.no_wait,
                           extra_append=args.append, auth=args.auth)
    print(f"cluster up: {args.n} node(s), NIC {args.nic}"
          f"{'; authenticated (key in ' + net_cluster.auth_key_path() + ')' if args.auth else ''}; "
          f"./smp status, ./smp console NODE, ./smp capture FILE, ./smp down")


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
    # The arguments first: a bad one is refused whether a cluster is up or not.
    if args.cmd is not None and (not args.cmd.strip() or "\n" in args.cmd or "\r" in args.cmd):
        # An empty one used to print the whole serial log as if -c were not there.
        common.die("console -c takes one shell command (a line, not empty)", 2)
    if args.timeout <= 0:
        common.die("--timeout must be positive (seconds)", 2)
    try:
        re.compile(args.until)
    except re.error as e:
        common.die(f"--until: not a regular expression: {e}", 2)
    state = net_cluster.require_state()
    node = net_cluster.find_node(state, args.node)
    if args.cmd is not None:
        out, ok = net_cluster.console_command(node, args.cmd, args.until, args.timeout)
        # The reply alone: not the shell's echo of the command before it, nor the bare prompt
        # (no newline) after it.
        shown = out
        first, nl, rest = shown.partition("\n")
        if nl and first.rstrip("\r") == args.cmd:
            shown = rest
        shown = re.sub(r"(?:^|\n)[\w.-]+> $", "\n", shown)
        sys.stdout.write(shown.lstrip("\n") if shown.strip() else "")
        if not ok:
            common.die(f"no reply matching '{args.until}' from {node['name']} within "
                       f"{args.timeout} s (log: {node['log']})")
        # The shell's errors are lines "[command: ...]error: ...": status 3 says the reply came
        # and reports one (1: no reply).
        return 3 if re.search(r"^(?:[\w.-]+: )*error: ", out, re.M) else 0
    if args.interactive:
        net_cluster.console_interactive(node)
        return 0
    sys.stdout.write(net_cluster.log_text(node["log"]))
    return 0


def cmd_capture(args):
    if args.seconds is not None and args.seconds <= 0:
        common.die("--seconds must be positive", 2)
    net_cluster.save_capture(args.file, args.seconds)
    state = net_cluster.load_state()
    if state and state.get("auth_key_file"):
        common.info(f"the cluster is keyed: read it with ./smp tshark -o simplemsg.auth_key:"
                    f"$(cat {state['auth_key_file']}) -r {args.file} (else its packets show unverified)")


def cmd_exec(args):
    state = net_cluster.require_state()
    if not args.command:
        common.die("usage: ./smp exec CMD [ARGS...]", 2)
    # The command takes this process's place: signals and the exit status are its own.
    return common.exec_replace(net_cluster.ns_prefix(state) + args.command)


def cmd_kill(args):
    state = net_cluster.require_state()
    pid = net_cluster.kill_node(state, args.node)
    print(f"{args.node}: QEMU {pid} killed (a crash: its peers' calls to it end host-down within "
          f"their detection bound; ./smp boot {args.node} starts a new incarnation)")


def cmd_boot(args):
    state = net_cluster.require_state()
    pid = net_cluster.boot_node(state, args.node)
    print(f"{args.node}: running again (QEMU {pid}), a new incarnation")


def cmd_restart(args):
    state = net_cluster.require_state()
    node = net_cluster.find_node(state, args.node)
    pid = net_cluster.node_pid(node)
    if pid and net_cluster.pid_alive(pid):
        net_cluster.kill_node(state, args.node)
    pid = net_cluster.boot_node(state, args.node)
    print(f"{args.node}: running again (QEMU {pid}), a new incarnation")


def _fault_text(f):
    lines = []
    if f["loss_pct"]:
        lines.append(f"loss: {f['loss_pct']}% of protocol-121 frames dropped on the bridge "
                     f"({f['dropped']} so far)")
    if f["dup_pct"]:
        lines.append(f"duplicates: {f['dup_pct']}% of protocol-121 frames into the nodes "
                     f"duplicated ({f['duplicated']} so far)")
    for p in f["partitions"]:
        lines.append(f"partition: {p['a']} <-> {p['b']} ({p['dropped']} frames dropped)")
    return "\n".join(lines) or "no faults"


def cmd_fault(args):
    what, rest = args.what, args.args
    # The arguments first: a bad one is refused whether a cluster is up or not.
    if args.dup is not None and what != "loss":
        common.die("--dup goes with ./smp fault loss", 2)
    if what == "loss":
        if len(rest) != 1:
            common.die("usage: ./smp fault loss PCT [--dup PCT]", 2)
        try:
            pct = int(rest[0])
        except ValueError:
            common.die(f"fault loss: '{rest[0]}' is not a whole percent", 2)
        for value, name in ((pct, "the loss"), (args.dup or 0, "--dup")):
            if not 0 <= value <= 100:
                common.die(f"{name} must be in 0..100 (percent)", 2)
    elif what == "partition" and len(rest) != 2 or what == "heal" and len(rest) not in (0, 2):
        common.die(f"usage: ./smp fault {what} {'A B' if what == 'partition' else '[A B]'} "
                   f"(node names, or host for the namespace's address)", 2)
    elif what in ("clear", "show") and rest:
        common.die(f"usage: ./smp fault {what}", 2)
    state = net_cluster.require_state()
    if what == "loss":
        # --dup left out keeps the duplication in force (loss 0 and no --dup: duplication only).
        dup = args.dup if args.dup is not None else net_faults.show(state)["dup_pct"]
        net_faults.set_loss(state, pct, dup)
    elif what == "partition":
        net_faults.partition(state, *rest)
    elif what == "heal":
        net_faults.heal(state, *rest)
    elif what == "clear":
        net_faults.clear(state)
    f = net_faults.show(state)
    print(json.dumps(f, indent=1) if args.json else _fault_text(f))


def register(sub, modules):
    p = sub.add_parser("up", help="boot a cluster of N nodes on a private network")
    p.add_argument("-n", type=int, default=3, help="number of nodes (default 3)")
    p.add_argument("--nic", choices=["virtio", "e1000"], default="virtio")
    p.add_argument("--memory", type=int, default=net_cluster.NODE_MEMORY_MB,
                   help=f"MiB per node (default {net_cluster.NODE_MEMORY_MB})")
    p.add_argument("--kernel", help="kernel image (default: the build's kernel/kernel.elf)")
    p.add_argument("--no-wait", action="store_true", help="do not wait for the nodes to be ready")
    p.add_argument("--auth", action="store_true",
                   help="a new cluster key for every node (SPEC 3.4: every packet carries a MAC); "
                        "./smp smpctl host uses it too")
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
    p.add_argument("file", nargs="?", default="cluster.pcap",
                   help="where to write it (default: cluster.pcap in the current folder); the ring "
                        "keeps the last 8 x 4 MB of the cluster's traffic")
    p.add_argument("--seconds", type=float, help="record live for this long instead")
    p.set_defaults(func=cmd_capture)

    p = sub.add_parser("exec", help="run a command inside the cluster's network namespace")
    p.add_argument("command", nargs="...")
    p.set_defaults(func=cmd_exec)

    p = sub.add_parser("kill", help="crash a node: SIGKILL to its QEMU")
    p.add_argument("node")
    p.set_defaults(func=cmd_kill)

    p = sub.add_parser("boot", help="boot a stopped (killed) node again: a new incarnation")
    p.add_argument("node")
    p.set_defaults(func=cmd_boot)

    p = sub.add_parser("restart", help="kill a node (if it runs) and boot it again")
    p.add_argument("node")
    p.set_defaults(func=cmd_restart)

    p = sub.add_parser("fault", help="faults on the cluster's bridge (nftables): loss, "
                                     "duplicates, partitions; show them with their counts",
                       description="loss PCT [--dup PCT]: drop PCT% of protocol-121 frames on "
                                   "the bridge at random (and duplicate --dup % into the nodes); "
                                   "loss 0 removes it. partition A B: drop every IPv4 frame "
                                   "between A and B (node names, or host for the namespace's "
                                   "address where smpctl runs). heal [A B]: remove one partition "
                                   "or all. clear: remove every fault. show (the default): what "
                                   "is in force, with the frames dropped and duplicated so far.")
    p.add_argument("what", nargs="?", default="show",
                   choices=["show", "loss", "partition", "heal", "clear"])
    p.add_argument("args", nargs="*")
    p.add_argument("--dup", type=int, default=None, help="percent of protocol-121 frames duplicated "
                                                           "into the nodes (with loss; left out: "
                                                           "the duplication in force stays)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_fault)
