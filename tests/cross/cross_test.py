#!/usr/bin/env python3
"""Cross-node remote IPC on one booted cluster (issue 8). One ctest case per CASE; the cluster is
a ctest fixture: `setup` boots it, every case uses it, `cleanup` runs `./smp down` (ctest runs the
cleanup also when a case fails).

  setup       ./smp up -n 3 --append services=echo,kv in its own namespace and run folder
  sizes       node2 -> node1/echo, calltest of 0 B .. 16 MiB, hash-checked by the node, none failed
  ipc_remote  the kernel's IPC cases (remote-ipc-tests) run on node1 twice, against the _ipctest
              server on node2 and on node1 itself: both print "N passed, 0 failed" with the same N
  pulses      pulses into node2/_ipctest while it is not receiving: one delivery per connection
              (two on node1, one on node3), one connection's two coalesced, each with its node and
              its sender's priority
  concurrent  64 senders (32 on node2, 32 on node3) to node1/echo, 1 MiB each: ok=64, failed=0; the
              server's queue and the nodes' protocol memory high-water marks within their bounds
  faults      `./smp fault loss 10 --dup 5` (nftables on the bridge drops 10% of protocol-121
              frames and duplicates 5%): every call completes correctly; `./smp fault --json`
              shows real drops and duplicates; `./smp fault clear` leaves none
  partition   `./smp fault partition node1 node2`: a call gets host-down, node3 is unaffected,
              `./smp fault` shows the partition's drops; `./smp fault heal`: new calls succeed
  kill        `./smp kill node3` (SIGKILL to its QEMU) while node1 calls it: the calls in flight
              end with host-down (the error kind is asserted; only a generous anti-hang guard);
              node1's `peers` reports the detection time (after node3's last packet) within
              10 x the bound it reports (only a guard against nonsense: the bound is proven in
              the simulation's time); `./smp boot node3`: new calls succeed; node3 killed again
              while node1's echo answers it: the echo serves on; `./smp restart node3` (quicker
              than node1's detection): node1's first call to it gets through
  linux       smpctl in the cluster namespace calls echo on every node (small and segmented); every
              node calls a service served by `smpctl serve` in the namespace (Linux's IP stack
              against lwIP), and node2 sends it hash-checked 20 kB and 1 MiB messages; pulses
              both ways (node1 -> smpctl serve, which prints it; smpctl -> node2's echo)
  linux_large smpctl -> node2/echo of 20 kB, 300 kB, 1 MiB, compared byte for byte
  linux_churn 3 x peers_max `smpctl call`s in a row, each a new endpoint of its own, to node3's
              echo: every one answered (a table full of clients that came and went once shut
              new ones out for the linger time, and they took the silence for "host down");
              node3 retired the idle ones (peers_retired > 0) and its peer table stayed within
              its bound; then 30 `smpctl names node3` at once, all answered
  cleanup     ./smp down; nothing of ours left running

Needs root; exits 77 (skipped) otherwise.
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
SMP = os.path.join(ROOT, "smp")
kSkip = 77
kNodes = 3
kNetns = "smpcross"  # + a hash of the run folder (setup_env): another checkout's tests may run at once
kGuardS = 300            # only against a hang, never a speed check
kLinuxName = "linux"     # smpctl's own --name (the nodes know the namespace by their peer table)


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)
    print(f"ok: {what}", flush=True)


def setup_env(run_dir):
    global kNetns
    # The fixture's cases run as processes of their own: the name comes from the run folder
    # (one per build folder), the same in each of them and another in another checkout's.
    kNetns = "smpcross" + hashlib.sha1(run_dir.encode()).hexdigest()[:6]
    os.environ["SMP_RUN_DIR"] = run_dir
    os.environ["SMP_NETNS"] = kNetns
    sys.path.insert(0, os.path.join(ROOT, "cluster"))


def smp(*args, timeout=kGuardS, check_ok=True):
    r = subprocess.run([SMP, *args], capture_output=True, text=True, timeout=timeout)
    if check_ok and r.returncode != 0:
        raise Failure(f"./smp {' '.join(args)} failed ({r.returncode}): "
                      f"{r.stderr.strip()[-600:]} {r.stdout.strip()[-600:]}")
    return r


def state_or_fail(nc):
    state = nc.load_state()
    if state is None:
        raise Failure("no cluster: the fixture cross.setup did not run or failed")
    return state


# ---- cases ----------------------------------------------------------------------------------------

def case_setup(args, nc, rm):
    smp("down", check_ok=False)   # a cluster left by an earlier, killed run
    r = smp("up", "-n", str(kNodes), "--kernel", args.kernel, "--append", rm.kServices)
    print(r.stdout, end="")
    state = state_or_fail(nc)
    help_text = rm.shell_text(state, "node1", "help")
    for word in ("call", "calltest", "servicestat", "peers", "names", "stats"):
        check(re.search(rf"^\s*{word}\b", help_text, re.M), f"node1's shell has '{word}'")
    # Every node sees the others (the static peer table) and the services are attached.
    for n in range(1, kNodes + 1):
        print(rm.shell_text(state, f"node{n}", "peers"))
    names = rm.shell_text(state, "node1", "names")
    print(names)
    check("echo" in names and "kv" in names and "sink" in names,
          "node1's names lists echo, kv and sink")
    # `host` (the namespace's address, no smpctl serving there now) does not answer: a line of
    # the listing, not an error of the command (./smp console -c exits 3 on an "error:").
    check(all(f"names: node{n}: " in names for n in range(2, kNodes + 1)) and "error:" not in names,
          "node1's names has a line per other node and no 'error:' on a healthy cluster")


def case_sizes(args, nc, rm):
    state = state_or_fail(nc)
    sizes = [0, 1, 100, 1400, 1500, 4096, 65536, 300_000, 1 << 20, 4 << 20, 16 << 20]
    for size in sizes:
        count = 3 if size <= 65536 else 1
        r = rm.calltest(state, "node2", "node1/echo", size, count, timeout_s=kGuardS)
        print(r["line"])
        check(r["ok"] == count and r["failed"] == 0 and not r["errors"],
              f"echo of {size} B x {count}, hash-checked by the node: ok={r['ok']} failed={r['failed']}")
        check(r["bytes"] >= size * count, f"calltest of {size} B counted {r['bytes']} bytes")
    r = rm.call(state, "node3", "node1/echo", "hello-across")
    check(r["ok"] and r["text"] == "hello-across" and r["bytes"] == len("hello-across"),
          f"call node1/echo from node3: {r['line']}")
    # One way (the bench's throughput service): node1's sink takes the whole message and replies
    # with the 8-byte count it took, which sendtest compares with the size it sent.
    for size, count, senders in ((0, 2, 1), (100, 3, 1), (65536, 3, 1), (1 << 20, 2, 2)):
        r = rm.calltest(state, "node2", "node1/sink", size, count, senders, timeout_s=kGuardS,
                        oneway=True)
        print(r["line"])
        check(r["ok"] == count * senders and r["failed"] == 0 and not r["errors"],
              f"sendtest of {size} B x {count} x {senders} senders to node1/sink: the sink took "
              f"every byte: ok={r['ok']} failed={r['failed']}")
        check(r["span_ns"] > 0, f"sendtest reports the span of its sends: {r['span_ns']} ns")
    r = rm.call(state, "node3", "node1/sink", "twelve bytes")
    check(r["ok"] and r["bytes"] == 8, f"call node1/sink: an 8-byte count as the reply: {r['line']}")
    # Every connection those calls opened was closed, and gave back its hold on the peer (its
    # PeerRef: a peer nothing holds may be retired when the table is full). `stats` below
    # (calltest's high-water marks) opened and closed one more.
    for node, peer in (("node2", "node1"), ("node3", "node1")):
        table = rm.shell_text(state, node, "peers")
        m = re.search(rf"^\s*{peer}\s.*\brefs=(\d+)", table, re.M)
        check(m and int(m.group(1)) == 0,
              f"{node}'s peers: {peer} held by no connection after the calls ({m and m.group(0)!r})")


def case_ipc_remote(args, nc, rm):
    state = state_or_fail(nc)
    runs = {}
    for server, where in (("node2", "server on another node"), ("node1", "server local")):
        r = rm.remote_ipc_tests(state, "node1", server, timeout_s=kGuardS)
        print(f"--- remote-ipc-tests {server} on node1 ({where})")
        print("\n".join(r["cases"]))
        print(r["line"])
        check(r["passed"] >= 1 and r["failed"] == 0,
              f"{where}: remote-ipc-tests {server} on node1: {r['line']}")
        runs[where] = r
    remote, local = runs["server on another node"], runs["server local"]
    check(remote["passed"] == local["passed"],
          f"the same cases pass with the server remote ({remote['passed']}) and local "
          f"({local['passed']})")


def ipctest_state(rm, state, node):
    text = rm.shell_text(state, node, "ipctest")
    m = re.search(r"ipctest: sleeping=(\d+) deliveries=(\d+) pulses=(\d+) senders=(\d+)", text)
    if not m:
        raise Failure(f"{node}: unexpected ipctest output: {text!r}")
    st = dict(zip(("sleeping", "deliveries", "pulses", "senders"), map(int, m.groups())))
    p = re.search(r" priorities=([\d,]+)", text)
    st["priorities"] = sorted(int(x) for x in p.group(1).split(",")) if p else []
    return st


def shell_priority(rm, state, node):
    """The base priority of the thread running the node's shell (`threads`: the running row)."""
    text = rm.shell_text(state, node, "threads")
    m = re.search(r"^\s+\d+ \S+\s+prio=(\d+)/\d+ running$", text, re.M)
    if not m:
        raise Failure(f"{node}: no running thread in: {text!r}")
    return int(m.group(1))


def case_pulses(args, nc, rm):
    """Remote pulses into one channel while its server is not receiving: two from one connection
    of node1 (`hold`, `heldpulse`), one from another connection of node1 (`pulse` opens its
    own) and one from node3. One delivery per connection, as for pulses from different local
    connections (SPEC.md 4.7's source), with one connection's two coalesced; each names its node
    and carries the sending thread's priority."""
    state = state_or_fail(nc)
    out = rm.shell_text(state, "node1", "hold node2/_ipctest")
    check("open" in out, f"node1 holds a connection to node2/_ipctest: {out}")
    prio = shell_priority(rm, state, "node1")
    check(prio > 1 and prio == shell_priority(rm, state, "node3"),
          f"the shells' priority ({prio}) is above the lowest, the same on node1 and node3")
    sends = (("node1", "heldpulse 5 11"), ("node1", "heldpulse 5 12"),
             ("node1", "pulse node2/_ipctest 5 13"), ("node3", "pulse node2/_ipctest 6 31"))
    for pause_ms in (3000, 10000, 30000):   # longer only if the console was too slow for it
        rm.shell_text(state, "node2", "ipctest reset")
        out = rm.shell_text(state, "node2", f"ipctest pause {pause_ms}")
        check("pausing" in out, f"node2's _ipctest paused: {out}")
        for node, cmd in sends:
            out = rm.shell_text(state, node, cmd)
            check(f"{cmd.split()[0]}: sent" in out, f"{node}: {cmd}: {out}")
        if ipctest_state(rm, state, "node2")["sleeping"]:
            break
        print(f"the {pause_ms} ms pause ended before the pulses were all sent: again, longer")
    else:
        raise Failure("node2's _ipctest was never still paused after the four pulses")
    deadline = time.monotonic() + kGuardS
    st = ipctest_state(rm, state, "node2")
    while (st["sleeping"] or st["pulses"] < len(sends)) and time.monotonic() < deadline:
        time.sleep(0.2)
        st = ipctest_state(rm, state, "node2")
    print(rm.shell_text(state, "node2", "ipctest"))
    check(st["pulses"] == len(sends), f"all {len(sends)} pulses reached the server: {st}")
    check(st["deliveries"] == 3 and st["senders"] == 2,
          f"one delivery per connection (the held one's two coalesced), two sending nodes: {st}")
    check(st["priorities"] == [prio], f"every pulse carried its sender's priority {prio}: {st}")
    stats = rm.shell_text(state, "node2", "stats")
    check(re.search(r"pulses_shared=0\b", stats) is not None, "no pulse had to share a slot")


def case_concurrent(args, nc, rm):
    state = state_or_fail(nc)
    before = rm.servicestat(state, "node1", "echo")
    size, per_node = 1 << 20, 32
    results, errors = {}, {}

    def run(node):
        try:
            # COUNT is per sender: 32 sender threads, one 1 MiB call each.
            results[node] = rm.calltest(state, node, "node1/echo", size, 1, per_node,
                                        timeout_s=kGuardS)
        except Exception as e:  # reported below, the other thread still joins
            errors[node] = e
    threads = [threading.Thread(target=run, args=(n,)) for n in ("node2", "node3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(not errors, f"both calltests answered: {errors}")
    for node, r in results.items():
        print(f"{node}: {r['line']}")
    ok = sum(r["ok"] for r in results.values())
    failed = sum(r["failed"] for r in results.values())
    check(ok == 2 * per_node and failed == 0, f"64 senders x 1 MiB: ok={ok} failed={failed}")
    # calltest reports the target's (node1's) high-water marks, fetched after its calls ended.
    for node, r in results.items():
        check(0 < r["hwm_proto_bytes"] <= r["bound_proto_bytes"],
              f"node1 (seen from {node}): protocol memory high-water {r['hwm_proto_bytes']} B "
              f"<= its bound {r['bound_proto_bytes']} B")
        check(r["bound_proto_bytes"] < 2 * per_node * size,
              f"node1's bound ({r['bound_proto_bytes']} B) could not hold all 64 messages "
              f"({2 * per_node * size} B): the pull path carried them")
        check(r["hwm_queue"] <= 2 * per_node,
              f"node1's echo queue high-water {r['hwm_queue']} <= 64 senders")
    after = rm.servicestat(state, "node1", "echo")
    print(after["line"])
    check(after["requests"] - before["requests"] >= 2 * per_node,
          f"node1's echo served the 64 requests ({after['requests'] - before['requests']})")
    # The queue holds at most one record per sender: 64 remote senders, nothing else calling.
    check(after["hwm_queue"] <= 2 * per_node,
          f"node1's echo queue high-water mark {after['hwm_queue']} <= {2 * per_node}")
    stats, text = rm.stats_numbers(state, "node1")
    print(text)
    for key, bound_key in (("hwm_proto_bytes", "bound_proto_bytes"),
                           ("requests_high", "bound_requests"), ("peers_high", "bound_peers")):
        check(key in stats and bound_key in stats, f"node1's stats report {key} and {bound_key}")
        check(stats[key] <= stats[bound_key],
              f"node1 stats {key}={stats[key]} <= {bound_key}={stats[bound_key]}")


def dump_faults(why):
    """What the namespace's nftables and bridge held when a fault case failed (diagnosis)."""
    print(f"--- {why}: nft list ruleset / bridge link in {kNetns}")
    for cmd in (["nft", "list", "ruleset"], ["bridge", "link"]):
        r = subprocess.run(["ip", "netns", "exec", kNetns, *cmd], capture_output=True, text=True)
        print(r.stdout + r.stderr)


def faults_now():
    """`./smp fault --json`: what is in force and what it did so far."""
    return json.loads(smp("fault", "--json").stdout)


def case_faults(args, nc, rm):
    state = state_or_fail(nc)
    # Drops on the bridge, duplicates on the way into each node: ./smp fault (nftables).
    print(smp("fault", "loss", "10", "--dup", "5").stdout, end="")
    try:
        for size, count in ((0, 20), (1000, 20), (20_000, 10), (300_000, 4), (1 << 20, 3)):
            r = rm.calltest(state, "node2", "node1/echo", size, count, timeout_s=kGuardS)
            print(r["line"])
            check(r["ok"] == count and r["failed"] == 0,
                  f"under 10% loss + 5% duplicates: {count} x {size} B all correct")
        for k in range(10):
            text = f"lossy-{k}"
            r = rm.call(state, "node3", "node1/echo", text)
            check(r["ok"] and r["text"] == text, f"call {k} from node3 under loss: {r['line']}")
        f = faults_now()
        check(f["loss_pct"] == 10 and f["dup_pct"] == 5, f"./smp fault shows the rules in force: {f}")
        check(f["dropped"] > 0 and f["duplicated"] > 0,
              f"nftables really dropped {f['dropped']} and duplicated {f['duplicated']} frames")
        stats, text = rm.stats_numbers(state, "node1")
        print(text)
    except Failure:
        dump_faults("faults failed")
        raise
    finally:
        smp("fault", "clear", check_ok=False)
    check(faults_now() == {"loss_pct": 0, "dropped": 0, "dup_pct": 0, "duplicated": 0,
                           "partitions": []}, "./smp fault clear left no fault")


def case_partition(args, nc, rm):
    state = state_or_fail(nc)
    r = rm.call(state, "node1", "node2/echo", "before")
    check(r["ok"] and r["text"] == "before", f"node1 -> node2 before the partition: {r['line']}")
    print(smp("fault", "partition", "node1", "node2").stdout, end="")
    try:
        r = rm.call(state, "node1", "node2/echo", "cut", timeout_s=kGuardS)
        check(not r["ok"] and r["error"] == "host-down",
              f"across the partition: host-down ({r['line']})")
        print(rm.shell_text(state, "node1", "peers"))
        r = rm.call(state, "node3", "node2/echo", "around")
        check(r["ok"] and r["text"] == "around", f"node3 -> node2 unaffected: {r['line']}")
        parts = faults_now()["partitions"]
        check(len(parts) == 1 and {parts[0]["a"], parts[0]["b"]} == {"node1", "node2"}
              and parts[0]["dropped"] > 0, f"./smp fault shows the partition and its drops: {parts}")
    except Failure:
        dump_faults("partition failed")
        raise
    finally:
        smp("fault", "heal", check_ok=False)
    # Healed: new calls get through. Liveness may need a probe round to see the peer again, so
    # a few attempts are allowed (bounded by the guard); the call that succeeds is checked.
    deadline = time.monotonic() + kGuardS
    attempts, r = 0, None
    while time.monotonic() < deadline:
        attempts += 1
        r = rm.call(state, "node1", "node2/echo", f"healed-{attempts}")
        if r["ok"]:
            break
        time.sleep(0.5)
    check(r["ok"] and r["text"] == f"healed-{attempts}",
          f"healed: node1 -> node2 gets through (attempt {attempts}: {r['line']})")


def case_kill(args, nc, rm):
    state = state_or_fail(nc)
    r = rm.call(state, "node1", "node3/echo", "alive")
    check(r["ok"], f"node1 -> node3 before the kill: {r['line']}")
    before = rm.peer_row(state, "node1", "node3")
    check(before is not None, "node1's peers lists node3")
    downs_before = int(before.get("downs", "0"))
    result, err = {}, {}

    def run():
        try:
            result["r"] = rm.calltest(state, "node1", "node3/echo", 1 << 20, 10, 4,
                                      timeout_s=kGuardS)
        except Exception as e:
            err["e"] = e
    t = threading.Thread(target=run)
    t.start()
    # Kill once calls are in flight: node3's echo has started serving (servicestat moves).
    base = rm.servicestat(state, "node3", "echo")["requests"]
    deadline = time.monotonic() + kGuardS
    while time.monotonic() < deadline and rm.servicestat(state, "node3", "echo")["requests"] <= base:
        time.sleep(0.2)
    print(smp("kill", "node3").stdout, end="")  # SIGKILL to its QEMU, mid-call
    t.join(kGuardS)
    check(not t.is_alive(), "calltest returned after the kill (no hang)")
    check(not err, f"calltest answered: {err}")
    r = result["r"]
    print(r["line"])
    check(r["failed"] >= 1, f"calls in flight failed when node3 died (ok={r['ok']} failed={r['failed']})")
    kinds = set(r["errors"])
    check(kinds and kinds <= {"host-down"}, f"every failure is host-down: {r['errors']}")
    print(rm.shell_text(state, "node1", "peers"))
    # Detection time as node1 measured it: from the last packet it heard from node3 to the
    # engine's host-down. Only a guard against nonsense (10 x the bound): the bound itself is
    # proven in the simulation's time, not by wall-clock thresholds on a busy machine.
    row = rm.peer_row(state, "node1", "node3")
    check(row is not None and row.get("state") != "up",
          f"node1 sees node3 not up: {row and row['line']}")
    check(int(row.get("downs", "0")) > downs_before,
          f"node1 counted a new host-down for node3 (downs {downs_before} -> {row.get('downs')})")
    check(row.get("down_detect_ms", "").isdigit() and row.get("detect_bound_ms", "").isdigit(),
          f"node1 reports down_detect_ms and detect_bound_ms for node3: {row['line']}")
    detect_ms, bound_ms = int(row["down_detect_ms"]), int(row["detect_bound_ms"])
    print(f"node3's death detected by node1 after down_detect_ms={detect_ms} "
          f"(configured bound detect_bound_ms={bound_ms})")
    check(0 < bound_ms and detect_ms <= 10 * bound_ms,
          f"detection time {detect_ms} ms <= 10 x the bound {bound_ms} ms (a guard, not a speed "
          f"check)")
    r = rm.call(state, "node1", "node3/echo", "dead?", timeout_s=kGuardS)
    check(not r["ok"] and r["error"] == "host-down", f"a new call to the dead node: {r['line']}")
    print(smp("boot", "node3").stdout, end="")
    deadline = time.monotonic() + kGuardS
    attempts, outcomes = 0, []
    while time.monotonic() < deadline:
        attempts += 1
        r = rm.call(state, "node1", "node3/echo", f"reborn-{attempts}")
        outcomes.append(r["line"])
        if r["ok"]:
            break
        time.sleep(0.5)
    print(f"after the reboot: {outcomes}")
    check(r["ok"] and r["text"] == f"reborn-{attempts}",
          f"node3 booted again: a new call succeeds (attempt {attempts})")
    check(all("host-down" in o or "peer-rebooted" in o or "no-such-service" in o
              for o in outcomes[:-1]), "any failed attempt before it names the reboot")
    r = rm.calltest(state, "node1", "node3/echo", 70_000, 10)
    check(r["ok"] == 10 and r["failed"] == 0, f"calls to the new incarnation: {r['line']}")
    # Now node3 as a client: node1's echo answers it 1 MiB replies, sent from the echo's own
    # buffer while the echo waits in reply() until node3 has them. node3's death must end that
    # wait (sender-unblocked) within the bound: node1's echo serves on.
    def run_client():
        try:
            rm.calltest(state, "node3", "node1/echo", 1 << 20, 200, 2, timeout_s=kGuardS)
        except Exception:
            pass  # node3's console dies with it
    t3 = threading.Thread(target=run_client)
    base = rm.servicestat(state, "node1", "echo")["requests"]
    t3.start()
    deadline = time.monotonic() + kGuardS
    while time.monotonic() < deadline and rm.servicestat(state, "node1", "echo")["requests"] < base + 3:
        time.sleep(0.2)
    print(smp("kill", "node3").stdout, end="")  # while node1's echo was answering it
    t3.join(kGuardS)
    check(not t3.is_alive(), "node3's own calltest ended with it")
    r = rm.calltest(state, "node2", "node1/echo", 1 << 20, 3, timeout_s=kGuardS)
    check(r["ok"] == 3 and r["failed"] == 0,
          f"node1's echo, which was answering node3, serves on after node3 died: {r['line']}")
    print(smp("boot", "node3").stdout, end="")
    deadline = time.monotonic() + kGuardS
    while time.monotonic() < deadline and not rm.call(state, "node1", "node3/echo", "back")["ok"]:
        time.sleep(0.5)
    check(rm.call(state, "node1", "node3/echo", "back")["ok"], "node3 booted again for the cases after")
    # A restart quicker than node1's detection: node1 still has a session with the old
    # incarnation when it asks for node3/echo. The lookup meets the new incarnation's RESET and
    # is asked again of it (SPEC 5.8): the first call gets through. (It ended host-down.)
    print(smp("restart", "node3").stdout, end="")
    r = rm.call(state, "node1", "node3/echo", "quick", timeout_s=kGuardS)
    check(r["ok"] and r["text"] == "quick",
          f"node3 restarted before node1 noticed: node1's first call gets through ({r['line']})")


def smpctl_base(args, state, tmp):
    if not args.smpctl or not os.path.exists(args.smpctl):
        raise Failure(f"smpctl not built ({args.smpctl})")
    conf = rm_write_config(state, os.path.join(tmp, "peers.conf"))
    return ["ip", "netns", "exec", kNetns], [args.smpctl, f"--name={kLinuxName}",
                                             f"--config={conf}", "--timeout=30000"]


def rm_write_config(state, path):
    from smpcli.commands import remote as rm
    return rm.write_peer_config(state, path)


def smpctl_echo_file(ns, base, tmp, node, size):
    """smpctl calls NODE/echo with size random bytes; True when the reply is the same bytes."""
    src = os.path.join(tmp, f"req-{size}")
    with open(src, "wb") as f:
        f.write(os.urandom(size))
    r = subprocess.run(ns + base + ["call", f"{node}/echo", "@" + src, f"--out={src}.reply"],
                       capture_output=True, text=True, timeout=kGuardS)
    same = r.returncode == 0 and open(src, "rb").read() == open(src + ".reply", "rb").read()
    return same, r.stderr.strip()


def case_linux(args, nc, rm):
    state = state_or_fail(nc)
    tmp = scratch_dir()
    ns, base = smpctl_base(args, state, tmp)
    for nd in state["nodes"]:
        text = f"from-linux-to-{nd['name']}"
        r = subprocess.run(ns + base + ["call", f"{nd['name']}/echo", text], capture_output=True,
                           text=True, timeout=kGuardS)
        check(r.returncode == 0 and r.stdout == text,
              f"smpctl -> {nd['name']}/echo: {r.returncode} {r.stdout!r} {r.stderr.strip()}")
    same, err = smpctl_echo_file(ns, base, tmp, "node2", 3000)
    check(same, f"smpctl -> node2/echo 3000 B (segmented) comes back intact {err}")
    # smpctl's endpoint is not in the nodes' static table: `peers` lists it as learned.
    table = rm.shell_text(state, "node2", "peers")
    print(table)
    m = re.search(rf"^\s*learned\s+{re.escape(nc.NS_ADDRESS)}:(\d+)\s+state=up\b", table, re.M)
    check(m and int(m.group(1)) != 0,
          f"node2's peers lists smpctl's endpoint {nc.NS_ADDRESS}:N (learned, up)")
    # The nodes' static peer table (peers= on their command line, from ./smp up) names the
    # namespace's address; nodes call the Linux server by that name.
    table = rm.shell_text(state, "node1", "peers")
    m = re.search(rf"^\s*(\S+)\s+{re.escape(nc.NS_ADDRESS)}\s", table, re.M)
    check(m, f"node1's peer table has an entry for the namespace {nc.NS_ADDRESS}: {table!r}")
    ns_name = m.group(1)
    log = open(os.path.join(tmp, "serve.log"), "w")
    server = subprocess.Popen(ns + base + ["serve", "lecho"], stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        time.sleep(1.0)   # its raw socket is open well before; nothing to poll from outside
        check(server.poll() is None, "smpctl serve lecho runs in the cluster namespace")
        for nd in state["nodes"]:
            text = f"from-{nd['name']}-to-linux"
            r = rm.call(state, nd["name"], f"{ns_name}/lecho", text)
            check(r["ok"] and r["text"] == text,
                  f"{nd['name']} calls {ns_name}/lecho served by smpctl: {r['line']}")
        for size, count in ((20_000, 3), (1 << 20, 2)):
            r = rm.calltest(state, "node2", f"{ns_name}/lecho", size, count, timeout_s=kGuardS)
            print(r["line"])
            check(r["ok"] == count and r["failed"] == 0,
                  f"node2 -> smpctl serve: {count} x {size} B hash-checked by the node")
        # Pulses both ways: a node's reaches smpctl serve, which prints it; smpctl's reaches a
        # node's service, whose servicestat counts it.
        node1 = state["nodes"][0]
        out = rm.shell_text(state, node1["name"], f"pulse {ns_name}/lecho 7 4242")
        check("pulse: sent" in out, f"{node1['name']} pulses {ns_name}/lecho: {out!r}")
        want = f"pulse on lecho from {node1['ip']}: code 7 value 4242"
        deadline = time.monotonic() + kGuardS
        while want not in open(log.name).read() and time.monotonic() < deadline:
            time.sleep(0.1)
        check(want in open(log.name).read(), f"smpctl serve printed '{want}'")
        before = rm.servicestat(state, "node2", "echo")
        r = subprocess.run(ns + base + ["pulse", "node2/echo", "6", "77"], capture_output=True,
                           text=True, timeout=kGuardS)
        check(r.returncode == 0, f"smpctl pulse node2/echo 6 77: {r.returncode} {r.stderr.strip()}")
        after = rm.servicestat(state, "node2", "echo")
        check(after["pulses"] == before["pulses"] + 1,
              f"node2's echo counted smpctl's pulse: {before['line']} -> {after['line']}")
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def case_linux_large(args, nc, rm):
    """Linux as the client of large messages (the node pulls or receives them from libsmp)."""
    state = state_or_fail(nc)
    tmp = scratch_dir()
    ns, base = smpctl_base(args, state, tmp)
    failures = []
    for size in (20_000, 300_000, 1 << 20):
        same, err = smpctl_echo_file(ns, base, tmp, "node2", size)
        print(f"{'ok' if same else 'FAILED'}: smpctl -> node2/echo {size} B {err}")
        if not same:
            failures.append(f"{size} B ({err})")
    stats = rm.shell_text(state, "node2", "stats")
    print(stats)
    check(not failures, f"smpctl -> node2/echo of large messages intact: failed {failures}")


def case_linux_churn(args, nc, rm):
    state = state_or_fail(nc)
    tmp = scratch_dir()
    ns, base = smpctl_base(args, state, tmp)
    before, _ = rm.stats_numbers(state, "node3")
    check("bound_peers" in before and "peers_retired" in before,
          "node3's stats report bound_peers and peers_retired")
    calls = 3 * before["bound_peers"]
    failures = []
    for i in range(calls):
        text = f"churn-{i}"
        r = subprocess.run(ns + base + ["call", "node3/echo", text], capture_output=True, text=True,
                           timeout=kGuardS)
        if r.returncode != 0 or r.stdout != text:
            failures.append(f"call {i}: {r.returncode} {r.stderr.strip()}")
    after, text = rm.stats_numbers(state, "node3")
    print(text)
    check(not failures, f"{len(failures)} of {calls} calls failed: {failures[:5]}")
    check(after["peers_retired"] > before["peers_retired"],
          f"node3 retired idle peers ({before['peers_retired']} -> {after['peers_retired']})")
    check(after["peers_high"] <= after["bound_peers"],
          f"node3's peer table within its bound ({after['peers_high']} <= {after['bound_peers']})")
    # 30 `smpctl names node3` at once: node3 answers `_names` from 4 slots, and the others wait
    # for one (they were refused with an error the engine ignored, and timed out).
    procs = [subprocess.Popen(ns + base + ["names", "node3"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(30)]
    outs = [(p.communicate(timeout=kGuardS), p.returncode) for p in procs]
    bad = [f"{rc}: {err.strip()}" for (out, err), rc in outs if rc != 0 or "node3/echo" not in out]
    stats, _ = rm.stats_numbers(state, "node3")
    print(f"30 names queries at once: {30 - len(bad)} answered; node3 answers_busy="
          f"{stats.get('answers_busy')} (waited for a slot)")
    check(not bad, f"{len(bad)} of 30 simultaneous `smpctl names node3` failed: {bad[:3]}")


def case_cleanup(args, nc, rm):
    state = nc.load_state()
    r = smp("down", check_ok=False)
    print(r.stdout + r.stderr, end="")
    check(r.returncode == 0, "./smp down")
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    check(not any(l.split()[0] == kNetns for l in ns.splitlines() if l.strip()),
          f"namespace {kNetns} removed")
    left = []
    for nd in (state or {}).get("nodes", []):
        pid = nc.node_pid(nd)
        if pid and nc.pid_alive(pid) and nc.pid_is_ours(pid, nc.run_dir()):
            left.append(pid)
    check(not left, f"no QEMU of ours left ({left})")


CASES = {"setup": case_setup, "sizes": case_sizes, "ipc_remote": case_ipc_remote,
         "pulses": case_pulses,
         "concurrent": case_concurrent,
         "faults": case_faults, "partition": case_partition, "kill": case_kill,
         "linux": case_linux, "linux_large": case_linux_large, "linux_churn": case_linux_churn,
         "cleanup": case_cleanup}


_scratch = []  # this case's scratch folders: removed when it passes, kept (and named) when not


def scratch_dir():
    d = tempfile.mkdtemp(prefix="smp-cross-")
    _scratch.append(d)
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=sorted(CASES))
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--smpctl")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("skipped: needs root (network namespace, bridge, taps, nftables)")
        return kSkip
    setup_env(os.path.abspath(args.run_dir))
    from smpcli import net_cluster as nc
    from smpcli.commands import remote as rm
    try:
        CASES[args.case](args, nc, rm)
    except (Failure, rm.RemoteError) as e:
        print(f"FAIL ({args.case}): {e}", flush=True)
        for d in _scratch:
            print(f"kept for inspection: {d}")
        if args.case == "setup":
            smp("down", check_ok=False)   # a half-booted fixture never stays behind
        return 1
    except BaseException:
        if args.case == "setup":
            smp("down", check_ok=False)
        raise
    for d in _scratch:
        shutil.rmtree(d, ignore_errors=True)
    print(f"PASS ({args.case})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
