"""setup, build, test and bench: the commands every area shares."""
import os
import subprocess

from .. import common


def test_groups(modules):
    groups = ["build"]
    for m in modules:
        groups += [g for g in getattr(m, "TEST_GROUPS", []) if g not in groups]
    return groups


def cmd_setup(args):
    groups = args.groups or sorted(common.all_groups())
    common.setup(groups)
    common.info("set-up complete: " + ", ".join(groups))


def cmd_build(args):
    common.setup(test_groups(args.modules))
    common.cmake_build(args.targets)


def cmd_test(args):
    common.setup(test_groups(args.modules))
    bdir = common.cmake_build()
    cmd = ["ctest", "--test-dir", bdir, "--output-on-failure", "-j", common.jobs(),
           "--timeout", str(args.timeout)]
    if args.regex:
        cmd += ["-R", args.regex]
    if args.label:
        cmd += ["-L", args.label]
    result = subprocess.run(cmd)
    return result.returncode


def cmd_bench(args):
    benches, checks = {}, {}
    for m in args.modules:
        benches.update(getattr(m, "BENCHES", {}))
        checks.update(getattr(m, "BENCH_CHECKS", {}))
    names = args.names or sorted(benches)
    for name in names:
        if name not in benches:
            common.die(f"unknown benchmark: {name} (known: {', '.join(sorted(benches)) or 'none'})", 2)
    for name in names:  # what a bench needs, before any of them runs
        if name in checks:
            checks[name]()
    for name in names:
        print(f"== bench {name} ==", flush=True)
        benches[name](args)


def register(sub, modules):
    p = sub.add_parser("setup", help="install what the project needs (apt packages, lwIP source)")
    p.add_argument("groups", nargs="*", help="only these groups (default: all)")
    p.set_defaults(func=cmd_setup)

    p = sub.add_parser("build", help="set up and build everything (or the given targets)")
    p.add_argument("targets", nargs="*")
    p.set_defaults(func=cmd_build, modules=modules)

    p = sub.add_parser("test", help="set up, build and run every test (ctest)")
    p.add_argument("-R", dest="regex", help="only tests whose name matches REGEX")
    p.add_argument("-L", dest="label", help="only tests with this ctest label")
    p.add_argument("--timeout", type=int, default=1200, help="per-test guard in seconds")
    p.set_defaults(func=cmd_test, modules=modules)

    p = sub.add_parser("bench", help="run benchmarks: ./smp bench [NAME...]")
    p.add_argument("names", nargs="*")
    p.set_defaults(func=cmd_bench, modules=modules)
