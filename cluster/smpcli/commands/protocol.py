"""The protocol (issue 4): `./smp sim`, `./smp soak` and `./smp bench engine`.

    ./smp sim --seed S [--nodes N --loss P --mode crash ...]   replay one seed of the simulation
    ./smp sim --seeds FIRST:COUNT                               run a range of seeds
    ./smp sim --scenario --pcap FILE                            the capture with every message type
    ./smp soak [--seconds N] [--target decode|engine|sim]       open-ended fuzzing and simulation
                                                                (Ctrl-C stops)
    ./smp bench engine                                          the engine's cost, with baselines
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

from .. import common

PACKAGES = {
    "protocol": ["g++", "cmake", "libgtest-dev"],
    "fuzz": ["clang", "libclang-rt-14-dev", "llvm"],
    "bench-engine": ["valgrind"],
}
TEST_GROUPS = ["protocol", "fuzz"]


def _binary(name, target):
    """Builds `target` and returns the path of executable `name` in the build tree."""
    bdir = common.cmake_build([target])
    for sub in ("tests/smp", "tests_smp"):
        path = os.path.join(bdir, sub, name)
        if os.path.exists(path):
            return path
    common.die(f"built {target} but cannot find {name} under {bdir}")


def cmd_sim(args):
    cmd = []
    for flag in ("seed", "seeds", "nodes", "loss", "dup", "jitter_us", "mtu", "mode", "sends",
                 "size_max", "peers", "timer_slack_us", "pcap"):
        value = getattr(args, flag)
        if value is not None:
            cmd += ["--" + flag.replace("_", "-"), str(value)]
    if args.scenario:
        cmd.append("--scenario")
    if args.verbose:
        cmd.append("--verbose")
    if args.auth:
        cmd.append("--auth")
    sim = _binary("smp_sim", "smp_sim_driver")
    return subprocess.run([sim, *cmd]).returncode


# The simulation's soak: configurations taken in turn, each for a batch of fresh seeds (the
# seed draws the rest: nodes, sizes, loss, timings). `./smp test` runs 2,000 fixed seeds of a
# few of these; the keyed HELLO bug of the sixteenth session showed in 1 seed of 100,000.
SIM_SOAK_CONFIGS = [
    [],
    ["--auth"],
    ["--mode", "crash"],
    ["--mode", "crash", "--auth"],
    ["--mode", "partition"],
    ["--mode", "partition", "--auth"],
    ["--loss", "0.3", "--dup", "0.2", "--jitter-us", "5000"],
    ["--loss", "0.3", "--dup", "0.2", "--jitter-us", "5000", "--auth"],
    ["--timer-slack-us", "10000", "--auth"],
    ["--size-max", "300000", "--loss", "0.1"],
]
SIM_SOAK_BATCH = 2000


def _soak_sim(seconds):
    """Batches of fresh seeds through SIM_SOAK_CONFIGS until `seconds` (None: Ctrl-C). Returns
    the failures as replay commands."""
    import random
    import time
    sim = _binary("smp_sim", "smp_sim_driver")
    end = time.monotonic() + seconds if seconds else None
    seed = random.SystemRandom().randrange(1 << 20, 1 << 40)
    common.info(f"simulating from seed {seed}, {SIM_SOAK_BATCH} seeds per batch, "
                f"{len(SIM_SOAK_CONFIGS)} configurations in turn" +
                (f" for {seconds} s" if seconds else " until Ctrl-C"))
    failures, runs, batch = [], 0, 0
    while end is None or time.monotonic() < end:
        config = SIM_SOAK_CONFIGS[batch % len(SIM_SOAK_CONFIGS)]
        r = subprocess.run([sim, "--seeds", f"{seed}:{SIM_SOAK_BATCH}", *config],
                           capture_output=True, text=True)
        for m in re.finditer(r"^FAIL seed (\d+) (.*)$", r.stdout, re.M):
            replay = " ".join(["./smp sim --seed", m.group(1), *config])
            failures.append(replay)
            print(f"FAIL: {replay}   ({m.group(2)[:160]})", flush=True)
        if r.returncode != 0 and "FAIL seed" not in r.stdout:
            common.die(f"smp_sim --seeds {seed}:{SIM_SOAK_BATCH} {' '.join(config)} exited "
                       f"{r.returncode}: {(r.stderr or r.stdout).strip()[-200:]}")
        runs += SIM_SOAK_BATCH
        seed += SIM_SOAK_BATCH
        batch += 1
        if batch % len(SIM_SOAK_CONFIGS) == 0:
            common.info(f"sim: {runs} seeds, {len(failures)} failed")
    common.info(f"sim: {runs} seeds, {len(failures)} failed")
    return failures


def cmd_soak(args):
    if args.seconds is not None and args.seconds <= 0:
        common.die("--seconds must be positive", 2)
    targets = [args.target] if args.target else ["decode", "engine", "sim"]
    if any(t != "sim" for t in targets):
        common.setup(["fuzz"])
    work_root = os.path.join(common.RUN_DIR, "soak")
    corpus_root = os.path.join(common.ROOT, "tests", "smp", "corpus")
    # Each target gets its share, at least a second (0 would mean "until Ctrl-C" to libFuzzer).
    per_target = max(1, args.seconds // len(targets)) if args.seconds else 0
    for t in targets:
        if t == "sim":
            failures = _soak_sim(per_target or None)
            if failures:
                common.die(f"the simulation failed {len(failures)} seed(s); replay: {failures[0]}")
            continue
        binary = _binary(f"smp_fuzz_{t}", f"smp_fuzz_{t}_bin")
        work = os.path.join(work_root, t)
        crashes = os.path.join(work_root, "crashes") + os.sep
        os.makedirs(work, exist_ok=True)
        os.makedirs(crashes, exist_ok=True)
        cmd = [binary, f"-artifact_prefix={crashes}", "-max_len=4096", "-print_final_stats=1", work,
               os.path.join(corpus_root, t)]
        if per_target:
            cmd.insert(1, f"-max_total_time={per_target}")
        common.info(f"fuzzing {t}" + (f" for {per_target} s" if per_target else " until Ctrl-C") +
                    f"; new inputs in {work}, crashes in {crashes}")
        result = subprocess.run(cmd)
        if result.returncode != 0:
            common.die(f"fuzz target {t} found a failure: see {crashes} and replay with {binary} FILE")
    return 0


def _kv(binary, *argv):
    out = subprocess.run([binary, *argv], capture_output=True, text=True)
    if out.returncode != 0:
        common.die(f"{os.path.basename(binary)} {' '.join(argv)} failed: {out.stderr.strip()[:200]}")
    values = {}
    for line in out.stdout.splitlines():
        key, _, value = line.partition(" ")
        values[key] = value
    return values


def _callgrind_ir(binary, calls):
    """(total instructions, {Engine method: inclusive instructions}) of `binary calls N`."""
    if not shutil.which("valgrind"):
        return None, {}
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        r = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary,
                            "calls", str(calls)], capture_output=True, text=True)
        if r.returncode != 0 or not os.path.exists(out):
            return None, {}
        total = None
        with open(out) as f:
            for line in f:
                m = re.match(r"(summary|totals):\s+(\d+)", line)
                if m:
                    total = int(m.group(2))
                    break
        # Where they go: each public Engine call, inclusive (callgrind_annotate comes with
        # valgrind; without it only the total is shown).
        methods = {}
        if shutil.which("callgrind_annotate"):
            a = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--auto=no",
                                "--threshold=100", out], capture_output=True, text=True)
            for line in a.stdout.splitlines():
                m = re.match(r"\s*([\d,]+)\s.*smp::Engine::(\w+)\(", line)
                if m and m.group(2) not in methods:
                    methods[m.group(2)] = int(m.group(1).replace(",", ""))
        return total, methods


def bench_engine(args):
    common.setup(["bench-engine"])
    binary = _binary("smp_bench_engine", "smp_bench_engine")
    rtt = _kv(binary, "rtt")
    bulk = _kv(binary, "bulk")
    scale = _kv(binary, "scale")
    # Instructions per round trip: the difference between N and 0 round trips, so set-up,
    # connection and the valgrind start-up cancel out. Deterministic, so repeatable.
    n = 2000
    (ir_n, by_n), (ir_0, by_0) = _callgrind_ir(binary, n), _callgrind_ir(binary, 0)
    f = float
    rows = [("64 B round trips through two engines (in memory)",
             f"{f(rtt['rtt_engine_per_s']):,.0f}/s ({f(rtt['rtt_engine_ns']):.0f} ns)")]
    if "rtt_udp_loopback_per_s" in rtt:
        rows.append(("  baseline: UDP ping-pong on loopback, same run",
                     f"{f(rtt['rtt_udp_loopback_per_s']):,.0f}/s ({f(rtt['rtt_udp_loopback_ns']):.0f} ns)"))
        rows.append(("  ratio engine / UDP loopback (round trips per second)",
                     f"{f(rtt['rtt_engine_per_s']) / f(rtt['rtt_udp_loopback_per_s']):.1f}x"))
    rows.append(("  packets per round trip (acks piggybacked)", rtt["rtt_packets_per_call"]))
    if "rtt_engine_auth_ns" in rtt:
        rows.append(("  with a cluster key (a BLAKE2s MAC on every packet, SPEC 3.4)",
                     f"{f(rtt['rtt_engine_auth_ns']):.0f} ns: "
                     f"{f(rtt['rtt_engine_auth_ns']) / f(rtt['rtt_engine_ns']):.2f}x without"))
    rows.append(("1 MiB requests through two engines",
                 f"{f(bulk['bulk_engine_bytes_per_s']) / 2**20:,.0f} MiB/s"))
    rows.append(("  baseline: memcpy of the same 1 MiB, same run",
                 f"{f(bulk['bulk_memcpy_bytes_per_s']) / 2**20:,.0f} MiB/s"))
    rows.append(("  ratio engine / memcpy",
                 f"{f(bulk['bulk_engine_bytes_per_s']) / f(bulk['bulk_memcpy_bytes_per_s']):.3f}"))
    rows.append(("  packets per MiB (1500-byte path)", bulk["bulk_packets_per_mib"]))
    if "bulk_engine_auth_bytes_per_s" in bulk:
        rows.append(("  with a cluster key (a BLAKE2s MAC on every packet)",
                     f"{f(bulk['bulk_engine_auth_bytes_per_s']) / 2**20:,.0f} MiB/s: "
                     f"{f(bulk['bulk_engine_auth_bytes_per_s']) / f(bulk['bulk_engine_bytes_per_s']):.2f}x without"))
    if ir_n is not None and ir_0 is not None:
        rows.append(("instructions per 64 B round trip (callgrind, both engines)",
                     f"{(ir_n - ir_0) / n:,.0f}"))
        # The same round trip by Engine call (inclusive); the rest is the benchmark's own loop.
        per = {k: (by_n[k] - by_0.get(k, 0)) / n for k in by_n}
        parts = [f"{k} {v:,.0f}" for k, v in sorted(per.items(), key=lambda kv: -kv[1]) if v >= 1]
        if parts:
            rows.append(("  by Engine call (inclusive; the rest is the benchmark loop)",
                         ", ".join(parts)))
    else:
        rows.append(("instructions per round trip (callgrind)", "valgrind not available"))
    for nodes in (10, 100, 1000):
        k = f"scale_{nodes}_"
        if scale.get(k + "ok") != "1":
            rows.append((f"{nodes} nodes", "FAILED: " + scale.get(k + "failure", "?")))
            continue
        rows.append((f"{nodes} nodes, 3 peers each: engine memory per node",
                     f"{int(scale[k + 'memory_bytes']):,} B (fixed by Config)"))
        rows.append(("  peers known per node (max)", scale[k + "peers_high"]))
        rows.append(("  liveness probes per node per second",
                     f"{f(scale[k + 'probes_per_node_s']):.1f} ({f(scale[k + 'liveness_bytes_per_node_s']):.0f} B/s)"))
        rows.append(("  dead node: callers told, longest time to host-down (bound 1000 ms)",
                     f"{scale[k + 'detections']} callers, {f(scale[k + 'detection_max_ms']):.1f} ms (simulated time)"))
    width = max(len(r[0]) for r in rows)
    print("| measure".ljust(width + 2) + " | value |")
    print("|" + "-" * (width + 2) + "|-------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")
    print("Single address space, in memory: no network, no kernel; the wire is a function call.")


BENCHES = {"engine": bench_engine}


def register(sub, modules):
    p = sub.add_parser("sim", help="replay the protocol simulation: ./smp sim --seed S [...]",
                       description="Runs the deterministic simulation (tests/smp/sim.cc); anything "
                       "not given is drawn from the seed. A failing run prints its seed.")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--seed", type=int, help="one seed (default 1)")
    g.add_argument("--seeds", metavar="FIRST:COUNT", help="a range of seeds")
    g.add_argument("--scenario", action="store_true",
                   help="the fixed scenario with every message type (use with --pcap)")
    p.add_argument("--nodes", type=int)
    p.add_argument("--loss", type=float, help="probability a packet is lost (0..0.9)")
    p.add_argument("--dup", type=float, help="probability a packet is duplicated")
    p.add_argument("--jitter-us", type=int, help="delay jitter (reorders packets)")
    p.add_argument("--mtu", type=int, help="path MTU of the simulated network (576..9000)")
    p.add_argument("--mode", choices=["plain", "partition", "crash"])
    p.add_argument("--sends", type=int, help="sends per node")
    p.add_argument("--size-max", type=int, help="largest request or reply in bytes")
    p.add_argument("--peers", type=int, help="peers each node talks to")
    p.add_argument("--timer-slack-us", type=int,
                   help="retransmission timers may run this late (SPEC 5.2; the kernel's nodes: 10000)")
    p.add_argument("--auth", action="store_true",
                   help="every node keyed: every packet carries a MAC (SPEC 3.4)")
    p.add_argument("--pcap", help="write what crossed the network (raw IPv4 linktype)")
    p.add_argument("--verbose", action="store_true", help="print every packet and event")
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("soak", help="open-ended fuzzing of the decoder and the engine, and the "
                                    "simulation over fresh seeds")
    p.add_argument("--seconds", type=int, default=None,
                   help="stop after this long, shared between the targets (default: never; "
                        "without it only the first target runs, until Ctrl-C)")
    p.add_argument("--target", choices=["decode", "engine", "sim"], help="only this target")
    p.set_defaults(func=cmd_soak)
