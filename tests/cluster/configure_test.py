#!/usr/bin/env python3
"""Configuring the build prints nothing on stderr (README: a command's failure is one line, so
anything on stderr reads as one): a fresh CMake configure of this checkout, into a folder of its
own, must write nothing there and succeed.

  configure_test.py
Exit status 0 = pass, 1 = failure with what stderr said.
"""
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))


def main():
    with tempfile.TemporaryDirectory(prefix="smp-configure-") as build:
        gen = ["-G", "Ninja"] if subprocess.run(["which", "ninja"], capture_output=True).returncode == 0 else []
        r = subprocess.run(["cmake", "-S", ROOT, "-B", build, *gen], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        print(f"FAIL: cmake exited {r.returncode}: {r.stderr.strip()[-2000:]}")
        return 1
    if r.stderr.strip():
        print(f"FAIL: cmake wrote to stderr:\n{r.stderr.strip()[-2000:]}")
        return 1
    print("ok: a fresh configure wrote nothing on stderr")
    return 0


if __name__ == "__main__":
    sys.exit(main())
