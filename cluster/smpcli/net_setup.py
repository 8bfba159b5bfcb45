"""`./smp setup net`: lwIP 2.1.3 from Debian's `lwip` source package, unpacked into .deps/lwip.

The deb-src index lives in a private apt folder inside .deps/ (never /etc/apt): apt reads our own
SourceParts and list directory, so the machine's apt configuration is left untouched.
"""
import glob
import os
import shutil
import subprocess

from . import common

LWIP_DIR = os.path.join(common.DEPS_DIR, "lwip")
APT_DIR = os.path.join(common.DEPS_DIR, "apt-lwip")
SYSTEM_SOURCES = "/etc/apt/sources.list.d/debian.sources"
# Marker written after a complete unpack, so an interrupted set-up is redone, not trusted.
DONE_MARK = os.path.join(LWIP_DIR, ".smp-unpacked")


def _private_sources():
    """deb-src stanzas copied from the system's deb822 file (or a classic sources.list)."""
    parts = os.path.join(APT_DIR, "parts")
    os.makedirs(parts, exist_ok=True)
    os.makedirs(os.path.join(APT_DIR, "lists", "partial"), exist_ok=True)
    if os.path.exists(SYSTEM_SOURCES):
        with open(SYSTEM_SOURCES) as f:
            text = f.read()
        lines = ["Types: deb-src" if line.strip() == "Types: deb" else line
                 for line in text.splitlines()]
        with open(os.path.join(parts, "src.sources"), "w") as f:
            f.write("\n".join(lines) + "\n")
        return
    classic = "/etc/apt/sources.list"
    if not os.path.exists(classic):
        common.die("no apt sources found to derive deb-src entries from")
    with open(classic) as f:
        src = [line.replace("deb ", "deb-src ", 1) for line in f
               if line.startswith("deb ")]
    with open(os.path.join(parts, "src.list"), "w") as f:
        f.writelines(src)


def _apt_options():
    return ["-o", "Dir::Etc::SourceList=/dev/null",
            "-o", f"Dir::Etc::SourceParts={os.path.join(APT_DIR, 'parts')}",
            "-o", f"Dir::State::Lists={os.path.join(APT_DIR, 'lists')}"]


def fetch_lwip():
    """Idempotent: does nothing once .deps/lwip holds a complete unpacked tree."""
    if os.path.exists(DONE_MARK) and os.path.exists(os.path.join(LWIP_DIR, "src", "Filelists.cmake")):
        return
    common.info("fetching lwIP source (Debian package 'lwip') into .deps/lwip")
    _private_sources()
    src_dir = os.path.join(APT_DIR, "src")
    os.makedirs(src_dir, exist_ok=True)
    log = os.path.join(common.DEPS_DIR, "lwip-setup.log")
    with open(log, "w") as out:
        opts = _apt_options()
        common.run(["apt-get", *opts, "update"], stdout=out, stderr=subprocess.STDOUT, check=False)
        r = common.run(["apt-get", *opts, "source", "--download-only", "lwip"], cwd=src_dir,
                       stdout=out, stderr=subprocess.STDOUT, check=False)
        if r.returncode != 0:
            common.die(f"apt-get source lwip failed; see {log}")
        dscs = sorted(glob.glob(os.path.join(src_dir, "lwip_2.1.3*.dsc")))
        if not dscs:
            common.die(f"no lwip 2.1.3 .dsc downloaded; see {log}")
        if os.path.exists(LWIP_DIR):
            shutil.rmtree(LWIP_DIR)
        r = common.run(["dpkg-source", "-x", dscs[-1], LWIP_DIR], stdout=out,
                       stderr=subprocess.STDOUT, check=False)
        if r.returncode != 0:
            common.die(f"dpkg-source -x failed; see {log}")
    if not os.path.exists(os.path.join(LWIP_DIR, "src", "Filelists.cmake")):
        common.die(f"unpacked lwIP has no src/Filelists.cmake; see {log}")
    with open(DONE_MARK, "w") as f:
        f.write(os.path.basename(dscs[-1]) + "\n")
    common.info("lwIP source ready in .deps/lwip")
