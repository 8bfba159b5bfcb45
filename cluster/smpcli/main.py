"""Dispatches `./smp COMMAND ...` to the modules in smpcli/commands/.

Each module defines register(subparsers) and may also define:
  PACKAGES = {"group": [...]}      apt packages a group of commands needs (see common.setup)
  SETUP_STEPS = {"group": fn}      set-up that is not an apt package (lwIP's source, ...)
  TEST_GROUPS = ["group", ...]      groups `./smp test` needs
  BENCHES = {"name": fn(args)}      benchmarks run by `./smp bench NAME`
  BENCH_CHECKS = {"name": fn()}     what a benchmark needs, checked before any of the run starts
"""
import argparse
import importlib
import os
import pkgutil
import signal
import sys

from . import common
from . import commands as commands_pkg


def load_modules():
    modules = []
    for m in sorted(pkgutil.iter_modules(commands_pkg.__path__), key=lambda m: m.name):
        modules.append(importlib.import_module(f"{commands_pkg.__name__}.{m.name}"))
    return modules


class Parser(argparse.ArgumentParser):
    def error(self, message):
        # One line and status 2, as for every other bad argument.
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def main(argv):
    modules = load_modules()
    for m in modules:
        for group, pkgs in getattr(m, "PACKAGES", {}).items():
            common.PACKAGES.setdefault(group, []).extend(pkgs)
        common.SETUP_STEPS.update(getattr(m, "SETUP_STEPS", {}))

    parser = Parser(prog="smp", description="simplemsg: build, test and run a cluster of nodes.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for m in modules:
        m.register(sub, modules)
    if argv[:1] == ["help"]:
        argv = [*argv[1:2], "--help"]
    try:
        args = parser.parse_args(argv)  # --help prints here
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return args.func(args) or 0
    except common.CliError as e:
        print(f"smp: {e}", file=sys.stderr)
        return e.status
    except BrokenPipeError:
        # Our output went to a reader that stopped (`./smp status --json | head`): end quietly,
        # as a Unix tool killed by SIGPIPE would, and keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as e:
        # A file or folder the user named (or the system) refused: one line, not a traceback.
        where = f"{e.filename}: " if e.filename else ""
        print(f"smp: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("smp: interrupted", file=sys.stderr)
        return 130
