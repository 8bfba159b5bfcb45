"""A cluster of QEMU nodes on a private network: `./smp up/down/status/console/capture/exec`.

Two modes, chosen by privilege:
  root  a network namespace `smpnet` made by the tool: bridge br0 (IPv6 off, no route out),
        one tap per node, the namespace's own address 10.77.0.1/24 on the bridge; a bounded ring
        capture of br0 (tcpdump -C/-W).
  user  (not root) an unprivileged user+network namespace (`unshare -rn`) held open by a small
        holder process; QEMU socket multicast networking on that namespace's own loopback (never
        on the host's interfaces); the ring capture listens to the multicast datagrams on lo and
        `./smp capture` unwraps them back into Ethernet frames. Linux tools in the namespace
        have no address on the nodes' segment in this mode (there is no bridge), so `exec ping`
        reaches no node: nodes ping each other.
Subnet (inside the namespace only): 10.77.0.0/24; node i (1-based) is 10.77.0.(10+i), MAC
52:54:00:77:00:XX with XX = 10+i in hex; the namespace is 10.77.0.1.

State: $SMP_RUN_DIR (default .run)/cluster/: state.json (written after every step, so that
`./smp down` can undo a half-finished `up` after a crash), per node NAME.log (serial console:
COM2, a file), NAME.qemu.log (QEMU's own messages), NAME.pid (written by QEMU), NAME.sock
(console socket: COM1).
"""
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

from . import common

# SMP_NETNS lets tests use a namespace of their own beside a person's cluster.
NETNS = os.environ.get("SMP_NETNS", "smpnet")
BRIDGE = "br0"
SUBNET_PREFIX = "10.77.0."
NS_ADDRESS = SUBNET_PREFIX + "1"
HOST_PEER = "host"            # the nodes' peer-table name for NS_ADDRESS (Linux peers: smpctl)
PREFIX_LEN = 24
NODE_MEMORY_MB = 128          # default node memory: room for lwIP's pools and large messages
# Below 32 MiB the kernel has no room for the engine beside lwIP; it uses no RAM above 4 GiB, and
# QEMU's pc machine puts RAM above 3 GiB there.
NODE_MEMORY_MB_MIN = 32
NODE_MEMORY_MB_MAX = 3072
NODES_MAX = 200               # .11 .. .210 stay inside the /24
MCAST_GROUP = "230.0.0.1"
MCAST_PORT = 7700
CAPTURE_FILE_MB = 4           # ring capture: CAPTURE_FILES files of CAPTURE_FILE_MB each
CAPTURE_FILES = 8
CAPTURE_BUFFER_KIB = 32768    # the capture's kernel buffer (tcpdump -B)
BOOT_TIMEOUT_S = 90.0
READY_MARK = "node: ready"


def run_dir():
    return os.path.join(os.path.abspath(os.environ.get("SMP_RUN_DIR", common.RUN_DIR)), "cluster")


def state_path():
    return os.path.join(run_dir(), "state.json")


def load_state():
    try:
        with open(state_path()) as f:
            return json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        common.die(f"cannot read {state_path()}: {e} (run ./smp down to clean up)")


def save_state(state):
    tmp = state_path() + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1)
    os.replace(tmp, state_path())


def node_ip(i):
    return f"{SUBNET_PREFIX}{10 + i}"


def node_mac(i):
    return f"52:54:00:77:00:{10 + i:02x}"


def kernel_image(args_kernel=None):
    path = args_kernel or os.environ.get("SMP_KERNEL_IMAGE")
    if path:
        if not os.path.exists(path):
            common.die(f"kernel image not found: {path}")
        return os.path.abspath(path)
    path = os.path.join(common.build_dir(), "kernel", "kernel.elf")
    if not os.path.exists(path) or common.is_root():
        cache = os.path.join(common.build_dir(), "CMakeCache.txt")
        if os.path.exists(cache) and os.path.exists(os.path.join(common.DEPS_DIR, "lwip")):
            with open(cache) as f:
                configured_without_net = "SMP_NET_NODE_AVAILABLE:INTERNAL=ON" not in f.read()
            if configured_without_net:
                # Configured before lwIP was fetched: configure again so the node is built in.
                common.run(["cmake", "-S", common.ROOT, "-B", common.build_dir()],
                           stdout=subprocess.DEVNULL)
        common.info("building the kernel image (target kernel_image)")
        try:
            common.cmake_build(["kernel_image"])
        except common.CliError as e:
            if not os.path.exists(path):
                raise
            common.info(f"warning: the build failed ({e}); booting the existing {path}")
    if not os.path.exists(path):
        common.die(f"no kernel image at {path} after the build")
    return path


# ---- Namespace plumbing ---------------------------------------------------------------------

def netns_exists():
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    return any(line.split()[0] == NETNS for line in r.stdout.splitlines() if line.strip())


def ns_prefix(state):
    """The command prefix that runs a program inside the cluster's namespace."""
    if state["mode"] == "root":
        return ["ip", "netns", "exec", NETNS]
    return ["nsenter", "--preserve-credentials", "-U", "-n", "-t", str(state["holder_pid"])]


def make_root_network(state, n):
    run = common.run
    run(["ip", "netns", "add", NETNS])
    state["netns"] = NETNS
    save_state(state)
    ex = ["ip", "netns", "exec", NETNS]
    # IPv6 off before the bridge exists, so br0 and the taps never send listener reports.
    run(ex + ["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"])
    run(ex + ["sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1"])
    run(["ip", "-n", NETNS, "link", "set", "lo", "up"])
    run(["ip", "-n", NETNS, "link", "add", BRIDGE, "type", "bridge"])
    run(["ip", "-n", NETNS, "addr", "add", f"{NS_ADDRESS}/{PREFIX_LEN}", "dev", BRIDGE])
    run(["ip", "-n", NETNS, "link", "set", BRIDGE, "up"])
    for i in range(1, n + 1):
        tap = f"tap{i}"
        run(["ip", "-n", NETNS, "tuntap", "add", "dev", tap, "mode", "tap"])
        run(["ip", "-n", NETNS, "link", "set", tap, "master", BRIDGE])
        run(["ip", "-n", NETNS, "link", "set", tap, "up"])
    # No route out: the namespace has only lo and br0, and so only the connected /24.


def make_user_network(state):
    """An unprivileged user+net namespace held open by `sleep`, multicast on its loopback."""
    script = ("ip link set lo up && ip link set lo multicast on && "
              "ip route add 224.0.0.0/4 dev lo && echo ready && exec sleep 2147483647")
    holder = subprocess.Popen(["unshare", "-rn", "sh", "-c", script], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    state["holder_pid"] = holder.pid
    save_state(state)
    line = holder.stdout.readline().strip()
    if line != "ready":
        err = holder.stderr.read() if holder.poll() is not None else ""
        common.die(f"cannot make an unprivileged network namespace (unshare -rn): {err.strip() or line}")
    holder.stdout.close()
    holder.stderr.close()


# ---- Processes ------------------------------------------------------------------------------

def pid_alive(pid):
    """True while pid runs; a zombie (ended, not yet reaped by its new parent) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def pid_is_ours(pid, marker):
    """True when pid runs a command line that names marker (our state folder): a recycled
    PID belonging to someone else is never signalled."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return marker.encode() in f.read()
    except OSError:
        return False


def stop_pids(pids_markers, grace_s=3.0):
    """SIGTERM to every (pid, marker) that is alive and ours, then SIGKILL to whatever is left
    after grace_s. Returns how many were signalled."""
    targets = [pid for pid, marker in pids_markers
               if pid and pid_alive(pid) and (marker is None or pid_is_ours(pid, marker))]
    for pid in targets:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        for pid in targets:
            try:
                os.waitpid(pid, os.WNOHANG)  # reaps it if it is our child
            except ChildProcessError:
                pass
        if not any(pid_alive(pid) for pid in targets):
            return len(targets)
        time.sleep(0.02)
    for pid in targets:
        if pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return len(targets)


def pids_in_netns(ns_path):
    """Processes whose network namespace is the one at ns_path (a /run/netns file or a
    /proc/PID/ns/net link): in the cluster's private namespace, only what this tool or its
    user started there runs."""
    try:
        want = os.stat(ns_path)
    except OSError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (st.st_ino, st.st_dev) == (want.st_ino, want.st_dev):
            found.append(int(entry))
    return found


def stop_pid(pid, marker=None, grace_s=3.0):
    stop_pids([(pid, marker)], grace_s)


def read_pidfile(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def qemu_command(state, node, image, nic, memory_mb):
    d = run_dir()
    name = node["name"]
    append = f"name={name} ip={node['ip']}/{PREFIX_LEN} mac={node['mac']}"
    if state.get("count"):
        # The remote bridge's static peer table (protocol/kernel/): every node, and the
        # namespace's own address as "host" (Linux peers there: smpctl).
        append += " peers=" + ",".join([f"node{i}@{node_ip(i)}" for i in range(1, state["count"] + 1)]
                                       + [f"{HOST_PEER}@{NS_ADDRESS}"])
    if state.get("auth_key_file"):
        with open(state["auth_key_file"]) as f:
            append += " auth_key=" + f.read().strip()
    if state.get("extra_append"):
        append += " " + state["extra_append"]  # e.g. services=echo,kv (./smp up --append)
    cmd = ["qemu-system-x86_64", "-accel", "tcg", "-nodefaults", "-no-user-config",
           "-display", "none", "-m", str(memory_mb),
           # Guest RAM backed before boot: otherwise the host backs each page on the guest's
           # first write, and on this host (itself a VM, transparent huge pages) a first touch
           # of fresh memory stalled the node for 6-9 ms (the echo service's first 4 MiB
           # buffer), long enough for its peers to time out and send a whole window again.
           "-mem-prealloc",
           "-kernel", image,
           "-append", append,
           # COM1: the console socket (./smp console, the tests), interactive. COM2: the log, a
           # file the kernel writes every console byte to as well (kernel/arch/x86_64/serial.cc).
           # Not the socket's logfile=: QEMU logs a byte each time the socket refuses it (a client
           # that has not read: EAGAIN) and again when the UART tries it anew, so a client
           # reading slowly doubled characters in the log. A file takes every byte at once.
           "-chardev", f"socket,id=con,path={os.path.join(d, name + '.sock')},server=on,wait=off",
           "-serial", "chardev:con",
           "-chardev", f"file,id=log,path={os.path.join(d, name + '.log')}",
           "-serial", "chardev:log",
           "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
           "-pidfile", os.path.join(d, name + ".pid")]
    if state["mode"] == "root":
        cmd += ["-netdev", f"tap,id=n0,ifname={node['tap']},script=no,downscript=no"]
    else:
        cmd += ["-netdev", f"socket,id=n0,mcast={MCAST_GROUP}:{MCAST_PORT},localaddr=127.0.0.1"]
    device = "virtio-net-pci" if nic == "virtio" else "e1000"
    cmd += ["-device", f"{device},netdev=n0,romfile=,mac={node['mac']}"]
    # A diagnostic knob, e.g. SMP_QEMU_EXTRA="-icount shift=0": the guest clock then counts
    # instructions while a node runs, so the bridge's `lat` stage times become instruction counts.
    # "{name}" becomes the node's name (a monitor socket or log file per node).
    cmd += os.environ.get("SMP_QEMU_EXTRA", "").replace("{name}", name).split()
    return cmd


def capture_command(state, path, ring_buffer=False):
    """tcpdump on br0 as root; dumpcap on lo in an unprivileged namespace, where tcpdump's
    switch to another user fails (setgroups is denied there) and dumpcap switches nothing."""
    if state["mode"] == "root":
        # -Z root: tcpdump would otherwise switch to user tcpdump, who cannot write our folder.
        # --immediate-mode: each frame is handed over as it comes (by default the kernel hands
        # them over in blocks, up to a second late, and a capture saved right after a call
        # missed it); -U then writes it out at once. Woken per frame, tcpdump needs a larger
        # buffer (-B, KiB) than the default 2 MiB to keep up with a burst of large messages.
        cmd = ["tcpdump", "-i", BRIDGE, "-n", "-q", "-U", "--immediate-mode", "-B", str(CAPTURE_BUFFER_KIB),
               "-s", "0", "-Z", "root", "-w", path]
        if ring_buffer:
            cmd += ["-C", str(CAPTURE_FILE_MB), "-W", str(CAPTURE_FILES)]
        return cmd
    cmd = ["dumpcap", "-q", "-i", "lo", "-P", "-f", f"udp and dst port {MCAST_PORT}", "-w", path]
    if ring_buffer:
        cmd += ["-b", f"filesize:{CAPTURE_FILE_MB * 1000}", "-b", f"files:{CAPTURE_FILES}"]
    return cmd


def start_capture(state):
    d = os.path.join(run_dir(), "capture")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d, exist_ok=True)
    ring = os.path.join(d, "ring.pcap")
    iface = BRIDGE if state["mode"] == "root" else "lo"
    if state["mode"] != "root":
        open(os.path.join(d, "encapsulated"), "w").close()
    cmd = ns_prefix(state) + capture_command(state, ring, ring_buffer=True)
    log = open(os.path.join(run_dir(), "capture.log"), "w")
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    state["capture"] = {"pid": p.pid, "dir": d, "iface": iface,
                        "encapsulated": state["mode"] != "root"}
    save_state(state)


# ---- up -----------------------------------------------------------------------------------------

def auth_key_path():
    """The cluster key of `./smp up --auth` (64 hex digits) in the cluster's folder, readable by
    its owner only; a cluster without --auth removes an old one."""
    return os.path.join(run_dir(), "auth.key")


def auth_key_args(state):
    """smpctl's option for the cluster's key, if it has one."""
    return [f"--key-file={state['auth_key_file']}"] if state and state.get("auth_key_file") else []


def cluster_up(n, nic, memory_mb, image_arg=None, wait=True, extra_append="", auth=False, capture=True):
    """capture=False: no ring capture (benchmarks: a capture wakes on every frame and takes host
    CPU from the nodes it measures)."""
    if n < 1 or n > NODES_MAX:
        common.die(f"-n must be in 1..{NODES_MAX}", 2)
    if nic not in ("virtio", "e1000"):
        common.die("--nic must be virtio or e1000", 2)
    if not NODE_MEMORY_MB_MIN <= memory_mb <= NODE_MEMORY_MB_MAX:
        common.die(f"--memory must be in {NODE_MEMORY_MB_MIN}..{NODE_MEMORY_MB_MAX} (MiB per node)", 2)
    for tool in ("qemu-system-x86_64", "ip", "tcpdump"):
        if not shutil.which(tool):
            common.die(f"{tool} not found: run ./smp setup net (as root)")
    if load_state() is not None or (common.is_root() and netns_exists()):
        common.die("a cluster is already up (or left over from a crash): run ./smp down first")
    image = kernel_image(image_arg)
    os.makedirs(run_dir(), exist_ok=True)
    for f in os.listdir(run_dir()):
        if f.endswith((".log", ".pid", ".sock")):
            os.unlink(os.path.join(run_dir(), f))
    mode = "root" if common.is_root() else "user"
    state = {"mode": mode, "nic": nic, "memory_mb": memory_mb, "image": image,
             "created": time.time(), "nodes": [], "tool_pid": os.getpid(),
             "extra_append": extra_append, "count": n}
    if os.path.exists(auth_key_path()):
        os.unlink(auth_key_path())
    if auth:
        # A new key per cluster (SPEC 3.4): every node gets it on its command line (so anyone
        # on this machine who can list processes can read it: a development cluster's key).
        fd = os.open(auth_key_path(), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        state["auth_key_file"] = auth_key_path()
    save_state(state)
    try:
        if mode == "root":
            common.info(f"mode: root (network namespace {NETNS}, bridge {BRIDGE}, taps; "
                        f"namespace address {NS_ADDRESS}/{PREFIX_LEN})")
        else:
            common.info("mode: unprivileged (unshare -rn user+net namespace, QEMU socket multicast "
                        f"{MCAST_GROUP}:{MCAST_PORT} on that namespace's loopback)")
        if mode == "root":
            make_root_network(state, n)
        else:
            make_user_network(state)
        if capture:
            start_capture(state)
        for i in range(1, n + 1):
            node = {"name": f"node{i}", "ip": node_ip(i), "mac": node_mac(i), "tap": f"tap{i}",
                    "log": os.path.join(run_dir(), f"node{i}.log"),
                    "qemu_log": os.path.join(run_dir(), f"node{i}.qemu.log")}
            cmd = ns_prefix(state) + qemu_command(state, node, image, nic, memory_mb)
            with open(node["qemu_log"], "w") as qlog:
                p = subprocess.Popen(cmd, stdout=qlog, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
            node["launcher_pid"] = p.pid
            node["started"] = time.time()
            state["nodes"].append(node)
            save_state(state)
            common.info(f"booting {node['name']} {node['ip']} ({nic}, {memory_mb} MiB), "
                        f"console log {node['log']}")
        if wait:
            wait_ready(state)
    except common.CliError as e:
        # The error itself is the one line on stderr (it was on stdout too, word for word).
        common.info("up failed: taking down what was started")
        cluster_down(quiet=True)
        raise
    except KeyboardInterrupt:
        # Ctrl-C mid-boot: what was started goes too (a second Ctrl-C does not cut that short),
        # rather than half a cluster left running until ./smp down. The interrupt goes on to
        # the caller (main's "interrupted", status 130; the demo's own shutdown).
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            common.info("up interrupted: taking down what was started")
            cluster_down(quiet=True)
        finally:
            signal.signal(signal.SIGINT, previous)
        raise
    return state


def node_pid(node):
    pid = read_pidfile(os.path.join(run_dir(), node["name"] + ".pid"))
    return pid or node.get("launcher_pid")


def log_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def wait_ready(state, timeout_s=BOOT_TIMEOUT_S):
    start = time.monotonic()
    pending = {nd["name"]: nd for nd in state["nodes"]}
    while pending:
        for name, nd in list(pending.items()):
            text = log_text(nd["log"])
            failed = re.search(r"^(?:node|services|bridge): error.*$", text, re.M)
            if failed:
                common.die(f"{name} failed to start: {failed.group(0)} (log: {nd['log']})")
            if READY_MARK in text:
                nd["ready_s"] = round(time.time() - nd["started"], 2)
                common.info(f"{name} ready after {nd['ready_s']} s")
                del pending[name]
                continue
            pid = node_pid(nd)
            if pid and not pid_alive(pid) and os.path.exists(nd["qemu_log"]):
                qtail = log_text(nd["qemu_log"]).strip().splitlines()[-3:]
                ctail = log_text(nd["log"]).strip().splitlines()
                # The kernel's own complaint when it made one (else the log's last lines: the
                # boot banner said nothing about why).
                ctail = [ln for ln in ctail if re.search(r"\b(error|bad|panic)\b", ln)][-1:] or ctail[-3:]
                common.die(f"{name} stopped while booting: {' | '.join(qtail + ctail) or 'no output'} "
                           f"(logs: {nd['qemu_log']}, {nd['log']})")
        if pending and time.monotonic() - start > timeout_s:
            names = ", ".join(sorted(pending))
            common.die(f"not ready after {timeout_s:.0f} s: {names} (see their logs in {run_dir()})")
        time.sleep(0.1)
    state["boot_s"] = round(time.monotonic() - start, 2)
    save_state(state)
    common.info(f"{len(state['nodes'])} node(s) ready in {state['boot_s']} s")


# ---- a node going away and coming back (./smp kill / boot / restart) ----------------------------

def kill_node(state, name):
    """SIGKILL to the node's QEMU (its PID from the cluster's run folder): a crash, not a
    shutdown. Returns the PID."""
    node = find_node(state, name)
    pid = node_pid(node)
    if not pid or not pid_alive(pid) or not pid_is_ours(pid, run_dir()):
        common.die(f"{node['name']} is not running (./smp status)")
    os.kill(pid, signal.SIGKILL)
    for _ in range(500):
        if not pid_alive(pid):
            return pid
        time.sleep(0.01)
    common.die(f"{node['name']}: QEMU {pid} still running after SIGKILL")


def boot_node(state, name, timeout_s=BOOT_TIMEOUT_S):
    """Boots a stopped node again with the same command line (its tap stays in the namespace):
    a new incarnation, which its peers must not confuse with the old one. Returns the PID."""
    node = find_node(state, name)
    pid = node_pid(node)
    if pid and pid_alive(pid):
        common.die(f"{node['name']} is running (pid {pid}): ./smp kill {node['name']} first, "
                   f"or ./smp restart {node['name']}")
    try:
        os.unlink(os.path.join(run_dir(), node["name"] + ".pid"))
    except FileNotFoundError:
        pass
    # The serial log of the dead incarnation is kept beside (the new QEMU starts the file anew;
    # were it kept, its ready mark would make the new boot look finished).
    if os.path.exists(node["log"]):
        os.replace(node["log"], node["log"] + ".before-restart")
    cmd = ns_prefix(state) + qemu_command(state, node, state["image"], state["nic"],
                                          state["memory_mb"])
    deadline = time.monotonic() + timeout_s
    # The killed QEMU's threads may still be exiting and holding the tap ("Device or resource
    # busy"): launch again until the tap is free or the deadline passes.
    while True:
        with open(node["qemu_log"], "w") as qlog:
            p = subprocess.Popen(cmd, stdout=qlog, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        node["launcher_pid"] = p.pid
        node["started"] = time.time()
        save_state(state)
        while READY_MARK not in log_text(node["log"]):
            if p.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        else:
            common.info(f"{node['name']} booted again after {time.time() - node['started']:.2f} s")
            return p.pid
        busy = "resource busy" in log_text(node["qemu_log"])
        if p.poll() is None or not busy or time.monotonic() > deadline:
            common.die(f"{node['name']} did not boot again: "
                       f"{log_text(node['qemu_log']).strip()[-200:]} "
                       f"(logs: {node['qemu_log']}, {node['log']})")
        time.sleep(0.2)


# ---- down ---------------------------------------------------------------------------------------

def cluster_down(quiet=False):
    d = run_dir()
    state = load_state() or {}
    stopped = 0
    nodes = state.get("nodes", [])
    pidfiles = [f for f in os.listdir(d) if f.endswith(".pid")] if os.path.isdir(d) else []
    pids = set()
    for f in pidfiles:
        pid = read_pidfile(os.path.join(d, f))
        if pid:
            pids.add(pid)
    for nd in nodes:
        if nd.get("launcher_pid"):
            pids.add(nd["launcher_pid"])
    targets = [(pid, d) for pid in sorted(pids)]
    cap = state.get("capture")
    stopped = stop_pids(targets)
    if cap:
        stop_pids([(cap.get("pid"), cap.get("dir"))])
    # Whatever else still runs in the namespace (a Linux server the demo or a user started with
    # ./smp exec): the namespace goes, so does it. (Before the holder of an unprivileged one.)
    ns_path = (f"/run/netns/{NETNS}" if common.is_root() and netns_exists() else
               f"/proc/{state['holder_pid']}/ns/net" if state.get("holder_pid") else None)
    holder = state.get("holder_pid")
    others = stop_pids([(pid, None) for pid in pids_in_netns(ns_path) if pid != holder]) if ns_path else 0
    if holder:
        stop_pids([(holder, "2147483647")])
    removed_ns = False
    if common.is_root() and netns_exists():
        subprocess.run(["ip", "netns", "del", NETNS], check=False)
        removed_ns = True
    for f in pidfiles:
        try:
            os.unlink(os.path.join(d, f))
        except OSError:
            pass
    for f in (os.listdir(d) if os.path.isdir(d) else []):
        if f.endswith(".sock"):
            os.unlink(os.path.join(d, f))
    if os.path.exists(state_path()):
        os.unlink(state_path())
    if not quiet:
        common.info(f"down: stopped {stopped} QEMU process(es)"
                    + (f", ended {others} other process(es) in the namespace" if others else "")
                    + (f", removed namespace {NETNS} (bridge, taps)" if removed_ns else "")
                    + (", ended the namespace holder" if state.get("holder_pid") else ""))


# ---- status / console / exec / capture ----------------------------------------------------------

def node_status(state):
    rows = []
    now = time.time()
    for nd in state["nodes"]:
        pid = node_pid(nd)
        alive = bool(pid) and pid_alive(pid)
        text = log_text(nd["log"])
        if not alive:
            st = "stopped"
        elif READY_MARK in text:
            st = "running"
        else:
            st = "booting"
        rows.append({"name": nd["name"], "ip": nd["ip"], "mac": nd["mac"], "state": st,
                     "uptime_s": round(now - nd["started"], 1) if alive else 0,
                     "pid": pid, "log": nd["log"]})
    return rows


def require_state():
    state = load_state()
    if state is None:
        common.die("no cluster is up (./smp up)")
    return state


def find_node(state, name):
    for nd in state["nodes"]:
        if nd["name"] == name or nd["ip"] == name:
            return nd
    common.die(f"no node named {name} (nodes: {', '.join(n['name'] for n in state['nodes'])})")


def connect_console(node):
    """The node's console socket, connected; a stopped node is named as such."""
    sock_path = os.path.join(run_dir(), node["name"] + ".sock")
    pid = node_pid(node)
    if pid and not pid_alive(pid):
        common.die(f"{node['name']} is not running (./smp status; its log: {node['log']})")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(sock_path)
    except OSError as e:
        s.close()
        common.die(f"cannot reach {node['name']}'s console at {sock_path}: {e.strerror or e}")
    return s


def console_command(node, command, until, timeout_s):
    """Sends one shell command to a node's console socket; returns its output up to and
    including the first line matching the regex until."""
    s = connect_console(node)
    pattern = re.compile(until, re.M)
    # The shell echoes each command line as it reads it (after the prompt that ended the one
    # before): the reply is what follows our echo. Output still due from an earlier command (one
    # whose caller stopped waiting) comes before it, and is not taken for this reply.
    echo = re.compile(r"(?:^|> )" + re.escape(command) + r"\r?\n", re.M)
    start = None  # where our echo line begins
    buf = ""
    deadline = time.monotonic() + timeout_s
    s.sendall((command + "\n").encode())
    try:
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            buf += chunk.decode(errors="replace")
            if start is None:
                e = echo.search(buf)
                if not e:
                    continue
                start = e.start() + (2 if e.group(0).startswith("> ") else 0)
            # From our echo on, as if the output began there (`^` matches at its start).
            view = buf[start:]
            m = pattern.search(view)
            # The matching line is complete once its newline arrived (a prompt has none).
            if m and (m.group(0).endswith("> ") or view.find("\n", m.end()) >= 0):
                end = view.find("\n", m.end())
                return view[:end + 1 if end >= 0 else len(view)], True
    finally:
        s.close()
    return buf[start or 0:], False


def console_interactive(node):
    s = connect_console(node)
    common.info(f"connected to {node['name']} (Ctrl-D or Ctrl-C to leave)")
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ)
    sel.register(sys.stdin, selectors.EVENT_READ)
    prompt = re.compile(r"(?m)^\S+> ")
    sent, prompts, tail = 0, 0, ""

    def show(data):
        """Prints what the node sent; counts the prompts that end replies (across reads)."""
        nonlocal prompts, tail
        text = data.decode(errors="replace")
        sys.stdout.write(text)
        sys.stdout.flush()
        window = tail + text
        prompts += len(prompt.findall(window)) - len(prompt.findall(tail))
        tail = window[-64:]
    try:
        while True:
            for key, _ in sel.select():
                if key.fileobj is s:
                    data = s.recv(65536)
                    if not data:
                        return
                    show(data)
                else:
                    line = sys.stdin.readline()
                    if not line:
                        # End of input (e.g. commands piped in): the replies of what was sent
                        # still arrive, each ended by its prompt (a 60 s guard only).
                        deadline = time.monotonic() + 60
                        while prompts < sent and time.monotonic() < deadline:
                            s.settimeout(max(0.05, deadline - time.monotonic()))
                            try:
                                data = s.recv(65536)
                            except socket.timeout:
                                break
                            if not data:
                                break
                            show(data)
                        return
                    s.sendall(line.encode())
                    sent += 1
    except KeyboardInterrupt:
        pass
    finally:
        s.close()


def unwrap_encapsulated(src, dst):
    """Rewrites a pcap of QEMU's multicast datagrams (captured on lo) into a pcap of the
    Ethernet frames they carry. Malformed records are skipped and counted."""
    skipped = 0
    with open(src, "rb") as f:
        header = f.read(24)
        if len(header) < 24:
            return 0, 0
        magic = struct.unpack("<I", header[:4])[0]
        endian = "<" if magic in (0xa1b2c3d4, 0xa1b23c4d) else ">"
        linktype = struct.unpack(endian + "I", header[20:24])[0]
        frames = []
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                break
            ts, tus, incl, orig = struct.unpack(endian + "IIII", rec)
            data = f.read(incl)
            if len(data) < incl:
                break
            off = {1: 14, 113: 16, 0: 4}.get(linktype)
            if off is None or len(data) < off + 20:
                skipped += 1
                continue
            ihl = (data[off] & 0x0f) * 4
            payload = data[off + ihl + 8:]
            if len(payload) < 14:
                skipped += 1
                continue
            frames.append((ts, tus, payload))
    with open(dst, "ab") as out:
        for ts, tus, payload in frames:
            out.write(struct.pack("<IIII", ts, tus, len(payload), len(payload)))
            out.write(payload)
    return len(frames), skipped


def ring_files(cap_dir):
    files = [os.path.join(cap_dir, f) for f in os.listdir(cap_dir) if f.startswith("ring")]
    files = [f for f in files if os.path.getsize(f) > 24]
    return sorted(files, key=os.path.getmtime)


def save_capture(out_path, seconds=None):
    state = load_state()
    cap_dir = os.path.join(run_dir(), "capture")
    out_path = os.path.abspath(out_path)
    folder = os.path.dirname(out_path)
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        common.die(f"capture: cannot write into {folder} (no such folder, or not writable)", 2)
    if seconds is not None:
        if state is None:
            common.die("no cluster is up: a live recording needs one (./smp up)")
        tmp = out_path + ".raw" if state["mode"] != "root" else out_path
        cmd = ns_prefix(state) + capture_command(state, tmp)
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(seconds)
        p.send_signal(signal.SIGINT)
        p.wait(timeout=10)
        if state["mode"] != "root":
            _write_pcap_header(out_path)
            n, _ = unwrap_encapsulated(tmp, out_path)
            os.unlink(tmp)
        common.info(f"recorded {seconds} s into {out_path}")
        return out_path
    if not os.path.isdir(cap_dir):
        common.die(f"no ring capture in {cap_dir} (./smp up starts one)")
    files = ring_files(cap_dir)
    if not files:
        common.die("the ring capture holds no packets yet")
    encapsulated = state["capture"]["encapsulated"] if state and state.get("capture") else False
    if not encapsulated and state is None:
        # After down: the mode is recorded nowhere but in the capture's link type (lo vs br0);
        # the bridge capture is Ethernet and needs no unwrapping.
        encapsulated = os.path.exists(os.path.join(cap_dir, "encapsulated"))
    if encapsulated:
        _write_pcap_header(out_path)
        total = 0
        for f in files:
            n, _ = unwrap_encapsulated(f, out_path)
            total += n
        common.info(f"saved {total} frames to {out_path}")
        return out_path
    if len(files) == 1:
        shutil.copyfile(files[0], out_path)
    else:
        common.run(["mergecap", "-F", "pcap", "-w", out_path, *files])
    common.info(f"saved the ring capture ({len(files)} file(s)) to {out_path}")
    return out_path


def _write_pcap_header(path):
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
