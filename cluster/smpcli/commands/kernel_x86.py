"""The x86_64 kernel under QEMU: its packages, and `./smp run-kernel` to boot it by hand."""
from .. import common
from .. import kernel_qemu

PACKAGES = {"kernel": ["qemu-system-x86", "binutils"]}
TEST_GROUPS = ["kernel"]


def cmd_run_kernel(args):
    common.setup(["build", "kernel"])
    target = "kernel_arch_selftest_image" if args.selftest else "kernel_image"
    common.cmake_build([target])
    image = kernel_qemu.image_path("arch-selftest.elf" if args.selftest else "kernel.elf")
    cmdline = " ".join(args.cmdline)
    if not cmdline and not args.selftest:
        # Booted as a node, the kernel needs its address (ip=...): with nothing asked, it runs
        # its own test cases, which need none.
        cmdline = "test=1"
        common.info("no command line: running the kernel's test cases (test=1); a node boots with "
                    "name=NAME ip=A.B.C.D/P [mac=...], an IPC benchmark with bench=ipc")
    extra = ["-device", "e1000,romfile="] if args.selftest else []
    status, _ = kernel_qemu.boot(image, cmdline, icount=args.icount, timeout_s=args.timeout,
                                 extra_args=extra, echo=True)
    common.info(f"QEMU exit status {status}: {kernel_qemu.describe_status(status)}")
    return 0 if status == kernel_qemu.STATUS_SUCCESS else 1


def register(sub, modules):
    p = sub.add_parser("run-kernel", help="boot the kernel once in QEMU, its serial on the terminal")
    p.add_argument("cmdline", nargs="*", help="kernel command line words (key=value ...; none: test=1, "
                                              "the kernel's own test cases)")
    p.add_argument("--icount", action="store_true", help="-icount shift=0 (instruction clock)")
    p.add_argument("--selftest", action="store_true", help="boot the port's self-test image")
    p.add_argument("--timeout", type=int, default=60, help="seconds before QEMU is ended")
    p.set_defaults(func=cmd_run_kernel)
