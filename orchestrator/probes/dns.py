"""DNS probe: resolve a name the way programs on the vantage point resolve it.

From the orchestrator the system resolver is asked (``loop.getaddrinfo``); from an inventory
host, ``getent ahosts NAME`` runs over its SSH connection (``getent hosts`` where ``ahosts``
is unknown), so ``/etc/hosts``, ``nsswitch.conf`` and the host's own resolvers all count, as
they do for the services on that host. This is a resolution check, not blackbox_exporter's
DNS-server query prober: there is no query type, no RR validation, no rcode.

Metrics: ``probe_dns_lookup_time_seconds`` (from a host: includes one SSH round trip),
``probe_ip_protocol``, ``probe_ip_addr_hash`` (of the address chosen by ``ip_protocol``),
``serverguard_probe_dns_addresses`` (how many distinct addresses came back).

    >>> parse_getent("db", "web01", 0, "10.0.0.5  STREAM db\\n10.0.0.5  DGRAM\\n", None)
    ['10.0.0.5']
"""

from __future__ import annotations

import ipaddress
import time
from typing import TYPE_CHECKING

from orchestrator.probes.addresses import choose_address, record_address
from orchestrator.probes.result import ProbeFailed, ProbeMetrics
from orchestrator.probes.spec import ProbeSpec

if TYPE_CHECKING:
    from orchestrator.probes.transport import Dialer

# rc 1 from glibc's getent: unknown database (busybox/musl builds without ``ahosts``).
GETENT_SCRIPT = (
    "getent ahosts {name} 2>/dev/null; rc=$?; "
    "if [ $rc -eq 1 ]; then getent hosts {name}; rc=$?; fi; exit $rc"
)


def parse_getent(
    name: str, vantage: str, rc: int | None, stdout: str, error: str | None
) -> list[str]:
    """Addresses from ``getent ahosts``/``getent hosts`` output, in order, de-duplicated.

    Raises ``ProbeFailed`` naming the host when the name is unknown or getent failed.
    """
    if error is not None:
        raise ProbeFailed(f"getent on {vantage} did not finish: {error}")
    if rc == 2:
        raise ProbeFailed(f"{vantage} cannot resolve {name}: not found")
    if rc == 127:
        raise ProbeFailed(f"{vantage} has no getent command")
    if rc != 0:
        raise ProbeFailed(f"getent on {vantage} failed (exit code {rc})")
    seen: dict[str, None] = {}
    for line in stdout.splitlines():
        fields = line.split()
        if not fields:
            continue
        try:
            address = ipaddress.ip_address(fields[0].split("%", 1)[0])
        except ValueError:
            continue
        seen.setdefault(str(address))
    if not seen:
        raise ProbeFailed(f"{vantage} resolved {name} to no address")
    return list(seen)


async def probe_dns(spec: ProbeSpec, dialer: Dialer, m: ProbeMetrics) -> None:
    """Resolve ``spec.target``; fail unless every ``expect_addresses`` entry is among them."""
    options = spec.dns
    m.set("serverguard_probe_dns_addresses", 0)
    m.stage = f"resolving {spec.target}"
    started = time.perf_counter()
    try:
        addresses = await dialer.resolve(spec.target)
    finally:
        m.set("probe_dns_lookup_time_seconds", time.perf_counter() - started)
    m.set("serverguard_probe_dns_addresses", len(addresses))
    chosen = choose_address(addresses, options.ip_protocol, options.ip_protocol_fallback,
                            spec.target)
    record_address(m, chosen, m.get("probe_dns_lookup_time_seconds") or 0.0)
    missing = [a for a in options.expect_addresses if a not in addresses]
    if missing:
        raise ProbeFailed(
            f"{spec.target} resolved to {', '.join(addresses)}; "
            f"expected also {', '.join(missing)}"
        )
