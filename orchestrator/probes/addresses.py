"""Target addresses: ``host:port`` parsing, address family choice, blackbox's address metrics.

    >>> split_host_port("[::1]:8443")
    ('::1', 8443)
    >>> choose_address(["::1", "127.0.0.1"], "ip4", True, "localhost")
    '127.0.0.1'
    >>> ip_addr_hash("127.0.0.1")
    3668918509.0
"""

from __future__ import annotations

import ipaddress

from orchestrator.probes.result import ProbeFailed, ProbeMetrics
from orchestrator.probes.spec import IPProtocol


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def split_host_port(target: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> ``(host, port)``; ``ValueError`` when malformed."""
    if target.startswith("["):
        host, sep, rest = target[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError("expected [address]:port")
        port_text = rest[1:]
    else:
        host, sep, port_text = target.rpartition(":")
        if not sep or ":" in host:
            raise ValueError("expected host:port ([address]:port for IPv6)")
    if not host:
        raise ValueError("the host is empty")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"port {port_text!r} is not a number from 1 to 65535")
    return host, int(port_text)


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def ip_addr_hash(address: str) -> float:
    """FNV-1a (32 bit) of the packed address, like blackbox_exporter's ``probe_ip_addr_hash``:
    a change detector, not an identifier."""
    value = 0x811C9DC5
    for byte in ipaddress.ip_address(address).packed:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return float(value)


def ip_version(address: str) -> int:
    return ipaddress.ip_address(address).version


def choose_address(
    addresses: list[str], protocol: IPProtocol, fallback: bool, name: str
) -> str:
    """The first address of the preferred family, else (with ``fallback``) the first one."""
    wanted = 4 if protocol == "ip4" else 6
    for address in addresses:
        if ip_version(address) == wanted:
            return address
    if fallback and addresses:
        return addresses[0]
    raise ProbeFailed(f"{name} has no IPv{wanted} address"
                      + ("" if fallback else " (ip_protocol_fallback is off)"))


def record_address(m: ProbeMetrics, address: str, lookup_s: float) -> None:
    m.set("probe_dns_lookup_time_seconds", lookup_s)
    m.set("probe_ip_protocol", ip_version(address))
    m.set("probe_ip_addr_hash", ip_addr_hash(address))


