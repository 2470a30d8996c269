"""What a lab is made of: the spec asked for, the hosts planned, and what ``up``/``status`` report.

Two words are kept apart throughout the package:

* a *machine* is one running ``sshd`` the lab built: a container (``netns`` or ``shared``
  kind) or a plain process (``process`` kind);
* an *inventory host* is one entry of the generated inventory. Every machine is one
  inventory host, except the loopback machine, which N entries ``lo001..loNNN`` point at.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from orchestrator.errors import LabError

Role = Literal["public", "bastion", "private", "deep", "loopback"]
Mode = Literal["auto", "netns", "loopback"]
# How a machine is built:
#   netns   - container with its own network namespace (isolated; root only)
#   shared  - container sharing the machine's network namespace (own hostname, users and
#             copy-on-write root, but no network isolation; root only)
#   process - a plain sshd run as the current user on 127.0.0.1 (no isolation at all)
Kind = Literal["netns", "shared", "process"]

MAX_PER_SUBNET = 240  # addresses .11 .. .250 of a /24


@dataclass(frozen=True)
class LabSpec:
    """The lab to build. ``mode="auto"`` uses network namespaces when root, else loopback."""

    hosts: int = 3
    private: int = 2
    deep: int = 1
    loopback_hosts: int = 0
    mode: Mode = "auto"
    loopback_port: int = 2299  # the loopback machine's port (next free one if taken)
    base_port: int = 2201  # first port of the loopback fallback's per-host sshds
    timeout: float = 30.0  # seconds for every sshd to accept connections

    def validate(self) -> None:
        for name in ("hosts", "private", "deep", "loopback_hosts"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise LabError(f"lab spec: {name} must be a whole number >= 0, not {value!r}")
        for name in ("hosts", "private", "deep"):
            if getattr(self, name) > MAX_PER_SUBNET:
                raise LabError(f"lab spec: at most {MAX_PER_SUBNET} {name} (one /24 subnet)")
        if self.loopback_hosts > 9999:
            raise LabError("lab spec: at most 9999 loopback_hosts")
        if self.mode not in ("auto", "netns", "loopback"):
            raise LabError(f"lab spec: mode must be auto, netns or loopback, not {self.mode!r}")
        if not self.hosts + self.private + self.deep + self.loopback_hosts:
            raise LabError("lab spec: nothing to build (every host count is 0)")
        for name in ("loopback_port", "base_port"):
            if not 1024 <= getattr(self, name) <= 65000:
                raise LabError(f"lab spec: {name} must be between 1024 and 65000")


@dataclass(frozen=True)
class LabHost:
    """One machine of the lab and how it is reached."""

    name: str
    role: Role
    kind: Kind
    address: str
    port: int
    user: str  # the login user (``sglab`` in containers, the current user for processes)
    jump: tuple[str, ...] = ()  # names of the hops in front, first to last
    netns: str | None = None  # ``sg-<name>`` for the netns kind
    entries: tuple[str, ...] = ()  # inventory names pointing at it (loopback machine only)

    @property
    def group(self) -> str:
        return {"bastion": "bastions"}.get(self.role, self.role)

    @property
    def inventory_names(self) -> tuple[str, ...]:
        return self.entries or (self.name,)

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabHost:
        data = dict(data)
        data["jump"] = tuple(data.get("jump", ()))
        data["entries"] = tuple(data.get("entries", ()))
        return cls(**data)


@dataclass(frozen=True)
class LabInfo:
    """What ``Lab.up`` built."""

    lab_dir: Path
    inventory_path: Path
    key_path: Path
    known_hosts_path: Path
    ssh_config_path: Path
    mode: Literal["netns", "loopback"]
    isolated: bool  # network isolation enforced (private hosts only reachable via bastion)
    containers: bool  # hosts have their own hostname, users and copy-on-write root
    user: str  # the login user of the lab hosts
    hosts: tuple[LabHost, ...]
    seconds: float = 0.0

    def host(self, name: str) -> LabHost:
        for host in self.hosts:
            if name == host.name or name in host.entries:
                return host
        raise LabError(f"lab: no host named {name!r}")

    @property
    def inventory_hosts(self) -> list[str]:
        return [n for h in self.hosts for n in h.inventory_names]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("lab_dir", "inventory_path", "key_path", "known_hosts_path", "ssh_config_path"):
            data[key] = str(data[key])
        return data


@dataclass(frozen=True)
class HostStatus:
    """One inventory host as ``Lab.status`` sees it."""

    name: str
    role: Role
    address: str
    port: int
    jump: tuple[str, ...]
    machine: str  # the machine (container or process) serving it
    kind: Kind
    sshd_pid: int | None  # as the machine sees it
    alive: bool  # sshd running and listening


@dataclass(frozen=True)
class LabStatus:
    up: bool
    lab_dir: Path
    mode: str | None = None
    isolated: bool = False
    inventory_path: Path | None = None
    hosts: list[HostStatus] = field(default_factory=list)

    def host(self, name: str) -> HostStatus:
        for host in self.hosts:
            if host.name == name:
                return host
        raise LabError(f"lab: no host named {name!r}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["lab_dir"] = str(self.lab_dir)
        data["inventory_path"] = str(self.inventory_path) if self.inventory_path else None
        return data


@dataclass
class Teardown:
    """What ``Lab.down`` removed, by kind (empty lists: nothing was there)."""

    processes: list[str] = field(default_factory=list)
    netns: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # left alone on purpose (another lab's)

    @property
    def empty(self) -> bool:
        return not any(
            (self.processes, self.netns, self.links, self.routes, self.mounts, self.files)
        )

    def to_dict(self) -> dict[str, list[str]]:
        return asdict(self)
