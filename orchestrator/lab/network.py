"""The lab's links, bridges and network namespaces (``ip`` batches), and their teardown.

Everything the lab creates in the machine's own namespace is named ``sg-*`` (network
namespaces ``sg-<host>``, the bridge ``sg-br0``, veth ends ``sg-<host>``), plus two
``unreachable`` routes (protocol ``83``) that keep the hidden subnets from leaking to the
default route. The bridge's alias records which lab dir owns them, so ``down`` can tell a
crashed lab's leftovers from another lab that is still up.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import LabError
from orchestrator.lab import procs
from orchestrator.lab.model import LabHost
from orchestrator.lab.topology import (
    BRIDGE,
    DEEP_NET,
    HIDDEN_NETS,
    PREFIX,
    PRIVATE_NET,
    ROOT_ADDRESS,
)

NETNS_DIR = Path("/run/netns")
SYS_NET = Path("/sys/class/net")
ROUTE_PROTO = "83"  # tags the lab's routes in the root namespace

# A netns starts with no ruleset; give each host a minimal accept-all one to inspect and edit.
NFT_RULES = """\
table inet filter {
    chain input { type filter hook input priority filter; policy accept; }
    chain forward { type filter hook forward priority filter; policy accept; }
    chain output { type filter hook output priority filter; policy accept; }
}
"""

# bridge inside a bastion's namespace: (bridge, its address, the role of the hosts behind it)
_INNER = {"bastion": ("br1", f"{PRIVATE_NET}.1/24"), "bastion2": ("br2", f"{DEEP_NET}.1/24")}


def netns_available() -> bool:
    """Root, ``ip`` present, and ``ip netns add`` works here."""
    if os.geteuid() != 0:
        return False
    probe = f"{PREFIX}probe-{os.getpid()}"
    try:
        ok = procs.run(["ip", "netns", "add", probe], check=False).returncode == 0
    except LabError:
        return False
    if ok:
        procs.run(["ip", "netns", "del", probe], check=False)
    return ok


def _behind(host: LabHost, hosts: list[LabHost]) -> list[LabHost]:
    """The machines on the bridge inside ``host`` (a bastion)."""
    if host.name == "bastion":
        return [h for h in hosts if h.name == "bastion2" or h.role == "private"]
    if host.name == "bastion2":
        return [h for h in hosts if h.role == "deep"]
    return []


def build(hosts: list[LabHost], owner: Path) -> None:
    """Create the bridge, every namespace and every veth (addresses inside come later)."""
    netns_hosts = [h for h in hosts if h.kind == "netns"]
    if not netns_hosts:
        return
    root = [
        f"link add {BRIDGE} type bridge forward_delay 0",
        f"addr add {ROOT_ADDRESS}/24 dev {BRIDGE}",
        f"link set {BRIDGE} up",
    ]
    root += [f"route add unreachable {net} proto {ROUTE_PROTO}" for net in HIDDEN_NETS]
    root += [f"netns add {h.netns}" for h in netns_hosts]
    for h in netns_hosts:
        if h.role == "public" or h.name == "bastion":
            root += [
                f"link add {h.netns} type veth peer name eth0 netns {h.netns}",
                f"link set {h.netns} master {BRIDGE}",
                f"link set {h.netns} up",
            ]
    procs.run(["ip", "-batch", "-"], input="\n".join(root) + "\n")
    with contextlib.suppress(OSError):  # only a label: without it leftovers count as orphans
        (SYS_NET / BRIDGE / "ifalias").write_text(str(owner))
    for bastion in [h for h in netns_hosts if h.name in _INNER]:
        behind = _behind(bastion, netns_hosts)
        if not behind:
            continue
        bridge, address = _INNER[bastion.name]
        lines = [
            f"link add {bridge} type bridge forward_delay 0",
            f"addr add {address} dev {bridge}",
            f"link set {bridge} up",
        ]
        for h in behind:
            lines += [
                f"link add v-{h.name} type veth peer name eth0 netns {h.netns}",
                f"link set v-{h.name} master {bridge}",
                f"link set v-{h.name} up",
            ]
        procs.run(["ip", "-n", str(bastion.netns), "-batch", "-"], input="\n".join(lines) + "\n")


def host_batch(host: LabHost) -> str:
    """``ip -batch`` run inside the host's namespace by its init."""
    return (
        "\n".join(
            [
                "link set lo up",
                f"addr add {host.address}/24 dev eth0",
                "link set eth0 up",
            ]
        )
        + "\n"
    )


@dataclass
class Leftovers:
    netns: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)
    owner: str | None = None  # lab dir recorded on the bridge

    @property
    def empty(self) -> bool:
        return not (self.netns or self.links or self.routes)


def discover() -> Leftovers:
    """The ``sg-*`` namespaces, links and tagged routes present on the machine now."""
    found = Leftovers()
    if NETNS_DIR.is_dir():
        found.netns = sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(PREFIX))
    if SYS_NET.is_dir():
        found.links = sorted(n for n in os.listdir(SYS_NET) if n.startswith(PREFIX))
    if found.links or found.netns or os.geteuid() == 0:
        try:
            out = procs.run(["ip", "route", "show", "proto", ROUTE_PROTO], check=False).stdout
        except LabError:
            out = ""
        found.routes = [line.strip() for line in out.splitlines() if line.strip()]
    try:
        found.owner = (SYS_NET / BRIDGE / "ifalias").read_text().strip() or None
    except OSError:
        found.owner = None
    return found


def kill_netns_processes(netns: list[str]) -> list[int]:
    """SIGKILL every process living in one of these namespaces; returns their pids."""
    ids = {}
    for name in netns:
        try:
            st = os.stat(NETNS_DIR / name)
        except OSError:
            continue
        ids[(st.st_dev, st.st_ino)] = name
    found = procs.pids_in_ns("net", ids)
    pids = [pid for group in found.values() for pid in group if pid != os.getpid()]
    procs.kill(pids)
    procs.wait_gone(pids)
    return pids


def teardown(found: Leftovers) -> None:
    """Delete the links, namespaces and routes in ``found`` (errors ignored: best effort)."""
    links = [n for n in found.links if n != BRIDGE] + [n for n in found.links if n == BRIDGE]
    lines = [f"link del {n}" for n in links]
    lines += [f"netns del {n}" for n in found.netns]
    lines += [f"route del {r} proto {ROUTE_PROTO}" for r in found.routes]
    if lines:
        procs.run(["ip", "-force", "-batch", "-"], input="\n".join(lines) + "\n", check=False)
