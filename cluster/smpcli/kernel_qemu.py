"""Booting the x86_64 kernel under QEMU (TCG), for tests, benchmarks and `./smp run-kernel`.

A helper library, not a command module. The kernel ends QEMU through the isa-debug-exit device at
port 0xf4: writing v makes QEMU exit with status (v << 1) | 1, so these are the statuses a boot
can end with (kernel/arch/x86_64/cpu.h writes the values):

    33  STATUS_SUCCESS    arch::exit(0)            (wrote 0x10)
    35  STATUS_FAILURE    arch::exit(non-zero)     (wrote 0x11; the kernel prints its reason first)
    37  STATUS_EXCEPTION  a CPU exception: a register dump is on the serial line (wrote 0x12)
     0  STATUS_RESET      a triple fault (QEMU runs with -no-reboot, so a reset ends it)
     1  QEMU itself failed (bad arguments, unreadable image): boot() raises CliError

Never -accel kvm: /dev/kvm on these machines is a slow software emulation (shared/notes/qemu.md).
"""
import os
import subprocess
import tempfile

from . import common

STATUS_SUCCESS = 33
STATUS_FAILURE = 35
STATUS_EXCEPTION = 37
STATUS_RESET = 0
STATUS_NAMES = {
    STATUS_SUCCESS: "success",
    STATUS_FAILURE: "kernel reported failure",
    STATUS_EXCEPTION: "CPU exception",
    STATUS_RESET: "triple fault (reset)",
}

QEMU = "qemu-system-x86_64"
DEFAULT_MEMORY_MB = 64
DEFAULT_TIMEOUT_S = 60


def image_path(name="kernel.elf"):
    """The bootable image in the build folder: kernel.elf (the kernel) or arch-selftest.elf."""
    return os.path.join(common.build_dir(), "kernel", name)


def describe_status(status):
    return STATUS_NAMES.get(status, f"unexpected QEMU exit status {status}")


def base_args(image, cmdline, icount=False, memory_mb=DEFAULT_MEMORY_MB):
    """QEMU's argument list for one node without its serial port or devices (callers add
    -serial and, for network nodes, -netdev/-device)."""
    args = [QEMU, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-m", str(memory_mb),
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-kernel", image, "-append", cmdline]
    if icount:
        # One guest instruction per virtual nanosecond: rdtsc deltas count instructions exactly.
        args += ["-icount", "shift=0"]
    return args


def boot(image, cmdline, icount=False, timeout_s=DEFAULT_TIMEOUT_S, extra_args=(),
         memory_mb=DEFAULT_MEMORY_MB, echo=False):
    """Boots image with the command line until the kernel ends QEMU.

    Returns (exit_status, serial_text). Raises common.CliError (one line) when QEMU cannot run or
    the kernel does not end within timeout_s; the QEMU process this started is always ended, by
    its PID. echo=True also copies the serial output to our stdout as it arrives.
    """
    if not os.path.isfile(image):
        common.die(f"kernel image not found: {image} (build it: ./smp build kernel_image)")
    with tempfile.TemporaryDirectory(prefix="smp-qemu-") as tmp:
        serial_path = os.path.join(tmp, "serial.txt")
        args = base_args(image, cmdline, icount, memory_mb)
        args += ["-serial", f"file:{serial_path}", *extra_args]
        if echo:
            return _boot_echo(args, serial_path, timeout_s)
        try:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
        except FileNotFoundError:
            common.die(f"{QEMU} not found (./smp setup kernel)")
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _end(proc)
            text = _read(serial_path)
            last = text.strip().splitlines()[-1:] or ["(no serial output)"]
            common.die(f"kernel did not end within {timeout_s} s (cmdline '{cmdline}'); "
                       f"last serial line: {last[0]}")
        finally:
            _end(proc)
        text = _read(serial_path)
        if proc.returncode == 1:
            first = (err or "").strip().splitlines()[:1] or ["no message"]
            common.die(f"QEMU failed: {first[0]}")
        return proc.returncode, text


def _boot_echo(args, serial_path, timeout_s):
    # The serial file is followed while QEMU runs, so a person sees the boot live. QEMU's own
    # messages go to a file too (a pipe nobody reads could fill and stall it).
    import sys
    import time
    err_path = serial_path + ".stderr"
    with open(err_path, "w") as err_file:
        try:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stderr=err_file)
        except FileNotFoundError:
            common.die(f"{QEMU} not found (./smp setup kernel)")
    deadline = time.monotonic() + timeout_s
    pos = 0
    try:
        while True:
            done = proc.poll() is not None
            chunk = _read(serial_path)[pos:]
            if chunk:
                sys.stdout.write(chunk)
                sys.stdout.flush()
                pos += len(chunk)
            if done:
                break
            if time.monotonic() > deadline:
                common.die(f"kernel did not end within {timeout_s} s")
            time.sleep(0.05)
    finally:
        _end(proc)
    if proc.returncode == 1:
        first = _read(err_path).strip().splitlines()[:1] or ["no message"]
        common.die(f"QEMU failed: {first[0]}")
    return proc.returncode, _read(serial_path)


def _end(proc):
    """Ends the QEMU we started (by its PID, through the Popen object) and reaps it."""
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _read(path):
    try:
        with open(path, "r", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""
