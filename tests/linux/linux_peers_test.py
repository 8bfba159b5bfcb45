#!/usr/bin/env python3
"""Linux peers between two network namespaces (issue 6), one ctest case per CASE:

  basic       ping, names, call and serve (echo and --exec) between the namespaces
  sizes       calls of 0 B .. 16 MiB, hash-checked, at MTU 1500 and again at 1280
  concurrent  two servers and two clients on one host each, at once (several endpoints per address)
  loss        nftables on both veth ends: ~10% random drop (numgen) and duplicates (dup): every call
              completes with the right bytes
  bad_input   unknown node, unknown service, oversized message, missing privilege (uid 65534),
              host down: one clear line, a non-zero status, nothing left blocked; a serve --exec
              command stopped (its server stopped by SIGTERM or killed by SIGKILL, its client's
              deadline passed, its output too large) leaves nothing it started running, setsid'd
              processes and daemons included; one that ends normally leaves them running
  capture     records these exchanges with tcpdump into BUILD/captures/linux-peers.pcap (for the
              dissector's tests) and checks that protocol-121 frames are in it

Every case makes its own namespace pair and removes it, and ends every process it started by PID,
also when it fails. Needs root; exits 77 (ctest: skipped) with a message otherwise.
"""
import argparse
import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "cluster"))
from smpcli import common  # noqa: E402
from smpcli.commands import linux as lx  # noqa: E402

kSkip = 77
kPrSetPdeathsig = 1


def die_with_parent():
    """Runs in each child before exec: if this script is killed (a ctest timeout sends SIGKILL,
    so no `finally` runs), the kernel ends the child too instead of leaving it in a namespace."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(kPrSetPdeathsig, signal.SIGKILL, 0, 0, 0)
kCallGuardS = 120        # only a guard against a hang, never a speed check
kGoneGuardS = 30         # the same, for a killed process to go (kept below the case's ctest timeout)
kUnprivilegedUid = 65534


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)
    print(f"ok: {what}", flush=True)


class Harness:
    """One namespace pair plus every process started in it; close() undoes all of it."""

    def __init__(self, smpctl, prefix, mtu=1500):
        self.smpctl = smpctl
        self.pair = lx.Pair(prefix, "10.78.5", mtu)
        self.procs = []
        self.strays = []  # processes our commands started (Proc): close() ends any still alive
        self.tmp = tempfile.TemporaryDirectory(prefix="smp-linux-")
        lx.pair_down(self.pair)
        lx.pair_up(self.pair)
        self.addr = self.pair.addr

    def base(self, side):
        """The same static peer table on both sides: node a, node b (endpoint 0 at B's address)
        and nodes b2, b3 (endpoints 2 and 3 at the same address: more server processes on B)."""
        return [self.smpctl, f"--name={side.lower()}", f"--peer=a={self.addr['A']}",
                f"--peer=b={self.addr['B']}", f"--peer=b1={self.addr['B']}:1",
                f"--peer=b2={self.addr['B']}:2", f"--peer=b3={self.addr['B']}:3"]

    def exec_argv(self, side, argv):
        return ["ip", "netns", "exec", self.pair.ns[side], *argv]

    def start(self, side, args, log_name):
        log = open(os.path.join(self.tmp.name, log_name), "w")
        p = subprocess.Popen(self.exec_argv(side, self.base(side) + args), stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True,
                             preexec_fn=die_with_parent)
        p.log_path = log.name
        self.procs.append(p)
        return p

    def wait_serving(self, proc, service, node="b"):
        """Waits until `names NODE` from side A lists the service (the server is ready)."""
        for _ in range(100):
            if proc.poll() is not None:
                raise Failure(f"server for {service} exited: {open(proc.log_path).read()[-500:]}")
            r = self.run("A", ["--json", "--timeout=500", "names", node], check=False)
            if r.returncode == 0 and service in r.stdout:
                return
            time.sleep(0.1)
        raise Failure(f"server for {service} never appeared in names")

    def run(self, side, args, check=True, prefix=(), input_bytes=None, text=True):
        argv = self.exec_argv(side, [*prefix, *self.base(side), *args])
        r = subprocess.run(argv, capture_output=True, timeout=kCallGuardS, input=input_bytes,
                           text=text)
        if check and r.returncode != 0:
            raise Failure(f"{' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
        return r

    def nft(self, side, script):
        subprocess.run(["ip", "netns", "exec", self.pair.ns[side], "nft", "-f", "-"],
                       input=script, text=True, check=True)

    def stop(self, proc):
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()

    def close(self):
        for p in self.procs:
            self.stop(p)
        for p in self.strays:  # what a failing case left behind (by PID, never by name)
            p.kill()
        lx.pair_down(self.pair)
        self.tmp.cleanup()

    def file_of(self, size, name):
        path = os.path.join(self.tmp.name, name)
        with open(path, "wb") as f:
            f.write(os.urandom(size))
        return path

    def echo_call(self, side, service, size, node="b", timeout_ms=30000):
        """One call of `size` random bytes; the reply must hash the same as the request. The
        deadline is generous: these calls check correctness, never speed."""
        src = self.file_of(size, f"req-{size}")
        out = src + ".reply"
        t0 = time.monotonic()
        r = self.run(side, [f"--timeout={timeout_ms}", "call", f"{node}/{service}", "@" + src,
                            f"--out={out}"], check=False)
        self.last_call_s = time.monotonic() - t0
        if r.returncode != 0:
            raise Failure(f"call {node}/{service} of {size} B failed ({r.returncode}): "
                          f"{r.stderr.strip()}")
        got = hashlib.sha256(open(out, "rb").read()).hexdigest()
        want = hashlib.sha256(open(src, "rb").read()).hexdigest()
        os.remove(src)
        os.remove(out)
        return got == want


def case_basic(h):
    server = h.start("B", ["serve", "echo"], "serve-echo.log")
    h.wait_serving(server, "echo")
    r = h.run("A", ["ping", "-c", "3", "b"])
    check("rtt" in r.stdout.lower(), "ping b answers with round-trip times")
    j = json.loads(h.run("A", ["--json", "ping", "-c", "2", "b"]).stdout)
    check(j["received"] == 2 and len(j["rtt_us"]) == 2, "ping --json reports 2 replies")
    r = h.run("A", ["--json", "names", "b"])
    check("echo" in [s["name"] for s in json.loads(r.stdout)["services"]], "names b lists echo")
    r = h.run("A", ["call", "b/echo", "hello"])
    check(r.stdout == "hello", "call b/echo hello replies hello")
    r = h.run("A", ["--json", "--priority=9", "pulse", "b/echo", "5", "4000000000"])
    check(json.loads(r.stdout)["status"] == "ok", "pulse b/echo 5 4000000000 is acknowledged")
    # The server prints the pulse when its receive loop takes it (at once, or within 200 ms).
    want = "pulse on echo from " + h.addr["A"] + ": code 5 value 4000000000 priority 9"
    for _ in range(50):
        if want in open(server.log_path).read():
            break
        time.sleep(0.1)
    check(want in open(server.log_path).read(), f"serve prints the pulse ('{want}')")
    upper = h.start("B", ["--endpoint=1", "serve", "upper", "--exec", "tr a-z A-Z"],
                    "serve-upper.log")
    h.wait_serving(upper, "upper", node="b1")
    r = h.run("A", ["call", "b1/upper", "shout"])
    check(r.stdout == "SHOUT", "serve --exec runs a command per request (tr a-z A-Z)")
    r = h.run("A", ["call", "upper", "anywhere"])
    check(r.stdout == "ANYWHERE", "a bare service name is found on whichever node has it")
    # serve --threads 2: a request whose command waits for the next request's does not hold
    # that one up ('first' waits up to 10 s for the marker that 'second' leaves; with one thread
    # 'second' would wait behind it and 'first' would answer first-alone).
    started, marker = (os.path.join(h.tmp.name, n) for n in ("first-started", "second-came"))
    cmd = (f'read -r x; if [ "$x" = first ]; then touch {started}; i=0; '
           f'while [ ! -e {marker} ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; '
           f'if [ -e {marker} ]; then printf first-ok; else printf first-alone; fi; '
           f'else touch {marker}; printf second-ok; fi')
    slow = h.start("B", ["--endpoint=2", "serve", "slow", "--threads", "2", "--exec", cmd],
                   "serve-slow.log")
    h.wait_serving(slow, "slow", node="b2")
    first = subprocess.Popen(h.exec_argv("A", h.base("A") + ["--timeout=20000", "call", "b2/slow", "first"]),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(100):
        if os.path.exists(started):
            break
        time.sleep(0.1)
    r = h.run("A", ["call", "b2/slow", "second"])
    out, _ = first.communicate(timeout=kCallGuardS)
    check(r.stdout == "second-ok" and out == "first-ok",
          f"serve --threads 2 serves a second request while the first's command runs: {out!r}, {r.stdout!r}")
    conf = os.path.join(h.tmp.name, "peers.conf")
    with open(conf, "w") as f:
        f.write(f"# the peer table as a file\nb {h.addr['B']}:0\n")
    r = subprocess.run(h.exec_argv("A", [h.smpctl, f"--config={conf}", "call", "b/echo", "conf"]),
                       capture_output=True, text=True, timeout=kCallGuardS)
    check(r.returncode == 0 and r.stdout == "conf", "the peer table from a --config file")
    r = h.run("A", ["--json", "call", "b/echo", "x"])
    check(json.loads(r.stdout)["reply_size"] == 1, "call --json reports the reply size")
    # A server brings its record up to date at most every 100 ms, or once it has been quiet for
    # 200 ms: ask until the count shows (the guard only stops a hang).
    for _ in range(50):
        r = h.run("B", ["--json", "stats"])
        if any(s.get("requests_served", 0) >= 2 for s in json.loads(r.stdout)["endpoints"]):
            break
        time.sleep(0.1)
    check(any(s.get("requests_served", 0) >= 2 for s in json.loads(r.stdout)["endpoints"]),
          "stats shows the running servers' counters")
    # A server that was sent pulses and no request: its record counts them too. (It was brought
    # up to date only after a request, so pulses_received stayed 0 for good.)
    quiet = h.start("B", ["--endpoint=3", "serve", "quiet"], "serve-quiet.log")
    h.wait_serving(quiet, "quiet", node="b3")
    time.sleep(0.5)  # past the server's quiet-time update of its record
    h.run("A", ["pulse", "b3/quiet", "1", "2"])

    def quiet_pulses():
        r = h.run("B", ["--json", "stats"])
        return [s.get("pulses_received") for s in json.loads(r.stdout)["endpoints"]
                if s.get("service") == "quiet"]
    for _ in range(30):
        if quiet_pulses() == [1]:
            break
        time.sleep(0.1)
    check(quiet_pulses() == [1], f"stats counts a pulse to a server that served no request: "
                                 f"pulses_received {quiet_pulses()}")


def case_sizes(h):
    server = h.start("B", ["serve", "echo"], "serve-echo.log")
    h.wait_serving(server, "echo")
    sizes = [0, 1, 100, 1400, 1500, 4096, 65536, 300_000, 1 << 20, 16 << 20]
    for size in sizes:
        check(h.echo_call("A", "echo", size), f"echo of {size} B at MTU 1500 hash-checked")
    for side in "AB":
        subprocess.run(["ip", "-n", h.pair.ns[side], "link", "set", "dev", h.pair.dev[side],
                        "mtu", "1280"], check=True)
    r = h.run("A", ["ping", "-c", "1", "-s", "1500", "b"], check=False)
    check(r.returncode != 0, f"a 1500-byte probe cannot leave a 1280-byte link: {r.stderr.strip()}")
    check(h.run("A", ["ping", "-c", "1", "-s", "1280", "b"]).returncode == 0,
          "a 1280-byte probe crosses it")
    for size in [0, 1300, 65536, 1 << 20]:
        check(h.echo_call("A", "echo", size), f"echo of {size} B at MTU 1280 hash-checked")


def case_concurrent(h):
    s1 = h.start("B", ["serve", "echo1"], "serve-echo1.log")
    s2 = h.start("B", ["--endpoint=2", "serve", "echo2"], "serve-echo2.log")
    h.wait_serving(s1, "echo1")
    h.wait_serving(s2, "echo2", node="b2")
    # Two clients at once on side A (two endpoints on one address), each calling both servers.
    script = (
        "import subprocess, sys, os\n"
        "argv, n = sys.argv[1:-1], int(sys.argv[-1])\n"
        "for i in range(n):\n"
        "    for svc in ('b/echo1', 'b2/echo2'):\n"
        "        msg = f'{os.getpid()}-{svc}-{i}-' + 'x' * (i * 997 % 5000)\n"
        "        r = subprocess.run(argv + ['call', svc, msg], capture_output=True, text=True)\n"
        "        if r.returncode != 0 or r.stdout != msg:\n"
        "            print('FAIL', svc, i, r.returncode, r.stderr.strip()); sys.exit(1)\n"
        "print('done')\n")
    clients = []
    for k in range(2):
        argv = h.exec_argv("A", [sys.executable, "-c", script, *h.base("A"), "20"])
        clients.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, start_new_session=True,
                                        preexec_fn=die_with_parent))
        h.procs.append(clients[-1])
    # And a client on the servers' own host, so endpoints sharing 10.78.5.2 must sort packets out.
    local = h.run("B", ["call", "b/echo1", "same-host"])
    check(local.stdout == "same-host", "a client on the servers' host reaches echo1")
    for k, c in enumerate(clients):
        out, _ = c.communicate(timeout=kCallGuardS)
        check(c.returncode == 0 and "done" in out, f"client {k} made 40 calls to two servers: "
              f"{out.strip()[-200:]}")


def add_faults(h, drop_percent=10, dup_percent=5):
    for side in "AB":
        dev = h.pair.dev[side]
        h.nft(side, f"""
table netdev smpfault {{
  chain ing {{ type filter hook ingress device "{dev}" priority 0;
    ip protocol 121 numgen random mod 100 < {drop_percent} counter drop; }}
  chain eg {{ type filter hook egress device "{dev}" priority 0;
    ip protocol 121 numgen random mod 100 < {dup_percent} counter dup to "{dev}"; }}
}}""")


def fault_counters(h, side):
    r = subprocess.run(["ip", "netns", "exec", h.pair.ns[side], "nft", "-j", "list", "table",
                        "netdev", "smpfault"], capture_output=True, text=True, check=True)
    drops = dups = 0
    for item in json.loads(r.stdout)["nftables"]:
        rule = item.get("rule")
        if not rule:
            continue
        packets = next((e["counter"]["packets"] for e in rule["expr"] if "counter" in e), 0)
        if rule["chain"] == "ing":
            drops += packets
        else:
            dups += packets
    return drops, dups


def case_loss(h):
    add_faults(h)
    server = h.start("B", ["serve", "echo"], "serve-echo.log")
    h.wait_serving(server, "echo")
    r = h.run("A", ["--json", "ping", "-c", "20", "b"])
    check(json.loads(r.stdout)["received"] >= 1, "ping b under 10% loss gets replies")
    if h.pair.mtu == 65535:
        # Probes of the largest IPv4 packet leave through the IP_HDRINCL socket and come back.
        r = h.run("A", ["--json", "ping", "-c", "10", "-s", "65535", "b"])
        check(json.loads(r.stdout)["received"] >= 1, "65535-byte probes cross the jumbo veth")
    check("echo" in h.run("A", ["names", "b"]).stdout, "names b under loss lists echo")
    for size in [0, 1000, 20_000, 300_000, 1 << 20]:
        ok = h.echo_call("A", "echo", size, timeout_ms=90000)
        check(ok, f"echo of {size} B under loss + duplication ({h.last_call_s:.1f} s)")
    for i in range(30):
        msg = f"small-{i}"
        r = h.run("A", ["--timeout=30000", "call", "b/echo", msg], check=False)
        if r.returncode != 0 or r.stdout != msg:
            raise Failure(f"small call {i} under loss: {r.returncode} {r.stderr.strip()}")
    check(True, "30 small calls under loss + duplication all correct")
    # Pulses under the same faults: each smpctl pulse ends only once B acknowledged it, and B's
    # server prints each exactly once (duplicates are suppressed, losses sent again).
    for i in range(20):
        r = h.run("A", ["--timeout=30000", "pulse", "b/echo", "3", str(1000 + i)], check=False)
        if r.returncode != 0:
            raise Failure(f"pulse {i} under loss: {r.returncode} {r.stderr.strip()}")
    want = [f"code 3 value {1000 + i} " for i in range(20)]
    for _ in range(50):
        log = open(server.log_path).read()
        if all(w in log for w in want):
            break
        time.sleep(0.1)
    counts = [log.count(w) for w in want]
    check(counts == [1] * 20, f"20 pulses under loss + duplication each printed once: {counts}")
    drops = sum(fault_counters(h, s)[0] for s in "AB")
    dups = sum(fault_counters(h, s)[1] for s in "AB")
    check(drops > 0 and dups > 0, f"nftables really dropped ({drops}) and duplicated ({dups})")


def expect_error(h, args, words, what, side="A", prefix=()):
    r = h.run(side, args, check=False, prefix=prefix)
    err = r.stderr.strip()
    check(r.returncode != 0 and len(err.splitlines()) == 1 and all(w in err for w in words),
          f"{what}: status {r.returncode}, '{err}'")


kMarkers = iter(range(1, 1000))


def new_marker():
    """A `sleep` argument no other process has: `sleep 1000.<this script's pid><n>` (seconds)."""
    return f"1000.{os.getpid()}{next(kMarkers):03d}"


def live_marked(marker):
    """Live processes (not zombies) running `sleep MARKER`, wherever they are in the tree."""
    live = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            argv = open(f"/proc/{d}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if argv[:2] == [b"sleep", marker.encode()]:
            live.append(int(d))
    return live


def escapers(h, name):
    """Shell text that starts two `sleep`s out of the command's process group, their output
    elsewhere: one under `setsid`, one a daemon's (a double fork, `setsid`, its parent gone); the
    text ends once both have started. Returns the text, their markers
    and a function that returns them (Proc), checked to run out of process group `pgid`."""
    pidf = os.path.join(h.tmp.name, f"{name}-escaped")
    markers = [new_marker(), new_marker()]
    text = (f"setsid sleep {markers[0]} </dev/null >/dev/null 2>&1 & echo $! > {pidf}-1.tmp; mv {pidf}-1.tmp {pidf}-1; "
            f"(setsid sh -c 'sleep {markers[1]} </dev/null >/dev/null 2>&1 & "
            f"echo $! > {pidf}-2.tmp; mv {pidf}-2.tmp {pidf}-2' &); "
            f"while [ ! -e {pidf}-2 ]; do sleep 0.01; done; ")

    def started(pgid):
        procs = [Proc(p) for k in (1, 2) for p in wait_for_file(f"{pidf}-{k}", f"{name}: escaper {k} started")]
        h.strays += procs
        check(all(p.alive() and p.pgid() != pgid for p in procs) and
              [[p.pid] for p in procs] == [live_marked(m) for m in markers],
              f"{name}: a setsid'd sleep and a daemon's sleep run out of the command's group: {procs}")
        return procs
    return text, markers, started


def live_in_group(pgid):
    """Processes of process group `pgid` that are not zombies (a killed one may wait to be reaped
    by whoever inherited it)."""
    live = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = open(f"/proc/{d}/stat").read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append(int(d))
    return live


class Proc:
    """A process known by PID and start time (a PID is reused: this one's end is for good)."""

    def __init__(self, pid):
        self.pid = pid
        self.start = self._stat()[1] if self._stat() else None

    def _stat(self):
        try:
            stat = open(f"/proc/{self.pid}/stat").read()
        except OSError:
            return None
        fields = stat[stat.rindex(")") + 2:].split()  # state (field 3), ..., starttime (22)
        return fields[0], fields[19], int(fields[2])

    def alive(self):
        """Running (a zombie is dead: it only waits for whoever inherited it to reap it)."""
        st = self._stat()
        return st is not None and st[1] == self.start and st[0] != "Z"

    def pgid(self):
        return self._stat()[2]

    def kill(self):
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)

    def __repr__(self):
        return str(self.pid)


def wait_for_file(path, what):
    for _ in range(kCallGuardS * 10):
        if os.path.exists(path):
            break
        time.sleep(0.1)
    check(os.path.exists(path), what)
    return [int(w) for w in open(path).read().split()]


def command_tree(h, name):
    """A --exec command that starts processes of its own: `sleep 60 &` in the background (its
    output still the command's), and in the foreground `sh -c '...; sleep 60; echo'` (a shell
    that waits for its own child); then `cat`. Returns the command and a function that waits for
    it to have started and returns its processes: the shell, the background sleep, the inner sh."""
    pidf = os.path.join(h.tmp.name, f"{name}-pids")
    inner = pidf + "-inner"
    escape, markers, escaped = escapers(h, name)
    cmd = (f"sleep 60 & echo $$ $! > {pidf}.tmp; mv {pidf}.tmp {pidf}; {escape}"
           f"sh -c 'echo $$ > {inner}.tmp; mv {inner}.tmp {inner}; sleep 60; echo'; cat")

    def started():
        procs = [Proc(p) for p in wait_for_file(pidf, f"{name}: the command started") +
                 wait_for_file(inner, f"{name}: the command's inner sh started")]
        h.strays += procs
        check(all(p.alive() for p in procs), f"{name}: the command and what it started run: {procs}")
        return procs + escaped(procs[0].pgid())
    return cmd, markers, started


def check_gone(h, procs, pgid, what, markers=()):
    """Every process in `procs`, every process of group `pgid` and every `sleep MARKER` ends
    (eventually: a guard only against a hang)."""
    def marked():
        return [p for m in markers for p in live_marked(m)]
    for _ in range(kGoneGuardS * 10):
        if not any(p.alive() for p in procs) and not live_in_group(pgid) and not marked():
            break
        time.sleep(0.1)
    h.strays += [Proc(p) for p in live_in_group(pgid) + marked()]
    known = [q.pid for q in procs]
    left = [p for p in procs if p.alive()] + [p for p in live_in_group(pgid) + marked() if p not in known]
    check(not left, f"{what}: nothing the command started is left running, in its group or out of "
                    f"it ({left})")


def stop_during_command(h, sig):
    """A `serve --exec` server stopped while its command runs, the command having started a
    background `sleep` and a shell of its own. SIGTERM: the command and all it started (its
    process group, and what left it: a setsid'd sleep, a daemon) are stopped at once and the
    caller told "server gone" (exit 10), not left waiting for the command or the liveness bound.
    SIGKILL (none of smpctl's code runs): they die with it too (the command's guardian process
    kills its descendants), instead of running on."""
    name = "stopping" if sig == signal.SIGTERM else "killed"
    cmd, markers, started = command_tree(h, name)
    server = h.start("B", ["--endpoint=3", "serve", name, "--exec", cmd], f"serve-{name}.log")
    h.wait_serving(server, name, node="b3")
    caller = subprocess.Popen(h.exec_argv("A", h.base("A") + ["--timeout=90000", "call", f"b3/{name}", "x"]),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=die_with_parent)
    h.procs.append(caller)
    procs = started()
    pgid = procs[0].pgid()
    check(len(live_in_group(pgid)) >= 4, f"{name}: the command's process group holds the shell, the "
                                         f"background sleep and the inner sh with its sleep ({live_in_group(pgid)})")
    os.kill(server.pid, sig)
    server.wait(timeout=kCallGuardS)
    check_gone(h, procs, pgid, f"{name}: after the server was {'stopped' if sig == signal.SIGTERM else 'killed'}",
               markers)
    _, err = caller.communicate(timeout=kCallGuardS)
    if sig == signal.SIGTERM:
        check(caller.returncode == 10 and "server gone" in err,
              f"the caller of a server stopped mid-command is told 'server gone': {caller.returncode} {err.strip()!r}")
        log = open(server.log_path).read()
        check("stopping: the command for a request of 1 bytes was stopped" in log,
              f"the stopping server says what it stopped: {log[-300:]!r}")
    else:
        check(caller.returncode not in (0, None), f"the caller of a killed server gets an error: {err.strip()!r}")


def ancestors(pid):
    """The parent of `pid`, its parent, ... up to pid 1 (empty if `pid` is gone)."""
    line = []
    while pid > 1:
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            return line
        pid = int(stat[stat.rindex(")") + 2:].split()[1])
        line.append(pid)
    return line


def server_children(server):
    """The children of a server process (its --exec commands' processes), zombies included."""
    kids = []
    for tid in os.listdir(f"/proc/{server.pid}/task"):
        try:
            kids += [int(k) for k in open(f"/proc/{server.pid}/task/{tid}/children").read().split()]
        except OSError:
            pass
    return kids


def server_children_after_wait(server):
    """The server's children once none is left, or once kGoneGuardS has passed (a guard against
    a hang, not a time the test judges)."""
    for _ in range(kGoneGuardS * 10):
        if not server_children(server):
            break
        time.sleep(0.1)
    return server_children(server)


def abandoned_command(h):
    """A command whose client's deadline passes: it and everything it started (what left its
    process group included) are stopped, the server goes on and reaps what it started (no zombie
    child left)."""
    cmd, markers, started = command_tree(h, "abandoned")
    server = h.start("B", ["--endpoint=2", "serve", "abandoned", "--exec", cmd], "serve-abandoned.log")
    h.wait_serving(server, "abandoned", node="b2")
    caller = subprocess.Popen(h.exec_argv("A", h.base("A") + ["--timeout=3000", "call", "b2/abandoned", "x"]),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=die_with_parent)
    h.procs.append(caller)
    procs = started()
    pgid = procs[0].pgid()
    _, err = caller.communicate(timeout=kCallGuardS)
    check(caller.returncode == 7 and "timed out" in err, f"abandoned: the call times out: {caller.returncode} {err.strip()!r}")
    check_gone(h, procs, pgid, "abandoned: after its client gave up", markers)
    kids = server_children_after_wait(server)
    check(not kids, f"abandoned: the server has no child left, not even a zombie ({kids})")
    check(server.poll() is None, "abandoned: the server serves on")
    h.stop(server)


def closed_output_command(h):
    """A command that closes its output and runs on (`exec >&-; sleep 60`): the reply is
    complete, the shell is not. The server waits for it as for the output, its endpoint
    answering meanwhile: the client's deadline still stops it (and what it started), and the
    server serves on (it once sat in a blocking wait until the sleep ended)."""
    pidf = os.path.join(h.tmp.name, "closed-pids")
    cmd = f"sleep 60 >/dev/null & echo $$ $! > {pidf}.tmp; mv {pidf}.tmp {pidf}; exec >&-; sleep 60"
    server = h.start("B", ["--endpoint=2", "serve", "closed", "--exec", cmd], "serve-closed.log")
    h.wait_serving(server, "closed", node="b2")
    r = h.run("A", ["--timeout=3000", "call", "b2/closed", "x"], check=False)
    procs = [Proc(p) for p in wait_for_file(pidf, "closed: the command started")]
    h.strays += procs
    check(r.returncode == 7 and "timed out" in r.stderr,
          f"closed: the call times out: {r.returncode} {r.stderr.strip()!r}")
    check_gone(h, procs, procs[0].pgid() if procs[0].alive() else -1, "closed: after its client gave up")
    check(server.poll() is None, "closed: the server serves on")
    h.stop(server)


def output_too_large(h):
    """A command whose output passes the largest message is stopped, and so is what it started
    (here a `sleep` in the background whose output goes elsewhere, and two out of its group): its
    caller gets an error."""
    pidf = os.path.join(h.tmp.name, "large-pids")
    escape, markers, _ = escapers(h, "large")  # started before the output begins
    cmd = (f"sleep 60 >/dev/null & echo $! > {pidf}.tmp; mv {pidf}.tmp {pidf}; {escape}"
           f"head -c {(16 << 20) + 4096} /dev/zero; sleep 60")
    server = h.start("B", ["--endpoint=2", "serve", "large", "--exec", cmd], "serve-large.log")
    h.wait_serving(server, "large", node="b2")
    r = h.run("A", ["--timeout=60000", "call", "b2/large", "x"], check=False)
    procs = [Proc(p) for p in wait_for_file(pidf, "large: the command started")]
    h.strays += procs
    check(r.returncode != 0, f"large: the caller gets an error: {r.returncode} {r.stderr.strip()!r}")
    log = open(server.log_path).read()
    check("command output larger than the largest message" in log, f"large: the server says why: {log[-300:]!r}")
    check_gone(h, procs, procs[0].pgid() if procs[0].alive() else -1, "large: after its output passed the limit",
               markers)
    h.stop(server)


def left_running_command(h):
    """A command that ends normally, leaving processes running with their output elsewhere: a
    `sleep` in the background, a setsid'd one and a daemon's. The reply comes (the server waits
    for none of them), they are not stopped, neither when the request ends nor when the server
    stops, and they are no longer the server's: its children (the guardian) are gone, zombies
    included, and the left processes have moved on to the next subreaper up or init."""
    pidf = os.path.join(h.tmp.name, "left-pids")
    escape, markers, escaped = escapers(h, "left")
    cmd = (f"sleep 1000 </dev/null >/dev/null 2>&1 & echo $$ $! > {pidf}.tmp; mv {pidf}.tmp {pidf}; "
           f"{escape}cat")
    server = h.start("B", ["--endpoint=2", "serve", "left", "--exec", cmd], "serve-left.log")
    h.wait_serving(server, "left", node="b2")
    r = h.run("A", ["--timeout=30000", "call", "b2/left", "done"], check=False)
    check(r.returncode == 0 and r.stdout == "done",
          f"left: the call completes with the command's output: {r.returncode} {r.stdout!r} {r.stderr.strip()!r}")
    shell, background = wait_for_file(pidf, "left: the command started")
    left = [Proc(background)] + escaped(-1)
    h.strays += left
    kids = server_children_after_wait(server)
    check(not kids, f"left: the command's guardian is gone and reaped, and so is its shell ({kids})")
    check(all(p.alive() for p in left), f"left: what the command left running runs on ({left})")
    lines = [ancestors(p.pid) for p in left]
    check(all(line and server.pid not in line and shell not in line for line in lines),
          f"left: it is no longer under the server ({lines})")
    h.stop(server)
    check(all(p.alive() for p in left), f"left: nor is it stopped with the server ({left})")
    for p in left:
        p.kill()


def case_auth(h):
    """A server with the cluster key (--key-file) answers callers with the same key, sizes that are
    segmented and pulled included, and its PROBEs; callers with another key or none get nothing
    (host down, or unknown service when the name is asked), and the server counts their packets
    as auth drops. Every frame between the keyed peers carries AUTH (0x80)."""
    keys = {}
    for name in ("k1", "k2"):
        keys[name] = os.path.join(h.tmp.name, name)
        with os.fdopen(os.open(keys[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(os.urandom(32).hex() + "\n")
    # A key file others can read is used, with a warning.
    loose = os.path.join(h.tmp.name, "loose")
    with open(loose, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    os.chmod(loose, 0o644)
    r = h.run("A", [f"--key-file={loose}", "--peer=x=127.0.0.2", "--timeout=100", "ping", "x", "-c", "1"],
              check=False)
    check("can be read by others" in r.stderr, f"a world-readable key file is warned about: {r.stderr!r}")
    k1, k2 = f"--key-file={keys['k1']}", f"--key-file={keys['k2']}"
    dump_path = os.path.join(h.tmp.name, "auth.pcap")
    dump = subprocess.Popen(h.exec_argv("B", ["tcpdump", "-q", "-U", "--immediate-mode", "-B", "32768", "-i",
                                              h.pair.dev["B"], "-w", dump_path, "ip proto 121"]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=die_with_parent)
    h.procs.append(dump)
    server = h.start("B", [k1, "--endpoint=4", "serve", "secret"], "serve-secret.log")
    time.sleep(0.5)
    check(server.poll() is None, "a server with --key-file runs")
    r = h.run("A", [k1, "--peer=b4=" + h.addr["B"] + ":4", "call", "b4/secret", "hello-keyed"], check=False)
    check(r.returncode == 0 and r.stdout == "hello-keyed", f"a call with the key: {r.returncode} {r.stderr.strip()}")
    for size in (3000, 300_000):
        src = h.file_of(size, f"keyed-{size}")
        r = h.run("A", [k1, "--peer=b4=" + h.addr["B"] + ":4", "--timeout=30000", "call", "b4/secret",
                        "@" + src, f"--out={src}.out"], check=False)
        check(r.returncode == 0 and open(src, "rb").read() == open(src + ".out", "rb").read(),
              f"a keyed call of {size} B comes back intact: {r.returncode} {r.stderr.strip()}")
    r = h.run("A", [k1, "--peer=b4=" + h.addr["B"] + ":4", "ping", "b4", "-c", "2"], check=False)
    check(r.returncode == 0, f"a keyed ping is answered: {r.returncode} {r.stdout} {r.stderr.strip()}")
    for label, key in (("another key", [k2]), ("no key", [])):
        r = h.run("A", [*key, "--peer=b4=" + h.addr["B"] + ":4", "--timeout=3000", "call", "b4/secret", "x"],
                  check=False)
        check(r.returncode != 0 and r.stdout == "",
              f"a call with {label} gets no answer: {r.returncode} {r.stdout!r} {r.stderr.strip()}")
    # The server counted what it would not believe (its record is brought up to date after a
    # request it serves, within 200 ms of quiet; the guard only stops a hang).
    r = h.run("A", [k1, "--peer=b4=" + h.addr["B"] + ":4", "call", "b4/secret", "again"], check=False)
    check(r.returncode == 0 and r.stdout == "again", f"a keyed call after the others: {r.stderr.strip()}")
    drops = 0
    for _ in range(50):
        r = h.run("B", ["--json", "stats"], check=False)
        if r.returncode == 0:
            drops = sum(e.get("dropped_auth", 0) for e in json.loads(r.stdout)["endpoints"])
        if drops:
            break
        time.sleep(0.1)
    check(drops > 0, f"the keyed server counts the packets without its key's MAC: dropped_auth={drops}")
    h.stop(server)
    h.stop(dump)
    # Every frame the server sent carries AUTH: byte 2 of the SMP header (after a 20-byte IP header).
    frames = read_pcap_ip_payloads(dump_path)
    from_b = [p for src, p in frames if src == h.addr["B"]]
    check(from_b and all(len(p) > 2 and p[2] & 0x80 for p in from_b),
          f"every frame the keyed server sent carries AUTH ({len(from_b)} frames)")
    check(any(not (p[2] & 0x80) for src, p in frames if src == h.addr["A"]),
          "the keyless caller's frames were on the wire (and went unanswered)")


def read_pcap_ip_payloads(path):
    """(source address, IP payload) of each IPv4 frame of an Ethernet pcap."""
    out = []
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return out
    endian = "<" if struct.unpack("<I", data[:4])[0] in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    at = 24
    while at + 16 <= len(data):
        _, _, incl, _ = struct.unpack(endian + "IIII", data[at:at + 16])
        frame = data[at + 16:at + 16 + incl]
        at += 16 + incl
        if len(frame) < 34 or frame[12:14] != b"\x08\x00":
            continue
        ihl = (frame[14] & 0x0F) * 4
        src = ".".join(str(b) for b in frame[26:30])
        out.append((src, frame[14 + ihl:]))
    return out


def case_bad_input(h):
    server = h.start("B", ["serve", "echo"], "serve-echo.log")
    h.wait_serving(server, "echo")
    expect_error(h, ["call", "nosuch/echo", "x"], ["unknown node", "nosuch"], "unknown node")
    expect_error(h, ["call", "b/nosuch", "x"], ["unknown service", "nosuch"], "unknown service")
    big = h.file_of((16 << 20) + 1, "too-big")
    expect_error(h, ["call", "b/echo", "@" + big], ["too large"], "oversized message")
    expect_error(h, ["call", "b/echo", "@/nonexistent/file"], ["/nonexistent/file"],
                 "unreadable @FILE")
    expect_error(h, ["call", "b/echo", "x"], ["CAP_NET_RAW"], "missing privilege (uid 65534)",
                 prefix=("setpriv", f"--reuid={kUnprivilegedUid}", f"--regid={kUnprivilegedUid}",
                         "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"))
    expect_error(h, ["frobnicate"], ["frobnicate"], "unknown command")
    expect_error(h, ["pulse", "b/echo", "128", "1"], ["bad pulse code", "0..127"], "pulse code 128")
    expect_error(h, ["serve", "x", "--threads", "0"], ["bad --threads", "1..64"], "serve --threads 0",
                 side="B")
    expect_error(h, ["serve", "x", "--threads", "2", "--count", "3"], ["--count and --threads"],
                 "serve --threads with --count", side="B")
    expect_error(h, ["--priority=256", "call", "b/echo", "x"], ["bad --priority", "0..255"],
                 "priority 256")
    # Options may follow the command, and `--` ends them (DATA that starts with --).
    expect_error(h, ["call", "b/echo", "x", "--priority=256"], ["bad --priority", "0..255"],
                 "priority 256 after the command")
    r = h.run("A", ["call", "b/echo", "--timeout=4000", "--json", "after"])
    check(r.returncode == 0 and '"reply":"after"' in r.stdout,
          f"options after the command are taken: status {r.returncode}, '{r.stdout}' '{r.stderr}'")
    r = h.run("A", ["call", "b/echo", "--", "--priority=9"])
    check(r.stdout == "--priority=9", f"`--` ends the options: '{r.stdout}' '{r.stderr}'")
    expect_error(h, ["pulse", "b/echo", "1", "4294967296"], ["bad pulse value"], "pulse value 2^32")
    expect_error(h, ["pulse", "b/nosuch", "1", "1"], ["unknown service", "nosuch"],
                 "pulse to an unknown service")
    expect_error(h, ["serve", "other"], ["already in use", "--endpoint"], "a second server on endpoint 0",
                 side="B")
    # Host down: a node in the peer table with nobody behind its address.
    r = h.run("A", ["--peer=c=10.78.5.3", "--timeout=3000", "call", "c/echo", "x"], check=False)
    err = r.stderr.strip()
    check(r.returncode in (7, 8) and ("host down" in err or "timed out" in err),
          f"a node with nobody behind its address: status {r.returncode}, '{err}'")
    expect_error(h, ["call", "b2/echo", "x"], ["b2"], "an endpoint nobody serves on a live host")
    expect_error(h, ["--name=", "call", "b/echo", "x"], ["bad --name"], "an empty --name")
    expect_error(h, ["--address=10.1.2", "call", "b/echo", "x"], ["bad --address", "A.B.C.D"],
                 "a bad --address")
    expect_error(h, ["--peer=b=10.1.1.1", "call", "b/echo", "x"], ["'b' given twice"],
                 "a peer name given twice (the second would never be reached)")
    expect_error(h, ["call", "b/" + "s" * 33, "x"], ["bad target", "1 to 32 bytes"],
                 "a 33-byte service name")
    # A server that stops with a request it will not answer queued: that caller is told
    # "server gone" (exit 10) at once, not "host down" after the liveness bound.
    once = h.start("B", ["--endpoint=3", "serve", "once", "--count", "1", "--exec", "sleep 1; cat"],
                   "serve-once.log")
    h.wait_serving(once, "once", node="b3")
    first = subprocess.Popen(h.exec_argv("A", h.base("A") + ["call", "b3/once", "first"]),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)  # the first is being served when the second comes
    expect_error(h, ["call", "b3/once", "second"], ["server gone"],
                 "a request queued at a server that stops after one")
    out, _ = first.communicate(timeout=kCallGuardS)
    check(first.returncode == 0 and out == "first", f"the one it served: {first.returncode} {out!r}")
    once.wait(timeout=kCallGuardS)
    stop_during_command(h, signal.SIGTERM)
    stop_during_command(h, signal.SIGKILL)
    abandoned_command(h)
    closed_output_command(h)
    output_too_large(h)
    left_running_command(h)
    # A deadline that passes while the server works: a timeout, and the server is not stuck.
    slow = h.start("B", ["--endpoint=1", "serve", "slow", "--exec", "sleep 2; cat"], "serve-slow.log")
    h.wait_serving(slow, "slow", node="b1")
    expect_error(h, ["--timeout=500", "call", "b1/slow", "x"], ["timed out"], "a call past its deadline")
    r = h.run("A", ["--timeout=10000", "call", "b1/slow", "late"])
    check(r.stdout == "late", "the slow server serves the next call after the abandoned one")
    log = open(slow.log_path).read()
    check("its client gave up before the reply (its command was stopped)" in log,
          f"the abandoned call's command was stopped, not run to its end: {log[-300:]!r}")
    # Nothing left blocked: the server still answers, and no smpctl of ours is still running.
    r = h.run("A", ["call", "b/echo", "still-here"])
    check(r.stdout == "still-here", "the server still answers after the bad calls")
    check(server.poll() is None, "the server survived the bad input")


def pcap_protocol_121_count(path):
    """Counts IPv4 protocol-121 frames in a classic pcap (Ethernet link type) file."""
    data = open(path, "rb").read()
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    pos, count = 24, 0
    while pos + 16 <= len(data):
        _, _, incl, _ = struct.unpack(endian + "IIII", data[pos:pos + 16])
        frame = data[pos + 16:pos + 16 + incl]
        if len(frame) >= 34 and frame[12:14] == b"\x08\x00" and frame[23] == 121:
            count += 1
        pos += 16 + incl
    return count


def case_capture(h, build):
    cap_dir = os.path.join(build, "captures")
    os.makedirs(cap_dir, exist_ok=True)
    path = os.path.join(cap_dir, "linux-peers.pcap")
    tmp_path = path + ".part"
    dump = subprocess.Popen(h.exec_argv("B", ["tcpdump", "-q", "-U", "--immediate-mode", "-B", "32768", "-i", h.pair.dev["B"], "-w",
                                              tmp_path, "ip proto 121"]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, preexec_fn=die_with_parent)
    h.procs.append(dump)
    time.sleep(1.0)  # tcpdump needs a moment before it sees packets
    server = h.start("B", ["serve", "echo"], "serve-echo.log")
    h.wait_serving(server, "echo")
    h.run("A", ["ping", "-c", "3", "b"])
    h.run("A", ["names", "b"])
    h.run("A", ["call", "b/echo", "hello, wireshark"])
    check(h.echo_call("A", "echo", 200_000), "a 200 kB call (segmented, pulled) in the capture")
    h.run("A", ["call", "b/nosuch", "x"], check=False)
    add_faults(h, drop_percent=10, dup_percent=10)
    check(h.echo_call("A", "echo", 50_000), "a 50 kB call with loss and duplicates in the capture")
    time.sleep(0.5)
    h.stop(dump)
    os.replace(tmp_path, path)
    n = pcap_protocol_121_count(path)
    check(n >= 20, f"capture {path} holds {n} protocol-121 frames")
    print(f"capture saved: {path}")


CASES = {"basic": case_basic, "sizes": case_sizes, "concurrent": case_concurrent,
         "loss": case_loss, "bad_input": case_bad_input, "capture": case_capture, "auth": case_auth}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smpctl", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("case", choices=sorted(CASES))
    # A veth MTU of 65535 takes libsmp's large-packet path (IP_HDRINCL socket, 64 KiB packets).
    ap.add_argument("--mtu", type=int, default=1500, help="the pair's veth MTU (default 1500)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("SKIP: the Linux peer tests need root (network namespaces, raw sockets); "
              "run ./smp test as root")
        return kSkip
    h = None
    try:
        # Distinct per case, MTU and run (<= 6 chars): two runs at once on one host (two
        # checkouts' ./smp test) must not take, or remove, each other's namespaces.
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"
        run = "".join(digits[os.getpid() // 36 ** k % 36] for k in range(3))
        prefix = "t" + digits[sorted(CASES).index(args.case)] + ("j" if args.mtu != 1500 else "s") + run
        h = Harness(os.path.abspath(args.smpctl), prefix, args.mtu)
        if args.case == "capture":
            case_capture(h, args.build)
        else:
            CASES[args.case](h)
        print(f"PASS: {args.case}")
        return 0
    except (Failure, common.CliError, subprocess.TimeoutExpired) as e:
        print(f"FAIL: {args.case}: {e}")
        if h:
            for p in h.procs:
                log = getattr(p, "log_path", None)
                if log and os.path.exists(log):
                    print(f"--- {os.path.basename(log)} (tail)\n{open(log).read()[-1500:]}")
        return 1
    finally:
        if h:
            h.close()


if __name__ == "__main__":
    sys.exit(main())
