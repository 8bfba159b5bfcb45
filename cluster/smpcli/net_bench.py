"""`./smp bench net`: the network's baselines, measured on real clusters (root mode).

Per NIC type (virtio, e1000), on a 2-node cluster: ICMP echo and UDP echo round trips and TCP
throughput, from the namespace to a node (Linux's stack on one side) and from node to node
(lwIP on both sides, driven from node1's shell); the CPU share of idle nodes. Then the time for
`./smp up -n 16` until every node is ready, a ping to each of the 16, and their idle CPU share.
Ratios: e1000 against virtio, measured in the same run. TCG only, so every figure depends on
the host's load: compare within one run.
"""
import os
import re
import statistics
import subprocess
import time

from . import common
from . import net_cluster as nc

ROUNDS = 200
TCP_BYTES = 8_000_000
IDLE_WINDOW_S = 10.0

UDP_CLIENT = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
rtts = []
for k in range(int(sys.argv[2])):
    m = b'x' * 32
    t = time.perf_counter(); s.sendto(m, (sys.argv[1], 7)); s.recvfrom(2048)
    rtts.append(time.perf_counter() - t)
rtts.sort(); print('avg_us=%.1f med_us=%.1f' % (sum(rtts) / len(rtts) * 1e6, rtts[len(rtts) // 2] * 1e6))
"""

TCP_CLIENT = r"""
import socket, sys, time
n = int(sys.argv[2]); buf = b'\xa5' * 65536
s = socket.create_connection((sys.argv[1], 9), timeout=30)
t = time.perf_counter(); sent = 0
while sent < n:
    sent += s.send(buf[:min(len(buf), n - sent)])
s.shutdown(socket.SHUT_WR)
while s.recv(65536):
    pass
dt = time.perf_counter() - t
print('mbit_s=%.1f' % (n * 8 / dt / 1e6))
"""


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_share(state, window_s=IDLE_WINDOW_S):
    """Each node's CPU time over window_s of idleness, as a share of one core (percent)."""
    pids = [nc.node_pid(n) for n in state["nodes"]]
    before = [cpu_seconds(p) for p in pids]
    time.sleep(window_s)
    after = [cpu_seconds(p) for p in pids]
    return [100.0 * (a - b) / window_s for a, b in zip(after, before)]


def ns(state, *cmd, timeout=120):
    r = subprocess.run(nc.ns_prefix(state) + list(cmd), capture_output=True, text=True,
                       timeout=timeout)
    if r.returncode != 0:
        common.die(f"bench: '{' '.join(cmd)}' failed: {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout


def node_cmd(state, node, command, until):
    out, ok = nc.console_command(nc.find_node(state, node), command, until, 120)
    if not ok:
        common.die(f"bench: {node} gave no reply to '{command}'")
    return out


def measure_nic(nic, image):
    state = nc.cluster_up(2, nic, nc.NODE_MEMORY_MB, image, capture=False)
    try:
        r = {}
        target = nc.node_ip(2)
        ns(state, "ping", "-c", "20", "-i", "0.01", "-q", target)  # warm ARP caches
        out = ns(state, "ping", "-c", str(ROUNDS), "-i", "0.01", "-q", target)
        r["icmp_ns"] = float(re.search(r"= [\d.]+/([\d.]+)/", out).group(1)) * 1000
        out = node_cmd(state, "node1", f"ping {target} {ROUNDS} 10", r"^ping: ")
        r["icmp_node"] = float(re.search(r"rtt_avg_us=(\d+)", out).group(1))
        out = ns(state, "python3", "-c", UDP_CLIENT, target, str(ROUNDS))
        r["udp_ns"] = float(re.search(r"avg_us=([\d.]+)", out).group(1))
        out = node_cmd(state, "node1", f"udpping {target} {ROUNDS}", r"^udpping: ")
        r["udp_node"] = float(re.search(r"rtt_avg_us=(\d+)", out).group(1))
        out = ns(state, "python3", "-c", TCP_CLIENT, target, str(TCP_BYTES))
        r["tcp_ns"] = float(re.search(r"mbit_s=([\d.]+)", out).group(1))
        out = node_cmd(state, "node1", f"tcpsend {target} {TCP_BYTES}", r"^tcpsend: ")
        m = re.search(r"kbit_per_s=(\d+) status=(\S+)", out)
        if not m or m.group(2) != "ok":
            common.die(f"bench: tcpsend failed: {out.strip()}")
        r["tcp_node"] = int(m.group(1)) / 1000.0
        shares = idle_share(state)
        r["idle"] = statistics.mean(shares)
        return r
    finally:
        nc.cluster_down(quiet=True)


def measure_16(image):
    t = time.monotonic()
    state = nc.cluster_up(16, "virtio", nc.NODE_MEMORY_MB, image, capture=False)
    boot_s = time.monotonic() - t
    try:
        answered = 0
        for i in range(1, 17):
            r = subprocess.run(nc.ns_prefix(state) + ["ping", "-c", "3", "-i", "0.2", "-W", "2",
                                                      "-q", nc.node_ip(i)],
                               capture_output=True, text=True)
            if r.returncode == 0:
                answered += 1
        shares = idle_share(state)
        return boot_s, answered, sum(shares)
    finally:
        nc.cluster_down(quiet=True)


def check_cluster_bench(name):
    """What a bench that boots its own cluster needs, checked before any bench of the run starts
    (`./smp bench` ran engine, ipc and linux for minutes before net refused a cluster that was up)."""
    if not common.is_root():
        common.die(f"bench {name} needs root (taps and a bridge in a namespace)")
    if nc.load_state() is not None:
        common.die(f"bench {name}: a cluster is up: ./smp down first (the bench boots its own)")


def bench_net(args):
    check_cluster_bench("net")
    image = nc.kernel_image(None)
    res = {nic: measure_nic(nic, image) for nic in ("virtio", "e1000")}
    boot_s, answered, idle16 = measure_16(image)
    rows = [("ICMP echo RTT, namespace -> node (us)", "icmp_ns", "{:.0f}"),
            ("ICMP echo RTT, node -> node (us)", "icmp_node", "{:.0f}"),
            ("UDP echo RTT, namespace -> node (us)", "udp_ns", "{:.0f}"),
            ("UDP echo RTT, node -> node (us)", "udp_node", "{:.0f}"),
            ("TCP throughput, namespace -> node (Mbit/s)", "tcp_ns", "{:.0f}"),
            ("TCP throughput, node -> node (Mbit/s)", "tcp_node", "{:.0f}"),
            ("idle CPU per node (% of one core)", "idle", "{:.2f}")]
    print(f"net bench: QEMU TCG, {nc.NODE_MEMORY_MB} MiB nodes, {ROUNDS} round trips, "
          f"TCP {TCP_BYTES // 1_000_000} MB, idle over {IDLE_WINDOW_S:.0f} s")
    print(f"| {'metric':44} | {'virtio':>8} | {'e1000':>8} | {'e1000/virtio':>12} |")
    print(f"|{'-' * 46}|{'-' * 10}|{'-' * 10}|{'-' * 14}|")
    for label, key, fmt in rows:
        v, e = res["virtio"][key], res["e1000"][key]
        ratio = f"{e / v:.2f}" if v else "-"
        print(f"| {label:44} | {fmt.format(v):>8} | {fmt.format(e):>8} | {ratio:>12} |")
    print(f"16 nodes (virtio): all ready {boot_s:.1f} s after ./smp up started; "
          f"{answered}/16 answer ping; idle CPU of all 16 together: {idle16:.1f}% of one core")
