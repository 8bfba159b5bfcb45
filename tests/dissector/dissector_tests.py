#!/usr/bin/env python3
"""Tests of the simplemsg Wireshark plugin, driven through the real tshark.

Each sub-command is one ctest case (see CMakeLists.txt). tshark is started exactly as `./smp tshark`
starts it (the same helper), so that the root work-around is what gets tested.
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.realpath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "cluster"))
from smpcli.commands import dissector as cli  # noqa: E402

TSHARK_TIMEOUT_S = 60


class Failure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failure(message)


def tshark(opts, args, timeout=TSHARK_TIMEOUT_S, check_status=True):
    """Runs tshark with the plugin from opts.plugin_dir; returns (status, stdout, stderr)."""
    cmd, env = cli.tshark_command(args)
    env["WIRESHARK_PLUGIN_DIR"] = opts.plugin_dir
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if check_status and out.returncode != 0:
        raise Failure(f"tshark {' '.join(args)} exited {out.returncode}: {out.stderr.strip()[:2000]}")
    return out.returncode, out.stdout, out.stderr


def test_loaded(opts):
    """The plugin is really loaded (not silently ignored, as it is for root without a work-around)."""
    _, out, _ = tshark(opts, ["-G", "protocols"])
    rows = [line.split("\t") for line in out.splitlines()]
    ours = [r for r in rows if len(r) >= 3 and r[2] == "simplemsg"]
    check(len(ours) == 1, "tshark -G protocols does not list simplemsg: the plugin did not load")
    check(ours[0][1] == "SIMPLEMSG", f"unexpected short name {ours[0][1]!r}")
    _, out, _ = tshark(opts, ["-G", "plugins"])
    expected = os.path.join(opts.plugin_dir, cli.WS_API, "epan", "simplemsg.so")
    check(any(expected in line for line in out.splitlines()),
          f"tshark -G plugins does not list {expected} (another copy loaded?)")
    # The hand-off: IPv4 protocol 121 goes to us.
    _, out, _ = tshark(opts, ["-G", "decodes"])
    check(any(line.split("\t")[:3] == ["ip.proto", "121", "simplemsg"] for line in out.splitlines()),
          "ip.proto 121 is not handed to simplemsg")
    print("plugin loaded from", expected)


TESTS = {
    "loaded": test_loaded,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--plugin-dir", required=True)
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("test", choices=sorted(TESTS))
    opts = ap.parse_args()
    os.makedirs(opts.work_dir, exist_ok=True)
    try:
        TESTS[opts.test](opts)
    except Failure as e:
        print("FAIL:", e, file=sys.stderr)
        return 1
    except subprocess.TimeoutExpired as e:
        print(f"FAIL: timed out: {e}", file=sys.stderr)
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
