"""``/api/v1/metrics``: the fleet summary and the scoped MetricsQL passthrough, against a real
VictoriaMetrics (ThrowawayVM) holding known samples.

Inventory (api_support.INVENTORY): web1, web2 (group web), db1 (db), db2 (prod). Samples:
web1, web2 and db1 have every summary series; db2 has none; ``web1x`` is not in the
inventory (and must not match a filter for ``web1``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from api_support import ApiHarness, fast_settings, make_api
from vm import ThrowawayVM

from inventory import Inventory
from orchestrator.errors import MetricsError
from orchestrator.fleet import FleetMetrics, instance_filter, parse_step
from orchestrator.storage.db import Database

# host -> (up, idle cpu rate per cpu, MemAvailable of 1000, fs avail of 100 per mount, load1)
HOSTS: dict[str, tuple[int, tuple[float, float], float, tuple[float, float], float]] = {
    "web1": (1, (0.8, 0.6), 250.0, (40.0, 10.0), 1.5),  # cpu 30 %, mem 75 %, fs 90 %
    "web2": (1, (0.9, 0.9), 500.0, (50.0, 50.0), 2.5),  # cpu 10 %, mem 50 %, fs 50 %
    "db1": (0, (0.5, 0.5), 900.0, (80.0, 95.0), 4.0),  # cpu 50 %, mem 10 %, fs 20 %
    "web1x": (1, (0.0, 0.0), 0.0, (0.0, 0.0), 100.0),  # not in the inventory
}
STEP = 30  # seconds between the two points of each series


def samples(now_s: float) -> str:
    t1 = int((now_s - 5) * 1000)
    t0 = t1 - STEP * 1000
    lines = []
    for host, (up, idle, avail, fs_avail, load1) in HOSTS.items():
        base = f'job="node",instance="{host}"'
        for t in (t0, t1):
            lines.append(f"up{{{base}}} {up} {t}")
            lines.append(f"node_load1{{{base}}} {load1} {t}")
            lines.append(f"node_memory_MemTotal_bytes{{{base}}} 1000 {t}")
            lines.append(f"node_memory_MemAvailable_bytes{{{base}}} {avail} {t}")
            for mount, free in zip(("/", "/var"), fs_avail, strict=True):
                lines.append(f'node_filesystem_size_bytes{{{base},mountpoint="{mount}"}} 100 {t}')
                lines.append(
                    f'node_filesystem_avail_bytes{{{base},mountpoint="{mount}"}} {free} {t}')
        for cpu, rate in enumerate(idle):
            for t, value in ((t0, 1000.0), (t1, 1000.0 + rate * STEP)):
                lines.append(
                    f'node_cpu_seconds_total{{{base},cpu="{cpu}",mode="idle"}} {value} {t}')
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThrowawayVM]:
    server = ThrowawayVM(tmp_path_factory.mktemp("metrics-api") / "vm").start()
    try:
        resp = requests.post(server.url + "/api/v1/import/prometheus",
                             data=samples(time.time()), timeout=10)
        resp.raise_for_status()
        server.wait_for_samples('{__name__="node_load1"}', count=2 * len(HOSTS))
        yield server
    finally:
        server.close()


@pytest.fixture
def metrics_api(vm: ThrowawayVM, tmp_path: Path,
                test_inventory: Inventory) -> Iterator[ApiHarness]:
    db = Database(f"sqlite:///{tmp_path / 'api.db'}")
    db.migrate()
    try:
        with make_api(db, fast_settings(tmp_path, vm_url=vm.url), test_inventory) as harness:
            yield harness
    finally:
        db.dispose()


def vm_queries(vm: ThrowawayVM) -> float:
    """How many /api/v1/query requests VictoriaMetrics has served (its counter lags a
    request by up to a second, hence the wait)."""
    time.sleep(1.2)
    text = requests.get(vm.url + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("vm_http_requests_total") and 'path="/api/v1/query"' in line)


def test_admin_summary_has_every_inventory_host(metrics_api: ApiHarness) -> None:
    r = metrics_api.get("admin", "/api/v1/metrics/summary")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["count"] == 4
    rows = {row["host"]: row for row in body["data"]}
    assert list(rows) == ["web1", "web2", "db1", "db2"]  # inventory order; no web1x
    expected = {"web1": (True, 30, 75, 90, 1.5), "web2": (True, 10, 50, 50, 2.5),
                "db1": (False, 50, 10, 20, 4.0)}
    for host, (up, cpu, mem, fs, load1) in expected.items():
        row = rows[host]
        assert row["up"] is up
        assert row["cpu_percent"] == pytest.approx(cpu)
        assert row["memory_percent"] == pytest.approx(mem)
        assert row["filesystem_percent"] == pytest.approx(fs)
        assert row["load1"] == pytest.approx(load1)
    assert rows["db2"] == {"host": "db2", "up": None, "cpu_percent": None,
                           "memory_percent": None, "filesystem_percent": None, "load1": None}
    page = metrics_api.get("admin", "/api/v1/metrics/summary", params={"skip": 1, "limit": 2})
    assert [r["host"] for r in page.json()["data"]] == ["web2", "db1"]
    assert page.json()["count"] == 4


def test_summary_is_cached_across_requests_and_scopes(metrics_api: ApiHarness,
                                                      vm: ThrowawayVM) -> None:
    users = ("admin", "view_web", "op_prod", "op_none", "admin")
    for user in users:
        metrics_api.login(user)
    before = vm_queries(vm)
    for user in users:  # well within the 5 s the snapshot lives
        assert metrics_api.get(user, "/api/v1/metrics/summary").status_code == 200
    assert vm_queries(vm) - before == 5  # one snapshot: one query per summary field


async def test_concurrent_refreshes_are_one_set_of_queries(vm: ThrowawayVM) -> None:
    fleet = FleetMetrics(vm.url, ttl=60)
    try:
        before = vm_queries(vm)
        snapshots = await asyncio.gather(*(fleet.snapshot() for _ in range(50)))
        assert all(s is snapshots[0] for s in snapshots)
        assert vm_queries(vm) - before == 5  # one per summary field
    finally:
        fleet.close()


def test_viewer_sees_only_their_hosts(metrics_api: ApiHarness) -> None:
    body = metrics_api.get("view_web", "/api/v1/metrics/summary").json()
    assert [row["host"] for row in body["data"]] == ["web1", "web2"] and body["count"] == 2
    assert metrics_api.get("op_none", "/api/v1/metrics/summary").json() == {"data": [],
                                                                           "count": 0}

    def total(user: str) -> list[object]:
        r = metrics_api.get(user, "/api/v1/metrics/query", params={"query": "sum(node_load1)"})
        assert r.status_code == 200, r.text
        assert r.json()["resultType"] == "vector"
        return [float(item["value"][1]) for item in r.json()["result"]]

    assert total("view_web") == [pytest.approx(4.0)]  # web1 + web2 only, not web1x
    assert total("op_prod") == []  # db2: no series
    assert total("op_none") == []
    assert total("admin") == [pytest.approx(108.0)]  # admins: unrestricted, web1x included


def test_query_range_is_scoped_too(metrics_api: ApiHarness) -> None:
    now = time.time()
    r = metrics_api.get("view_web", "/api/v1/metrics/query_range", params={
        "query": 'count by (instance) ({__name__=~"node_load1|up"})',
        "start": str(now - 60), "end": str(now), "step": "15s"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resultType"] == "matrix"
    assert sorted(s["metric"]["instance"] for s in body["result"]) == ["web1", "web2"]


def test_bad_input_names_the_field(metrics_api: ApiHarness) -> None:
    r = metrics_api.get("admin", "/api/v1/metrics/query", params={"query": "sum(("})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["errors"][0]["field"] == "query"
    assert problem["detail"].startswith("invalid query: ") and "sum((" in problem["detail"]
    cases = [
        ("/api/v1/metrics/query", {"query": "up", "time": "yesterday"}, "time"),
        ("/api/v1/metrics/query", {"query": ""}, "query"),
        ("/api/v1/metrics/query_range", {"query": "up", "start": "10", "end": "5",
                                         "step": "1"}, "end"),
        ("/api/v1/metrics/query_range", {"query": "up", "start": "0", "end": "1e9",
                                         "step": "1s"}, "step"),
        ("/api/v1/metrics/query_range", {"query": "up", "start": "0", "end": "10",
                                         "step": "-1"}, "step"),
        ("/api/v1/metrics/query_range", {"query": "up", "end": "10", "step": "1"}, "start"),
    ]
    for path, params, field in cases:
        r = metrics_api.get("admin", path, params=params)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["errors"][0]["field"] == field, (params, r.json())


def test_rfc3339_and_durations_are_accepted(metrics_api: ApiHarness) -> None:
    r = metrics_api.get("admin", "/api/v1/metrics/query_range", params={
        "query": "node_load1", "start": "2026-01-01T00:00:00Z",
        "end": "2026-01-01T01:00:00Z", "step": "1m30s"})
    assert r.status_code == 200, r.text
    assert parse_step("1m30s") == 90 and parse_step("0.5") == 0.5


def test_instance_filter_escapes_names() -> None:
    assert instance_filter(["web1", "db.example"]) == '{instance=~"^(web1|db\\\\.example)$"}'
    assert instance_filter(['a"b']) == '{instance=~"^(a\\"b)$"}'


def test_unauthenticated_is_401(metrics_api: ApiHarness) -> None:
    assert metrics_api.client.get("/api/v1/metrics/summary").status_code == 401


def test_no_backend_is_503(tmp_path: Path, test_inventory: Inventory) -> None:
    db = Database(f"sqlite:///{tmp_path / 'api.db'}")
    db.migrate()
    try:
        with make_api(db, fast_settings(tmp_path), test_inventory) as harness:
            for path in ("/api/v1/metrics/summary", "/api/v1/metrics/query?query=up"):
                r = harness.get("view_web", path)
                assert r.status_code == 503
                assert r.headers["content-type"] == "application/problem+json"
                assert "collection is off and no vm_url is configured" in r.json()["detail"]
    finally:
        db.dispose()


def test_stopped_backend_is_503(tmp_path: Path, test_inventory: Inventory) -> None:
    server = ThrowawayVM(tmp_path / "vm").start()
    db = Database(f"sqlite:///{tmp_path / 'api.db'}")
    db.migrate()
    try:
        with make_api(db, fast_settings(tmp_path, vm_url=server.url),
                      test_inventory) as harness:
            assert harness.get("admin", "/api/v1/metrics/query?query=up").status_code == 200
            server.stop()
            for path in ("/api/v1/metrics/summary", "/api/v1/metrics/query?query=up"):
                r = harness.get("admin", path)
                assert r.status_code == 503, r.text
                assert r.json()["detail"].startswith("metrics backend unavailable: ")
                assert server.url in r.json()["detail"]
    finally:
        server.close()
        db.dispose()


async def test_fleet_errors_are_translated() -> None:
    fleet = FleetMetrics("http://127.0.0.1:1", timeout=2)
    try:
        with pytest.raises(MetricsError, match="unreachable"):
            await fleet.query("up")
    finally:
        fleet.close()


async def test_fleet_errors_never_show_the_urls_secrets() -> None:
    fleet = FleetMetrics("http://sg:pa55word@127.0.0.1:1/?authKey=t0ken", timeout=2)
    try:
        with pytest.raises(MetricsError) as caught:
            await fleet.query("up")
    finally:
        fleet.close()
    assert "VictoriaMetrics at http://sg:***@127.0.0.1:1?authKey=*** is unreachable" in str(
        caught.value)
    assert "pa55word" not in str(caught.value) and "t0ken" not in str(caught.value)
