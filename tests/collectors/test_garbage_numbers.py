"""Parsers never raise on numbers they cannot use (``collectors.base``: parsers are pure).

Every built-in collector gets its fixtures' stdout with numbers replaced by a number too large
for a float (400 digits), by ``²`` (``str.isdigit`` accepts it, ``int``/``float`` do not) and
by ``٣`` (an Arabic-Indic digit, which ``int`` reads as 3): ``parse`` must return a
``Samples``. Every number is replaced in some input: the n-th number of every line at once
(one garbage number per line, so a fixture takes as many parses as its widest line has
numbers), then all of them.

For the collectors that read kernel counters as numbers (``STRICT``), a 400-digit number,
``²`` or ``٣`` where the fixture has a whole number must be handled exactly like any other
unreadable value there (``x``): the same samples and as many problems and notes (plus one
saying the text was not ASCII, for the parsers of kernel text).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from collector_fixtures import fixture_paths, load, stdout_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collectors.base import Collector, Samples, parse_number
from collectors.docker import parse_size
from collectors.registry import BUILTIN, default_registry
from collectors.script import split_output

BIG = "9" * 400  # float(int(BIG)) raises OverflowError; float(BIG) is inf
SUPERSCRIPT = "\u00b2"  # "²": isdigit() is True, int() and float() raise ValueError
ARABIC = "\u0663"  # "٣": isdigit() is True, int() reads 3
GARBAGE = {"big": BIG, "superscript": SUPERSCRIPT, "arabic": ARABIC}
UNREADABLE = "x"  # what the parsers already treat as an unreadable value

# collectors whose parsers read kernel counters with int(): same outcome as for UNREADABLE
STRICT = ("meminfo", "netdev", "diskstats", "vmstat", "netclass", "cpu", "stat", "loadavg",
          "pressure")
KERNEL_TEXT = ("cpu", "stat", "loadavg", "meminfo", "vmstat", "pressure", "conntrack",
               "filefd", "diskstats")

_NUMBER = re.compile(r"[0-9]+")
# a number on its own: not part of a name (cpu0, eth0), a hex value (0x1003) or a decimal
_WHOLE = re.compile(r"(?<![0-9A-Za-z_.])[0-9]+(?![0-9A-Za-z_.])")

CASES = fixture_paths()
REGISTRY = default_registry()


def _case(path: Path) -> tuple[Collector, dict[str, Any], str]:
    data = load(path)
    collector = REGISTRY.get(path.parent.name)
    return collector, collector.resolve_options(data.get("options")), stdout_of(path, data)


def _replace(text: str, spans: list[tuple[int, int]], by: str) -> str:
    out, at = [], 0
    for start, end in spans:
        out += [text[at:start], by]
        at = end
    return "".join([*out, text[at:]])


def _columns(text: str, pattern: re.Pattern[str]) -> list[list[tuple[int, int]]]:
    """The spans of the n-th ``pattern`` match of every line, for each n."""
    columns: list[list[tuple[int, int]]] = []
    at = 0
    for line in text.splitlines(keepends=True):
        for n, m in enumerate(pattern.finditer(line)):
            if n == len(columns):
                columns.append([])
            columns[n].append((at + m.start(), at + m.end()))
        at += len(line)
    return columns


def _parse(collector: Collector, text: str, options: dict[str, Any]) -> Samples:
    got = collector.parse(text, options)
    assert isinstance(got, Samples)
    return got


def _ids(paths: list[Path]) -> list[str]:
    return [f"{p.parent.name}/{p.stem}" for p in paths]


def test_every_builtin_collector_has_fixtures() -> None:
    assert {cls.name for cls in BUILTIN} <= {p.parent.name for p in CASES}


@pytest.mark.parametrize("garbage", GARBAGE, ids=list(GARBAGE))
@pytest.mark.parametrize("path", CASES, ids=_ids(CASES))
def test_parse_never_raises_on_garbage_numbers(path: Path, garbage: str) -> None:
    by = GARBAGE[garbage]
    collector, options, text = _case(path)
    for spans in _columns(text, _NUMBER):
        _parse(collector, _replace(text, spans, by), options)
    _parse(collector, _replace(text, [m.span() for m in _NUMBER.finditer(text)], by), options)


def _comparable(samples: Samples, garbage: str) -> tuple[list[str], int, int]:
    """The samples (garbage in labels read as UNREADABLE), and how many problems and notes."""
    lines = sorted(s.exposition().replace(garbage, UNREADABLE) for s in samples)
    return lines, len(samples.problems), len(samples.notes)


STRICT_CASES = [p for p in CASES if p.parent.name in STRICT]


@pytest.mark.parametrize("garbage", ["big", "superscript", "arabic"])
@pytest.mark.parametrize("path", STRICT_CASES, ids=_ids(STRICT_CASES))
def test_garbage_number_is_an_unreadable_value(path: Path, garbage: str) -> None:
    collector, options, text = _case(path)
    by = GARBAGE[garbage]
    # parsers of kernel text (collectors.base.kernel_text) also say that it was not ASCII
    extra = int(not by.isascii() and collector.name in KERNEL_TEXT)
    for n, spans in enumerate(_columns(text, _WHOLE)):
        bad = _parse(collector, _replace(text, spans, by), options)
        same = _parse(collector, _replace(text, spans, UNREADABLE), options)
        where = f"number {n} of each line"
        lines, problems, notes = _comparable(same, UNREADABLE)
        assert _comparable(bad, by) == (lines, problems + extra, notes), where
        if extra:
            assert "non-ASCII" in bad.problems[-1], where
        assert all(s.value == s.value and abs(s.value) != float("inf") for s in bad), where


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_parse_never_raises_on_mixed_garbage(data: st.DataObject) -> None:
    """Any choice of numbers, each replaced by any of the garbage kinds."""
    path = data.draw(st.sampled_from(CASES))
    collector, options, text = _case(path)
    spans = [m.span() for m in _NUMBER.finditer(text)]
    if not spans:
        return
    chosen = sorted(data.draw(st.sets(st.sampled_from(spans), min_size=1, max_size=8)))
    out, at = [], 0
    for start, end in chosen:
        out += [text[at:start], data.draw(st.sampled_from(list(GARBAGE.values())))]
        at = end
    _parse(collector, "".join([*out, text[at:]]), options)


@pytest.mark.parametrize(
    "text", [BIG, "-" + BIG, "0x" + "f" * 400, SUPERSCRIPT, "-" + SUPERSCRIPT, "0x" + SUPERSCRIPT]
)
def test_parse_number_returns_none_for_garbage(text: str) -> None:
    assert parse_number(text) is None


def test_parse_number_keeps_valid_numbers() -> None:
    assert [parse_number(t) for t in ("42", " -7 ", "0x1003", "1.5", "9" * 300)] == [
        42.0,
        -7.0,
        4099.0,
        1.5,
        float(int("9" * 300)),
    ]


@pytest.mark.parametrize("rc", [SUPERSCRIPT, ARABIC])
def test_split_output_reads_a_garbage_exit_status_as_none(rc: str) -> None:
    loadavg = REGISTRY.get("loadavg")
    out = f"\n@@SG ab BEGIN loadavg\n1\n@@SG ab END loadavg {rc} 1 1\n"
    section = split_output(out, [loadavg])["loadavg"]
    assert section.rc is None and section.problem


@pytest.mark.parametrize("text", ["1.2.3MiB", ".", "..kB"])
def test_docker_parse_size_returns_none_for_garbage(text: str) -> None:
    assert parse_size(text) is None
