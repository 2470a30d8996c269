"""The fleet as VictoriaMetrics sees it: a per-host summary, and MetricsQL limited to hosts.

Example::

    fleet = FleetMetrics("http://127.0.0.1:8428")
    snapshot = await fleet.snapshot()              # every instance; cached for ``ttl`` s
    rows = snapshot.rows(["web1", "db1"])          # one per host, None where no data
    data = await fleet.query("sum(node_load1)", hosts=["web1"])   # only web1's series
    fleet.close()

Scoping: ``hosts=None`` means unrestricted (admins); a list adds VictoriaMetrics'
``extra_filters[]={instance=~"^(web1|db1)$"}`` to the request, which VictoriaMetrics applies
to *every* series selector of the query, so ``sum(...)``, subqueries and ``label_replace``
cannot reach another host's series. An empty list matches no series at all.

The summary is one fleet-wide snapshot (five instant queries, one after the other), shared by
every caller for ``ttl`` seconds and refreshed by one request at a time (single flight):
fifty callers, or fifty users with fifty scopes, cost five queries per ``ttl``. Scope is
applied in Python when the rows are picked. While a refresh is under way, callers get the
previous snapshot (stale-while-revalidate) as long as it is younger than ``ttl + max_stale``
seconds, instead of all waiting for VictoriaMetrics every ``ttl`` seconds (that wait was the
summary's tail latency); past that, or with no snapshot yet, they wait for the refresh.

Freshness: VictoriaMetrics evaluates an instant query for "now" at now minus
``-search.latencyOffset`` (30 s by default), two sweeps late, unless the request carries
``nocache=1`` (the one switch for that in every version; ``latency_offset=0s`` exists only in
newer ones). The summary passes ``nocache=1``: the response cache it bypasses serves range
queries, not these five instant ones, and the snapshot cache above bounds the load. A sweep
writes a host's samples in one batch with one timestamp, so its freshest point is complete.
The passthrough queries keep VictoriaMetrics' defaults.

Errors: :class:`ValidationFailed` (field ``query``, or the argument VictoriaMetrics named)
when VictoriaMetrics rejects a query (400/422, with its message); :class:`MetricsError`
when it cannot be reached, times out or fails (5xx).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from orchestrator.errors import MetricsError, ValidationFailed
from orchestrator.metrics.endpoint import VMEndpoint

# field -> instant query, one value per ``instance``
SUMMARY_QUERIES: dict[str, str] = {
    "up": "max by (instance) (up)",
    "cpu_percent": '100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[1m])))',
    "memory_percent": "max by (instance) "
                      "(100 * (1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes))",
    "filesystem_percent": "max by (instance) "
                          "(100 * (1 - node_filesystem_avail_bytes / node_filesystem_size_bytes))",
    "load1": "max by (instance) (node_load1)",
}
SUMMARY_FIELDS = tuple(SUMMARY_QUERIES)
NO_MATCH_FILTER = '{instance="",instance!=""}'  # an empty scope: no series can match


def instance_filter(hosts: Sequence[str]) -> str:
    """The ``extra_filters[]`` value that keeps only ``hosts``' series: for ``web1`` and
    ``db.example`` it is ``{instance=~"^(web1|db\\\\.example)$"}`` (each name
    regex-escaped, then the regex escaped as a MetricsQL string)."""
    if not hosts:
        return NO_MATCH_FILTER
    regex = "^(" + "|".join(re.escape(h) for h in hosts) + ")$"
    literal = regex.replace("\\", "\\\\").replace('"', '\\"')  # a MetricsQL string
    return '{instance=~"' + literal + '"}'


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@dataclass(frozen=True, slots=True)
class HostMetrics:
    host: str
    up: bool | None = None
    cpu_percent: float | None = None
    memory_percent: float | None = None
    filesystem_percent: float | None = None
    load1: float | None = None


@dataclass(slots=True)
class FleetSnapshot:
    """Every instance's summary values at ``taken_at`` (Unix seconds)."""

    values: dict[str, dict[str, float | None]]
    taken_at: float
    # What callers derived from this snapshot (a scope's rendered page), dropped with it.
    memo: dict[Any, Any] = field(default_factory=dict)

    def row(self, host: str) -> HostMetrics:
        got = self.values.get(host)
        if got is None:
            return HostMetrics(host)
        up = got.get("up")
        return HostMetrics(
            host, up=None if up is None else up >= 1, cpu_percent=got.get("cpu_percent"),
            memory_percent=got.get("memory_percent"),
            filesystem_percent=got.get("filesystem_percent"), load1=got.get("load1"),
        )

    def rows(self, hosts: Sequence[str]) -> list[HostMetrics]:
        """One row per host, in order (None where the host has no data)."""
        return [self.row(h) for h in hosts]


class FleetMetrics:
    """Reads from one VictoriaMetrics (single node, or a cluster's ``vmselect`` URL)."""

    def __init__(self, url: str, *, ttl: float = 5.0, max_stale: float = 10.0,
                 timeout: float = 10.0) -> None:
        self.endpoint = VMEndpoint.parse(url)
        self.url = self.endpoint.url
        self.ttl = ttl
        self.max_stale = max_stale
        self.timeout = timeout
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=64)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._snapshot: FleetSnapshot | None = None
        self._refresh: asyncio.Future[FleetSnapshot] | None = None

    def close(self) -> None:
        if self._refresh is not None:  # a background refresh nobody waits for any more
            self._refresh.cancel()
        self._session.close()

    # ------------------------------------------------------------------ summary

    async def snapshot(self) -> FleetSnapshot:
        """The cached fleet snapshot, refreshed when older than ``ttl`` (one refresh at a
        time). Meanwhile callers get the previous snapshot while it is younger than
        ``ttl + max_stale``; otherwise they wait for the refresh instead of querying too."""
        current = self._snapshot
        age = 0.0 if current is None else time.monotonic() - current.taken_at
        if current is not None and age < self.ttl:
            return current
        if self._refresh is None:
            self._refresh = asyncio.ensure_future(self._take_snapshot())
            self._refresh.add_done_callback(self._refresh_done)
        if current is not None and age < self.ttl + self.max_stale:
            return current
        return await asyncio.shield(self._refresh)

    def _refresh_done(self, future: asyncio.Future[FleetSnapshot]) -> None:
        self._refresh = None
        if not future.cancelled() and future.exception() is None:
            self._snapshot = future.result()

    async def _take_snapshot(self) -> FleetSnapshot:
        return await asyncio.to_thread(self._take_snapshot_sync)

    def _take_snapshot_sync(self) -> FleetSnapshot:
        # One thread, one query after the other: VictoriaMetrics spends ~100 ms of CPU on the
        # five for 1,000 hosts (2 CPUs), and five at once took both CPUs from the requests
        # being answered meanwhile; parsing in five threads fought the event loop for the GIL.
        started = time.monotonic()
        params = [("nocache", "1")]  # fresh, see the module docstring
        values: dict[str, dict[str, float | None]] = {}
        for name, query in SUMMARY_QUERIES.items():
            data = self._get_sync("/api/v1/query", [("query", query), *params])
            # The hot loop of a refresh (5 x 1,000 series): kept to dict lookups, since the
            # thread running it holds the GIL against the event loop answering requests.
            for item in data.get("result") or ():
                try:
                    instance, raw = item["metric"]["instance"], item["value"][1]
                except (KeyError, IndexError, TypeError):
                    continue  # not a sample of one instance: nothing to show
                row = values.get(instance)
                if row is None:
                    row = values[instance] = {}
                row[name] = _number(raw)
        return FleetSnapshot(values, started)

    # ------------------------------------------------------------------ passthrough

    async def query(self, query: str, *, at: float | None = None,
                    hosts: Sequence[str] | None = None) -> dict[str, Any]:
        """An instant query (at ``at``, Unix seconds, default now); ``hosts`` limits every
        selector to those instances."""
        params: dict[str, Any] = {"query": query}
        if at is not None:
            params["time"] = at
        return await self._get("/api/v1/query", params, hosts=hosts)

    async def query_range(self, query: str, *, start: float, end: float, step: float,
                          hosts: Sequence[str] | None = None) -> dict[str, Any]:
        params = {"query": query, "start": start, "end": end, "step": step}
        return await self._get("/api/v1/query_range", params, hosts=hosts)

    # ------------------------------------------------------------------ HTTP

    async def _get(self, path: str, params: Mapping[str, Any],
                   hosts: Sequence[str] | None = None) -> dict[str, Any]:
        query: list[tuple[str, Any]] = list(params.items())
        if hosts is not None:
            query.append(("extra_filters[]", instance_filter(hosts)))
        return await asyncio.to_thread(self._get_sync, path, query)

    def _get_sync(self, path: str, params: list[tuple[str, Any]]) -> dict[str, Any]:
        where = f"VictoriaMetrics at {self.endpoint.shown}"  # no password, no token
        try:
            resp = self._session.get(self.endpoint.join(path), params=params,
                                     timeout=self.timeout)
        except requests.Timeout as exc:
            raise MetricsError(f"{where} did not answer within {self.timeout:g}s") from exc
        except requests.RequestException as exc:
            raise MetricsError(f"{where} is unreachable: {type(exc).__name__}") from exc
        try:
            body = resp.json()
        except ValueError:
            body = None
        message = body.get("error") if isinstance(body, dict) else None
        if resp.status_code in (400, 422):
            text = _one_line(message or resp.text)
            raise ValidationFailed(f"invalid query: {text}", [("query", text)])
        if resp.status_code != 200 or not isinstance(body, dict):
            text = _one_line(message or resp.text or resp.reason)
            raise MetricsError(f"{where} answered {resp.status_code}: {text}")
        data = body.get("data")
        if not isinstance(data, dict):
            raise MetricsError(f"{where} answered without data")
        return data


def _one_line(text: str, limit: int = 500) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


# ---------------------------------------------------------------------- argument parsing

MAX_POINTS = 11_000  # per series of a range query, as Prometheus allows
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800,
                 "y": 31536000}


def parse_time(value: str, name: str) -> float:
    """Unix seconds (``1700000000.5``) or RFC 3339 (``2026-11-23T08:00:00Z``)."""
    text = value.strip()
    number = _number(text)
    if number is None:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValidationFailed(
                f"invalid {name}: {value!r} is neither Unix seconds nor RFC 3339",
                [(name, "expected Unix seconds or an RFC 3339 time")]) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        number = moment.timestamp()
    if not 0 <= number < 1e11:
        raise ValidationFailed(f"invalid {name}: {value!r} is out of range",
                               [(name, "out of range")])
    return number


def parse_step(value: str, name: str = "step") -> float:
    """Seconds (``15``, ``0.5``) or a Prometheus duration (``15s``, ``1m30s``)."""
    text = value.strip()
    seconds = _number(text)
    if seconds is None and text and _DURATION.sub("", text) == "":
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION.findall(text))
    if seconds is None:
        raise ValidationFailed(f"invalid {name}: {value!r} is not a duration",
                               [(name, "expected seconds or a duration such as 15s or 1m")])
    if seconds <= 0:
        raise ValidationFailed(f"invalid {name}: must be positive", [(name, "must be positive")])
    return seconds


def range_arguments(start: str, end: str, step: str) -> tuple[float, float, float]:
    """Validated ``(start, end, step)`` in seconds; at most ``MAX_POINTS`` per series."""
    begin, finish, every = parse_time(start, "start"), parse_time(end, "end"), parse_step(step)
    if finish < begin:
        raise ValidationFailed("invalid end: before start", [("end", "must not be before start")])
    if (finish - begin) / every > MAX_POINTS:
        raise ValidationFailed(
            f"invalid step: more than {MAX_POINTS} points per series; use a larger step",
            [("step", f"more than {MAX_POINTS} points per series")])
    return begin, finish, every
