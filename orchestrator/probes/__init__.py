"""Probes: blackbox_exporter-style checks (TCP, HTTP(S), TLS, DNS) from any vantage point.

A probe runs from the orchestrator, or from an inventory host *through its SSH connection*
(``direct-tcpip`` forwarding for TCP/HTTP/TLS, ``getent`` for DNS), so services on private
subnets behind a bastion can be checked without installing anything. Samples use
blackbox_exporter's metric names with ``job``, ``instance``, ``probe`` and ``vantage`` labels
(see docs/probes.md).

    from orchestrator.probes import load_probes, run_probes

    specs = load_probes("examples/probes.yml", inventory=inventory)
    async with ConnectionPool(settings) as pool:
        for spec, samples, failure in await run_probes(specs, pool, inventory, concurrency=20):
            ...
"""

from orchestrator.probes.config import ProbeConfigError, load_probes, parse_probes
from orchestrator.probes.result import ProbeFailure, ProbeResult
from orchestrator.probes.runner import run_probe, run_probe_result, run_probes
from orchestrator.probes.spec import (
    DNSOptions,
    HeaderMatch,
    HTTPOptions,
    ProbeSpec,
    QueryResponse,
    TCPOptions,
    TLSConfig,
)

__all__ = [
    "DNSOptions",
    "HTTPOptions",
    "HeaderMatch",
    "ProbeConfigError",
    "ProbeFailure",
    "ProbeResult",
    "ProbeSpec",
    "QueryResponse",
    "TCPOptions",
    "TLSConfig",
    "load_probes",
    "parse_probes",
    "run_probe",
    "run_probe_result",
    "run_probes",
]
