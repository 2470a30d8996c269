"""The one-script-per-sweep framing: building, splitting, and surviving bad output."""

from __future__ import annotations

import pytest

from collectors.base import Collector, Options, Samples
from collectors.registry import default_registry
from collectors.script import build_script, run_parsers, split_output

REG = default_registry()
COLS = [REG.get("loadavg"), REG.get("filefd")]


def section(nonce: str, names: str, body: str, rc: str = "0") -> str:
    return f"\n@@SG {nonce} BEGIN {names}\n{body}\n@@SG {nonce} END {names} {rc} 10.00 10.25\n"


def test_identical_commands_share_one_section() -> None:
    script = build_script([REG.get("cpu"), REG.get("stat"), REG.get("loadavg")], nonce="aa")
    assert script.count("cat /proc/stat") == 1
    assert "BEGIN %s\\n' aa cpu,stat" in script
    out = section("aa", "cpu,stat", "cpu0 1 2 3 4 5 6 7 8 9 10\nbtime 99\nctxt 5\n")
    sweep = run_parsers(out, [REG.get("cpu"), REG.get("stat")])
    names = {s.name for s in sweep.samples}
    wanted = {"node_cpu_seconds_total", "node_boot_time_seconds", "node_context_switches_total"}
    assert wanted <= names
    assert all(r.success and r.duration_seconds == 0.25 for r in sweep.reports.values())


def test_output_without_trailing_newline_is_kept_whole() -> None:
    out = "\n@@SG ab BEGIN loadavg\n1 2 3 1/2 3\n@@SG ab END loadavg 0 1 1\n"
    assert split_output(out, COLS)["loadavg"].stdout == "1 2 3 1/2 3"


def test_missing_section_fails_only_that_collector() -> None:
    out = section("ab", "loadavg", "0.5 0.5 0.5 1/2 3\n")
    sweep = run_parsers(out, COLS)
    assert sweep.reports["loadavg"].success
    assert not sweep.reports["filefd"].success
    assert "no output section" in sweep.reports["filefd"].problems[0]
    assert 'serverguard_collector_success{collector="filefd"} 0' in [
        s.exposition() for s in sweep.collector_samples
    ]


def test_truncated_section_drops_the_partial_last_line() -> None:
    # output cut by the session's cap in the middle of "2466174"
    out = section("ab", "loadavg", "1 2 3 1/2 3\n") + "\n@@SG ab BEGIN filefd\n242\t0\t24\n"
    sec = split_output(out, COLS)["filefd"]
    assert not sec.complete and sec.rc is None and sec.stdout == ""
    sweep = run_parsers(out, COLS)
    assert not [s for s in sweep.samples if s.name.startswith("node_filefd")]
    assert not sweep.reports["filefd"].success
    assert sweep.reports["loadavg"].success


def test_garbage_between_sections_and_foreign_markers_are_ignored() -> None:
    out = (
        "motd garbage\n"
        + section("ab", "loadavg", "1 2 3 1/2 3\n@@SG ffff END loadavg 0 1 2")
        + "stray text\n@@SG ffff BEGIN filefd\n9 9 9\n"
        + section("ab", "filefd", "242\t0\t2466174\n")
    )
    sweep = run_parsers(out, COLS, nonce="ab")
    values = {s.name: s.value for s in sweep.samples}
    assert values["node_filefd_maximum"] == 2466174
    assert values["node_load1"] == 1
    assert all(r.success for r in sweep.reports.values())


def test_nonzero_exit_status_fails_the_collector_but_keeps_samples() -> None:
    out = section("ab", "loadavg", "1 2 3 1/2 3\n", rc="2")
    sweep = run_parsers(out, COLS[:1])
    assert [s.name for s in sweep.samples] == ["node_load1", "node_load5", "node_load15"]
    assert sweep.reports["loadavg"].problems == ["remote command exited with status 2"]


def test_a_crashing_parser_is_contained() -> None:
    class Broken(Collector):
        name = "broken"

        def command(self, options: Options) -> str:
            return ":"

        def parse(self, stdout: str, options: Options) -> Samples:
            raise IndexError("boom")

    cols = [Broken(), REG.get("loadavg")]
    out = section("ab", "broken", "x") + section("ab", "loadavg", "1 2 3 1/2 3")
    sweep = run_parsers(out, cols)
    assert sweep.reports["broken"].problems == ["parser failed: IndexError: boom"]
    assert sweep.reports["loadavg"].success


def test_empty_output_reports_every_collector_missing() -> None:
    sweep = run_parsers("", COLS)
    assert sweep.samples == []
    assert [r.success for r in sweep.reports.values()] == [False, False]


def test_nonce_must_be_hex() -> None:
    with pytest.raises(ValueError):
        build_script(COLS, nonce="x; rm -rf /")


def test_script_carries_its_nonce() -> None:
    script = build_script(COLS)
    assert len(script.nonce) == 16 and f"' {script.nonce} loadavg" in script
