"""Helpers every command shares: paths, running programs, one-line errors, set-up and build."""
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
DEPS_DIR = os.path.join(ROOT, ".deps")    # third-party sources unpacked by setup (lwIP)
RUN_DIR = os.path.join(ROOT, ".run")      # state of running clusters, captures, logs


class CliError(Exception):
    """An error reported to the user as one line, with a non-zero exit status."""

    def __init__(self, message, status=1):
        super().__init__(message)
        self.status = status


def die(message, status=1):
    raise CliError(message, status)


def info(message):
    print(f"smp: {message}", flush=True)


def build_dir():
    """The build folder; SMP_BUILD_DIR overrides it (helpers working side by side use their own)."""
    return os.path.abspath(os.environ.get("SMP_BUILD_DIR", os.path.join(ROOT, "build")))


def run(cmd, check=True, **kwargs):
    """Runs a command, echoing nothing; a failure becomes a one-line CliError."""
    try:
        result = subprocess.run(cmd, **kwargs)
    except FileNotFoundError:
        die(f"command not found: {cmd[0]}")
    if check and result.returncode != 0:
        die(f"'{' '.join(map(str, cmd))}' failed with status {result.returncode}", result.returncode)
    return result


def is_root():
    return os.geteuid() == 0


def jobs():
    return str(os.cpu_count() or 2)


# ---- set-up: apt packages by name, grouped by what needs them -------------------------------

# Every command module may add groups with PACKAGES = {"group": ["pkg", ...]} and set-up steps
# that are not apt packages with SETUP_STEPS = {"group": callable}. main.py collects them.
PACKAGES = {
    "build": ["cmake", "make", "g++", "libgtest-dev", "python3"],
}
SETUP_STEPS = {}


def missing_packages(packages):
    missing = []
    for name in packages:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name],
                             capture_output=True, text=True)
        if "install ok installed" not in out.stdout:
            missing.append(name)
    return missing


def apt_install(packages):
    missing = missing_packages(sorted(set(packages)))
    if not missing:
        return
    if not is_root():
        die("missing Debian packages (run as root, or install them): " + " ".join(missing))
    info("installing " + " ".join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log = os.path.join(RUN_DIR, "apt.log")
    os.makedirs(RUN_DIR, exist_ok=True)
    with open(log, "a") as out:
        run(["apt-get", "update"], stdout=out, stderr=subprocess.STDOUT, env=env)
        result = run(["apt-get", "install", "-y", "--no-install-recommends", *missing],
                     check=False, stdout=out, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        die(f"apt-get install failed; see {log}")


def setup(groups):
    """Installs what the named groups need; idempotent and quiet when nothing is missing."""
    unknown = [g for g in groups if g not in PACKAGES and g not in SETUP_STEPS]
    if unknown:
        die(f"unknown set-up group: {unknown[0]} (known: {', '.join(sorted(all_groups()))})", 2)
    apt_install([p for g in groups for p in PACKAGES.get(g, [])])
    for g in groups:
        step = SETUP_STEPS.get(g)
        if step:
            step()


def all_groups():
    return set(PACKAGES) | set(SETUP_STEPS)


def cmake_build(targets=None):
    """Configures (once) and builds the whole tree, or just the given targets."""
    bdir = build_dir()
    if not os.path.exists(os.path.join(bdir, "CMakeCache.txt")):
        gen = ["-G", "Ninja"] if shutil.which("ninja") else []
        run(["cmake", "-S", ROOT, "-B", bdir, *gen])
    cmd = ["cmake", "--build", bdir, "--parallel", jobs()]
    for t in targets or []:
        cmd += ["--target", t]
    run(cmd)
    return bdir


def exec_replace(argv):
    """Replaces this process with argv (same PID, so signals and the exit status are argv's);
    returns only if it cannot start, with a one-line error."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        die(f"cannot run {argv[0]}: {e.strerror or e}")
