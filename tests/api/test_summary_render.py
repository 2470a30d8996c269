"""The fleet summary's page is rendered from per-host JSON fragments, not through pydantic:
it must be exactly the JSON ``HostMetricsList`` would produce, for any host name and value."""

from __future__ import annotations

import json
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from api.routes.metrics import HostMetricsList, HostMetricsPublic, summary_page
from orchestrator.fleet import SUMMARY_FIELDS, FleetSnapshot

value = st.none() | st.floats(allow_nan=False, allow_infinity=False)
host_values = st.none() | st.dictionaries(st.sampled_from(SUMMARY_FIELDS), value)
hosts = st.lists(st.text(min_size=1, max_size=12), max_size=12, unique=True)


def through_pydantic(snapshot: FleetSnapshot, names: list[str], skip: int, limit: int) -> str:
    rows = snapshot.rows(names)
    return HostMetricsList(
        data=[HostMetricsPublic.model_validate(r, from_attributes=True)
              for r in rows[skip:skip + limit]],
        count=len(rows),
    ).model_dump_json()


@settings(max_examples=200, deadline=None)
@given(names=hosts, data=st.data(), skip=st.integers(0, 14), limit=st.integers(1, 14))
def test_page_is_the_models_json(names: list[str], data: st.DataObject, skip: int,
                                 limit: int) -> None:
    values = {}
    for name in names:
        got = data.draw(host_values)
        if got is not None:
            values[name] = got
    snapshot = FleetSnapshot(values, time.monotonic())
    page = summary_page(snapshot, names, skip, limit)
    assert json.loads(page) == json.loads(through_pydantic(snapshot, names, skip, limit))
    # A second page of the same snapshot reuses the fragments and still agrees.
    again = summary_page(snapshot, names, 0, len(names) or 1)
    assert json.loads(again) == json.loads(through_pydantic(snapshot, names, 0, len(names) or 1))


def test_odd_names_and_states_render_as_valid_json() -> None:
    names = ['we"ird\\name', "ünï\u2028code", "tab\there", "host01", "down", "gone"]
    snapshot = FleetSnapshot({
        'we"ird\\name': {"up": 1.0, "cpu_percent": 1e-7, "load1": 12345678901.5},
        "ünï\u2028code": {"up": 0.0},
        "tab\there": {"cpu_percent": -0.0},
        "host01": {"up": 1.0, "memory_percent": 50.0, "filesystem_percent": 99.9},
        "down": {"up": 0.0, "load1": 0.0},
    }, time.monotonic())
    body = json.loads(summary_page(snapshot, names, 0, 100))
    assert body == json.loads(through_pydantic(snapshot, names, 0, 100))
    by_host = {row["host"]: row for row in body["data"]}
    assert by_host["down"]["up"] is False and by_host["host01"]["up"] is True
    assert by_host["gone"] == {"host": "gone", "up": None, "cpu_percent": None,
                               "memory_percent": None, "filesystem_percent": None,
                               "load1": None}
    assert body["count"] == 6
