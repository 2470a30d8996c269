"""textfile: a file cannot write ServerGuard's own per-host series (up, serverguard_*, the
collector's node_textfile_* pair): those lines are rejected, counted and reported."""

from __future__ import annotations

import pytest

from collectors.text_validator import TextValidator
from collectors.textfile import TextfileCollector


def parse(lines: list[str]) -> tuple[list[tuple[str, float]], list[str]]:
    c = TextfileCollector()
    stdout = "F /x/a.prom\n" + "".join(f"L{line}\n" for line in lines)
    out = c.parse(stdout, c.resolve_options({}))
    return [(s.series(), s.value) for s in out], out.notes


def test_reserved_names_are_rejected_counted_and_reported() -> None:
    series, notes = parse([
        "up 0",
        "node_textfile_scrape_error 0",
        'serverguard_collector_success{collector="cpu"} 0',
        'node_textfile_mtime_seconds{file="/etc/passwd"} 1',
        "backup_ok 1",
    ])
    assert notes == [
        "/x/a.prom:1: reserved metric name up (set by ServerGuard)",
        "/x/a.prom:2: reserved metric name node_textfile_scrape_error (set by ServerGuard)",
        "/x/a.prom:3: reserved metric name serverguard_collector_success (set by ServerGuard)",
        "/x/a.prom:4: reserved metric name node_textfile_mtime_seconds (set by ServerGuard)",
    ]
    assert series == [
        ("backup_ok", 1.0),
        ('serverguard_textfile_rejected_lines{file="/x/a.prom"}', 4.0),
        ("node_textfile_scrape_error", 1.0),  # the collector's own, once
    ]


def test_a_type_line_for_a_reserved_name_is_rejected() -> None:
    v = TextValidator()
    v.feed("a.prom", 1, "# TYPE serverguard_scrape_duration_seconds gauge")
    assert v.rejected == [("a.prom", "a.prom:1: reserved metric name "
                                     "serverguard_scrape_duration_seconds (set by ServerGuard)")]
    assert "serverguard_scrape_duration_seconds" not in v.types


@pytest.mark.parametrize("line", ["upper 1", "up_time 1", "my_serverguard_x 1",
                                  "node_textfile_other 1", "Up 1"])
def test_names_that_merely_look_alike_are_kept(line: str) -> None:
    v = TextValidator()
    assert v.feed("a.prom", 1, line) is not None, v.rejected


def test_a_series_another_collector_writes_is_dropped_and_noted() -> None:
    """node_load1 in a .prom file beside the loadavg collector: one series, one value per
    sweep, the collector's; the file's line is noted. Other lines of the file stay."""
    from collectors.loadavg import LoadavgCollector
    from collectors.script import build_script, run_parsers

    cols = [LoadavgCollector(), TextfileCollector()]
    script = build_script(cols, nonce="ab12")
    out = ("\n@@SG ab12 BEGIN files\n==> /proc/loadavg <==\n0.10 0.20 0.30 1/99 42\n"
           "\n@@SG ab12 END files 0 5.00 5.01\n"
           "\n@@SG ab12 BEGIN textfile\nF /x/a.prom\nLnode_load1 9\nLnode_load5{x=\"1\"} 9\n"
           "Lbackup_ok 1\n\n@@SG ab12 END textfile 0 5.01 5.02\n")
    parsed = run_parsers(out, cols, nonce="ab12", plan=script.plan)
    values = {s.series(): s.value for s in parsed.samples}
    assert values["node_load1"] == 0.1  # the collector's, not the file's 9
    assert values['node_load5{x="1"}'] == 9 and values["backup_ok"] == 1  # other series
    assert [s.series() for s in parsed.samples].count("node_load1") == 1
    assert parsed.reports["textfile"].notes == [
        "node_load1: another collector writes this series; dropped"]
    assert parsed.reports["textfile"].success
