"""`./smp profile`: where the guest's instructions go during round trips, per node and function.

Boots its own 2-node cluster with QEMU counting instructions (-icount shift=0) and a monitor
per node, warms the path up, then has QEMU log every translated block the guest executes
(`log exec,nochain`) while node1 runs N back-to-back 64 B calls to node2's echo (or N ICMP
echoes with --ping, the floor the RTT benchmark compares with). Each logged block is weighed by
its length in the kernel's disassembly (objdump) and charged to its function. The counts are
exact guest instructions, whatever the host's load; they include everything a node ran in the
window (timers, the idle loop's few instructions), so compare per-call figures of two builds or
of --ping against the default, not single functions in isolation.

Beside the instructions, each node's line gives what TCG's cost follows more closely than the
count: the translated blocks run per call, how many of them end in a transfer TCG cannot chain
(a return, an indirect call or jump: a run-time lookup of the next block), and the footprint,
the distinct blocks (and their instructions) run in the whole window. Straight-line code run
once per exchange cost ~4 ns per guest instruction here, a warm loop ~0.4 ns
(protocol/kernel/README.md, Benchmark notes): the footprint is the part of the count that costs.
"""
import bisect
import collections
import os
import re
import shutil
import socket
import subprocess
import time

from .. import common
from .. import net_cluster as nc
from . import remote

kWarmCalls = 50
kMonitorTimeoutS = 10.0
# Instructions that end a translated block (jumps, calls, returns, interrupts, port I/O, rep
# string instructions: one iteration per execution of their block), for weighing a block.
kBlockEnders = ("j", "call", "ret", "iret", "sti", "popf", "hlt", "out", "in", "int", "lret",
                "ud2", "rdtsc", "wrmsr", "lgdt", "lidt", "rep", "syscall", "sysret")
kTraceLine = re.compile(rb"Trace \d+: 0x[0-9a-f]+ \[[0-9a-f]+/([0-9a-f]+)/")


class Disassembly:
    """The kernel's instructions and functions, from objdump."""

    def __init__(self, elf):
        out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-C", elf],
                             capture_output=True, text=True, check=False)
        if out.returncode != 0:
            common.die(f"profile: objdump {elf} failed: {out.stderr.strip()[:200]}")
        self.addrs, self.ops, self.func_addrs, self.func_names = [], [], [], []
        self.ind = []  # per instruction: an indirect transfer (see below)
        for line in out.stdout.splitlines():
            m = re.match(r"^([0-9a-f]+) <(.*)>:$", line)
            if m:
                self.func_addrs.append(int(m.group(1), 16))
                self.func_names.append(m.group(2))
                continue
            m = re.match(r"^\s+([0-9a-f]+):\s+(\S+)\s*(\S*)", line)
            if m:
                self.addrs.append(int(m.group(1), 16))
                op = m.group(2)
                self.ops.append(op)
                # An indirect transfer (a return, a call or jump through a register or memory)
                # is one TCG cannot chain: the next block is looked up at run time.
                self.ind.append(op.startswith(("ret", "iret")) or
                                (op.startswith(("call", "jmp")) and m.group(3).startswith("*")))
        self.lengths = {}
        self.indirect = {}  # block start -> whether it ends in an indirect transfer

    def block_length(self, pc):
        n = self.lengths.get(pc)
        if n is not None:
            return n
        i = bisect.bisect_left(self.addrs, pc)
        n = 0
        indirect = False
        while i < len(self.addrs) and n < 512:
            n += 1
            op = self.ops[i]
            if op.startswith(kBlockEnders) and not op.startswith(("inc", "int3")):
                indirect = self.ind[i]
                break
            i += 1
        self.lengths[pc] = max(n, 1)
        self.indirect[pc] = indirect
        return self.lengths[pc]

    def function(self, pc):
        i = bisect.bisect_right(self.func_addrs, pc) - 1
        return self.func_names[i] if i >= 0 else "?"


def monitor(path, command):
    """One HMP command on a node's QEMU monitor socket."""
    deadline = time.monotonic() + kMonitorTimeoutS
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(kMonitorTimeoutS)
    try:
        s.connect(path)

        def until_prompt():
            got = b""
            while not got.rstrip().endswith(b"(qemu)"):
                if time.monotonic() > deadline:
                    raise remote.RemoteError(f"QEMU monitor {path}: no prompt")
                chunk = s.recv(4096)
                if not chunk:
                    raise remote.RemoteError(f"QEMU monitor {path} closed")
                got += chunk
            return got
        until_prompt()
        s.sendall(command.encode() + b"\n")
        until_prompt()
    except OSError as e:
        raise remote.RemoteError(f"QEMU monitor {path}: {e}") from e
    finally:
        s.close()


def profile_trace(path, dis):
    per_function = collections.Counter()
    total = blocks = indirect = 0
    distinct = set()
    with open(path, "rb") as f:
        for line in f:
            m = kTraceLine.match(line)
            if not m:
                continue
            pc = int(m.group(1), 16)
            n = dis.block_length(pc)
            per_function[dis.function(pc)] += n
            total += n
            blocks += 1
            indirect += dis.indirect[pc]
            distinct.add(pc)
    footprint = sum(dis.block_length(pc) for pc in distinct)
    return total, blocks, indirect, (len(distinct), footprint), per_function


def cmd_profile(args):
    if args.calls < 1 or args.calls > 20000:
        common.die("profile: --calls must be in 1..20000", 2)
    if args.top < 1:
        common.die("profile: --top must be at least 1", 2)
    if args.auth and args.ping:
        common.die("profile: --auth goes with calls, not --ping (ICMP carries no MAC)", 2)
    if not common.is_root():
        common.die("profile needs root (taps and a bridge in a namespace)")
    if not shutil.which("objdump"):
        common.die("profile: objdump not found (Debian package binutils)")
    if nc.load_state() is not None:
        common.die("a cluster is up: ./smp down first (the profile boots its own)")
    image = nc.kernel_image(args.kernel)
    elf = os.path.join(os.path.dirname(image), "kernel64.elf")
    if not os.path.exists(elf):
        common.die(f"profile: {elf} not found (the kernel's 64-bit ELF, built with the image)")
    d = nc.run_dir()
    extra = os.environ.get("SMP_QEMU_EXTRA", "")
    os.environ["SMP_QEMU_EXTRA"] = (
        f"{extra} -icount shift=0,sleep=on -monitor unix:{d}/{{name}}.mon,server=on,wait=off "
        f"-D {d}/{{name}}.trace").strip()
    names = ["node1", "node2"]
    state = nc.cluster_up(2, "virtio", nc.NODE_MEMORY_MB, image, extra_append="services=echo",
                          auth=args.auth, capture=False)
    try:
        target_ip = nc.node_ip(2)
        if args.ping:
            what = f"{args.calls} ICMP echoes node1 -> node2 (ping, back to back)"
            remote.node_ping(state, "node1", target_ip, kWarmCalls, 0)
        else:
            what = (f"{args.calls} calls of 64 B node1 -> node2/echo (calltest, back to back"
                    f"{', cluster key' if args.auth else ''})")
            remote.calltest(state, "node1", "node2/echo", 64, kWarmCalls)
        for n in names:
            monitor(os.path.join(d, f"{n}.mon"), "log exec,nochain")
        if args.ping:
            remote.node_ping(state, "node1", target_ip, args.calls, 0)
        else:
            r = remote.calltest(state, "node1", "node2/echo", 64, args.calls)
            if r["failed"]:
                raise remote.RemoteError(f"calltest: {r['line']}")
        for n in names:
            monitor(os.path.join(d, f"{n}.mon"), "log none")
    except remote.RemoteError as e:
        cleanup(d, names)
        common.die(f"profile: {e}")
    nc.cluster_down(quiet=True)
    try:
        dis = Disassembly(elf)
        results = [(n, *profile_trace(os.path.join(d, f"{n}.trace"), dis)) for n in names]
    finally:
        cleanup(d, names)
    print(f"smp profile: {what}; guest instructions (QEMU -icount, every executed block weighed "
          f"by its length in {os.path.relpath(elf)}), per call, top {args.top} functions per node")
    for n, total, blocks, indirect, (distinct, footprint), per_function in results:
        if total == 0:
            common.die(f"profile: {n} logged no guest instructions (QEMU's exec log is empty)")
        print(f"{n}: {total} instructions, {total / args.calls:.0f} per call, in "
              f"{blocks / args.calls:.0f} translated blocks per call ({indirect / args.calls:.0f} "
              f"ending in a return or an indirect jump or call); {distinct} distinct blocks "
              f"({footprint} instructions) ran in the window")
        for name, count in per_function.most_common(args.top):
            print(f"  {count / args.calls:9.1f}  {100.0 * count / total:5.1f}%  {name[:110]}")
    return 0


def cleanup(d, names):
    """The cluster down, and the monitor sockets and exec logs gone (a log grows ~50 MB per
    400 calls)."""
    nc.cluster_down(quiet=True)
    for n in names:
        for suffix in (".mon", ".trace"):
            try:
                os.remove(os.path.join(d, n + suffix))
            except OSError:
                pass


def register(sub, modules):
    p = sub.add_parser("profile", help="guest instructions per function during 64 B round trips "
                                       "(QEMU -icount and its exec log; boots its own 2 nodes)")
    p.add_argument("--calls", type=int, default=400, help="round trips traced (default 400)")
    p.add_argument("--top", type=int, default=40, help="functions shown per node (default 40)")
    p.add_argument("--ping", action="store_true",
                   help="trace ICMP echoes instead of SMP calls (the RTT benchmark's floor)")
    p.add_argument("--auth", action="store_true",
                   help="the nodes keyed (SPEC 3.4): what the MACs cost a call")
    p.add_argument("--kernel", help="kernel image (default: the build's)")
    p.set_defaults(func=cmd_profile)
