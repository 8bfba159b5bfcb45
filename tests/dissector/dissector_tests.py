#!/usr/bin/env python3
"""Tests of the simplemsg Wireshark plugin, driven through the real tshark.

Each sub-command is one ctest case (see CMakeLists.txt). tshark is started exactly as `./smp tshark`
starts it (the same helper), so that the root work-around is what gets tested.
"""
import argparse
import json
import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.realpath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "cluster"))
from smpcli.commands import dissector as cli  # noqa: E402

TSHARK_TIMEOUT_S = 60
LINKTYPE_ETHERNET = 1
ETH_IPV4_HEADER_BYTES = 14 + 20   # where the SMP header starts in our Ethernet frames
FUZZ_PROBABILITY = "0.02"
FUZZ_SEEDS = 24                   # per input capture; each is one tshark run (~0.5 s)


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


# ---- captures ---------------------------------------------------------------------------------

def ipv4_checksum(header):
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_frame(src, dst, payload, proto=121, ident=0):
    """An Ethernet II + IPv4 frame (no options, DF clear) around payload."""
    def addr(a):
        return bytes(int(x) for x in a.split("."))
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident & 0xFFFF, 0, 64, proto, 0,
                      addr(src), addr(dst))
    hdr = hdr[:10] + struct.pack("!H", ipv4_checksum(hdr)) + hdr[12:]
    eth = bytes.fromhex("020000000002" "020000000001" "0800")
    return eth + hdr + payload


def write_pcap(path, frames, linktype=LINKTYPE_ETHERNET):
    """Classic pcap, microsecond stamps; frames is a list of (time_s, bytes)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
        for t, data in frames:
            sec, usec = int(t), int(round((t - int(t)) * 1e6))
            f.write(struct.pack("<IIII", sec, usec, len(data), len(data)))
            f.write(data)
    os.chmod(path, 0o644)  # readable by the unprivileged tshark (setpriv fall-back)


def fuzz_capture(opts, source, name):
    """editcap -E on many fixed seeds, each result through tshark -2 -V: no crash, abort or hang.

    Half of the seeds skip the Ethernet and IPv4 headers (-o) so that the corruption lands in our
    bytes instead of turning protocol 121 into something else."""
    failures = []
    runs = 0
    for seed in range(1, FUZZ_SEEDS + 1):
        out = os.path.join(opts.work_dir, f"fuzz-{name}-{seed}.pcap")
        skip = ["-o", str(ETH_IPV4_HEADER_BYTES)] if seed % 2 else []
        subprocess.run(["editcap", "-E", FUZZ_PROBABILITY, "--seed", str(seed), *skip, source, out],
                       check=True, capture_output=True)
        os.chmod(out, 0o644)
        # Every third seed with the checksum check off, so that damaged packets also reach the
        # tracking and reassembly code instead of stopping at the checksum.
        prefs = ["-o", "simplemsg.check_checksum:FALSE"] if seed % 3 == 0 else []
        cmd, env = cli.tshark_command(["-2", "-V", *prefs, "-r", out])
        env["WIRESHARK_PLUGIN_DIR"] = opts.plugin_dir
        # As Wireshark's own fuzz-test.sh: turn dissector bugs into aborts, so they cannot hide.
        env["WIRESHARK_ABORT_ON_DISSECTOR_BUG"] = "1"
        env["WIRESHARK_ABORT_ON_TOO_MANY_ITEMS"] = "1"
        runs += 1
        try:
            res = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 text=True, timeout=TSHARK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            failures.append(f"seed {seed}: hang (> {TSHARK_TIMEOUT_S} s)")
            continue
        bad = [l for l in res.stderr.splitlines()
               if "dissector bug" in l.lower() or "assert" in l.lower() or "critical" in l.lower()]
        if res.returncode != 0 or bad:
            failures.append(f"seed {seed}: status {res.returncode} {' | '.join(bad)[:300]}")
        else:
            os.remove(out)  # keep only the failing ones for a post-mortem
    print(f"fuzz {name}: {runs} corrupted captures, {len(failures)} failures")
    check(not failures, "; ".join(failures) + f" (inputs kept in {opts.work_dir})")


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


# ---- field-by-field comparison --------------------------------------------------------------

def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def tshark_fields(opts, capture, fields, extra=()):
    """One row per frame: {field: value} from tshark -T fields (all occurrences, comma-joined)."""
    args = ["-r", capture, "-2", *extra, "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,",
            "-E", "separator=/t", "-e", "frame.number"]
    for name in fields:
        args += ["-e", name]
    _, out, err = tshark(opts, args)
    rows = []
    for line in out.splitlines():
        cells = line.split("\t")
        cells += [""] * (len(fields) + 1 - len(cells))
        rows.append(dict(zip(["frame.number", *fields], cells)))
    return rows


def same_value(expected, shown):
    """Equal as numbers where both are numbers (tshark prints some in hex), else as text."""
    if expected == shown:
        return True
    e_parts, s_parts = expected.split(","), shown.split(",")
    if len(e_parts) != len(s_parts):
        return False
    for e, v in zip(e_parts, s_parts):
        try:
            if int(e, 0) != int(v, 0):
                return False
        except ValueError:
            if e.lower() != v.lower():
                return False
    return True


def compare_frames(expected_rows, shown_rows, what, max_report=10):
    """expected_rows: [{"frame": n, "fields": {...}}]; every listed field must match exactly."""
    check(len(shown_rows) == len(expected_rows),
          f"{what}: tshark shows {len(shown_rows)} frames, expected {len(expected_rows)}")
    problems, compared = [], 0
    for exp, row in zip(expected_rows, shown_rows):
        for name, value in exp["fields"].items():
            compared += 1
            if not same_value(value, row.get(name, "")):
                problems.append(f"frame {exp['frame']}: {name} expected {value[:80]!r}, "
                                f"tshark {row.get(name, '')[:80]!r}")
    print(f"{what}: {len(expected_rows)} frames, {compared} field values compared, "
          f"{len(problems)} differ")
    check(not problems, f"{what}: " + "; ".join(problems[:max_report]))
    return compared


def test_agreement(opts):
    """For 1,000 random valid packets, tshark's fields equal the engine decoder's; and for 1,000
    damaged ones, the dissector's verdict equals the engine's reason for dropping them."""
    check(opts.wire_sample, "--wire-sample not given")
    for mode, count, seed in (("valid", 1000, 20261124), ("mutated", 1000, 7)):
        pcap = os.path.join(opts.work_dir, f"agree-{mode}.pcap")
        fields = os.path.join(opts.work_dir, f"agree-{mode}.jsonl")
        subprocess.run([opts.wire_sample, mode, str(count), str(seed), pcap, fields], check=True)
        os.chmod(pcap, 0o644)
        expected = read_jsonl(fields)
        check(len(expected) == count, f"wire_sample wrote {len(expected)} rows, not {count}")
        names = sorted({n for e in expected for n in e["fields"]})
        rows = tshark_fields(opts, pcap, names)
        compare_frames(expected, rows, f"engine agreement ({mode})")
        if mode == "valid":
            types = {e["fields"]["simplemsg.type"] for e in expected}
            check(len(types) == 14, f"only {len(types)} message types covered")
        else:
            verdicts = {e["fields"]["simplemsg.verdict"] for e in expected}
            check(len(verdicts) >= 8, f"only verdicts {sorted(verdicts)} covered")


def test_fuzz(opts):
    """Wireshark's own method: editcap -E on many seeds, no crash, abort or hang."""
    check(opts.wire_sample, "--wire-sample not given")
    pcap = os.path.join(opts.work_dir, "fuzz-input-valid.pcap")
    subprocess.run([opts.wire_sample, "valid", "300", "99", pcap, pcap + ".jsonl"], check=True,
                   capture_output=True)
    os.chmod(pcap, 0o644)
    fuzz_capture(opts, pcap, "random")


TESTS = {
    "loaded": test_loaded,
    "agreement": test_agreement,
    "fuzz": test_fuzz,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--plugin-dir", required=True)
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--wire-sample", help="the wire_sample program (tests/dissector/wire_sample.cc)")
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
