"""The portable kernel: `./smp bench ipc`, and the packages its hosted tests need.

bench ipc prints the cost of an 8-byte send+receive+reply round trip:
  - on the hosted port (ns; user-level context switches on one Linux thread), beside a Linux
    futex ping-pong and a pipe ping-pong between two threads, measured in the same run;
  - in the x86_64 kernel under QEMU with -icount shift=0, as guest instructions per round trip
    (rdtsc counts instructions then), three boots to show it repeats.
All threads share one address space in this kernel: the figures are labelled so, since seL4's
published ~770 cycles cross address spaces.
"""
import os
import re
import subprocess

from .. import common

try:
    from .. import kernel_qemu
except ImportError:  # the x86_64 port's helper is not there: hosted figures only
    kernel_qemu = None

PACKAGES = {"kernel": ["g++", "cmake", "libgtest-dev"]}  # ASan/UBSan runtimes come with g++
TEST_GROUPS = ["kernel"]

HOSTED_ROUNDS = 1000000      # kernel round trips per timed run (hosted)
BASELINE_ROUNDS = 100000     # futex / pipe round trips per timed run
QEMU_ROUNDS = 10000
QEMU_RUNS = 3
TARGET_INSTRUCTIONS = 1000


def _hosted_figures(bdir):
    exe = os.path.join(bdir, "kernel", "arch", "hosted", "kernel_ipc_bench_hosted")
    if not os.path.isfile(exe):
        common.die(f"{exe} was not built (needs an x86_64 host)")
    out = common.run([exe, str(HOSTED_ROUNDS), str(BASELINE_ROUNDS)], capture_output=True,
                     text=True).stdout
    figures = dict(line.split("=", 1) for line in out.split() if "=" in line)
    try:
        return {k: float(figures[k]) for k in ("hosted_kernel_ns", "futex_ns", "pipe_ns")}
    except (KeyError, ValueError):
        common.die(f"unexpected output from {exe}: {out.strip()!r}")


def _qemu_figures():
    """Guest instructions per round trip, one figure per boot (empty without the x86_64 port)."""
    if kernel_qemu is None:
        return []
    image = kernel_qemu.image_path("kernel.elf")
    runs = []
    for _ in range(QEMU_RUNS):
        status, serial = kernel_qemu.boot(image, f"bench=ipc rounds={QEMU_ROUNDS}", icount=True,
                                          timeout_s=120)
        m = re.search(r"bench ipc: rounds=(\d+) cycles=(\d+) per_round_trip=([\d.]+) errors=(\d+)",
                      serial)
        if status != kernel_qemu.STATUS_SUCCESS or not m or m.group(4) != "0":
            common.die(f"kernel bench under QEMU failed ({kernel_qemu.describe_status(status)}): "
                       f"{serial.strip()[-300:]!r}")
        runs.append(int(m.group(2)) / int(m.group(1)))
    return runs


def bench_ipc(args):
    common.setup(["build", "kernel"])
    targets = ["kernel_ipc_bench_hosted"]
    if kernel_qemu is not None:
        targets.append("kernel_image")
    bdir = common.cmake_build(targets)
    h = _hosted_figures(bdir)
    q = _qemu_figures()
    k = h["hosted_kernel_ns"]
    print("IPC round trip, 8-byte send + receive + reply (single address space: all threads in "
          "one address space)")
    print(f"  {'what':<58} {'per round trip':>16} {'vs kernel':>10}")
    rows = [
        ("kernel, hosted port (user contexts on one Linux thread)", f"{k:.1f} ns", "1.00x"),
        ("Linux futex ping-pong, two threads (same run)", f"{h['futex_ns']:.1f} ns",
         f"{h['futex_ns'] / k:.1f}x"),
        ("Linux pipe ping-pong, two threads (same run)", f"{h['pipe_ns']:.1f} ns",
         f"{h['pipe_ns'] / k:.1f}x"),
    ]
    for what, value, ratio in rows:
        print(f"  {what:<58} {value:>16} {ratio:>10}")
    if q:
        runs = ", ".join(f"{r:.1f}" for r in q)
        verdict = "met" if max(q) <= TARGET_INSTRUCTIONS else "NOT met"
        print(f"  {'x86_64 kernel under QEMU -icount shift=0':<58} {min(q):>10.1f} instr")
        print(f"    guest instructions per round trip in {len(q)} boots: {runs}; "
              f"target <= {TARGET_INSTRUCTIONS}: {verdict}")
    else:
        print("  (x86_64 kernel not available: QEMU figure skipped)")
    print(f"  hosted: best of 3 runs of {HOSTED_ROUNDS} round trips; baselines {BASELINE_ROUNDS}; "
          f"QEMU: {QEMU_ROUNDS} round trips after 1000 warm-up")


BENCHES = {"ipc": bench_ipc}


def register(sub, modules):
    pass  # no commands of its own: `./smp test` and `./smp bench ipc` reach this module's parts
