"""Host facts (the asset view) gathered over SSH from the lab's real hosts, cached, scoped."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from api_support import ApiHarness

from orchestrator.storage.models import Role

pytestmark = pytest.mark.lab


@pytest.fixture
def facts_api(lab_api: ApiHarness) -> ApiHarness:
    lab_api.add_user("viewer_private", Role.VIEWER, ("private",))
    return lab_api


def mem_total_bytes() -> int:
    line = next(ln for ln in Path("/proc/meminfo").read_text().splitlines()
                if ln.startswith("MemTotal:"))
    return int(line.split()[1]) * 1024


def test_facts_are_the_hosts_own_and_cached(facts_api: ApiHarness) -> None:
    api = facts_api
    first = api.get("admin", "/api/v1/hosts/host01/facts")
    assert first.status_code == 200, first.text
    facts = first.json()
    # The lab's hosts are namespaces of this machine: its kernel, CPUs and memory.
    assert facts["host"] == "host01" and facts["hostname"] == "host01"
    assert facts["kernel"] == os.uname().release and facts["arch"] == os.uname().machine
    assert facts["cpu_count"] == os.cpu_count()
    assert facts["memory_bytes"] == mem_total_bytes()
    assert any(a["address"].startswith("169.254.10.11/") for a in facts["addresses"])
    assert facts["os_name"] and facts["uptime_seconds"] > 0 and facts["stale"] is False

    again = api.get("admin", "/api/v1/hosts/host01/facts").json()
    assert again["gathered_at"] == facts["gathered_at"]  # from the cache
    fresh = api.get("admin", "/api/v1/hosts/host01/facts", params={"max_age": 0}).json()
    assert fresh["gathered_at"] > facts["gathered_at"]

    behind = api.get("admin", "/api/v1/hosts/deep01/facts")  # two jump hosts away
    assert behind.status_code == 200 and behind.json()["hostname"] == "deep01"


def test_scope_and_unreachable_hosts(facts_api: ApiHarness, lab: Any) -> None:
    api = facts_api
    assert api.get("viewer_private", "/api/v1/hosts/host01/facts").status_code == 404
    assert api.get("viewer_private", "/api/v1/hosts/nosuch/facts").status_code == 404
    mine = api.get("viewer_private", "/api/v1/hosts/private01/facts")
    assert mine.status_code == 200 and mine.json()["hostname"] == "private01"

    assert api.get("admin", "/api/v1/hosts/host03/facts").status_code == 200
    lab.lab.stop_sshd("host03")
    try:
        stale = api.get("admin", "/api/v1/hosts/host03/facts", params={"max_age": 0}).json()
        assert stale["stale"] is True and "host03" in stale["error"]
        assert stale["hostname"] == "host03"  # the facts it had
        never = api.get("admin", "/api/v1/hosts/host02/facts")  # fine: host02 is up
        assert never.status_code == 200
    finally:
        lab.lab.start_sshd("host03")


def test_unreachable_without_cached_facts_is_a_502(facts_api: ApiHarness, lab: Any) -> None:
    lab.lab.stop_sshd("host02")
    try:
        r = facts_api.get("admin", "/api/v1/hosts/host02/facts")
        assert r.status_code == 502, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert "host02" in r.json()["detail"]
    finally:
        lab.lab.start_sshd("host02")


def test_asset_view_lists_the_scope_and_gathers_on_request(facts_api: ApiHarness) -> None:
    api = facts_api
    listed = api.get("viewer_private", "/api/v1/assets").json()
    assert [a["host"] for a in listed["data"]] == ["private01", "private02"]
    assert listed["count"] == 2 and all(a["facts"] is None for a in listed["data"])
    gathered = api.get("viewer_private", "/api/v1/assets", params={"gather": True}).json()
    assert {a["host"]: a["facts"]["hostname"] for a in gathered["data"]} == {
        "private01": "private01", "private02": "private02"}
    page = api.get("admin", "/api/v1/assets",
                   params={"pattern": "public", "limit": 2, "gather": True}).json()
    assert page["count"] == 3 and len(page["data"]) == 2
    assert all(a["facts"] and a["error"] is None for a in page["data"])
