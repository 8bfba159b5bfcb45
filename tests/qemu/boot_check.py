#!/usr/bin/env python3
"""Boots a kernel image once in QEMU and checks how it ended: the exit status, and lines that
must (or must not) appear on its serial output. Used by tests/qemu/CMakeLists.txt.

  boot_check.py --image IMG --cmdline "test=1" --status 33 --expect 'REGEX' ... [--reject 'REGEX']
               [--expect-count 'REGEX' GROUP MIN] [--qemu-arg ARG ...] [--icount] [--timeout S]

Exit 0 when every check holds; otherwise prints what failed and the serial text, and exits 1.
"""
import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "cluster"))
from smpcli import common, kernel_qemu  # noqa: E402


def main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--image", required=True)
    p.add_argument("--cmdline", default="")
    p.add_argument("--status", type=int, required=True, help="expected QEMU exit status")
    p.add_argument("--expect", action="append", default=[], help="regex that must match")
    p.add_argument("--reject", action="append", default=[], help="regex that must not match")
    p.add_argument("--at-least", nargs=3, action="append", default=[],
                   metavar=("REGEX", "GROUP", "MIN"),
                   help="regex whose numbered group must be an integer >= MIN")
    p.add_argument("--qemu-arg", action="append", default=[])
    p.add_argument("--icount", action="store_true")
    p.add_argument("--timeout", type=int, default=60)
    args = p.parse_args(argv)

    try:
        status, serial = kernel_qemu.boot(args.image, args.cmdline, icount=args.icount,
                                          timeout_s=args.timeout, extra_args=args.qemu_arg)
    except common.CliError as e:
        print(f"boot_check: {e}")
        return 1
    problems = []
    if status != args.status:
        problems.append(f"QEMU exit status {status} ({kernel_qemu.describe_status(status)}), "
                        f"expected {args.status} ({kernel_qemu.describe_status(args.status)})")
    for rx in args.expect:
        if not re.search(rx, serial, re.MULTILINE):
            problems.append(f"serial output lacks /{rx}/")
    for rx in args.reject:
        if re.search(rx, serial, re.MULTILINE):
            problems.append(f"serial output has /{rx}/")
    for rx, group, minimum in args.at_least:
        m = re.search(rx, serial, re.MULTILINE)
        if not m or int(m.group(int(group))) < int(minimum):
            problems.append(f"/{rx}/ group {group} is not >= {minimum}")
    print(f"boot_check: cmdline '{args.cmdline}': QEMU exit status {status} "
          f"({kernel_qemu.describe_status(status)})")
    if problems:
        print("---- serial output ----")
        print(serial, end="" if serial.endswith("\n") else "\n")
        print("-----------------------")
        for line in problems:
            print(f"boot_check: FAILED: {line}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
