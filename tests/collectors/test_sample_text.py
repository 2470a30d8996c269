"""Prometheus text of samples: the writer's fast path agrees with ``Sample.exposition``."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from collectors.sample import Sample, exposition_lines, format_value

label_names = st.sampled_from(["cpu", "device", "mode", "mountpoint", "a", "zz"])
label_values = st.text(max_size=12)  # quotes, backslashes, newlines, any unicode
values = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**53), 2**53).map(float)


def parse(line: str) -> tuple[str, dict[str, str], float, int | None]:
    (family,) = text_string_to_metric_families(line + "\n")
    (s,) = family.samples
    ts = None if s.timestamp is None else round(float(s.timestamp) * 1000)
    return s.name, dict(s.labels), s.value, ts


@given(
    name=st.sampled_from(["up", "node_cpu_seconds_total", "node_filesystem_avail_bytes"]),
    value=values,
    labels=st.dictionaries(label_names, label_values, max_size=3),
    host=label_values,
)
def test_lines_with_host_labels_mean_what_the_merged_sample_means(
    name: str, value: float, labels: dict[str, str], host: str
) -> None:
    sample = Sample.of(name, value, **labels)
    extra = (("instance", host), ("job", "node"))
    (fast,) = exposition_lines([sample], 1_700_000_000_123, extra)
    merged = sample.with_sorted_extra(extra).exposition(1_700_000_000_123)
    got, want = parse(fast), parse(merged)
    assert got[:2] == want[:2] and got[3] == want[3] == 1_700_000_000_123
    assert got[1] == {**labels, "instance": host, "job": "node"}
    assert (math.isnan(got[2]) and math.isnan(value)) or got[2] == value


def test_values_are_written_the_way_node_exporter_writes_them() -> None:
    shown = [format_value(v) for v in (0.0, -0.0, 3.0, 2.5, 1e15, 1e16, math.nan, -math.inf)]
    assert shown == ["0", "0", "3", "2.5", "1000000000000000.0", "1e+16", "NaN", "-Inf"]
    assert format_value(7) == "7"  # an int slipped through: still a number


def test_samples_without_labels_and_without_extra() -> None:
    lines = exposition_lines([Sample("up", 1.0), Sample.of("x", 0.5, a='q"\\\n')])
    assert lines == ["up 1", 'x{a="q\\"\\\\\\n"} 0.5']
