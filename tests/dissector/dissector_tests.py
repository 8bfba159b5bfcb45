#!/usr/bin/env python3
"""Tests of the simplemsg Wireshark plugin, driven through the real tshark.

Each sub-command is one ctest case (see CMakeLists.txt). tshark is started exactly as `./smp tshark`
starts it (the same helper), so that the root work-around is what gets tested.
"""
import argparse
import json
import os
import re
import signal
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


def fuzz_capture(opts, source, name, seeds=FUZZ_SEEDS, prefs=()):
    """editcap -E on many fixed seeds, each result through tshark -2 -V: no crash, abort or hang.

    Half of the seeds skip the Ethernet and IPv4 headers (-o) so that the corruption lands in our
    bytes instead of turning protocol 121 into something else."""
    failures = []
    runs = 0
    for seed in range(1, seeds + 1):
        out = os.path.join(opts.work_dir, f"fuzz-{name}-{seed}.pcap")
        skip = ["-o", str(ETH_IPV4_HEADER_BYTES)] if seed % 2 else []
        # Every fourth seed also cut short by a snapshot length (damaged and cut packets).
        if seed % 4 == 1:
            skip += ["-s", str(ETH_IPV4_HEADER_BYTES + 1 + 13 * seed)]
        subprocess.run(["editcap", "-E", FUZZ_PROBABILITY, "--seed", str(seed), *skip, source, out],
                       check=True, capture_output=True)
        os.chmod(out, 0o644)
        # Every third seed with the checksum check off, so that damaged packets also reach the
        # tracking and reassembly code instead of stopping at the checksum.
        more = ["-o", "simplemsg.check_checksum:FALSE"] if seed % 3 == 0 else []
        cmd, env = cli.tshark_command(["-2", "-V", *prefs, *more, "-r", out])
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


def epoch_ns(text):
    """'1764017473.825566000' (tshark's frame.time_epoch) as integer nanoseconds."""
    whole, _, frac = text.partition(".")
    return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])


def tshark_fields(opts, capture, fields, extra=()):
    """One row per frame: {field: value} from tshark -T fields (all occurrences, comma-joined)."""
    args = ["-r", capture, "-2", *extra, "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,",
            "-E", "separator=/t", "-e", "frame.number"]
    for name in fields:
        args += ["-e", name]
    _, out, err = tshark(opts, args)
    rows = []
    # Lines end at "\n" only: splitlines() also splits at \x1c-\x1e, \x85 and the like, which a
    # damaged packet's name field may hold.
    for line in out.split("\n"):
        if not line:
            continue
        cells = line.split("\t")
        cells += [""] * (len(fields) + 1 - len(cells))
        rows.append(dict(zip(["frame.number", *fields], cells)))
    return rows


def same_value(expected, shown):
    """Equal as numbers where both are numbers (tshark prints some in hex), else as text."""
    if expected == shown:
        return True
    if "\\" in shown:
        # tshark writes control characters in a string field as escapes (\r, \t, \xNN).
        try:
            if shown.encode("latin-1", "backslashreplace").decode("unicode_escape") == expected:
                return True
        except (UnicodeDecodeError, UnicodeEncodeError):
            pass
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
            check(len(types) == len(TYPE_NAMES), f"only {len(types)} message types covered")
        else:
            verdicts = {e["fields"]["simplemsg.verdict"] for e in expected}
            check(len(verdicts) >= 8, f"only verdicts {sorted(verdicts)} covered")


def test_fuzz(opts):
    """Wireshark's own method: editcap -E on many seeds, no crash, abort or hang; on random
    packets of every type and on a run of the engine (retransmissions, reassembly, tracking)."""
    check(opts.wire_sample, "--wire-sample not given")
    pcap = os.path.join(opts.work_dir, "fuzz-input-valid.pcap")
    subprocess.run([opts.wire_sample, "valid", "300", "99", pcap, pcap + ".jsonl"], check=True,
                   capture_output=True)
    os.chmod(pcap, 0o644)
    fuzz_capture(opts, pcap, "random")
    if opts.scenario:
        pcap = os.path.join(opts.work_dir, "fuzz-input-scenario.pcap")
        subprocess.run([opts.scenario, "5", pcap, pcap + ".jsonl"], check=True, capture_output=True)
        os.chmod(pcap, 0o644)
        fuzz_capture(opts, pcap, "scenario")


# ---- golden decode of a run of the engine ------------------------------------------------------

TYPE_NAMES = {1: "HELLO", 2: "HELLO_ACK", 3: "REQUEST", 4: "REPLY", 5: "PULL", 6: "DATA", 7: "ACK",
              8: "CANCEL", 9: "PULSE", 10: "PROBE", 11: "PROBE_ACK", 12: "RESET",
              13: "NAME_QUERY", 14: "NAME_REPLY", 15: "CHALLENGE", 16: "CHALLENGE_ACK"}
KEYED_ONLY_TYPES = {15, 16}  # sent only with a cluster key (SPEC 4.11)
ERROR_BUSY = 3


def ip_of(row, which):
    return row.get(f"ip.{which}", "")


TXN_TYPES = (3, 4, 5, 6, 8, 9)
RESERVED_SERVICES = {0xFFFF0001: "_names", 0xFFFF0002: "_stats"}  # channels with their own names
DUPLICATE_WINDOW_NS = 1_000_000  # the dissector's SMP_DUPLICATE_WINDOW_NS


def exchange_key(v, row, t):
    """The exchange a packet belongs to (engine decode), or None (ACK, RESET): a transaction is
    keyed by its client and server (address, endpoint, incarnation) and number; a probe, HELLO
    or name query by its client (address, endpoint, incarnation), server (address, endpoint:
    the asker may not know the incarnation) and its sequence, nonce or query id."""
    if t in TXN_TYPES:
        what = int(v.get("simplemsg.what", "0"))
        from_client = t in (3, 8, 9) or (t == 6 and what == 1) or (t == 5 and what == 2)
        c, s = ("src", "dst") if from_client else ("dst", "src")
        return (ip_of(row, c), v[f"simplemsg.{c}_endpoint"], int(v[f"simplemsg.{c}_incarnation"]),
                ip_of(row, s), v[f"simplemsg.{s}_endpoint"], int(v[f"simplemsg.{s}_incarnation"]),
                int(v["simplemsg.txn"]))
    ids = {1: "simplemsg.nonce", 2: "simplemsg.nonce", 10: "simplemsg.probe_seq",
           11: "simplemsg.probe_seq", 13: "simplemsg.query", 14: "simplemsg.query",
           15: "simplemsg.nonce", 16: "simplemsg.nonce"}
    if t not in ids:
        return None
    c, s = ("src", "dst") if t in (1, 10, 13, 15) else ("dst", "src")
    return (TYPE_NAMES[t if t in (1, 10, 13, 15) else t - 1], ip_of(row, c), v[f"simplemsg.{c}_endpoint"],
            int(v[f"simplemsg.{c}_incarnation"]), ip_of(row, s), v[f"simplemsg.{s}_endpoint"],
            int(v[ids[t]]))


def expected_links(frames, rows):
    """What the tracking must show, worked out here from the engine's decode of each frame (its
    fields) and the capture's addresses and times, independently of the dissector's code.

    frames: [{"frame": n, "fields": {...}, "wire": id}] (engine decode); rows: tshark rows with
    ip.src/ip.dst and frame.time_epoch. Returns {frame: {field: value}}, the derived fields that
    are fully worked out for each frame, and a summary of what was covered."""
    exp = {f["frame"]: {} for f in frames}
    modeled = {f["frame"]: {"simplemsg.duplicate_of", "simplemsg.acked_frame",
                            "simplemsg.reassembled.length", "simplemsg.reassembled_in",
                            "simplemsg.message"} for f in frames}
    first_request, first_response, first_cancel = {}, {}, {}
    parts, totals, seen_part, first_copy, given_of = {}, {}, {}, {}, {}
    covered = {"reassembled": 0, "linked": 0, "retransmissions": 0, "acks": 0, "duplicates": 0,
               "named": 0, "unnamed": 0, "streams": 0, "acked_streams": 0, "pulled": 0}
    # Service names: what each positive NAME_REPLY said, keyed by its sender (address, endpoint,
    # incarnation) and the channel, and each transaction's channel (from its REQUEST or PULSE).
    services, channel_of = {}, {}
    time_of = {int(r["frame.number"]): float(r["frame.time_epoch"]) for r in rows}
    # Exact nanoseconds for the duplicate window: a float epoch (~1e9 s) has no exact 1 ms, and a
    # copy exactly 1 ms after its first was classed differently here and in the dissector.
    ns_of = {int(r["frame.number"]): epoch_ns(r["frame.time_epoch"]) for r in rows}
    row_of = {int(r["frame.number"]): r for r in rows}

    def key_of(v, row, from_client, txn):
        c, s = ("src", "dst") if from_client else ("dst", "src")
        return (ip_of(row, c), v[f"simplemsg.{c}_endpoint"], int(v[f"simplemsg.{c}_incarnation"]),
                ip_of(row, s), v[f"simplemsg.{s}_endpoint"], int(v[f"simplemsg.{s}_incarnation"]),
                int(txn))

    txn_frames = []  # (frame, type, key)
    for f in frames:
        v, n = f["fields"], f["frame"]
        # Copies are told only among packets a receiver accepts (only those are tracked).
        if "wire" in f and v.get("simplemsg.verdict") == "0":
            # A copy of an identical IP packet; with IP identification 0 (Linux, DF) only one
            # that follows within 1 ms, since a resend waits at least the minimum RTO.
            prev = first_copy.get(f["wire"])
            if prev and (f["ip_id"] != 0 or ns_of[n] - prev[1] < DUPLICATE_WINDOW_NS):
                exp[n]["simplemsg.duplicate_of"] = str(prev[0])
                covered["duplicates"] += 1
            else:
                first_copy[f["wire"]] = (n, ns_of[n])
        if v.get("simplemsg.verdict") != "0":
            continue
        t = int(v["simplemsg.type"])
        if t == 14 and v["simplemsg.error"] == "0":
            services[(ip_of(row_of[n], "src"), v["simplemsg.src_endpoint"],
                      int(v["simplemsg.src_incarnation"]), int(v["simplemsg.channel"]))] = \
                v["simplemsg.service"]
        if t not in TXN_TYPES:
            continue
        modeled[n] |= {"simplemsg.request_in", "simplemsg.response_in", "simplemsg.time",
                       "simplemsg.retransmission_of", "simplemsg.service"}
        what = int(v.get("simplemsg.what", "0"))
        from_client = t in (3, 8, 9) or (t == 6 and what == 1) or (t == 5 and what == 2)
        k = key_of(v, row_of[n], from_client, v["simplemsg.txn"])
        txn_frames.append((n, t, k))
        # The service: the transaction's channel at its server, as a lookup named it before
        # this frame (a reserved channel by its own name); none where no lookup was seen.
        if t in (3, 9):
            channel_of[k] = int(v["simplemsg.channel"])
        if k in channel_of:
            ch = channel_of[k]
            name = RESERVED_SERVICES.get(ch) or services.get((k[3], k[4], k[5], ch))
            if name is not None:
                exp[n]["simplemsg.service"] = name
                covered["named"] += 1
            else:
                covered["unnamed"] += 1
        offset = int(v.get("simplemsg.offset", v.get("simplemsg.range.offset", "0").split(",")[0]))
        # A REPLY with another error is a new answer (busy, then the final one; stale after ok
        # answering a late duplicate request), not a repeat.
        err = int(v.get("simplemsg.error", "0")) if t == 4 else 0
        part_key = (k, t, what, offset, err)
        dup = "simplemsg.duplicate_of" in exp[n]
        if part_key in seen_part and not dup:
            exp[n]["simplemsg.retransmission_of"] = str(seen_part[part_key])
            covered["retransmissions"] += 1
        seen_part.setdefault(part_key, n)
        if t in (3, 9):
            first_request.setdefault(k, n)
        elif t == 4 and int(v["simplemsg.error"]) != ERROR_BUSY:
            first_response.setdefault(k, n)
        elif t == 8:
            first_cancel.setdefault(k, n)
        # A message in one packet is shown whole in that packet (every copy of it).
        if t in (3, 4) and "simplemsg.payload" in v and v["simplemsg.offset"] == "0" and \
                int(v["simplemsg.payload_bytes"]) == int(v["simplemsg.total_bytes"]):
            exp[n]["simplemsg.message"] = v["simplemsg.payload"]
            continue
        # Message parts: REQUEST/REPLY eager bytes and DATA pulled bytes, each part that brings
        # bytes of the message not given before (a resend of the same part brings none; a
        # window sent again in larger parts, after a path-MTU increase, may); no network copy.
        if t in (3, 4, 6) and "simplemsg.payload" in v and not dup:
            side = "request" if t == 3 or (t == 6 and what == 1) else "reply"
            if t in (3, 4):
                totals[(k, side)] = int(v["simplemsg.total_bytes"])
            total = totals.get((k, side))
            lst = parts.setdefault((k, side), [])
            if total is None or (lst and lst[-1] == "done"):
                continue
            size = int(v["simplemsg.payload_bytes"])
            if size >= total or offset + size > total:
                continue
            given = given_of.setdefault((k, side), bytearray(total))
            if all(given[offset:offset + size]):
                continue
            given[offset:offset + size] = b"\x01" * size
            lst.append((n, offset, v["simplemsg.payload"]))
            have, got = bytearray(total), bytearray(total)
            for (_, off, hexdata) in lst:
                data = bytes.fromhex(hexdata)[:max(0, total - off)]
                have[off:off + len(data)] = data
                got[off:off + len(data)] = b"\x01" * len(data)
            if len(lst) > 1 and all(got):
                exp[n]["simplemsg.reassembled.length"] = str(total)
                exp[n]["simplemsg.message"] = have.hex()
                for (m, _, _) in lst:
                    if m != n:
                        exp[m]["simplemsg.reassembled_in"] = str(n)
                lst.append("done")
                covered["reassembled"] += 1
    # Links, once every first frame is known (tshark's second pass links forward too).
    for n, t, k in txn_frames:
        req, rsp = first_request.get(k), first_response.get(k)
        if t in (3, 9):
            if rsp:
                exp[n]["simplemsg.response_in"] = str(rsp)
            if req != n:
                exp[n]["simplemsg.request_in"] = str(req)
            continue
        if req:
            exp[n]["simplemsg.request_in"] = str(req)
        if t == 4:
            if rsp and rsp != n:
                exp[n]["simplemsg.response_in"] = str(rsp)
            if req and req < n and rsp == n:  # the first final answer only
                exp[n]["simplemsg.time"] = time_of[n] - time_of[req]
                covered["linked"] += 1
    # Stream indexes: one per exchange, 0, 1, 2, ... in order of first appearance; a packet has
    # its own exchange's, then those of the exchanges it acknowledges (the header's ack, then the
    # ACK entries), each once; an acknowledgement names only an exchange seen before it.
    stream_of = {}
    for f in frames:
        v, n = f["fields"], f["frame"]
        if v.get("simplemsg.verdict") != "0":
            continue
        modeled[n].add("simplemsg.stream")
        row, t = row_of[n], int(v["simplemsg.type"])
        streams = []
        own = exchange_key(v, row, t)
        if own is not None:
            streams.append(stream_of.setdefault(own, len(stream_of)))
        acked = []
        if v["simplemsg.ack"] != "0":
            acked.append(key_of(v, row, True, v["simplemsg.ack"]))
        if t == 7:
            for txn, kind in zip(v["simplemsg.ack_entry.txn"].split(","),
                                 v["simplemsg.ack_entry.kind"].split(",")):
                acked.append(key_of(v, row, kind == "2", txn))
        for k in acked:
            if k in stream_of and stream_of[k] not in streams:
                streams.append(stream_of[k])
                covered["acked_streams"] += 1
        if streams:
            exp[n]["simplemsg.stream"] = ",".join(str(x) for x in streams)
    covered["streams"] = len(stream_of)
    # PULL and DATA: a DATA answers the latest PULL before it, in its transaction, that asked for
    # bytes of the same message (what) at the DATA's offset; a network copy of a PULL asks
    # nothing of its own. Each PULL lists the DATA frames that answered it, in capture order.
    pulls, data_of = {}, {}
    for f in frames:
        v, n = f["fields"], f["frame"]
        if v.get("simplemsg.verdict") != "0" or v["simplemsg.type"] not in ("5", "6"):
            continue
        modeled[n] |= {"simplemsg.pull_in", "simplemsg.data_in"}
        k, what = exchange_key(v, row_of[n], int(v["simplemsg.type"])), v["simplemsg.what"]
        if v["simplemsg.type"] == "5":
            if "simplemsg.duplicate_of" not in exp[n]:
                ranges = list(zip(map(int, v["simplemsg.range.offset"].split(",")),
                                  map(int, v["simplemsg.range.bytes"].split(","))))
                pulls.setdefault(k, []).insert(0, (n, what, ranges))
            continue
        offset = int(v["simplemsg.offset"])
        for (pn, pwhat, ranges) in pulls.get(k, []):
            if pwhat == what and any(o <= offset < o + b for o, b in ranges):
                exp[n]["simplemsg.pull_in"] = str(pn)
                data_of.setdefault(pn, []).append(str(n))
                covered["pulled"] += 1
                break
    for pn, answers in data_of.items():
        exp[pn]["simplemsg.data_in"] = ",".join(answers)
    # Acknowledgements: ACK entries, then the header's ack (in the order the dissector adds them);
    # a link only to a frame before this one (the tracking is built in capture order).
    for f in frames:
        v, n = f["fields"], f["frame"]
        if v.get("simplemsg.verdict") != "0":
            continue
        row, links = row_of[n], []
        if v["simplemsg.type"] == "7":
            for txn, kind in zip(v["simplemsg.ack_entry.txn"].split(","),
                                 v["simplemsg.ack_entry.kind"].split(",")):
                k = key_of(v, row, kind == "2", txn)
                table = {"1": first_request, "2": first_response, "3": first_cancel,
                         "4": first_request}[kind]
                if table.get(k, n) < n:
                    links.append(str(table[k]))
        if v["simplemsg.ack"] != "0":
            k = key_of(v, row, True, v["simplemsg.ack"])
            if first_response.get(k, n) < n:
                links.append(str(first_response[k]))
        if links:
            exp[n]["simplemsg.acked_frame"] = ",".join(links)
            covered["acks"] += 1
    return exp, modeled, covered


# What the tracking adds (from other frames): none of it on a packet a receiver drops.
DERIVED_FIELDS = ["simplemsg.request_in", "simplemsg.response_in", "simplemsg.time",
                  "simplemsg.retransmission_of", "simplemsg.duplicate_of",
                  "simplemsg.reassembled.length", "simplemsg.reassembled_in",
                  "simplemsg.message", "simplemsg.acked_frame", "simplemsg.service",
                  "simplemsg.stream", "simplemsg.pull_in", "simplemsg.data_in"]


def check_golden(opts, pcap, frames, what, prefs=()):
    """Field-by-field: the engine's decode of every frame, the links worked out from it, the
    duplicates the run made, and a readable Info column; no malformed frame. prefs: tshark
    options (a cluster key)."""
    decoded_names = sorted({n for f in frames for n in f["fields"]})
    derived_names = DERIVED_FIELDS
    extra = ["ip.src", "ip.dst", "frame.time_epoch", "_ws.col.Info", "_ws.malformed",
             "_ws.expert.message"]
    rows = tshark_fields(opts, pcap, decoded_names + derived_names + extra, extra=prefs)
    compare_frames(frames, rows, f"{what}: engine decode")
    links, modeled, covered = expected_links(frames, rows)
    problems = []
    for f in frames:
        n = f["frame"]
        row = rows[n - 1]
        want = links.get(n, {})
        # The run's own record of the copies it made must agree with the capture's identities.
        for name, value in f.get("derived", {}).items():
            if want.get(name) != value:
                problems.append(f"frame {n}: the run says {name}={value}, the capture {want.get(name)}")
        for name in derived_names:
            shown = row.get(name, "")
            if name not in want:
                # Worked out here and not expected: the dissector must not show it either.
                if shown and name in modeled[n]:
                    problems.append(f"frame {n}: {name} shows {shown[:40]!r}, expected none")
                continue
            value = want[name]
            if name == "simplemsg.time":
                ok = shown != "" and abs(float(shown) - value) < 2e-6
            else:
                ok = same_value(value, shown)
            if not ok:
                problems.append(f"frame {n}: {name} expected {str(value)[:60]!r}, tshark {shown[:60]!r}")
        if row.get("_ws.malformed") and f["fields"].get("simplemsg.verdict") == "0":
            problems.append(f"frame {n}: malformed, but the engine accepts it")
        t = f["fields"].get("simplemsg.type")
        info = row.get("_ws.col.Info", "")
        if t and not info.replace("[Duplicate] ", "").replace("[Retransmission] ", "").startswith(
                TYPE_NAMES[int(t)] + " "):
            problems.append(f"frame {n}: Info {info[:60]!r} does not start with {TYPE_NAMES[int(t)]}")
        if t in ("3", "4", "5", "6", "8", "9") and "txn=" not in info:
            problems.append(f"frame {n}: Info {info[:60]!r} has no txn")
    dup_count = covered["duplicates"]
    print(f"{what}: {covered['linked']} request/reply links, {covered['reassembled']} reassembled "
          f"messages, {covered['retransmissions']} retransmissions, {dup_count} duplicates, "
          f"{covered['acks']} acknowledging frames, {covered['named']} packets with a service name "
          f"and {covered['unnamed']} without, {covered['streams']} streams "
          f"({covered['acked_streams']} acknowledged ones), {covered['pulled']} DATA linked to "
          f"their PULL checked; {len(problems)} problems")
    check(not problems, f"{what}: " + "; ".join(problems[:12]))
    return covered, dup_count


def test_scenario(opts):
    """Golden decode of a deterministic run of the real engine (tests/dissector/scenario.cc)."""
    check(opts.scenario and opts.wire_sample, "--scenario and --wire-sample are needed")
    pcap = os.path.join(opts.work_dir, "scenario.pcap")
    truth = os.path.join(opts.work_dir, "scenario-wire.jsonl")
    decoded = os.path.join(opts.work_dir, "scenario-engine.jsonl")
    subprocess.run([opts.scenario, "20261124", pcap, truth], check=True)
    os.chmod(pcap, 0o644)
    subprocess.run([opts.wire_sample, "decode", pcap, decoded], check=True)
    frames = read_jsonl(decoded)
    for f, w in zip(frames, read_jsonl(truth)):
        f["derived"] = w["derived"]
    types = {f["fields"].get("simplemsg.type") for f in frames} - {None}
    missing = sorted(set(TYPE_NAMES) - KEYED_ONLY_TYPES - {int(t) for t in types})
    check(not missing, f"the run has no {[TYPE_NAMES[m] for m in missing]}: scenario regressed")
    covered, dups = check_golden(opts, pcap, frames, "scenario")
    check(covered["linked"] >= 10 and covered["reassembled"] >= 4 and
          covered["retransmissions"] >= 1 and dups >= 1 and covered["acks"] >= 1 and
          covered["named"] >= 20 and covered["unnamed"] >= 4 and covered["streams"] >= 15 and
          covered["acked_streams"] >= 5 and covered["pulled"] >= 100,
          f"the run covers too little: {covered}, {dups} duplicates")


VERDICT_NOT_JUDGED = "255"  # the dissector's own verdict for a packet the capture cut short
CUT_SNAPLENS = (35, 40, 50, 66, 70, 80, 100, 200, 600)  # whole frames: Ethernet 14 + IPv4 20 + SMP


def test_cut(opts):
    """Packets cut short by the capture's snapshot length (editcap -s) on the engine run: each
    is marked (simplemsg.cut_short, the Info column), its verdict is "not judged" (neither ok
    nor too-short), the Info column shows only values the capture holds (the txn where its
    fixed part is there, no made-up zeros), no exception or malformed mark, and it is kept out
    of the tracking: no link to it, none from it. Uncut packets decode as in the whole capture."""
    check(opts.scenario, "--scenario is needed")
    full = os.path.join(opts.work_dir, "cut-full.pcap")
    subprocess.run([opts.scenario, "20261124", full, full + ".jsonl"], check=True,
                   capture_output=True)
    os.chmod(full, 0o644)
    links = ["simplemsg.request_in", "simplemsg.response_in", "simplemsg.retransmission_of",
             "simplemsg.duplicate_of", "simplemsg.acked_frame", "simplemsg.reassembled_in"]
    fields = ["frame.len", "frame.cap_len", "simplemsg.verdict", "simplemsg.cut_short",
              "simplemsg.type", "simplemsg.txn", "simplemsg.channel", "_ws.col.Info",
              "_ws.malformed", "_ws.short", "_ws.expert.message", *links]
    whole = tshark_fields(opts, full, fields)
    check(all(r["simplemsg.verdict"] == "0" for r in whole), "the engine run has a dropped packet")
    fixed = {3: 32, 4: 24, 5: 8, 6: 12, 7: 4, 8: 8, 9: 20}  # body bytes before the payload
    problems, cut_total, with_txn = [], 0, 0
    for snap in CUT_SNAPLENS:
        out = os.path.join(opts.work_dir, f"cut-{snap}.pcap")
        subprocess.run(["editcap", "-s", str(snap), full, out], check=True, capture_output=True)
        os.chmod(out, 0o644)
        rows = tshark_fields(opts, out, fields)
        check(len(rows) == len(whole), f"snap {snap}: {len(rows)} frames, not {len(whole)}")
        cut_frames = set()
        for r, w in zip(rows, whole):
            n = r["frame.number"]
            if int(r["frame.cap_len"]) < int(r["frame.len"]):
                cut_frames.add(n)
        # Frames linked to or from a cut one in the whole capture: their links and marks
        # (request in, reassembled, retransmission) may go with it; the rest must not change.
        near_cut = set()
        for w in whole:
            targets = {t for name in links for t in w[name].split(",") if t}
            if w["frame.number"] in cut_frames:
                near_cut |= targets
            elif targets & cut_frames:
                near_cut.add(w["frame.number"])

        def plain(info):
            info = re.sub(r"\[(Retransmission|Duplicate)\] ", "", info)
            info = re.sub(r' svc="[^"]*"', "", info)  # the channel is in the REQUEST
            info = re.sub(r" \((request|response) in [^)]*\)", "", info)
            info = re.sub(r"(\[\d+,\d+\)) of \d+ B", r"\1", info)  # DATA: the size from a REQUEST
            return re.sub(r" \[(request|reply) reassembled, \d+ B\]", "", info)

        for r, w in zip(rows, whole):
            n, info = r["frame.number"], r["_ws.col.Info"]
            where = f"snap {snap} frame {n}"
            if r["_ws.malformed"] or r["_ws.short"]:
                problems.append(f"{where}: malformed or an exception ({info[:60]!r})")
            if n not in cut_frames:
                for name in ["simplemsg.verdict", "simplemsg.txn", "_ws.col.Info"]:
                    a, b = r[name], w[name]
                    if name == "_ws.col.Info" and n in near_cut:
                        a, b = plain(a), plain(b)
                    if a != b:
                        problems.append(f"{where} (whole): {name} {r[name][:60]!r}, "
                                        f"whole capture {w[name][:60]!r}")
                for name in links:
                    for target in filter(None, r[name].split(",")):
                        if target in cut_frames:
                            problems.append(f"{where}: {name} links to the cut frame {target}")
                continue
            cut_total += 1
            if r["simplemsg.verdict"] != VERDICT_NOT_JUDGED:
                problems.append(f"{where}: verdict {r['simplemsg.verdict']!r}, not not-judged")
            if r["simplemsg.cut_short"] not in ("1", "True"):
                problems.append(f"{where}: no simplemsg.cut_short")
            if "[cut short by the capture" not in info:
                problems.append(f"{where}: Info {info[:80]!r} has no cut mark")
            if "Packet cut short by the capture" not in r["_ws.expert.message"]:
                problems.append(f"{where}: no expert note")
            for name in links:
                if r[name]:
                    problems.append(f"{where}: tracked ({name}={r[name]})")
            # The Info column: the type where its byte is there, the txn and channel where the
            # fixed body is, and never a value the whole packet does not have.
            smp_bytes = int(r["frame.cap_len"]) - ETH_IPV4_HEADER_BYTES
            t = int(w["simplemsg.type"])
            if smp_bytes >= 2 and not info.startswith(TYPE_NAMES[t]):
                problems.append(f"{where}: Info {info[:60]!r} does not start with {TYPE_NAMES[t]}")
            if t in fixed:
                txn_shown = [x for x in info.split() if x.startswith("txn=")]
                if smp_bytes >= 32 + fixed[t]:
                    with_txn += 1
                    if t != 7 and txn_shown[:1] != [f"txn={w['simplemsg.txn']}"]:
                        problems.append(f"{where}: Info {info[:80]!r}, whole txn={w['simplemsg.txn']}")
                    if w["simplemsg.channel"] and f"ch={w['simplemsg.channel']}" not in info and \
                            "ch=_" not in info:
                        problems.append(f"{where}: Info {info[:80]!r} lacks ch={w['simplemsg.channel']}")
                elif txn_shown:
                    problems.append(f"{where}: Info {info[:80]!r} shows a txn it did not capture")
            if " 0 B" in info or "txn=0" in info:
                problems.append(f"{where}: Info {info[:80]!r} shows a default value")
    print(f"cut captures: snap lengths {list(CUT_SNAPLENS)}, {cut_total} cut packets "
          f"({with_txn} with their fixed body), {len(problems)} problems")
    check(cut_total >= 100 and with_txn >= 20, f"too few cut packets: {cut_total}, {with_txn}")
    check(not problems, "; ".join(problems[:12]))


VERDICT_NAMES = ["ok", "too-short", "bad-version", "bad-length", "bad-checksum", "critical-flag",
                 "unknown-type", "body-too-short", "trailing-bytes", "bad-field"]
STATS_TIME_GROUPS = {"11": "PROBE", "2": "HELLO", "14": "NAME_QUERY",
                     "16": "CHALLENGE"}  # answers other than REPLY


def stats_tree(opts, capture):
    """tshark -q -z simplemsg,tree, read back: {(parent, node): (count, avg, min, max)}."""
    _, out, _ = tshark(opts, ["-r", capture, "-2", "-q", "-z", "simplemsg,tree"])
    nodes, parent, body = {}, None, False
    for line in out.split("\n"):
        if line.startswith("-----"):
            body = not body
            continue
        m = re.match(r"^( *)(\S.*?)\s{2,}(\d+)\s+(.*)$", line)
        if not body or not m:
            continue
        indent, name, count, rest = m.groups()
        cols = rest.split()
        # with values: average, min, max before rate, percent, burst rate and start
        values = (float(cols[0]), int(cols[1]), int(cols[2])) if len(cols) == 7 else None
        if indent:
            nodes[(parent, name)] = (int(count), values)
        else:
            parent = name
            nodes[(None, name)] = (int(count), values)
    return nodes, out


def expected_stats(opts, capture):
    """The same tree worked out from tshark -T fields: one count per SMP packet by its type, the
    Info column's retransmission and duplicate marks, the verdicts other than ok (not-judged on
    its own), and response times (simplemsg.time, in whole microseconds) by the transaction's
    service (or its REQUEST's channel), or by the kind of exchange for probes, HELLOs, names."""
    rows = tshark_fields(opts, capture, ["simplemsg.type", "simplemsg.verdict", "_ws.col.Info",
                                         "simplemsg.time", "simplemsg.service",
                                         "simplemsg.request_in", "simplemsg.channel",
                                         "frame.protocols"])
    by_frame = {r["frame.number"]: r for r in rows}
    counts, times = {}, {}

    def tick(parent, name):
        counts[(parent, name)] = counts.get((parent, name), 0) + 1

    for r in rows:
        # a packet quoted in an ICMP error is not counted
        if not r["simplemsg.verdict"] or ":icmp:" in r["frame.protocols"]:
            continue
        tick(None, "SMP packets")
        tick(None, "Packets by type")
        t = r["simplemsg.type"]
        tick("Packets by type", TYPE_NAMES.get(int(t), f"type {t}") if t else "(no header)")
        info = r["_ws.col.Info"]
        if info.startswith("[Retransmission] "):
            tick(None, "Retransmissions")
        if info.startswith("[Duplicate] "):
            tick(None, "Duplicates (network copies)")
        v = int(r["simplemsg.verdict"])
        if v == 255:
            tick(None, "Not judged (cut short by the capture)")
        elif v != 0:
            tick(None, "Dropped by the receiver, by verdict")
            tick("Dropped by the receiver, by verdict", VERDICT_NAMES[v])
        if r["simplemsg.time"]:
            us = int(round(float(r["simplemsg.time"]) * 1e6))
            if t in STATS_TIME_GROUPS:
                group = STATS_TIME_GROUPS[t]
            elif r["simplemsg.service"]:
                group = "service " + r["simplemsg.service"]
            else:
                group = "channel " + by_frame[r["simplemsg.request_in"]]["simplemsg.channel"]
            for key in ((None, "Response time (us), by service or channel"),
                        ("Response time (us), by service or channel", group)):
                times.setdefault(key, []).append(us)
                tick(*key)
    return counts, times


def test_stats(opts):
    """-z simplemsg,tree: every count, and each response time's count, average, minimum and
    maximum, equals what the test works out from tshark's fields; on the engine run
    (types, retransmissions, duplicates, response times by service and channel), on damaged
    packets (drops by verdict) and on the engine run cut short by a snapshot length."""
    check(opts.scenario and opts.wire_sample, "--scenario and --wire-sample are needed")
    run = os.path.join(opts.work_dir, "stats-scenario.pcap")
    subprocess.run([opts.scenario, "20261124", run, run + ".jsonl"], check=True, capture_output=True)
    damaged = os.path.join(opts.work_dir, "stats-mutated.pcap")
    subprocess.run([opts.wire_sample, "mutated", "1000", "7", damaged, damaged + ".jsonl"],
                   check=True, capture_output=True)
    cut = os.path.join(opts.work_dir, "stats-cut.pcap")
    subprocess.run(["editcap", "-s", "80", run, cut], check=True, capture_output=True)
    # Shorter than a header; and an ICMP error quoting the start of a 100-byte SMP packet.
    short = os.path.join(opts.work_dir, "stats-short.pcap")
    quoted = ipv4_frame("10.0.0.1", "10.0.0.2", smp_packet("10.0.0.1", "10.0.0.2", 7, bytes(68)))
    quoted = quoted[14:14 + 20 + 40]
    icmp = struct.pack("!BBHI", 3, 3, 0, 0) + quoted
    icmp = icmp[:2] + struct.pack("!H", ipv4_checksum(icmp + b"\0" * (len(icmp) % 2))) + icmp[4:]
    write_pcap(short, [(1.0 + i, ipv4_frame("10.0.0.1", "10.0.0.2", bytes(range(1, n + 1))))
                       for i, n in enumerate((1, 10, 31))] +
               [(5.0, ipv4_frame("10.0.0.2", "10.0.0.1", icmp, proto=1))])
    rows = tshark_fields(opts, short, ["simplemsg.verdict", "_ws.expert.message"])
    check("Packet cut short by the ICMP quote" in rows[3]["_ws.expert.message"] and
          rows[3]["simplemsg.verdict"] == VERDICT_NOT_JUDGED,
          f"the SMP packet quoted in an ICMP error: {rows[3]}")
    problems, seen = [], set()
    for capture in (run, damaged, cut, short):
        os.chmod(capture, 0o644)
        shown, text = stats_tree(opts, capture)
        counts, times = expected_stats(opts, capture)
        name = os.path.basename(capture)
        for key, (count, values) in shown.items():
            if count != counts.get(key, 0):
                problems.append(f"{name}: {key[1]!r} (under {key[0]!r}) counts {count}, "
                                f"expected {counts.get(key, 0)}")
            if count:
                seen.add(key)
            if key in times:
                lst = times[key]
                if values is None or abs(values[0] - sum(lst) / len(lst)) > 0.006 or \
                        values[1] != min(lst) or values[2] != max(lst):
                    problems.append(f"{name}: {key[1]!r} shows {values}, expected avg "
                                    f"{sum(lst) / len(lst):.2f} min {min(lst)} max {max(lst)}")
        for key, count in counts.items():
            if key not in shown:
                problems.append(f"{name}: no node {key[1]!r} (under {key[0]!r}), expected {count}")
    print(f"stats tree: {len(seen)} nodes with counts compared over 4 captures; "
          f"{len(problems)} problems")
    check(not problems, "; ".join(problems[:10]))
    wanted = [(None, "Retransmissions"), (None, "Duplicates (network copies)"),
              (None, "Not judged (cut short by the capture)"),
              ("Response time (us), by service or channel", "service echo"),
              ("Response time (us), by service or channel", "channel 99"),
              ("Response time (us), by service or channel", "PROBE")] + \
             [("Dropped by the receiver, by verdict", v) for v in VERDICT_NAMES[1:]]
    missing = [k[1] for k in wanted if k not in seen]
    check(not missing, f"the captures do not exercise {missing}")


def smp_packet(src, dst, ptype, body, flags=0, dst_ep=0, src_ep=1, dst_inc=0x22, src_inc=0x11):
    """An SMP packet (SPEC 3) with its checksum over the IPv4 pseudo-header."""
    def addr(a):
        return bytes(int(x) for x in a.split("."))
    length = 32 + len(body)
    pkt = struct.pack("!BBBBHHHHIQQ", 1, ptype, flags, 0, 0, length, dst_ep, src_ep, 0, dst_inc,
                      src_inc) + body
    data = addr(src) + addr(dst) + struct.pack("!BBH", 0, 121, length) + pkt
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    checksum = (~total & 0xFFFF) or 0xFFFF
    return pkt[:4] + struct.pack("!H", checksum) + pkt[6:]


def test_resegment(opts):
    """A window sent again in larger parts after a path-MTU increase: a request of 3,000 bytes
    in parts [0,1000) and [2000,3000) (the middle one lost before the capture), then again as
    [0,2000). The larger part is a retransmission of the first (same offset) and also brings
    the missing bytes: the message is reassembled there, from all three parts. Checked as the
    golden tests check, against the engine's decode, and directly."""
    check(opts.wire_sample, "--wire-sample is needed")
    message = bytes((i * 7 + 3) & 0xFF for i in range(3000))
    c, s = "10.0.0.1", "10.0.0.2"

    def request(offset, size, flags=0):
        body = struct.pack("!IIIIIIII", 1, 1, 5, 3000, 3000, offset, 100, 0xFFFFFFFF)
        return smp_packet(c, s, 3, body + message[offset:offset + size], flags=flags)

    reply = smp_packet(s, c, 4, struct.pack("!IHHIIII", 1, 0, 0, 0, 0, 0, 0), dst_ep=1, src_ep=0,
                       dst_inc=0x11, src_inc=0x22)
    packets = [(c, s, request(0, 1000)), (c, s, request(2000, 1000)),
               (c, s, request(0, 2000, flags=1)), (s, c, reply)]
    pcap = os.path.join(opts.work_dir, "resegment.pcap")
    write_pcap(pcap, [(1.0 + 0.001 * i, ipv4_frame(a, b, pkt, ident=i + 1))
                      for i, (a, b, pkt) in enumerate(packets)])
    decoded = os.path.join(opts.work_dir, "resegment-engine.jsonl")
    subprocess.run([opts.wire_sample, "decode", pcap, decoded], check=True, capture_output=True)
    frames = read_jsonl(decoded)
    check(all(f["fields"].get("simplemsg.verdict") == "0" for f in frames),
          "the engine drops a packet of the hand-made capture")
    covered, _ = check_golden(opts, pcap, frames, "resegmented window")
    rows = tshark_fields(opts, pcap, ["simplemsg.retransmission_of", "simplemsg.reassembled_in",
                                      "simplemsg.reassembled.length", "simplemsg.message",
                                      "simplemsg.response_in"])
    check(rows[2]["simplemsg.retransmission_of"] == "1",
          f"the larger part is not marked as a retransmission of frame 1: {rows[2]}")
    check(rows[2]["simplemsg.reassembled.length"] == "3000" and
          rows[2]["simplemsg.message"] == message.hex(),
          "the message is not reassembled with the larger part's new bytes")
    check([r["simplemsg.reassembled_in"] for r in rows[:2]] == ["3", "3"],
          "the smaller parts do not point to the reassembly in frame 3")
    check(covered["reassembled"] == 1 and rows[0]["simplemsg.response_in"] == "4",
          f"covered {covered}, response_in {rows[0]['simplemsg.response_in']!r}")
    print("resegmented window: reassembled in the larger retransmission, 3000 bytes")


def test_sim(opts):
    """Golden decode of the protocol's deterministic simulation (tests/smp, `smp_sim --pcap`):
    its scripted scenario, and seeded runs with random loss and duplication at two MTUs."""
    check(opts.sim and opts.wire_sample, "--sim and --wire-sample are needed")
    runs = [("sim-scenario", ["--scenario"]),
            ("sim-seed7-mtu1500", ["--seed", "7", "--loss", "0.1", "--dup", "0.1"]),
            ("sim-seed11-mtu1280", ["--seed", "11", "--loss", "0.1", "--dup", "0.1", "--mtu", "1280"])]
    seen_types = set()
    total = {"linked": 0, "reassembled": 0, "retransmissions": 0, "acks": 0}
    for name, args in runs:
        pcap = os.path.join(opts.work_dir, name + ".pcap")
        decoded = os.path.join(opts.work_dir, name + "-engine.jsonl")
        r = subprocess.run([opts.sim, *args, "--pcap", pcap], capture_output=True, text=True)
        check(r.returncode == 0, f"smp_sim {' '.join(args)} failed: {r.stdout[-500:]}")
        os.chmod(pcap, 0o644)
        subprocess.run([opts.wire_sample, "decode", pcap, decoded], check=True, capture_output=True)
        frames = read_jsonl(decoded)
        seen_types |= {int(f["fields"]["simplemsg.type"]) for f in frames
                       if "simplemsg.type" in f["fields"]}
        covered, _ = check_golden(opts, pcap, frames, name)
        for k in total:
            total[k] += covered[k]
    # A node that crashed and came back: its new incarnation is marked where it first speaks
    # (HELLO, HELLO_ACK or RESET), linked to the old one's last frame, which names another
    # incarnation; no other frame is marked.
    pcap = os.path.join(opts.work_dir, "sim-crash.pcap")
    r = subprocess.run([opts.sim, "--seed", "2", "--mode", "crash", "--pcap", pcap],
                       capture_output=True, text=True)
    check(r.returncode == 0, f"smp_sim --seed 2 --mode crash failed: {r.stdout[-500:]}")
    os.chmod(pcap, 0o644)
    rows = tshark_fields(opts, pcap, ["simplemsg.previous_life_in", "simplemsg.src_incarnation",
                                      "simplemsg.type", "ip.src", "simplemsg.src_endpoint"])
    marked = [r for r in rows if r["simplemsg.previous_life_in"]]
    check(marked, "a crashed node's new incarnation is not marked (simplemsg.previous_life_in)")
    for m in marked:
        prev = rows[int(m["simplemsg.previous_life_in"]) - 1]
        check(m["simplemsg.type"] in ("1", "2", "12") and prev["ip.src"] == m["ip.src"] and
              prev["simplemsg.src_endpoint"] == m["simplemsg.src_endpoint"] and
              prev["simplemsg.src_incarnation"] != m["simplemsg.src_incarnation"],
              f"frame {m['frame.number']}: a reboot mark linked to frame {prev['frame.number']}")
    missing = sorted(set(TYPE_NAMES) - seen_types)
    print(f"simulation captures: {len(marked)} reboot(s) marked in a crash run; types {sorted(seen_types)}; not produced by the sim: "
          f"{[TYPE_NAMES[m] for m in missing]} (the engine scenario test covers those)")
    check(len(seen_types) >= 10, f"the simulation's captures hold only types {sorted(seen_types)}")
    check(total["linked"] >= 5 and total["reassembled"] >= 2 and total["retransmissions"] >= 1,
          f"the simulation's captures cover too little: {total}")


# ---- authentication (SPEC 3.4) -----------------------------------------------------------------

AUTH_KEY = bytes(k * 7 + 3 for k in range(32))   # every simulated node's key (tests/smp/sim.cc)
WRONG_KEY = AUTH_KEY[:31] + bytes([AUTH_KEY[31] ^ 0x01])   # one bit off
VERDICT_DROPPED_AUTH = "254"   # the dissector's verdict for the engine's dropped_auth
MAC_BAD, MAC_GOOD, MAC_UNVERIFIED = "0", "1", "2"   # simplemsg.mac.status
FLAG_AUTH, MAC_BYTES = 0x80, 16
LINK_HEADER_BYTES = {1: 14, 101: 0, 228: 0}   # Ethernet, raw IP, raw IPv4


def key_pref(key):
    return ["-o", "simplemsg.auth_key:" + key.hex()]


def read_pcap(path):
    """Classic pcap (little-endian, as the simulation and wire_sample write it): (global header,
    link type, [[record header, frame bytes]])."""
    data = open(path, "rb").read()
    head, records, pos = data[:24], [], 24
    linktype = struct.unpack("<I", head[20:24])[0] & 0xFFFF
    check(struct.unpack("<I", head[:4])[0] in (0xA1B2C3D4, 0xA1B23C4D) and
          linktype in LINK_HEADER_BYTES, f"{path}: not a little-endian Ethernet/raw IPv4 pcap")
    while pos + 16 <= len(data):
        incl = struct.unpack("<I", data[pos + 8:pos + 12])[0]
        records.append([data[pos:pos + 16], bytearray(data[pos + 16:pos + 16 + incl])])
        pos += 16 + incl
    return head, linktype, records


def write_pcap_records(path, head, records):
    with open(path, "wb") as f:
        f.write(head)
        for rh, frame in records:
            f.write(rh[:8] + struct.pack("<II", len(frame), len(frame)) + bytes(frame))
    os.chmod(path, 0o644)


def smp_of(linktype, frame):
    """(IPv4 header offset, SMP offset, source, destination) of an SMP frame, or None."""
    ip = LINK_HEADER_BYTES[linktype]
    if len(frame) < ip + 20 or frame[ip] >> 4 != 4 or frame[ip + 9] != 121:
        return None
    return ip, ip + (frame[ip] & 15) * 4, bytes(frame[ip + 12:ip + 16]), bytes(frame[ip + 16:ip + 20])


def pseudo_header(src, dst, length):
    return src + dst + struct.pack("!BBH", 0, 121, length)


def smp_checksum(src, dst, pkt):
    """SPEC 3.3, written here again: RFC 1071 over the pseudo-header and the packet with its
    checksum field as zero; a computed 0 is sent as 0xFFFF."""
    data = pseudo_header(src, dst, len(pkt)) + bytes(pkt[:4]) + b"\0\0" + bytes(pkt[6:])
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    c = ~total & 0xFFFF
    return c or 0xFFFF


def smp_mac(src, dst, pkt, key):
    """SPEC 3.4 with Python's hashlib (an implementation independent of the dissector's
    libgcrypt and of protocol/wire.cc): keyed BLAKE2s, 16-byte digest, over the pseudo-header and
    the packet up to the MAC with its checksum field as zero."""
    import hashlib
    return hashlib.blake2s(pseudo_header(src, dst, len(pkt)) + bytes(pkt[:4]) + b"\0\0" +
                           bytes(pkt[6:len(pkt) - MAC_BYTES]), key=key, digest_size=MAC_BYTES).digest()


def reseal(frame, at, src, dst):
    """Fixes the SMP checksum of the packet at `at` (what a forger without the key can do)."""
    c = smp_checksum(src, dst, frame[at:])
    frame[at + 4:at + 6] = struct.pack("!H", c)


def check_untracked(row, where):
    """A packet a receiver drops: shown, but nothing from the tracking on it (a message in one
    packet is still shown whole, and a name query or reply its name (simplemsg.service): those
    come from the packet alone)."""
    own = {"simplemsg.message"} | ({"simplemsg.service"} if row["simplemsg.type"] in ("13", "14") else set())
    shown = [name for name in [*DERIVED_FIELDS, "simplemsg.previous_life_in"]
             if row.get(name) and name not in own]
    check(not shown, f"{where}: tracked ({', '.join(shown)}) though a receiver drops it")


def test_auth(opts):
    """Authentication (SPEC 3.4) on keyed runs of the simulation (smp_sim --auth, two seeds and
    the scripted scenario, which has a name lookup and a crash): with the
    nodes' key every MAC is good and the golden checks (fields, links, reassembly, streams,
    services...) hold as on unauthenticated runs; with a wrong key every packet has a bad MAC
    (expert warning, verdict dropped-auth, untracked); without a key every MAC is unverified
    and untracked; packets altered by a forger (checksum fixed, MAC not) are bad, one stripped
    of its MAC is dropped by a keyed receiver; hashlib's BLAKE2s agrees with the dissector."""
    import hashlib
    check(opts.sim and opts.wire_sample, "--sim and --wire-sample are needed")
    check(hashlib.blake2s(b"abc").hexdigest() ==
          "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982",
          "hashlib's BLAKE2s-256 differs from RFC 7693's test vector")
    runs = [("auth-seed7", ["--seed", "7", "--loss", "0.1", "--dup", "0.1"]),
            ("auth-scenario", ["--scenario"]),
            ("auth-seed11-mtu1280", ["--seed", "11", "--loss", "0.1", "--dup", "0.1", "--mtu", "1280"])]
    total = {"linked": 0, "reassembled": 0, "retransmissions": 0, "acks": 0, "named": 0,
             "streams": 0, "pulled": 0}
    captures = []
    for name, args in runs:
        pcap = os.path.join(opts.work_dir, name + ".pcap")
        r = subprocess.run([opts.sim, *args, "--auth", "--pcap", pcap], capture_output=True, text=True)
        check(r.returncode == 0, f"smp_sim {' '.join(args)} --auth failed: {r.stdout[-500:]}")
        os.chmod(pcap, 0o644)
        captures.append(pcap)
        # Independently: every packet carries AUTH and the MAC hashlib computes with the key.
        _, linktype, records = read_pcap(pcap)
        smp_count = 0
        for i, (_, frame) in enumerate(records):
            where = smp_of(linktype, frame)
            if where is None:
                continue
            _, at, src, dst = where
            pkt = frame[at:]
            smp_count += 1
            check(pkt[2] & FLAG_AUTH and bytes(pkt[-MAC_BYTES:]) == smp_mac(src, dst, pkt, AUTH_KEY),
                  f"{name} frame {i + 1}: no AUTH, or a MAC hashlib does not compute with the key")
        # Right key: the engine's decode with mac_ok (wire_sample) against tshark, golden.
        decoded = os.path.join(opts.work_dir, name + "-engine.jsonl")
        subprocess.run([opts.wire_sample, "decode", pcap, decoded, AUTH_KEY.hex()], check=True,
                       capture_output=True)
        frames = read_jsonl(decoded)
        smp_frames = [f for f in frames if f["fields"]]
        check(len(smp_frames) == smp_count and smp_count > 100 and
              all(f["fields"]["simplemsg.verdict"] == "0" and
                  f["fields"]["simplemsg.mac.status"] == MAC_GOOD for f in smp_frames),
              f"{name}: the engine does not accept every packet of the keyed run with its key")
        covered, _ = check_golden(opts, pcap, frames, name + " (right key)", prefs=key_pref(AUTH_KEY))
        for k in total:
            total[k] += covered[k]
    check(total["linked"] >= 5 and total["reassembled"] >= 2 and total["retransmissions"] >= 1 and
          total["acks"] >= 1 and total["streams"] >= 10 and total["pulled"] >= 1 and
          total["named"] >= 1,
          f"the keyed runs cover too little: {total}")

    # Wrong key, and no key, on every run (the scenario's crash and name lookup included).
    fields = ["simplemsg.type", "simplemsg.verdict", "simplemsg.mac.status", "simplemsg.mac",
              "simplemsg.mac.computed", "simplemsg.checksum.status", "_ws.expert.message",
              "_ws.col.Info", "simplemsg.previous_life_in", *DERIVED_FIELDS]
    for pcap in captures:
        name = os.path.basename(pcap)
        _, linktype, records = read_pcap(pcap)
        rows = tshark_fields(opts, pcap, fields, extra=key_pref(WRONG_KEY))
        check(len(rows) == len(records), f"{name}: tshark shows {len(rows)} frames")
        for row, (_, frame) in zip(rows, records):
            where = f"{name}, wrong key, frame {row['frame.number']}"
            _, at, src, dst = smp_of(linktype, frame)
            check(row["simplemsg.mac.status"] == MAC_BAD and row["simplemsg.verdict"] == VERDICT_DROPPED_AUTH and
                  "Bad MAC" in row["_ws.expert.message"] and "[dropped-auth]" in row["_ws.col.Info"],
                  f"{where}: mac.status {row['simplemsg.mac.status']!r}, verdict "
                  f"{row['simplemsg.verdict']!r}, expert {row['_ws.expert.message'][:80]!r}")
            check(row["simplemsg.mac.computed"] == smp_mac(src, dst, frame[at:], WRONG_KEY).hex(),
                  f"{where}: the MAC computed differs from hashlib's")
            check_untracked(row, where)
        tree = tshark(opts, ["-r", pcap, "-2", *key_pref(WRONG_KEY), "-q", "-z", "simplemsg,tree"])[1]
        dropped = [int(line.split()[1]) for line in tree.splitlines()
                   if line.split()[:1] == ["dropped-auth"]]
        check(dropped == [len(rows)], f"{name}, wrong key: statistics count dropped-auth {dropped}, "
                                      f"not {len(rows)}")
        print(f"{name}, wrong key: {len(rows)} packets, each a bad MAC (hashlib's MAC with that "
              f"key shown), dropped-auth (as the statistics count them), untracked")
        rows = tshark_fields(opts, pcap, fields)
        for row in rows:
            where = f"{name}, no key, frame {row['frame.number']}"
            check(row["simplemsg.mac.status"] == MAC_UNVERIFIED and row["simplemsg.verdict"] == "0" and
                  "no key given" in row["_ws.expert.message"] and not row["simplemsg.mac.computed"],
                  f"{where}: mac.status {row['simplemsg.mac.status']!r}, verdict "
                  f"{row['simplemsg.verdict']!r}, expert {row['_ws.expert.message'][:80]!r}")
            check_untracked(row, where)
        print(f"{name}, no key: {len(rows)} packets, each unverified and untracked")
    # A key that is not 64 hex digits is no key (and says so).
    rows = tshark_fields(opts, captures[1], ["simplemsg.mac.status", "simplemsg.verdict",
                                             "_ws.expert.message"],
                         extra=["-o", "simplemsg.auth_key:" + AUTH_KEY.hex()[:-1] + "g"])
    check(all(r["simplemsg.mac.status"] == MAC_UNVERIFIED and r["simplemsg.verdict"] == "0" and
              "not 64 hex digits" in r["_ws.expert.message"] for r in rows),
          "a key with a non-hex digit is not reported, or taken as a key")
    # Cut short by the capture (editcap -s: raw IPv4 20 + 60 SMP bytes): with a key, each cut
    # packet's MAC is "not checked" (3), its verdict not-judged; the whole ones stay good.
    cut = os.path.join(opts.work_dir, "auth-cut.pcap")
    subprocess.run(["editcap", "-s", "80", captures[0], cut], check=True, capture_output=True)
    os.chmod(cut, 0o644)
    rows = tshark_fields(opts, cut, ["frame.len", "frame.cap_len", *fields], extra=key_pref(AUTH_KEY))
    cut_count = 0
    for row in rows:
        where = f"cut keyed capture, frame {row['frame.number']}"
        if int(row["frame.cap_len"]) < int(row["frame.len"]):
            cut_count += 1
            check(row["simplemsg.mac.status"] == "3" and row["simplemsg.verdict"] == VERDICT_NOT_JUDGED,
                  f"{where}: mac.status {row['simplemsg.mac.status']!r}, verdict {row['simplemsg.verdict']!r}")
            check_untracked(row, where)
        else:
            check(row["simplemsg.mac.status"] == MAC_GOOD, f"{where}: whole, but its MAC is not good")
    check(cut_count > 100, f"only {cut_count} packets cut at 80 bytes")
    print(f"cut keyed capture: {cut_count} packets cut short, MAC not checked, not judged, untracked")
    # With the right key, the scenario's crash is seen as without keys: the new incarnation marked.
    rows = tshark_fields(opts, captures[1], ["simplemsg.previous_life_in"], extra=key_pref(AUTH_KEY))
    check(any(r["simplemsg.previous_life_in"] for r in rows),
          "keyed scenario, right key: the crashed node's new incarnation is not marked")

    # A forger without the key: a payload byte, a header byte (priority) and a MAC byte changed,
    # each with its checksum made right again; and a packet stripped of AUTH and its MAC.
    pcap = captures[0]
    _, linktype, records = read_pcap(pcap)
    forged, kinds = {}, {}
    for i, (_, frame) in enumerate(records):
        _, at, src, dst = smp_of(linktype, frame)
        pkt, n = frame[at:], i + 1
        t = pkt[1]
        if "payload" not in kinds and t == 3 and len(pkt) > 32 + 32 + MAC_BYTES:
            frame[at + 64] ^= 0x01
            kinds["payload"] = n
        elif "header" not in kinds and t in (4, 6) and i > 50:
            frame[at + 3] ^= 0x40
            kinds["header"] = n
        elif "mac" not in kinds and t == 5:
            frame[len(frame) - 1] ^= 0x80
            kinds["mac"] = n
        elif "stripped" not in kinds and t == 9:
            ip = smp_of(linktype, frame)[0]
            del frame[len(frame) - MAC_BYTES:]
            frame[at + 2] &= ~FLAG_AUTH & 0xFF
            frame[at + 6:at + 8] = struct.pack("!H", len(frame) - at)
            frame[ip + 2:ip + 4] = struct.pack("!H", len(frame) - ip)
            frame[ip + 10:ip + 12] = b"\0\0"
            frame[ip + 10:ip + 12] = struct.pack("!H", ipv4_checksum(bytes(frame[ip:ip + 20])))
            kinds["stripped"] = n
        else:
            continue
        reseal(frame, at, src, dst)
        forged[n] = frame
    check(len(kinds) == 4, f"the run lacks a packet to forge: {kinds}")
    out = os.path.join(opts.work_dir, "auth-forged.pcap")
    head = open(pcap, "rb").read(24)
    write_pcap_records(out, head, records)
    rows = tshark_fields(opts, out, fields, extra=key_pref(AUTH_KEY))
    for row in rows:
        n = int(row["frame.number"])
        where = f"forged capture, frame {n}"
        if n == kinds["stripped"]:
            check(row["simplemsg.verdict"] == VERDICT_DROPPED_AUTH and not row["simplemsg.mac.status"] and
                  "No MAC" in row["_ws.expert.message"] and row["simplemsg.checksum.status"] == "1",
                  f"{where} (AUTH stripped): verdict {row['simplemsg.verdict']!r}, expert "
                  f"{row['_ws.expert.message'][:80]!r}")
            check_untracked(row, where)
        elif n in forged:
            _, at, src, dst = smp_of(linktype, forged[n])
            check(bytes(forged[n][-MAC_BYTES:]) != smp_mac(src, dst, forged[n][at:], AUTH_KEY),
                  f"{where}: hashlib finds the forged MAC right")
            check(row["simplemsg.checksum.status"] == "1" and row["simplemsg.mac.status"] == MAC_BAD and
                  row["simplemsg.verdict"] == VERDICT_DROPPED_AUTH and "Bad MAC" in row["_ws.expert.message"],
                  f"{where}: checksum {row['simplemsg.checksum.status']!r}, mac.status "
                  f"{row['simplemsg.mac.status']!r}, verdict {row['simplemsg.verdict']!r}")
            check_untracked(row, where)
        else:
            check(row["simplemsg.mac.status"] == MAC_GOOD and row["simplemsg.verdict"] == "0",
                  f"{where} (not forged): mac.status {row['simplemsg.mac.status']!r}")
    # The rest of the forged capture is tracked as a keyed receiver sees it (golden), the
    # forged packets left out; the stripped one is accepted by a receiver without a key.
    decoded = out + "-engine.jsonl"
    subprocess.run([opts.wire_sample, "decode", out, decoded, AUTH_KEY.hex()], check=True,
                   capture_output=True)
    frames = read_jsonl(decoded)
    dropped = sorted(f["frame"] for f in frames if f["fields"]["simplemsg.verdict"] != "0")
    check(dropped == sorted(kinds.values()), f"the engine drops frames {dropped}, not the forged {kinds}")
    check_golden(opts, out, frames, "forged capture (right key)", prefs=key_pref(AUTH_KEY))
    row = tshark_fields(opts, out, ["simplemsg.verdict", "simplemsg.mac.status"])[kinds["stripped"] - 1]
    check(row["simplemsg.verdict"] == "0" and not row["simplemsg.mac.status"],
          f"without a key, the packet stripped of its MAC: {row}")
    print(f"forger: frames {kinds} bad (checksum right, MAC not) or without MAC, dropped-auth, "
          f"untracked; the rest golden")
    # Damaged keyed packets through the MAC code: no crash, abort or hang.
    fuzz_capture(opts, pcap, "auth", seeds=8, prefs=key_pref(AUTH_KEY))


def test_linux(opts):
    """Golden decode of real traffic between Linux peers (smpctl between two namespaces, saved
    by the linux.capture test): field by field against the engine's decoder, requests linked to
    replies with response times, and the 200 kB call reassembled."""
    if not opts.capture or not os.path.exists(opts.capture):
        print(f"SKIP: no capture of Linux peers at {opts.capture} (the linux.capture test makes it; "
              "it needs root)")
        sys.exit(77)
    check(opts.wire_sample, "--wire-sample is needed")
    pcap = os.path.join(opts.work_dir, "linux-peers.pcap")
    with open(opts.capture, "rb") as src, open(pcap, "wb") as dst:
        dst.write(src.read())
    os.chmod(pcap, 0o644)
    decoded = os.path.join(opts.work_dir, "linux-peers-engine.jsonl")
    subprocess.run([opts.wire_sample, "decode", pcap, decoded], check=True, capture_output=True)
    frames = read_jsonl(decoded)
    smp_frames = [f for f in frames if f["fields"]]
    check(len(smp_frames) >= 20, f"the capture holds only {len(smp_frames)} SMP packets")
    covered, dups = check_golden(opts, pcap, frames, "linux peers")
    check(covered["linked"] >= 3, f"only {covered['linked']} requests linked to their replies")
    rows = tshark_fields(opts, pcap, ["simplemsg.reassembled.length", "simplemsg.time"])
    sizes = [int(x) for r in rows for x in r["simplemsg.reassembled.length"].split(",") if x]
    check(200000 in sizes, f"no reassembled 200000-byte message (reassembled: {sorted(set(sizes))})")
    times = [r["simplemsg.time"] for r in rows if r["simplemsg.time"]]
    check(times, "no response time shown")
    print(f"linux peers: {len(smp_frames)} SMP packets, reassembled sizes {sorted(set(sizes))}, "
          f"{len(times)} response times, {dups} network duplicates")


VERDICT_EXPERT = {
    "2": "Unknown version", "3": "Length field differs", "4": "Bad checksum",
    "5": "Unknown critical flag", "6": "Unknown message type", "7": "truncated",
    "8": "Extra bytes", "9": "impossible value",
}


def test_experts(opts):
    """Expert info: every reason the engine drops a packet has its own expert message (and only
    then); out-of-window transactions are flagged, a network copy of an early packet is not."""
    check(opts.wire_sample, "--wire-sample is needed")
    pcap = os.path.join(opts.work_dir, "experts-window.pcap")
    subprocess.run([opts.wire_sample, "window", pcap], check=True)
    os.chmod(pcap, 0o644)
    rows = tshark_fields(opts, pcap, ["simplemsg.out_of_window", "simplemsg.duplicate_of",
                                      "_ws.expert.message"])
    out = [int(r["frame.number"]) for r in rows if r["simplemsg.out_of_window"]]
    check(out == [3, 5], f"out-of-window frames {out}, expected [3, 5] (6, the stale reply to 5, "
                         f"is a failed transaction, not a second warning)")
    check(all("outside the server's window" in rows[n - 1]["_ws.expert.message"] for n in out),
          "an out-of-window frame has no expert info")
    check(rows[6]["simplemsg.duplicate_of"] == "2", "frame 7 is not marked as a copy of frame 2")
    unaddressed = [int(r["frame.number"]) for r in rows
                   if "only HELLO, PROBE and NAME_QUERY may not know" in r["_ws.expert.message"]]
    check(unaddressed == [8], f"frames flagged for destination incarnation 0: {unaddressed}, "
                              f"expected [8] (the HELLO of frame 1 names one: it may not)")

    pcap = os.path.join(opts.work_dir, "experts-mutated.pcap")
    fields = pcap + ".jsonl"
    subprocess.run([opts.wire_sample, "mutated", "1000", "31", pcap, fields], check=True,
                   capture_output=True)
    os.chmod(pcap, 0o644)
    expected = read_jsonl(fields)
    rows = tshark_fields(opts, pcap, ["simplemsg.verdict", "simplemsg.checksum.status",
                                      "_ws.expert.message"])
    problems, per_verdict = [], {}
    for e, r in zip(expected, rows):
        v = e["fields"]["simplemsg.verdict"]
        per_verdict[v] = per_verdict.get(v, 0) + 1
        messages = r["_ws.expert.message"]
        for other, text in VERDICT_EXPERT.items():
            if (other == v) != (text in messages):
                problems.append(f"frame {e['frame']}: verdict {v}, expert messages {messages[:100]!r}")
        if v == "4" and r["simplemsg.checksum.status"] != "0":
            problems.append(f"frame {e['frame']}: bad checksum but status {r['simplemsg.checksum.status']!r}")
        if v == "0" and r["simplemsg.checksum.status"] != "1":
            problems.append(f"frame {e['frame']}: good packet, checksum status {r['simplemsg.checksum.status']!r}")
    print(f"expert info: {len(rows)} damaged packets by verdict {per_verdict}, {len(problems)} problems")
    check(not problems, "; ".join(problems[:10]))
    check(len(per_verdict) >= 9, f"not every verdict covered: {per_verdict}")


def test_live(opts):
    """`./smp tshark --live` end to end: dumpcap in a namespace of our own, piped into tshark with
    the plugin; SMP packets sent there (raw IPv4, protocol 121) come out decoded."""
    import time
    if os.geteuid() != 0:
        print("SKIP: the live test makes a network namespace (needs root)")
        sys.exit(77)
    check(opts.wire_sample, "--wire-sample is needed")
    sample = os.path.join(opts.work_dir, "live-sample.pcap")
    subprocess.run([opts.wire_sample, "valid", str(len(TYPE_NAMES)), "3", sample, sample + ".jsonl"], check=True,
                   capture_output=True)
    packets = []  # the SMP bytes of each sample frame (Ethernet + IPv4 stripped)
    data = open(sample, "rb").read()
    pos = 24
    while pos + 16 <= len(data):
        incl = struct.unpack("<I", data[pos + 8:pos + 12])[0]
        packets.append(data[pos + 16 + ETH_IPV4_HEADER_BYTES:pos + 16 + incl])
        pos += 16 + incl
    ns = f"smpdiss{os.getpid() % 100000}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    reader = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        env = dict(os.environ, SMP_BUILD_DIR=os.path.dirname(os.path.abspath(opts.plugin_dir)))
        reader = subprocess.Popen([os.path.join(ROOT, "smp"), "tshark", "--live", "--netns", ns,
                                   "--iface", "lo", "-c", str(len(packets)), "-Y", "simplemsg",
                                   "-T", "fields", "-e", "simplemsg.type"],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  start_new_session=True)  # its dumpcap and tshark: one group
        sender = ("import socket,sys\n"
                  "s=socket.socket(socket.AF_INET,socket.SOCK_RAW,121)\n"
                  "for h in sys.argv[1:]: s.sendto(bytes.fromhex(h),('127.0.0.1',0))\n")
        deadline = time.monotonic() + 30
        while reader.poll() is None and time.monotonic() < deadline:
            time.sleep(1.0)  # dumpcap and tshark need a moment; resend until they have them all
            subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", sender,
                            *[p.hex() for p in packets]], check=True)
        if reader.poll() is None:
            os.killpg(reader.pid, signal.SIGKILL)  # ours: the group started above
        out, err = reader.communicate(timeout=10)
    finally:
        if reader and reader.poll() is None:
            os.killpg(reader.pid, signal.SIGKILL)
            reader.wait()
        subprocess.run(["ip", "netns", "del", ns])
    # Packets sent before the capture runs are not seen; the batch is resent until tshark has
    # as many as it waits for (-c), so the count is exact and the types are SMP types.
    types = [int(t) for t in out.split()]
    check(len(types) == len(packets), f"live capture decoded {len(types)} SMP packets, expected "
          f"{len(packets)}: {err.strip()[-300:]}")
    check(set(types) <= set(TYPE_NAMES), f"unexpected types {types}")
    print(f"live: {len(types)} SMP packets decoded from a capture in namespace {ns}: types {types}")


TESTS = {
    "live": test_live,
    "experts": test_experts,
    "linux": test_linux,
    "sim": test_sim,
    "auth": test_auth,
    "scenario": test_scenario,
    "loaded": test_loaded,
    "agreement": test_agreement,
    "fuzz": test_fuzz,
    "cut": test_cut,
    "stats": test_stats,
    "resegment": test_resegment,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--plugin-dir", required=True)
    ap.add_argument("--work-dir", required=True)
    ap.add_argument("--wire-sample", help="the wire_sample program (tests/dissector/wire_sample.cc)")
    ap.add_argument("--scenario", help="the scenario program (tests/dissector/scenario.cc)")
    ap.add_argument("--sim", help="the protocol's simulation driver (tests/smp, smp_sim)")
    ap.add_argument("--capture", help="a capture of Linux peers (linux test)")
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
