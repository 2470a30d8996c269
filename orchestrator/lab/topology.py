"""The lab's plan: names, roles, addresses, ports and jump chains (pure; no side effects).

Network-namespace mode (addresses are link-local, on the lab's own links only)::

    root namespace  sg-br0 169.254.10.1/24
      ├─ host01..hostNN       169.254.10.11+   (public)
      └─ bastion              169.254.10.2     bridge br1 169.254.20.1/24 inside it
           ├─ private01..MM   169.254.20.11+   (only through bastion)
           └─ bastion2        169.254.20.2     bridge br2 169.254.30.1/24 inside it
                └─ deep01..KK 169.254.30.11+   (only through bastion, bastion2)
    loopback machine          127.0.0.1:2299   (lo001..loNNN, shares the root namespace)

In the loopback fallback every machine is an sshd on 127.0.0.1 with its own port (2201+).
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from orchestrator.lab.model import Kind, LabHost, LabSpec, Role

BRIDGE = "sg-br0"
PUBLIC_NET = "169.254.10"
PRIVATE_NET = "169.254.20"
DEEP_NET = "169.254.30"
ROOT_ADDRESS = f"{PUBLIC_NET}.1"
BASTION_ADDRESS = f"{PUBLIC_NET}.2"
BASTION2_ADDRESS = f"{PRIVATE_NET}.2"
FIRST_HOST = 11
HIDDEN_NETS = (f"{PRIVATE_NET}.0/24", f"{DEEP_NET}.0/24")  # unreachable from the root ns
LOOPBACK = "loopback"  # name of the machine behind lo001..loNNN
PREFIX = "sg-"  # every name the lab gives the machine (netns, links, mounts) starts with it


def names(prefix: str, count: int, width: int = 2) -> list[str]:
    width = max(width, len(str(count)))
    return [f"{prefix}{i:0{width}d}" for i in range(1, count + 1)]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as sshd binds
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def plan(
    spec: LabSpec,
    kind: Kind,
    loopback_kind: Kind,
    *,
    user: str,
    port_free: Callable[[int], bool] = port_is_free,
) -> list[LabHost]:
    """Every machine of the lab, in start-up and inventory order.

    ``kind`` builds the host/bastion/private/deep machines, ``loopback_kind`` the loopback
    machine. A bastion exists whenever there is any non-loopback host.
    """
    publics = names("host", spec.hosts)
    privates = names("private", spec.private)
    deeps = names("deep", spec.deep)
    with_bastion = bool(publics or privates or deeps)
    with_bastion2 = bool(deeps)

    taken: set[int] = set()

    def next_port(start: int) -> int:
        port = start
        while port in taken or not port_free(port):
            port += 1
            if port > 65535:
                raise OSError("no free port on 127.0.0.1")
        taken.add(port)
        return port

    def machine(name: str, role: Role, address: str, jump: tuple[str, ...] = ()) -> LabHost:
        if kind == "netns":
            return LabHost(
                name=name,
                role=role,
                kind=kind,
                address=address,
                port=22,
                user=user,
                jump=jump,
                netns=PREFIX + name,
            )
        return LabHost(
            name=name,
            role=role,
            kind=kind,
            address="127.0.0.1",
            port=next_port(spec.base_port),
            user=user,
            jump=jump,
        )

    hosts: list[LabHost] = []
    hosts += [machine(n, "public", f"{PUBLIC_NET}.{FIRST_HOST + i}") for i, n in enumerate(publics)]
    if with_bastion:
        hosts.append(machine("bastion", "bastion", BASTION_ADDRESS))
    if with_bastion2:
        hosts.append(machine("bastion2", "bastion", BASTION2_ADDRESS, ("bastion",)))
    hosts += [
        machine(n, "private", f"{PRIVATE_NET}.{FIRST_HOST + i}", ("bastion",))
        for i, n in enumerate(privates)
    ]
    hosts += [
        machine(n, "deep", f"{DEEP_NET}.{FIRST_HOST + i}", ("bastion", "bastion2"))
        for i, n in enumerate(deeps)
    ]
    if spec.loopback_hosts:
        hosts.append(
            LabHost(
                name=LOOPBACK,
                role="loopback",
                kind=loopback_kind,
                address="127.0.0.1",
                port=next_port(spec.loopback_port),
                user=user,
                entries=tuple(names("lo", spec.loopback_hosts, width=3)),
            )
        )
    return hosts


def by_name(hosts: list[LabHost]) -> dict[str, LabHost]:
    return {h.name: h for h in hosts}


def jump_endpoints(host: LabHost, hosts: dict[str, LabHost]) -> list[str]:
    """``user@address[:port]`` of each hop in front of ``host`` (for ProxyJump)."""
    out = []
    for hop_name in host.jump:
        hop = hosts[hop_name]
        port = "" if hop.port == 22 else f":{hop.port}"
        out.append(f"{hop.user}@{hop.address}{port}")
    return out
