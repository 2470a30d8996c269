"""A throwaway VictoriaMetrics for tests, built on :class:`EmbeddedVictoriaMetrics`.

Starts the real ``victoria-metrics`` on a free loopback port with its data in a temporary
directory, and reads back what was written through ``/api/v1/export`` (raw samples, no
30 s latency offset, no query cache)::

    vm = ThrowawayVM(tmp_path / "vm").start()
    ...
    series = vm.wait_for_samples('{__name__=~"node_.*"}', count=10)
    vm.stop()

``dedup=True`` adds ``-dedup.minScrapeInterval=1ms`` (as the embedded default does): the
identical duplicates an at-least-once replay may produce are then invisible to ``export``.
Without it (the default here) a test sees every duplicate.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import NamedTuple

import pytest
import requests

from orchestrator.errors import MetricsError
from orchestrator.metrics.vm_process import EmbeddedVictoriaMetrics, find_binary


class Series(NamedTuple):
    labels: dict[str, str]  # including __name__
    values: list[float]
    timestamps: list[int]


def require_victoria_metrics() -> None:
    """Skip the calling test when the binary is not installed."""
    try:
        find_binary()
    except MetricsError:
        pytest.skip("victoria-metrics is not installed (apt-get install victoria-metrics)")


class ThrowawayVM:
    def __init__(self, directory: Path, *, port: int = 0, dedup: bool = False) -> None:
        require_victoria_metrics()
        self.process = EmbeddedVictoriaMetrics(
            directory,
            port=port,
            dedup_interval="1ms" if dedup else None,
            extra_args=["-search.latencyOffset=0s", "-search.disableCache"],
            startup_timeout=20.0,
            stop_timeout=10.0,
        )
        self._session = requests.Session()

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def port(self) -> int:
        return self.process.port

    def start(self) -> ThrowawayVM:
        self.process.start()
        return self

    def stop(self) -> None:
        """Graceful (SIGTERM): VictoriaMetrics flushes what it took to disk."""
        self.process.stop()

    def close(self) -> None:
        self.process.stop()
        self._session.close()

    def force_flush(self) -> None:
        """Make recently written samples searchable (``/internal/force_flush``)."""
        self._session.get(self.url + "/internal/force_flush", timeout=10).raise_for_status()

    def export(self, match: str, start: int | None = None, end: int | None = None) -> list[Series]:
        """Raw samples of the series matching ``match``, each series sorted by time."""
        params: dict[str, str | int] = {"match[]": match}
        if start is not None:
            params["start"] = start
        if end is not None:
            params["end"] = end
        resp = self._session.get(self.url + "/api/v1/export", params=params, timeout=30)
        resp.raise_for_status()
        out = []
        for line in resp.text.splitlines():
            if line.strip():
                item = json.loads(line)
                out.append(Series(item["metric"], item["values"], item["timestamps"]))
        return out

    def wait_for_samples(self, match: str, count: int, timeout: float = 15.0) -> list[Series]:
        """Export until at least ``count`` samples are visible (new data shows up after a
        flush, within a second or two), then once more after a short settle."""
        deadline = time.monotonic() + timeout
        while True:
            self.force_flush()
            series = self.export(match)
            seen = sum(len(s.timestamps) for s in series)
            if seen >= count:
                time.sleep(0.3)  # anything beyond ``count`` (duplicates) shows up too
                self.force_flush()
                return self.export(match)
            if time.monotonic() > deadline:
                return series
            time.sleep(0.2)


def samples_of(series: list[Series]) -> list[tuple[tuple[tuple[str, str], ...], float, int]]:
    """Flatten to sorted ``(labels, value, timestamp)`` triples, duplicates kept."""
    flat = [
        (tuple(sorted(s.labels.items())), float(v), t)
        for s in series
        for v, t in zip(s.values, s.timestamps, strict=True)
    ]
    return sorted(flat)
