"""What a probe is: one validated, immutable ``ProbeSpec`` per (probe, vantage, target).

Specs are built by :mod:`orchestrator.probes.config` from a probes YAML file or from the
``serverguard_probes`` inventory variable; nothing else constructs them in production, but
tests may build them directly::

    >>> spec = ProbeSpec(name="ssh", type="tcp", target="127.0.0.1:22")
    >>> spec.vantage, spec.timeout, spec.job
    ('orchestrator', 5.0, 'probe')
    >>> spec.describe()
    "probe 'ssh' (tcp 127.0.0.1:22 from orchestrator)"
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

ProbeType = Literal["tcp", "http", "tls", "dns"]
IPProtocol = Literal["ip4", "ip6"]

ORCHESTRATOR = "orchestrator"  # the vantage of probes run from the orchestrator process itself
SELF = "self"  # in inventory vars: the host that carries the probe definition


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """Client TLS settings (blackbox_exporter's ``tls_config`` names).

    ``ca_file`` replaces the system CA store; ``server_name`` overrides SNI and the name
    checked against the certificate (default: the target's host, or the HTTP ``Host`` header).
    """

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name: str | None = None
    insecure_skip_verify: bool = False


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    """One ``fail_if_header_(not_)matches_regexp`` entry."""

    header: str
    regexp: re.Pattern[str]
    allow_missing: bool = False


@dataclass(frozen=True, slots=True)
class QueryResponse:
    """One step of a TCP dialogue: wait for a line matching ``expect``, send ``send``, and
    optionally upgrade to TLS (``starttls``). ``send`` may use ``\\1`` / ``\\g<name>``
    references to groups of ``expect``."""

    expect: re.Pattern[str] | None = None
    send: str | None = None
    starttls: bool = False


@dataclass(frozen=True, slots=True)
class HTTPOptions:
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    valid_status_codes: tuple[int, ...] = ()  # empty: any 2xx
    valid_http_versions: tuple[str, ...] = ()  # e.g. ("HTTP/1.1",); empty: any
    follow_redirects: bool = True
    fail_if_ssl: bool = False
    fail_if_not_ssl: bool = False
    fail_if_body_matches_regexp: tuple[re.Pattern[str], ...] = ()
    fail_if_body_not_matches_regexp: tuple[re.Pattern[str], ...] = ()
    fail_if_header_matches_regexp: tuple[HeaderMatch, ...] = ()
    fail_if_header_not_matches_regexp: tuple[HeaderMatch, ...] = ()
    body_size_limit: int = 0  # bytes; 0: no limit (the first MiB is kept for regexps)
    ip_protocol: IPProtocol = "ip4"
    ip_protocol_fallback: bool = True


@dataclass(frozen=True, slots=True)
class TCPOptions:
    """Options of ``tcp`` and ``tls`` probes (``tls`` is ``tcp`` with ``tls`` forced on)."""

    tls: bool = False
    query_response: tuple[QueryResponse, ...] = ()
    ip_protocol: IPProtocol = "ip4"
    ip_protocol_fallback: bool = True


@dataclass(frozen=True, slots=True)
class DNSOptions:
    ip_protocol: IPProtocol = "ip4"
    ip_protocol_fallback: bool = True
    expect_addresses: tuple[str, ...] = ()  # every one must be among the answers


Options = HTTPOptions | TCPOptions | DNSOptions


def default_options(kind: ProbeType) -> Options:
    if kind == "http":
        return HTTPOptions()
    if kind == "dns":
        return DNSOptions()
    return TCPOptions(tls=kind == "tls")


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """One probe to run: what, against which target, from where, with which options.

    ``vantage`` is ``"orchestrator"`` or the inventory name of the host whose SSH connection
    carries the probe (``self`` is already resolved to a host name here). ``source`` says
    where the definition came from, for messages (``probes.yml``, ``host 'web01'``).
    """

    name: str
    type: ProbeType
    target: str
    vantage: str = ORCHESTRATOR
    timeout: float = 5.0
    job: str = "probe"
    labels: tuple[tuple[str, str], ...] = ()
    tls_config: TLSConfig = field(default_factory=TLSConfig)
    options: Options | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.options is None:
            object.__setattr__(self, "options", default_options(self.type))

    @property
    def http(self) -> HTTPOptions:
        assert isinstance(self.options, HTTPOptions), self.type
        return self.options

    @property
    def tcp(self) -> TCPOptions:
        assert isinstance(self.options, TCPOptions), self.type
        return self.options

    @property
    def dns(self) -> DNSOptions:
        assert isinstance(self.options, DNSOptions), self.type
        return self.options

    @property
    def key(self) -> tuple[str, str, str]:
        """``(name, vantage, target)``: one series set; unique across a configuration."""
        return (self.name, self.vantage, self.target)

    def describe(self) -> str:
        return f"probe '{self.name}' ({self.type} {self.target} from {self.vantage})"

    def series_labels(self) -> dict[str, str]:
        """The labels every sample of this probe carries."""
        labels = dict(self.labels)
        labels.update(job=self.job, instance=self.target, probe=self.name, vantage=self.vantage)
        return labels
