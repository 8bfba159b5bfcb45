"""Network node and cluster: lwIP set-up, `./smp up/down/status/console/capture/exec`, bench net."""
from .. import net_setup

PACKAGES = {
    "net": ["qemu-system-x86", "iproute2", "nftables", "tcpdump", "iputils-ping",
            "netcat-openbsd", "dpkg-dev", "xz-utils", "tshark", "util-linux", "gcc"],
}
SETUP_STEPS = {"net": net_setup.fetch_lwip}
TEST_GROUPS = ["net"]


def register(sub, modules):
    pass
