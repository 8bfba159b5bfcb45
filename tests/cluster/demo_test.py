#!/usr/bin/env python3
"""The main job, `./smp demo`, as the README promises it (root only).

  demo_test.py run --build-dir DIR --run-dir DIR
      The whole demo, with a run folder that does not exist yet (as on a fresh clone) and the
      capture where it goes by default: exit 0, a summary whose calls all succeeded (echo table, kv 4/4, the call
      to and the pulse to the Linux peer), a capture it names that tshark decodes with no
      malformed frame, and nothing left: no namespace, no QEMU or smpctl of its run.
  demo_test.py interrupted --build-dir DIR --run-dir DIR
      Ctrl-C (SIGINT) once the nodes are up: exit 130, "cluster: down, nothing left running",
      nothing left, and no capture claimed unless this run saved one.

Each run has a namespace and a run folder of its own (SMP_NETNS, SMP_RUN_DIR), so a cluster
someone has up is not touched. Exit status 0 = pass, 77 = skipped (not root), else failure.
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from leftovers import leftovers  # this run's namespace and processes still there

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
SMP = os.path.join(ROOT, "smp")
NETNS = f"smpdemotest{os.getpid()}"  # this run's: another checkout's tests may run at once
GUARD_S = 600  # only against a hang: the demo takes seconds once built


class Failure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failure(message)


def start(args, capture):
    env = dict(os.environ, SMP_NETNS=NETNS, SMP_RUN_DIR=args.run_dir, SMP_BUILD_DIR=args.build_dir)
    where = [] if args.case == "run" else ["--capture", capture]  # run: the default place
    return subprocess.Popen([SMP, "demo", *where], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)


def finish(p, timeout):
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)  # our own process group, started above
        out, _ = p.communicate()
        raise Failure(f"the demo still ran after {timeout} s:\n{out[-3000:]}")
    return p.returncode, out


def case_run(args, capture):
    code, out = finish(start(args, capture), GUARD_S)
    print(out)
    check(code == 0, f"exit status {code}")
    m = re.search(r"^summary: (\d+) calls", out, re.M)
    check(m and int(m.group(1)) > 0, "no summary line with its calls")
    rows = re.findall(r"^\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\d+$", out, re.M)
    check(rows, "no size table in the summary")
    for size, calls, ok, failed in rows:
        check(calls == ok and failed == "0", f"echo of {size} B: {ok}/{calls} ok, {failed} failed")
    check(re.search(r"^\s+kv: 4/4 calls answered; get colour from node3 -> 'blue', "
                    r"get shape from node2 -> 'circle'$", out, re.M), "the key-value calls")
    check(re.search(r"^\s+single call node3 -> host/lecho: \d+ B, rtt \d+ us$", out, re.M),
          "the call from node3 to the Linux peer")
    check(re.search(r"^\s+pulse node2 -> host/lecho: received$", out, re.M), "the pulse to Linux")
    check(f"capture: {capture}" in out and os.path.getsize(capture) > 24, "the capture it names")
    m = re.search(r"^decode check \(ok\): (\d+) protocol-121 frames, (\d+) decoded as simplemsg, "
                  r"0 malformed$", out, re.M)
    check(m and int(m.group(1)) > 0 and m.group(1) == m.group(2), "the decode check")
    # The capture holds the run to its end: the pulse to the Linux peer, its last message.
    r = subprocess.run([SMP, "tshark", "-r", capture, "-Y", "simplemsg.type == 9"],
                       capture_output=True, text=True, timeout=GUARD_S)
    check(r.returncode == 0 and len(r.stdout.splitlines()) >= 1,
          f"the capture holds the demo's last message (its PULSE): {r.stdout!r} {r.stderr[-300:]!r}")
    check(out.rstrip().endswith("cluster: down, nothing left running"), "the last line")


def case_interrupted(args, capture):
    p = start(args, capture)
    out = []
    deadline = time.monotonic() + GUARD_S
    for line in p.stdout:  # until the nodes are up, then Ctrl-C
        out.append(line)
        if re.search(r"node\(s\) ready in", line):
            break
        check(time.monotonic() < deadline, "the nodes never came up")
    p.send_signal(signal.SIGINT)
    code, rest = finish(p, GUARD_S)
    text = "".join(out) + rest
    print(text)
    check(code == 130, f"exit status {code}, not 130")
    check("demo: interrupted" in text, "no word of the interruption")
    check(text.rstrip().endswith("cluster: down, nothing left running"), "the last line")
    if "capture: " in text:
        check("saved the ring capture" in text and os.path.getsize(capture) > 24,
              "a capture named that this run did not save")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=["run", "interrupted"])
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--run-dir", required=True)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("skipped: the demo needs root")
        return 77
    args.run_dir = os.path.join(os.path.abspath(args.run_dir), args.case)
    shutil.rmtree(args.run_dir, ignore_errors=True)
    capture = os.path.join(args.run_dir, "demo.pcap")  # the default place, in SMP_RUN_DIR
    if args.case == "interrupted":
        # A stale capture where this run will write: the interrupted run must not claim it.
        os.makedirs(args.run_dir)
        with open(capture, "wb") as f:
            f.write(b"stale")
    try:
        (case_run if args.case == "run" else case_interrupted)(args, capture)
        left = leftovers(NETNS, args.run_dir)
        check(not left, "left behind: " + "; ".join(left))
    except Failure as e:
        print(f"FAIL demo {args.case}: {e}")
        env = dict(os.environ, SMP_NETNS=NETNS, SMP_RUN_DIR=args.run_dir)
        subprocess.run([SMP, "down"], env=env, capture_output=True, timeout=120)
        return 1
    print(f"PASS demo {args.case}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
