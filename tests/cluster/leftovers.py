"""What a cluster test's own run left behind: its network namespace, and processes whose command
line names its run folder (QEMU, tcpdump, smpctl). Shared by the cluster tests beside it."""
import os
import subprocess


def leftovers(netns, run_dir, kinds=("qemu", "tcpdump", "smpctl")):
    """The namespace `netns` if it is still there, and every process of `run_dir` whose command
    line contains one of `kinds`, as lines for a failure message."""
    left = []
    if netns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split():
        left.append(f"namespace {netns}")
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().decode(errors="replace")
        except OSError:
            continue
        if run_dir in args and any(k in args for k in kinds):
            left.append(f"process {pid}: {args.replace(chr(0), ' ')[:120]}")
    return left
