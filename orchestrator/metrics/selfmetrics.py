"""The writer's own metrics (prometheus-client), registered on the registry it is given.

``registry=None`` creates them unregistered (prometheus-client's convention), so tests and
several writers in one process never collide on the global registry.

=============================================  =========  ==============================
name                                           type       meaning
=============================================  =========  ==============================
serverguard_vm_samples_written_total           counter    accepted by VM on first send
serverguard_vm_samples_spooled_total           counter    appended to the disk spool
serverguard_vm_samples_replayed_total          counter    accepted by VM from the spool
serverguard_vm_samples_dropped_total{reason}   counter    lost: ``spool_full`` (oldest
                                                          segment dropped), ``rejected``
                                                          (VM answered 400/422)
serverguard_vm_spool_bytes                     gauge      segment bytes on disk (read at
                                                          scrape time from the spool)
serverguard_vm_spool_torn_records_total        counter    torn/corrupt records skipped
serverguard_vm_write_errors_total{reason}      counter    failed POSTs: ``connect``,
                                                          ``timeout``, ``http_503``, ...
serverguard_vm_write_duration_seconds          histogram  one POST (direct or replay)
serverguard_vm_up                              gauge      1 while the writer sends direct
=============================================  =========  ==============================

Delivered = written + replayed (at-least-once: a replay after a crash may count twice).

Example::

    >>> from prometheus_client import CollectorRegistry
    >>> registry = CollectorRegistry()
    >>> m = WriterMetrics(registry)
    >>> m.written.inc(3)
    >>> registry.get_sample_value("serverguard_vm_samples_written_total")
    3.0
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from orchestrator.metrics.spool import SpoolStats

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class WriterMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        self.written = counter(
            "serverguard_vm_samples_written", "Samples VictoriaMetrics accepted on first send."
        )
        self.spooled = counter(
            "serverguard_vm_samples_spooled", "Samples appended to the disk spool."
        )
        self.replayed = counter(
            "serverguard_vm_samples_replayed", "Samples VictoriaMetrics accepted from the spool."
        )
        self.dropped = counter(
            "serverguard_vm_samples_dropped",
            "Samples lost: spool full (oldest dropped) or rejected by VictoriaMetrics.",
            ("reason",),
        )
        self.torn = counter(
            "serverguard_vm_spool_torn_records",
            "Torn or corrupt spool records skipped (e.g. after a crash mid-write).",
        )
        self.errors = counter(
            "serverguard_vm_write_errors", "Failed writes to VictoriaMetrics.", ("reason",)
        )
        self.latency = Histogram(
            "serverguard_vm_write_duration_seconds",
            "Duration of one POST to VictoriaMetrics.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.spool_bytes = Gauge(
            "serverguard_vm_spool_bytes", "Bytes of spool segments on disk.", registry=registry
        )
        self.up = Gauge(
            "serverguard_vm_up",
            "1 while the writer sends straight to VictoriaMetrics, 0 while it spools.",
            registry=registry,
        )
        self.up.set(1)
        for reason in ("spool_full", "rejected"):
            self.dropped.labels(reason=reason)
        self._seen_dropped = 0
        self._seen_torn = 0

    def baseline(self, stats: SpoolStats) -> None:
        """Start counting from the spool's current totals (it may have been used before)."""
        self._seen_dropped = stats.dropped_samples
        self._seen_torn = stats.torn_records

    def sync_spool(self, stats: SpoolStats) -> None:
        """Carry the spool's own counts (drops when full, torn records) into the metrics."""
        if stats.dropped_samples > self._seen_dropped:
            self.dropped.labels(reason="spool_full").inc(stats.dropped_samples - self._seen_dropped)
            self._seen_dropped = stats.dropped_samples
        if stats.torn_records > self._seen_torn:
            self.torn.inc(stats.torn_records - self._seen_torn)
            self._seen_torn = stats.torn_records
