"""The service's own metrics (prometheus-client), in a registry per app: no globals.

``serverguard_http_requests_total{method,route,status}``,
``serverguard_http_request_duration_seconds{method,route}``, ``serverguard_runs_in_flight``
and ``serverguard_ssh_connections_open``. ``route`` is the route's template
(``/api/v1/runs/{run_id}``), never the raw path, and a method outside the standard ones is
counted as ``OTHER``, so the label set stays small whatever clients send.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class ServiceMetrics:
    def __init__(self, *, runs_in_flight: Callable[[], float],
                 ssh_connections: Callable[[], float]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "serverguard_http_requests", "HTTP requests answered",
            ["method", "route", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "serverguard_http_request_duration_seconds",
            "Time to answer an HTTP request (to the end of the body)",
            ["method", "route"], registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        runs = Gauge("serverguard_runs_in_flight", "Runs executing now", registry=self.registry)
        runs.set_function(runs_in_flight)
        conns = Gauge("serverguard_ssh_connections_open", "Pooled SSH connections open",
                      registry=self.registry)
        conns.set_function(ssh_connections)
        # The labelled children, looked up once per label set instead of per request
        # (``labels()`` validates and locks on every call).
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
        children[0].inc()
        children[1].observe(seconds)


class MetricsMiddleware:
    """Counts and times every HTTP request (pure ASGI: streaming responses are timed to
    their end)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        method = scope["method"]

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe(method if method in METHODS else "OTHER", route, status,
                                 time.perf_counter() - started)
