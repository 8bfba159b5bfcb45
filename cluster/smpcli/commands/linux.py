"""Linux peers: `./smp linux-pair up|down|status` and `./smp bench linux`.

The pair is two network namespaces joined by one veth, so `smpctl` (smp/linux/) can speak protocol
121 between real Linux IP stacks without touching the host's own interfaces:

    namespace smpA: lo, veth-smpA 10.78.0.1/24  <--veth-->  namespace smpB: lo, veth-smpB 10.78.0.2/24

The subnet 10.78.0.0/24 exists only inside the two namespaces; neither has a default route, so no
packet can leave them. Tests make their own pair with another prefix (--prefix) so that they never
disturb one a person is using.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from .. import common
from .. import net_cluster

PACKAGES = {
    "linux": ["iproute2", "nftables", "tcpdump", "util-linux"],
    # Only `./smp bench linux` installs these (never `./smp test`): the baselines it compares with.
    "bench-linux": ["libzmq3-dev", "libgrpc++-dev", "libprotobuf-dev", "protobuf-compiler",
                    "protobuf-compiler-grpc", "pkg-config"],
}
TEST_GROUPS = ["linux"]

kDefaultPrefix = "smp"
kDefaultSubnet = "10.78.0"     # a /24; .1 is side A, .2 is side B
kIfNameMax = 15                 # Linux IFNAMSIZ - 1


class Pair:
    """Names and addresses of one namespace pair, all derived from a prefix and a /24."""

    def __init__(self, prefix=kDefaultPrefix, subnet=kDefaultSubnet, mtu=1500):
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,5}", prefix):
            common.die(f"bad prefix '{prefix}': 1 to 6 letters or digits, starting with a letter", 2)
        if not re.fullmatch(r"10\.\d{1,3}\.\d{1,3}", subnet):
            common.die(f"bad subnet '{subnet}': give the first three bytes of a 10.x.y.0/24", 2)
        self.prefix, self.subnet, self.mtu = prefix, subnet, mtu
        self.ns = {"A": prefix + "A", "B": prefix + "B"}
        self.dev = {s: "veth-" + self.ns[s] for s in "AB"}
        self.addr = {"A": subnet + ".1", "B": subnet + ".2"}
        assert all(len(d) <= kIfNameMax for d in self.dev.values())

    def as_dict(self):
        return {s: {"namespace": self.ns[s], "device": self.dev[s], "address": self.addr[s]}
                for s in "AB"} | {"subnet": self.subnet + ".0/24", "mtu": self.mtu}


def _need_root(what):
    if not common.is_root():
        common.die(f"{what} needs root (network namespaces and veth devices): run it with sudo")
    if not shutil.which("ip"):
        common.die("'ip' not found: install iproute2 (./smp setup linux)")


def _namespaces():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _ip(ns, *args, check=True):
    return common.run(["ip", "-n", ns, *args], check=check, capture_output=True, text=True)


def _has_dev(ns, dev):
    return _ip(ns, "link", "show", "dev", dev, check=False).returncode == 0


def pair_up(pair):
    """Creates what is missing and (re)applies addresses and state: running it twice is harmless."""
    _need_root("linux-pair up")
    present = _namespaces()
    for side in "AB":
        if pair.ns[side] not in present:
            common.run(["ip", "netns", "add", pair.ns[side]])
        _ip(pair.ns[side], "link", "set", "lo", "up")
        # IPv6 router solicitations and MLD reports would only add noise to the captures.
        common.run(["ip", "netns", "exec", pair.ns[side], "sysctl", "-qw",
                    "net.ipv6.conf.all.disable_ipv6=1"], capture_output=True)
    a_ok, b_ok = _has_dev(pair.ns["A"], pair.dev["A"]), _has_dev(pair.ns["B"], pair.dev["B"])
    if a_ok != b_ok or not a_ok:
        # A half-made pair (say, after a crash) is rebuilt rather than patched.
        for side, ok in (("A", a_ok), ("B", b_ok)):
            if ok:
                _ip(pair.ns[side], "link", "del", pair.dev[side], check=False)
        _ip(pair.ns["A"], "link", "add", pair.dev["A"], "type", "veth",
            "peer", "name", pair.dev["B"], "netns", pair.ns["B"])
    for side in "AB":
        ns, dev = pair.ns[side], pair.dev[side]
        _ip(ns, "link", "set", "dev", dev, "mtu", str(pair.mtu))
        _ip(ns, "addr", "replace", pair.addr[side] + "/24", "dev", dev)
        _ip(ns, "link", "set", "dev", dev, "up")


def pair_down(pair):
    """Removes both namespaces (their veth ends go with them); quiet when nothing is there."""
    _need_root("linux-pair down")
    present = _namespaces()
    for side in "AB":
        if pair.ns[side] in present:
            common.run(["ip", "netns", "del", pair.ns[side]])


def pair_status(pair):
    present = _namespaces()
    state = {}
    for side in "AB":
        ns = pair.ns[side]
        up = ns in present and _has_dev(ns, pair.dev[side])
        if up:
            out = _ip(ns, "-j", "addr", "show", "dev", pair.dev[side]).stdout
            info = json.loads(out)[0]
            up = info.get("operstate") in ("UP", "UNKNOWN") or "UP" in info.get("flags", [])
            addrs = [a["local"] for a in info.get("addr_info", []) if a.get("family") == "inet"]
            up = up and pair.addr[side] in addrs
        state[side] = {"namespace": ns, "exists": ns in present, "up": bool(up)}
    return state


def cmd_linux_pair(args):
    pair = Pair(args.prefix, args.subnet, args.mtu)
    if args.action == "up":
        pair_up(pair)
        common.info(f"namespaces {pair.ns['A']} ({pair.addr['A']}) and {pair.ns['B']} "
                    f"({pair.addr['B']}) joined by veth, mtu {pair.mtu}; try: ./smp smpctl b serve echo & "
                    f"then ./smp smpctl a call b/echo hello")
    elif args.action == "down":
        pair_down(pair)
        common.info(f"namespaces {pair.ns['A']} and {pair.ns['B']} removed")
    else:
        if not common.is_root():
            common.die("linux-pair status needs root to look into network namespaces")
        state = pair_status(pair)
        if args.json:
            print(json.dumps({"pair": pair.as_dict(), "state": state}))
        else:
            for side in "AB":
                s = state[side]
                word = "up" if s["up"] else ("incomplete" if s["exists"] else "absent")
                print(f"{s['namespace']:<10} {pair.addr[side]:<12} {word}")
        return 0 if all(state[s]["up"] for s in "AB") else 1
    return 0


def cmd_smpctl(args):
    """Runs the built smpctl inside side A or B of the pair, with the pair's peer table, or
    (side `host`) in the cluster's namespace as the nodes' `host` peer, with the nodes as its
    peer table."""
    if not common.is_root():
        common.die("smpctl in a namespace needs root (ip netns exec, raw sockets)")
    host = args.side.lower() == "host"
    if host:
        state = net_cluster.require_state()
        if state["mode"] != "root":
            common.die("smpctl host needs the root mode's cluster (its bridge address)")
    else:
        pair = Pair(args.prefix, args.subnet)
        side = args.side.upper()
        if pair.ns[side] not in _namespaces():
            common.die(f"namespace {pair.ns[side]} does not exist: run ./smp linux-pair up first")
    smpctl = os.path.join(common.build_dir(), "protocol", "linux", "smpctl")
    # Brought up to date every time (ninja does nothing when it is current): a stale smpctl would
    # speak an older protocol. Quiet unless it fails, so that smpctl's own output (--json) is all
    # that reaches stdout.
    if not os.path.exists(os.path.join(common.build_dir(), "CMakeCache.txt")):
        common.cmake_build(["smpctl"])
    r = subprocess.run(["cmake", "--build", common.build_dir(), "--target", "smpctl", "--parallel",
                        common.jobs()], capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout + r.stderr)
        common.die(f"smpctl did not build (status {r.returncode})")
    if host:
        peers = [f"--peer={nd['name']}={nd['ip']}" for nd in state["nodes"]]
        argv = net_cluster.ns_prefix(state) + [smpctl, "--name=" + net_cluster.HOST_PEER,
                                               f"--address={net_cluster.NS_ADDRESS}", *peers,
                                               *net_cluster.auth_key_args(state), *args.rest]
    else:
        argv = ["ip", "netns", "exec", pair.ns[side], smpctl, f"--name={side.lower()}",
                f"--peer=a={pair.addr['A']}", f"--peer=b={pair.addr['B']}", *args.rest]
    # smpctl takes this process's place (ip netns exec execs it too): a signal to
    # `./smp smpctl b serve echo &` reaches the server itself, and none is left behind.
    return common.exec_replace(argv)


# ---- ./smp bench linux ----------------------------------------------------------------------

kBenchSizes = [64, 65536]
kBenchCount = {64: 2000, 65536: 400}    # round trips per measurement, after a warm-up
kBenchRounds = 5                         # measurements per system and size, interleaved
kBenchMtus = [9000, 65535]               # extra 64 KiB rows at these veth MTUs (1500 is the table)
kBenchSpinUs = 50                        # libsmp's busy-poll budget in the busy-poll rows
kBaselines = ("SMP", "TCP", "ZeroMQ", "gRPC", "RAW")
kBusyPoll = ("SMP*", "TCP*", "RAW*")     # the same SMP, TCP and RAW, both sides busy-polling
# RAW (tests/linux/bench/raw_rr.cc) is the floor of any protocol over a raw socket: datagrams with
# a 4-byte header, nothing else. Its own IP protocol numbers (RFC 3692 experiments), one per
# server, since every raw socket of a protocol gets a copy of each of its packets.
kRawProtocol, kRawBusyProtocol = "253", "254"


def _bench_build():
    """Installs the baselines' packages, reconfigures so their CMake guards see them, builds."""
    common.setup(["build", "linux", "bench-linux"])
    bdir = common.build_dir()
    if os.path.exists(os.path.join(bdir, "CMakeCache.txt")):
        common.run(["cmake", bdir], capture_output=True)
    common.cmake_build(["tcp_rr"])  # configures when needed
    built = {}
    for target in ["smpctl", "smp_bench_client", "tcp_rr", "raw_rr", "zmq_rr", "grpc_rr"]:
        r = common.run(["cmake", "--build", bdir, "--target", target, "--parallel", common.jobs()],
                       check=False, capture_output=True, text=True)
        if r.returncode != 0:
            common.info(f"bench linux: {target} did not build; its column will say n/a")
        built[target] = r.returncode == 0
    return bdir, built


def _start(pair, side, argv, log):
    return subprocess.Popen(["ip", "netns", "exec", pair.ns[side], *argv],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _client(pair, argv):
    out = common.run(["ip", "netns", "exec", pair.ns["A"], *argv], capture_output=True, text=True,
                     timeout=300)
    for line in reversed(out.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    common.die(f"no result from {' '.join(argv)}: {out.stdout[-300:]} {out.stderr[-300:]}")


def _placements():
    """CPU placements to measure. Unpinned, a round trip's cost depends mostly on whether the
    scheduler happens to put client and server on one core (a cheap wake-up) or on two (an IPI
    and an idle-state exit): 15 us against 45 us for the same TCP run here. So every system is
    measured pinned, both ways, and the ratios compare like with like."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return [("one core", str(cpus[0]), str(cpus[0]))]
    return [("client and server on one core", str(cpus[1]), str(cpus[1])),
            ("client and server on two cores", str(cpus[0]), str(cpus[1]))]


def _measure(pair, systems, sizes, logdir, client_cpu, server_cpu):
    servers = []
    rows = {size: {} for size in sizes}
    try:
        with open(os.path.join(logdir, "servers.log"), "a") as log:
            for name, (server, _, ok) in systems.items():
                if ok:
                    servers.append(_start(pair, "B", ["taskset", "-c", server_cpu, *server], log))
            time.sleep(1.0)
            for p in servers:
                if p.poll() is not None:
                    common.die(f"a bench server exited early; see {logdir}/servers.log")
            # The machine is shared: interleave the systems over kBenchRounds rounds and keep
            # each system's median round (of its per-round medians), so that a burst of load
            # from elsewhere hits every column alike instead of one.
            for size in sizes:
                per_round = {name: [] for name in systems}
                for _ in range(kBenchRounds):
                    for name, (_, client, ok) in systems.items():
                        if ok:
                            argv = ["taskset", "-c", client_cpu, *client, str(size),
                                    str(kBenchCount[size])]
                            per_round[name].append(_client(pair, argv))
                for name, results in per_round.items():
                    if results:
                        results.sort(key=lambda r: r["median_us"])
                        rows[size][name] = dict(results[len(results) // 2],
                                                spread=(results[0]["median_us"],
                                                        results[-1]["median_us"]))
    finally:
        for p in servers:
            _stop(p)
    return rows


def _bench_systems(pair, bdir, built, names):
    tools = os.path.join(bdir, "tests", "linux", "bench")
    smpctl = os.path.join(bdir, "protocol", "linux", "smpctl")
    a, b = pair.addr["A"], pair.addr["B"]
    client = os.path.join(tools, "smp_bench_client")
    tcp = os.path.join(tools, "tcp_rr")
    raw = os.path.join(tools, "raw_rr")
    smp_ok = built["smpctl"] and built["smp_bench_client"]
    # name: (server argv in B, client argv in A without SIZE COUNT, built?)
    systems = {
        "SMP": ([smpctl, "--name=b", f"--peer=a={a}", "serve", "echo"],
                [client, f"--peer=b={b}", "b/echo"], smp_ok),
        "TCP": ([tcp, "server", "7001"], [tcp, "client", b, "7001"], built["tcp_rr"]),
        "ZeroMQ": ([os.path.join(tools, "zmq_rr"), "server", "7002"],
                   [os.path.join(tools, "zmq_rr"), "client", b, "7002"], built["zmq_rr"]),
        "gRPC": ([os.path.join(tools, "grpc_rr"), "server", "7003"],
                 [os.path.join(tools, "grpc_rr"), "client", b, "7003"], built["grpc_rr"]),
        # The busy-poll pair: a second SMP server (endpoint 1) and a second TCP server, both
        # polling their sockets instead of sleeping, as their clients do.
        "SMP*": ([smpctl, "--name=b", f"--peer=a={a}", "--endpoint=1", f"--spin-us={kBenchSpinUs}",
                  "serve", "echo"],
                 [client, f"--spin-us={kBenchSpinUs}", f"--peer=b={b}:1", "b/echo"], smp_ok),
        "TCP*": ([tcp, "--busy-poll", "server", "7004"],
                 [tcp, "--busy-poll", "client", b, "7004"], built["tcp_rr"]),
        "RAW": ([raw, "server", kRawProtocol], [raw, "client", b, kRawProtocol], built["raw_rr"]),
        "RAW*": ([raw, "--busy-poll", "server", kRawBusyProtocol],
                 [raw, "--busy-poll", "client", b, kRawBusyProtocol], built["raw_rr"]),
    }
    return {k: v for k, v in systems.items() if k in names}


def bench_linux(args):
    _need_root("bench linux")
    bdir, built = _bench_build()
    logdir = os.path.join(bdir, "bench-linux-logs")
    os.makedirs(logdir, exist_ok=True)
    open(os.path.join(logdir, "servers.log"), "w").close()
    results, by_mtu = [], []
    pair = Pair("smpbn", "10.78.9")
    pair_down(pair)
    try:
        pair_up(pair)
        systems = _bench_systems(pair, bdir, built, kBaselines + kBusyPoll)
        for label, client_cpu, server_cpu in _placements():
            results.append((label, client_cpu, server_cpu,
                            _measure(pair, systems, kBenchSizes, logdir, client_cpu, server_cpu)))
        # 64 KiB at larger MTUs: the same veth, its MTU raised on both ends; the servers start
        # again so that libsmp reads the new route MTU and probes the path anew.
        for mtu in kBenchMtus:
            pair = Pair("smpbn", "10.78.9", mtu)
            pair_up(pair)
            systems = _bench_systems(pair, bdir, built, ("SMP", "TCP", "RAW") + kBusyPoll)
            for label, client_cpu, server_cpu in _placements():
                by_mtu.append((mtu, label, _measure(pair, systems, [65536], logdir, client_cpu,
                                                    server_cpu)[65536]))
    finally:
        pair_down(pair)
    print("Request/reply round trip between two network namespaces over veth (echo: SIZE bytes each")
    print(f"way); median of N round trips after a warm-up, median of {kBenchRounds} interleaved "
          "rounds, microseconds,")
    print("all measured in this run; every process pinned with taskset. RAW: the floor of any "
          "protocol over a")
    print("raw socket (tests/linux/bench/raw_rr.cc: MTU-sized datagrams with a 4-byte header, "
          "nothing else).")
    print("Starred: the same with both sides busy-polling instead of sleeping: libsmp "
          f"Config::spin_ns = {kBenchSpinUs} us")
    print("(smpctl --spin-us), tcp_rr/raw_rr --busy-poll: MSG_DONTWAIT + sched_yield for 50 us; "
          "then each sleeps.")
    print("libsmp's default is no busy-poll (spin_ns = 0).")
    for label, client_cpu, server_cpu, rows in results:
        print(f"-- {label} (client CPU {client_cpu}, server CPU {server_cpu}), veth MTU 1500")
        _print_table(rows)
    print("-- 64 KiB at larger veth MTUs (libsmp probes the path MTU: 65535, 9000, 1500, ...)")
    print(f"{'MTU':>7} {'placement':<10} {'SMP':>8} {'TCP':>8} {'RAW':>8} {'SMP*':>8} {'TCP*':>8} "
          f"{'RAW*':>8} {'SMP/TCP':>8} {'SMP*/TCP*':>10}")
    for mtu, label, r in by_mtu:
        m = {k: r[k]["median_us"] if k in r else None for k in ("SMP", "TCP", "RAW") + kBusyPoll}
        where = "two cores" if "two" in label else "one core"
        print(f"{mtu:>7} {where:<10} {_fmt(m['SMP'])} {_fmt(m['TCP'])} {_fmt(m['RAW'])} "
              f"{_fmt(m['SMP*'])} {_fmt(m['TCP*'])} {_fmt(m['RAW*'])} "
              f"{_ratio(m['SMP'], m['TCP'], 8)} {_ratio(m['SMP*'], m['TCP*'], 10)}")
    print("targets: SMP/TCP <= 0.80x, SMP/gRPC <= 0.50x (at 64 B and 64 KiB); why they are out of "
          "reach here:")
    print("protocol/linux/README.md, 'Cost model'")


def _fmt(v):
    return f"{v:8.1f}" if v is not None else f"{'n/a':>8}"


def _ratio(a, b, width):
    return f"{a / b:{width - 1}.2f}x" if a is not None and b else f"{'n/a':>{width}}"


def _print_table(rows):
    print(f"{'size':>7} {'N':>5} {'SMP':>8} {'TCP':>8} {'ZeroMQ':>8} {'gRPC':>8} {'RAW':>8} "
          f"{'SMP/TCP':>9} {'SMP/gRPC':>9} {'SMP/RAW':>9}")
    for size, r in rows.items():
        m = {k: r[k]["median_us"] if k in r else None for k in kBaselines + kBusyPoll}
        print(f"{size:>7} {kBenchCount[size]:>5} {_fmt(m['SMP'])} {_fmt(m['TCP'])} "
              f"{_fmt(m['ZeroMQ'])} {_fmt(m['gRPC'])} {_fmt(m['RAW'])} "
              f"{_ratio(m['SMP'], m['TCP'], 9)} {_ratio(m['SMP'], m['gRPC'], 9)} "
              f"{_ratio(m['SMP'], m['RAW'], 9)}")
    print(f"{'':>7} {'busy':>5} {'SMP*':>8} {'TCP*':>8} {'':>8} {'':>8} {'RAW*':>8} "
          f"{'SMP*/TCP*':>9} {'SMP*/TCP':>9} {'SMP*/RAW*':>9}")
    for size, r in rows.items():
        m = {k: r[k]["median_us"] if k in r else None for k in kBaselines + kBusyPoll}
        print(f"{size:>7} {kBenchCount[size]:>5} {_fmt(m['SMP*'])} {_fmt(m['TCP*'])} "
              f"{'':>8} {'':>8} {_fmt(m['RAW*'])} "
              f"{_ratio(m['SMP*'], m['TCP*'], 9)} {_ratio(m['SMP*'], m['TCP'], 9)} "
              f"{_ratio(m['SMP*'], m['RAW*'], 9)}")
    for size, r in rows.items():
        print(f"{'':>7} spread of round medians at {size} B: " +
              ", ".join(f"{k} {v['spread'][0]:.1f}..{v['spread'][1]:.1f}" for k, v in r.items()))


BENCHES = {"linux": bench_linux}


def register(sub, modules):
    p = sub.add_parser("linux-pair",
                       help="two network namespaces joined by a veth, for smpctl (root)")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--prefix", default=kDefaultPrefix,
                   help="namespace names are PREFIX+A and PREFIX+B (default: smp)")
    p.add_argument("--subnet", default=kDefaultSubnet,
                   help="first three bytes of the /24 used inside the pair (default: 10.78.0)")
    p.add_argument("--mtu", type=int, default=1500, help="veth MTU (default: 1500)")
    p.add_argument("--json", action="store_true", help="status as JSON")
    p.set_defaults(func=cmd_linux_pair)

    p = sub.add_parser("smpctl", help="run smpctl in the cluster's namespace (host) or in side A "
                                      "or B of the linux-pair (root)",
                       description="host: smpctl in the cluster's namespace, as the peer the nodes "
                       "call `host` (10.77.0.1), with every node in its peer table; e.g. "
                       "./smp smpctl host call node1/echo hello, ./smp smpctl host serve upper "
                       "(then, on a node: call host/upper x). a, b: in namespace PREFIX+SIDE with "
                       "the peer table a=10.78.0.1, b=10.78.0.2; e.g. ./smp smpctl b serve echo, "
                       "then ./smp smpctl a call b/echo hello")
    p.add_argument("side", choices=["host", "a", "b", "A", "B"])
    p.add_argument("rest", nargs=argparse.REMAINDER, help="smpctl's options and command")
    p.add_argument("--prefix", default=kDefaultPrefix)
    p.add_argument("--subnet", default=kDefaultSubnet)
    p.set_defaults(func=cmd_smpctl)
