"""The Wireshark plugin `simplemsg`: `./smp tshark`, `./smp wireshark`, `./smp dissector-install`.

Wireshark ignores WIRESHARK_PLUGIN_DIR and the personal plugin folder when its real uid is 0
(shared/notes/wireshark.md). As root we therefore run tshark/wireshark in a fresh user namespace
(`unshare --user`: uid 65534 inside, but files are still reached with root's file permissions
outside), or, where user namespaces are not allowed, as uid 65534 with setpriv. A live capture
needs privilege the unprivileged reader lacks, so dumpcap runs with it and pipes into the reader.
"""
import os
import shutil
import subprocess
import sys

from .. import common

PACKAGES = {
    "dissector": ["tshark", "wireshark-common", "wireshark-dev", "libwireshark-dev",
                  "libglib2.0-dev", "libgcrypt20-dev", "util-linux", "iproute2"],
}
TEST_GROUPS = ["dissector"]

PLUGIN_TARGET = "simplemsg"
WS_API = "4.0"              # the plugin is built for exactly this Wireshark major.minor
NOBODY_UID = 65534          # the uid setpriv drops to when user namespaces are unavailable

# Where `./smp up` puts the cluster's bridge; the net module may override these names.
DEFAULT_NETNS = "smpnet"
DEFAULT_BRIDGE = "br0"


def plugin_dir(bdir=None):
    """The folder given to WIRESHARK_PLUGIN_DIR; the plugin lives in <it>/4.0/epan/."""
    return os.path.join(bdir or common.build_dir(), "plugins")


def plugin_path(bdir=None):
    return os.path.join(plugin_dir(bdir), WS_API, "epan", PLUGIN_TARGET + ".so")


def ensure_plugin():
    """Builds the plugin if it is missing or older than its sources; returns its path."""
    path = plugin_path()
    src = os.path.join(common.ROOT, "dissector")
    newest = max((os.path.getmtime(os.path.join(src, f)) for f in os.listdir(src)
                  if f.endswith((".c", ".h", ".txt"))), default=0)
    if not os.path.exists(path) or os.path.getmtime(path) < newest:
        common.cmake_build([PLUGIN_TARGET])
    if not os.path.exists(path):
        common.die(f"the plugin was not built ({path}); is the Wireshark 4.0 SDK installed? "
                   "(./smp setup dissector)")
    return path


def _userns_works():
    try:
        return subprocess.run(["unshare", "--user", "true"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL).returncode == 0
    except FileNotFoundError:
        return False


def unprivileged_prefix():
    """The command prefix that makes Wireshark honour the plugin folder; empty when not root."""
    if os.getuid() != 0:
        return []
    if _userns_works():
        return ["unshare", "--user"]
    if shutil.which("setpriv"):
        # Every file it reads must then be readable by uid 65534 (the build tree is, with umask 022).
        return ["setpriv", f"--reuid={NOBODY_UID}", f"--regid={NOBODY_UID}", "--clear-groups"]
    common.die("running as root, and neither 'unshare --user' nor setpriv works: "
               "Wireshark would ignore the plugin")
    return []


def wireshark_env(bdir=None):
    env = dict(os.environ)
    env["WIRESHARK_PLUGIN_DIR"] = plugin_dir(bdir)
    if os.getuid() == 0:
        # HOME=/root is not ours inside the user namespace; keep Wireshark's profile writes harmless.
        env["HOME"] = os.environ.get("SMP_WIRESHARK_HOME", "/tmp")
    return env


def tshark_command(args, bdir=None):
    """A full command line (prefix + tshark + args) that runs tshark with the plugin loaded."""
    return [*unprivileged_prefix(), "tshark", *args], wireshark_env(bdir)


def _with_two_pass(args):
    # A request links forward to its later reply only in tshark's second pass; -2 needs -r.
    if "-r" in args and "-2" not in args and not any(a.startswith("-i") for a in args):
        return ["-2", *args]
    return args


def _live_source(args):
    """dumpcap on the running cluster's wire, writing pcapng to stdout (with our privilege), and
    the reader options it needs. Root clusters have a bridge in their namespace; unprivileged
    ones carry each Ethernet frame in a UDP multicast datagram on that namespace's loopback,
    which Wireshark decodes with "Decode As" (udp.port -> eth)."""
    try:
        from .. import net_cluster
    except ImportError:
        net_cluster = None
    state = net_cluster.load_state() if net_cluster else None
    if state is None and not (args.netns or args.iface):
        common.die("no cluster is up (./smp up), and no --netns/--iface given")
    if state is None:
        netns = args.netns or DEFAULT_NETNS
        if not os.path.exists(f"/run/netns/{netns}"):
            common.die(f"no network namespace {netns}")
        return ["ip", "netns", "exec", netns, "dumpcap", "-q", "-i", args.iface or DEFAULT_BRIDGE,
                "-w", "-"], []
    prefix = net_cluster.ns_prefix(state)
    # A keyed cluster (./smp up --auth): its key, so that the MACs are checked and the packets
    # tracked (SPEC 3.4; without it they show as unverified).
    keyed = []
    if state.get("auth_key_file") and os.path.exists(state["auth_key_file"]):
        with open(state["auth_key_file"]) as f:
            keyed = ["-o", f"simplemsg.auth_key:{f.read().strip()}"]
    if state["mode"] == "root":
        return prefix + ["dumpcap", "-q", "-i", args.iface or net_cluster.BRIDGE, "-w", "-"], keyed
    port = net_cluster.MCAST_PORT
    return (prefix + ["dumpcap", "-q", "-i", "lo", "-f", f"udp and dst port {port}", "-w", "-"],
            ["-d", f"udp.port=={port},eth", *keyed])


def _run_reader(program, reader_args, args):
    if not shutil.which(program):
        # The GUI is not in any set-up group: no test needs it, and it brings Qt along.
        pkg = "tshark" if program == "tshark" else "wireshark"
        common.die(f"{program} is not installed (apt-get install --no-install-recommends {pkg})")
    ensure_plugin()
    env = wireshark_env()
    cmd = [*unprivileged_prefix(), program, *reader_args]
    if not args.live:
        return subprocess.run(cmd, env=env).returncode
    source_cmd, decode_as = _live_source(args)
    cmd[len(cmd) - len(reader_args):len(cmd) - len(reader_args)] = decode_as
    # stderr: stdout is tshark's, which scripts read.
    print("smp: live capture: " + " ".join(source_cmd) + " | " + program + " ...", file=sys.stderr,
          flush=True)
    os.makedirs(common.RUN_DIR, exist_ok=True)
    log_path = os.path.join(common.RUN_DIR, "dissector-live.log")
    # dumpcap's own chatter (and its broken-pipe complaint when the reader quits) goes to a log.
    with open(log_path, "w") as log:
        source = subprocess.Popen(source_cmd, stdout=subprocess.PIPE, stderr=log)
    try:
        reader = subprocess.run(cmd, env=env, stdin=source.stdout)
        if reader.returncode != 0 or (source.poll() not in (None, 0) and reader.returncode != 0):
            print(f"smp: the capture's messages are in {log_path}", file=sys.stderr)
    finally:
        source.stdout.close()
        if source.poll() is None:
            source.terminate()
            try:
                source.wait(timeout=5)
            except subprocess.TimeoutExpired:
                source.kill()
                source.wait()
    return reader.returncode


TSHARK_USAGE = f"""usage: ./smp tshark [--live [--netns NS] [--iface IF]] [--] TSHARK-ARGS...
Runs tshark with the simplemsg plugin loaded, also as root. With -r it adds -2 (two passes) so
requests link forward to their replies. --live reads the cluster's bridge (default namespace
{DEFAULT_NETNS}, interface {DEFAULT_BRIDGE}) through dumpcap. Example:
  ./smp tshark -r capture.pcap -Y simplemsg
  ./smp tshark --live -Y 'simplemsg.type == 1'"""


def _leading_options(targs, args):
    """Reads ./smp's own options before tshark's; returns tshark's arguments."""
    args.live, args.netns, args.iface = False, None, None
    i = 0
    while i < len(targs):
        a = targs[i]
        if a == "--":
            return targs[i + 1:]
        if a == "--smp-help":
            print(TSHARK_USAGE)
            sys.exit(0)
        if a == "--live":
            args.live = True
        elif a in ("--netns", "--iface"):
            if i + 1 >= len(targs):
                common.die(f"{a} needs a value", 2)
            setattr(args, a[2:], targs[i + 1])
            i += 1
        else:
            break
        i += 1
    return targs[i:]


def cmd_tshark(args):
    targs = _leading_options(list(args.args), args)
    if args.live:
        return _run_reader("tshark", ["-l", "-i", "-", *targs], args)
    return _run_reader("tshark", _with_two_pass(targs), args)


def cmd_wireshark(args):
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        common.die("no display (DISPLAY/WAYLAND_DISPLAY unset): the Wireshark GUI needs one; "
                   "use ./smp tshark instead")
    if args.live and args.file:
        common.die("give a FILE or --live, not both", 2)
    if args.live:
        return _run_reader("wireshark", ["-k", "-i", "-"], args)
    if args.file:
        if not os.path.exists(args.file):
            common.die(f"no such capture file: {args.file}")
        return _run_reader("wireshark", ["-r", os.path.abspath(args.file)], args)
    return _run_reader("wireshark", [], args)


def _personal_plugin_dir():
    """~/.local/lib/wireshark/plugins/4.0/epan of the invoking user (SUDO_USER's under sudo)."""
    home = os.path.expanduser("~")
    owner = None
    sudo_user = os.environ.get("SUDO_USER")
    if os.getuid() == 0 and sudo_user and sudo_user != "root":
        import pwd
        pw = pwd.getpwnam(sudo_user)
        home, owner = pw.pw_dir, (pw.pw_uid, pw.pw_gid)
    return os.path.join(home, ".local", "lib", "wireshark", "plugins", WS_API, "epan"), owner


def _system_plugin_dir():
    out = subprocess.run(["pkg-config", "--variable=plugindir", "wireshark"],
                         capture_output=True, text=True)
    base = out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else \
        f"/usr/lib/x86_64-linux-gnu/wireshark/plugins/{WS_API}"
    return os.path.join(base, "epan"), None


def cmd_install(args):
    dest_dir, owner = _system_plugin_dir() if args.system else _personal_plugin_dir()
    dest = os.path.join(dest_dir, PLUGIN_TARGET + ".so")
    if args.uninstall:
        if os.path.exists(dest):
            os.remove(dest)
            common.info(f"removed {dest}")
        else:
            common.info(f"nothing installed at {dest}")
        return 0
    src = ensure_plugin()
    os.makedirs(dest_dir, exist_ok=True)
    shutil.copy2(src, dest)
    if owner:
        # Under sudo: the folders and the file belong to the user whose Wireshark will load them.
        path = dest
        while path.startswith(os.path.dirname(os.path.dirname(os.path.dirname(dest_dir)))):
            os.chown(path, *owner)
            path = os.path.dirname(path)
    common.info(f"installed {dest}")
    if os.getuid() == 0 and not args.system and not owner:
        common.info("note: Wireshark run by root ignores personal plugin folders; use "
                    "./smp wireshark, or ./smp dissector-install --system")
    return 0


def register(sub, modules):
    # Every argument goes to tshark untouched (argparse would take -r, -Y, ... as its own), so
    # this sub-parser has no option prefix and our own leading options are read by hand.
    p = sub.add_parser("tshark", prefix_chars="+", add_help=False,
                       help="run tshark with the simplemsg plugin (adds -2 with -r)")
    p.add_argument("args", nargs="...")
    p.set_defaults(func=cmd_tshark, modules=modules)

    p = sub.add_parser("wireshark", help="open a capture (or the live cluster) in the Wireshark GUI",
                       description="Opens the Wireshark GUI with the simplemsg plugin loaded "
                       "(needs the wireshark package and a display).")
    p.add_argument("file", nargs="?", help="a capture file")
    p.add_argument("--live", action="store_true", help="capture the cluster's bridge live")
    p.add_argument("--netns", help=f"namespace of the bridge (default {DEFAULT_NETNS})")
    p.add_argument("--iface", help=f"interface (default {DEFAULT_BRIDGE})")
    p.set_defaults(func=cmd_wireshark, modules=modules)

    p = sub.add_parser("dissector-install",
                       help="copy the plugin into your personal Wireshark plugin folder",
                       description="Copies simplemsg.so into ~/.local/lib/wireshark/plugins/"
                       f"{WS_API}/epan/ (the invoking user's under sudo), or with --system into "
                       "the system-wide folder (which Wireshark also loads as root).")
    p.add_argument("--system", action="store_true", help="install system-wide (needs root)")
    p.add_argument("--uninstall", action="store_true", help="remove the installed copy")
    p.set_defaults(func=cmd_install, modules=modules)


if __name__ == "__main__":
    sys.exit("run through ./smp")
