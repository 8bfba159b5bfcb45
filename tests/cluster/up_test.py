#!/usr/bin/env python3
"""`./smp up` interrupted, and refused by its node (root only).

  up_test.py interrupted --build-dir DIR --run-dir DIR
      Ctrl-C (SIGINT) while the nodes boot: exit 130, one line on stderr saying so, and nothing
      left: no namespace, no QEMU or tcpdump of this run, no cluster for ./smp status.
      (Before, the namespace, the capture and the QEMUs started so far ran on until ./smp down.)
  up_test.py bad_append --build-dir DIR --run-dir DIR
      `up -n 1 --append garbage`: the node's complaint in one line on stderr, said once, and
      nothing left.

The run has a namespace and a run folder of its own (SMP_NETNS, SMP_RUN_DIR), so a cluster
someone has up is not touched. Exit status 0 = pass, 77 = skipped (not root), else failure.
"""
import argparse
import os
import signal
import subprocess
import sys
import time

from leftovers import leftovers  # this run's namespace and processes still there

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
SMP = os.path.join(ROOT, "smp")
NETNS = f"smpuptest{os.getpid()}"  # this run's: another checkout's tests may run at once
GUARD_S = 300  # only against a hang


def case_interrupted(args, env):
    # Many nodes, so that the SIGINT finds the boot under way: it is sent once the first node
    # is launched, long before the last one is ready.
    p = subprocess.Popen([SMP, "up", "-n", "8"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env, start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    out = ""
    deadline = time.monotonic() + GUARD_S
    while "booting node1" not in out and time.monotonic() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        out += line
    if "booting node1" not in out:
        p.kill()
        p.wait()
        return [f"up never started a node: {out!r} {p.stderr.read()!r}"]
    p.send_signal(signal.SIGINT)
    try:
        rest, err = p.communicate(timeout=GUARD_S)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)  # our own process group, started above
        p.communicate()
        return ["still running after SIGINT"]
    failures = []
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if p.returncode != 130:
        failures.append(f"exit status {p.returncode}, not 130")
    if "Traceback" in err or len(lines) != 1 or "interrupted" not in lines[0]:
        failures.append(f"stderr is not one line saying 'interrupted': {err!r}")
    if "ready in" in out + rest:
        failures.append("the boot finished before the SIGINT: the case tested nothing")
    time.sleep(0.5)
    left = leftovers(NETNS, args.run_dir)
    if left:
        failures.append("left behind: " + "; ".join(left))
    st = subprocess.run([SMP, "status"], capture_output=True, text=True, env=env, timeout=60)
    if "no cluster is up" not in st.stdout:
        failures.append(f"./smp status after the interrupted up: {st.stdout.strip()!r}")
    print(f"up -n 8, SIGINT after node1 was launched: exit {p.returncode}: {err.strip()!r}")
    return failures


def case_bad_append(args, env):
    """A node that refuses its command line: one line on stderr with the kernel's own complaint
    (it was the log's last three lines, the boot banner, with the complaint last), said once
    (stdout repeated it word for word), and nothing left."""
    p = subprocess.run([SMP, "up", "-n", "1", "--append", "garbage"], capture_output=True,
                       text=True, env=env, timeout=GUARD_S)
    failures = []
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    if p.returncode in (0, None):
        failures.append(f"exit status {p.returncode}")
    if len(lines) != 1 or "bad command-line argument 'garbage'" not in lines[0]:
        failures.append(f"stderr is not one line with the node's complaint: {p.stderr!r}")
    elif "TSC" in lines[0] or "heap" in lines[0]:
        failures.append(f"the line carries the boot banner: {lines[0]!r}")
    if "garbage" in p.stdout:
        failures.append(f"stdout repeats the error: {p.stdout!r}")
    left = leftovers(NETNS, args.run_dir)
    if left:
        failures.append("left behind: " + "; ".join(left))
    print(f"up -n 1 --append garbage: exit {p.returncode}: {p.stderr.strip()!r}")
    return failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=["interrupted", "bad_append"])
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--run-dir", required=True)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("skipped: needs root (a network namespace of its own)")
        return 77
    args.run_dir = os.path.abspath(args.run_dir)
    env = dict(os.environ, SMP_NETNS=NETNS, SMP_RUN_DIR=args.run_dir, SMP_BUILD_DIR=args.build_dir)
    # Built (and configured) first, so that what up says is all the case reads (no build
    # output of its own mixed in).
    subprocess.run([SMP, "build", "kernel_image"], env=env, capture_output=True, timeout=GUARD_S)
    try:
        failures = {"interrupted": case_interrupted, "bad_append": case_bad_append}[args.case](args, env)
    finally:
        # Whatever a failed case left, taken down (never someone else's cluster: ours by name).
        subprocess.run([SMP, "down"], env=env, capture_output=True, timeout=120)
    for f in failures:
        print("FAIL", f)
    print("PASS" if not failures else f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
