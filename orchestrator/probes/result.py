"""What a probe produces: samples (blackbox_exporter names) and, when it failed, why.

Probers write into a :class:`ProbeMetrics` as they go, so whatever was measured before a
failure is still reported (as blackbox_exporter does); they signal a failed probe by raising
:class:`ProbeFailed` with a one-line reason. The runner turns that into ``probe_success 0``
and a :class:`ProbeFailure` for the caller.

    >>> m = ProbeMetrics()
    >>> m.set("probe_http_status_code", 200)
    >>> m.add("probe_http_duration_seconds", 0.25, phase="connect")
    >>> m.add("probe_http_duration_seconds", 0.25, phase="connect")
    >>> [s.series() + " " + str(s.value) for s in m.samples()]
    ['probe_http_status_code 200.0', 'probe_http_duration_seconds{phase="connect"} 0.5']
"""

from __future__ import annotations

from dataclasses import dataclass, field

from collectors.sample import Sample
from orchestrator.errors import ServerGuardError
from orchestrator.probes.spec import ProbeSpec

_Key = tuple[str, tuple[tuple[str, str], ...]]


class ProbeFailed(Exception):
    """Raised inside a prober: the probe ran and failed for ``reason`` (one line)."""

    def __init__(self, reason: str, *, regex: bool = False) -> None:
        self.reason = reason
        self.regex = regex
        super().__init__(reason)


class ProbeFailure(ServerGuardError):
    """Why one probe failed, for the caller of :func:`run_probes` (never raised by it).

    ``vantage_error`` is true when the probe could not even start because the vantage host
    was unreachable (then the target's state is unknown, not bad).

    >>> from orchestrator.probes.spec import ProbeSpec
    >>> str(ProbeFailure(ProbeSpec("api", "tcp", "10.0.0.1:80"), "connection refused"))
    "probe 'api' (tcp 10.0.0.1:80 from orchestrator): connection refused"
    """

    def __init__(self, spec: ProbeSpec, reason: str, *, vantage_error: bool = False) -> None:
        self.spec = spec
        self.reason = reason
        self.vantage_error = vantage_error
        super().__init__(f"{spec.describe()}: {reason}")


class ProbeMetrics:
    """Gauges of one probe run, in first-set order; ``add`` sums (phases over redirects)."""

    def __init__(self) -> None:
        self._values: dict[_Key, float] = {}
        self.stage = "starting"  # what the probe is doing, for a timeout's message

    @staticmethod
    def _key(name: str, labels: dict[str, str]) -> _Key:
        return (name, tuple(sorted(labels.items())))

    def set(self, name: str, value: float, **labels: str) -> None:
        self._values[self._key(name, labels)] = float(value)

    def add(self, name: str, value: float, **labels: str) -> None:
        key = self._key(name, labels)
        self._values[key] = self._values.get(key, 0.0) + float(value)

    def get(self, name: str, **labels: str) -> float | None:
        return self._values.get(self._key(name, labels))

    def discard(self, name: str) -> None:
        """Forget every series of ``name`` (e.g. an info metric about to be replaced)."""
        for key in [k for k in self._values if k[0] == name]:
            del self._values[key]

    def samples(self) -> list[Sample]:
        return [Sample(name, value, labels) for (name, labels), value in self._values.items()]


@dataclass(slots=True)
class ProbeResult:
    """One run of one probe: success, samples with every label, and the failure if any."""

    spec: ProbeSpec
    success: bool
    duration_s: float
    samples: list[Sample] = field(default_factory=list)
    failure: ProbeFailure | None = None

    @property
    def reason(self) -> str | None:
        return self.failure.reason if self.failure else None
