"""Host facts for the asset view: what a host is, read over SSH in one command.

One POSIX ``sh`` command (nothing installed, no Python on the host): ``head`` prints the
files below behind ``==> path <==`` headers, then ``uname -m`` and ``ip -o addr show`` (when
the host has iproute2) follow behind headers of their own::

    result = await pool.run(target, FACTS_COMMAND, timeout=20)
    facts = parse_facts(result.stdout)          # HostFacts; never raises on odd input
    facts.model_dump()["cpu_count"]             # 8

What is read: ``/etc/os-release`` (name, id, version), ``/proc/sys/kernel/osrelease`` and
``hostname``, ``/proc/cpuinfo`` (model and count of logical CPUs), ``/proc/meminfo``
(``MemTotal``), ``/proc/uptime``, and per block device in ``/sys/block`` its ``size``,
``queue/rotational`` and ``removable`` (loop, ram and zero-sized devices are left out). A
header only counts for a path that was asked for (all of them root-owned or the kernel's).
Missing pieces stay ``None`` (or empty) and are named in ``missing``.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

FILES = (
    "/etc/os-release",
    "/proc/sys/kernel/osrelease",
    "/proc/sys/kernel/hostname",
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/proc/uptime",
)
BLOCK_FILES = ("/sys/block/*/size", "/sys/block/*/queue/rotational", "/sys/block/*/removable")
UNAME = "==> @uname-m <=="
IP_ADDR = "==> @ip-addr <=="
FACTS_COMMAND = (
    "LC_ALL=C; export LC_ALL\n"
    f"head -n 100000 -- {' '.join(FILES)} {' '.join(BLOCK_FILES)} 2>/dev/null\n"
    f"printf '\\n%s\\n' '{UNAME}'; uname -m\n"
    f"printf '\\n%s\\n' '{IP_ADDR}'; "
    "if command -v ip >/dev/null 2>&1; then ip -o addr show 2>/dev/null; fi\n"
    ":"
)
_HEADER = re.compile(r"^==> (.+) <==$")
_BLOCK = re.compile(r"^/sys/block/([^/]+)/(size|queue/rotational|removable)$")
_SKIP_DISK = re.compile(r"^(loop|ram|zram)\d*$")
_CPU_MODEL_KEYS = ("model name", "cpu model", "hardware", "processor name", "cpu")


class Disk(BaseModel):
    name: str
    size_bytes: int
    rotational: bool | None = None
    removable: bool | None = None


class Address(BaseModel):
    interface: str
    family: str = Field(description="ipv4 or ipv6")
    address: str = Field(description="with its prefix length, e.g. 10.0.0.5/24")
    scope: str | None = None


class HostFacts(BaseModel):
    """What a host is; the API's answer is this plus when and how it was gathered."""

    hostname: str | None = None
    os_name: str | None = None  # PRETTY_NAME, else NAME VERSION
    os_id: str | None = None
    os_version: str | None = None
    kernel: str | None = None
    arch: str | None = None
    cpu_model: str | None = None
    cpu_count: int | None = None
    memory_bytes: int | None = None
    uptime_seconds: float | None = Field(default=None, description="when the facts were gathered")
    disks: list[Disk] = []
    addresses: list[Address] = []
    missing: list[str] = Field(default_factory=list, description="facts the host did not give")


def split_sections(stdout: str) -> dict[str, str]:
    """``path -> content`` for the headers the command asked for, in order."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.split("\n"):
        m = _HEADER.match(line)
        if m and _wanted(m.group(1)):
            current = sections.setdefault(m.group(1), [])
            continue
        if current is not None:
            current.append(line)
    return {path: "\n".join(lines).strip("\n") for path, lines in sections.items()}


def _wanted(path: str) -> bool:
    return path in FILES or path in ("@uname-m", "@ip-addr") or bool(_BLOCK.match(path))


def parse_facts(stdout: str) -> HostFacts:
    sections = split_sections(stdout)
    facts = HostFacts()
    release = _os_release(sections.get("/etc/os-release", ""))
    facts.os_id = release.get("ID")
    facts.os_version = release.get("VERSION_ID")
    name = release.get("PRETTY_NAME") or " ".join(
        v for v in (release.get("NAME"), release.get("VERSION")) if v)
    facts.os_name = name or None
    facts.kernel = _first_line(sections.get("/proc/sys/kernel/osrelease"))
    facts.hostname = _first_line(sections.get("/proc/sys/kernel/hostname"))
    facts.arch = _first_line(sections.get("@uname-m"))
    facts.cpu_model, facts.cpu_count = _cpus(sections.get("/proc/cpuinfo", ""))
    facts.memory_bytes = _mem_total(sections.get("/proc/meminfo", ""))
    facts.uptime_seconds = _uptime(sections.get("/proc/uptime"))
    facts.disks = _disks(sections)
    facts.addresses = _addresses(sections.get("@ip-addr", ""))
    for key in ("os_name", "kernel", "hostname", "arch", "cpu_count", "memory_bytes",
                "uptime_seconds"):
        if getattr(facts, key) is None:
            facts.missing.append(key)
    if "@ip-addr" in sections and not sections["@ip-addr"].strip():
        facts.missing.append("addresses (no ip command on the host)")
    return facts


def _first_line(text: str | None) -> str | None:
    if not text:
        return None
    line = text.strip().split("\n", 1)[0].strip()
    return line or None


def _os_release(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = re.sub(r"\\(.)", r"\1", value[1:-1]) if value[0] == '"' else value[1:-1]
        out[key] = value
    return out


def _cpus(text: str) -> tuple[str | None, int | None]:
    count = 0
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip().lower(), value.strip()
        if key == "processor" and value.isdigit():
            count += 1
        elif key in _CPU_MODEL_KEYS and value and key not in found:
            found[key] = value
    model = next((found[k] for k in _CPU_MODEL_KEYS if k in found), None)
    return model, (count or None)


def _mem_total(text: str) -> int | None:
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]) * (1024 if parts[2:3] == ["kB"] else 1)
    return None


def _uptime(text: str | None) -> float | None:
    first = (text or "").split()
    try:
        return float(first[0]) if first else None
    except ValueError:
        return None


def _disks(sections: dict[str, str]) -> list[Disk]:
    found: dict[str, dict[str, str]] = {}
    for path, content in sections.items():
        m = _BLOCK.match(path)
        if m:
            found.setdefault(m.group(1), {})[m.group(2)] = content.strip()
    disks = []
    for name in sorted(found):
        attrs = found[name]
        size = attrs.get("size", "")
        if _SKIP_DISK.match(name) or not size.isdigit() or int(size) == 0:
            continue
        disks.append(Disk(name=name, size_bytes=int(size) * 512,
                          rotational=_flag(attrs.get("queue/rotational")),
                          removable=_flag(attrs.get("removable"))))
    return disks


def _flag(text: str | None) -> bool | None:
    return {"0": False, "1": True}.get((text or "").strip())


def _addresses(text: str) -> list[Address]:
    out = []
    for line in text.splitlines():
        # 2: eth0    inet 10.0.0.5/24 brd 10.0.0.255 scope global eth0\       valid_lft ...
        parts = line.replace("\\", " ").split()
        if len(parts) < 4 or parts[2] not in ("inet", "inet6"):
            continue
        interface = parts[1].split("@", 1)[0]
        if interface == "lo":
            continue
        scope = parts[parts.index("scope") + 1] if "scope" in parts[:-1] else None
        out.append(Address(interface=interface, family="ipv4" if parts[2] == "inet" else "ipv6",
                           address=parts[3], scope=scope))
    return out
