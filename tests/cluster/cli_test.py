#!/usr/bin/env python3
"""The `./smp` command line refuses bad input the way the README promises: one line on stderr
naming what is wrong, a non-zero exit, no traceback, and nothing started.

  cli_test.py --sim SMP_SIM_BINARY

Every case runs with a run folder and a namespace name of its own (SMP_RUN_DIR, SMP_NETNS), so a
regression that let a bad `up` through could not touch a cluster someone has running; such a
case is stopped by its process group after 60 s and reported as a failure.
Exit status 0 = pass, anything else = failure with the reasons.
"""
import argparse
import os
import signal
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
SMP = os.path.join(ROOT, "smp")
NETNS = f"smpclitest{os.getpid()}"  # this run's: another checkout's tests may run at once
CASE_TIMEOUT_S = 60
checked = 0  # cases judged so far

# (arguments, text the one line must contain)
CASES = [
    (["nosuchcommand"], "invalid choice"),
    (["up", "-n", "0"], "-n must be in"),
    (["up", "-n", "many"], "invalid int value"),
    (["up", "--nic", "rtl8139"], "invalid choice"),
    (["up", "--memory", "1"], "--memory must be in"),
    (["up", "--memory", "1000000"], "--memory must be in"),
    (["console"], "required"),
    (["console", "node1", "-c", "help"], "no cluster is up"),
    (["console", "node1", "-c", ""], "takes one shell command"),
    (["console", "node1", "-c", "info\nnames"], "takes one shell command"),
    (["console", "node1", "-c", "info", "--until", "("], "--until: not a regular expression"),
    (["console", "node1", "-c", "info", "--timeout", "0"], "--timeout must be positive"),
    (["exec", "true"], "no cluster is up"),
    (["capture", "--seconds", "0"], "--seconds must be positive"),
    (["capture", "--seconds", "1"], "no cluster is up"),
    (["soak", "--seconds", "-1"], "--seconds must be positive"),
    (["soak", "--target", "everything"], "invalid choice"),
    (["demo", "--capture", "/nonexistent-folder/demo.pcap"], "--capture: cannot write"),
    (["bench", "nosuch"], "unknown benchmark"),
    (["setup", "nosuchgroup"], "unknown set-up group"),
    (["profile", "--calls", "0"], "--calls must be in"),
    (["profile", "--auth", "--ping"], "--auth goes with calls"),
    (["sim", "--mode", "sideways"], "invalid choice"),
    (["linux-pair", "sideways"], "invalid choice"),
    (["smpctl", "c", "call", "x"], "invalid choice"),
    (["kill"], "required"),
    (["kill", "node1"], "no cluster is up"),
    (["boot", "node1"], "no cluster is up"),
    (["restart", "node1"], "no cluster is up"),
    (["fault", "sideways"], "invalid choice"),
    (["fault", "loss"], "usage: ./smp fault loss"),
    (["fault", "loss", "ten"], "not a whole percent"),
    (["fault", "loss", "101"], "the loss must be in 0..100"),
    (["fault", "loss", "10", "--dup", "-1"], "--dup must be in 0..100"),
    (["fault", "show", "--dup", "5"], "--dup goes with"),
    (["fault", "partition", "node1"], "usage: ./smp fault partition"),
    (["fault", "heal", "node1"], "usage: ./smp fault heal"),
    (["fault", "partition", "node1", "node2"], "no cluster is up"),
    (["smpctl", "host", "names"], "no cluster is up" if os.geteuid() == 0 else "needs root"),
]


def run(argv, env):
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=CASE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)  # our own process group, started above
        out, err = p.communicate()
        return None, out, err
    return p.returncode, out, err


def judge(name, argv, want, env, failures):
    global checked
    checked += 1
    code, out, err = run(argv, env)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    why = None
    if code is None:
        why = f"still running after {CASE_TIMEOUT_S} s"
    elif code == 0:
        why = "exit status 0"
    elif "Traceback" in err:
        why = "a Python traceback"
    elif len(lines) != 1:
        why = f"{len(lines)} lines on stderr, not one"
    elif want not in lines[0]:
        why = f"the line does not say {want!r}"
    if code is None or "up" in argv[1:2]:
        # A bad `up` that got through boots nodes of its own: take them down before the next case.
        subprocess.run([SMP, "down"], env=env, capture_output=True, timeout=120)
    status = "ok  " if why is None else "FAIL"
    print(f"{status} {name}: exit {code}: {lines[0] if len(lines) == 1 else err.strip()!r}")
    if why:
        failures.append(f"{name}: {why}")


def main():
    global checked
    ap = argparse.ArgumentParser()
    ap.add_argument("--sim", required=True, help="the smp_sim binary")
    args = ap.parse_args()
    failures = []
    with tempfile.TemporaryDirectory(prefix="smp-cli-test-") as run_dir:
        env = dict(os.environ, SMP_RUN_DIR=run_dir, SMP_NETNS=NETNS)
        for argv, want in CASES:
            judge("./smp " + " ".join(argv), [SMP, *argv], want, env, failures)

        # A ring capture left by a cluster that is down can still be saved; a destination that
        # cannot be written gets one line naming it.
        cap = os.path.join(run_dir, "cluster", "capture")
        os.makedirs(cap, exist_ok=True)
        with open(os.path.join(cap, "ring.pcap"), "wb") as f:
            f.write(b"\xd4\xc3\xb2\xa1" + bytes(60))
        bad = os.path.join(run_dir, "no-such-folder", "x.pcap")
        judge("./smp capture NO-SUCH-FOLDER/x.pcap", [SMP, "capture", bad], "cannot write into",
              env, failures)

        # A cluster up (here: its state file): ./smp bench with net or smp among its benches
        # refuses at once, not after the others have run for minutes.
        with open(os.path.join(run_dir, "cluster", "state.json"), "w") as f:
            f.write('{"mode": "root", "nic": "virtio", "memory_mb": 128, "nodes": []}')
        code, out, err = run([SMP, "bench", "engine", "net"], env)
        checked += 1
        want = "a cluster is up" if os.geteuid() == 0 else "needs root"
        ok = code not in (0, None) and want in err and "== bench engine ==" not in out
        print(f"{'ok  ' if ok else 'FAIL'} ./smp bench engine net (a cluster up): exit {code}: {err.strip()!r}")
        if not ok:
            failures.append(f"./smp bench engine net with a cluster up: exit {code}, ran "
                            f"{out.count('== bench')} bench(es) first, stderr {err.strip()!r}")
        os.unlink(os.path.join(run_dir, "cluster", "state.json"))

        # Output to a reader that has gone (`./smp help | head -0`): no traceback, nothing on stderr.
        r, w = os.pipe()
        os.close(r)
        p = subprocess.run([SMP, "help"], stdout=w, stderr=subprocess.PIPE, text=True, env=env,
                           timeout=CASE_TIMEOUT_S)
        os.close(w)
        checked += 1
        ok = p.returncode in (0, 141) and not p.stderr.strip()
        print(f"{'ok  ' if ok else 'FAIL'} ./smp help | (closed): exit {p.returncode}: {p.stderr.strip()!r}")
        if not ok:
            failures.append(f"./smp help into a closed pipe: exit {p.returncode}, stderr {p.stderr!r}")

        # The simulator's own argument errors (./smp sim passes its options through).
        for argv, want in [(["--nodes", "0"], "bad --nodes"), (["--seeds", "7"], "bad --seeds"),
                           (["--loss", "2"], "bad --loss"), (["--bogus"], "unknown argument"),
                           (["--seed", "1.5"], "bad --seed"),
                           (["--seed", "99999999999999999999999"], "bad --seed"),
                           (["--seeds", "1:0"], "bad --seeds"), (["--seeds", "-1:2"], "bad --seeds"),
                           (["--nodes", "2.5"], "bad --nodes"), (["--sends", "1e12"], "bad --sends"),
                           (["--pcap", os.path.join(run_dir, "no-such-folder", "x.pcap")],
                            "--pcap: cannot write")]:
            judge("smp_sim " + " ".join(argv), [args.sim, *argv], want, env, failures)
        checked += 1
        code, out, _ = run([args.sim, "--help"], env)
        if code != 0 or "usage: smp_sim" not in out:
            failures.append(f"smp_sim --help: exit {code}, no usage on stdout")

        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        if NETNS in left.split():
            failures.append(f"a namespace {NETNS} was left behind")
            subprocess.run([SMP, "down"], env=env, capture_output=True, timeout=120)
    for f in failures:
        print("FAIL", f)
    print(f"{checked - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
