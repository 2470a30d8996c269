"""Parsing on the host (``collectors.host_render``): the rendered text and its check, and the
sweep reader rendering for real on this machine (started as on a host)."""

from __future__ import annotations

import base64
import json
import math
import re
import zlib

import pytest

from collectors.base import Collector, Options, Samples
from collectors.cpu import CpuCounterGuard
from collectors.host_code import render_spec
from collectors.host_render import HostRenderer
from collectors.registry import default_registry
from collectors.rendered import (
    MARK,
    RenderedError,
    check_text,
    finish_text,
    host_text,
    reply,
    samples_from_text,
    split_reply,
)
from collectors.sample import Sample, exposition_lines
from collectors.script import build_script, run_parsers

EXTRA = (("instance", "web1"), ("job", "node"))
ODD = [
    Sample("up", 1.0),
    Sample("node_load1", 0.42),
    Sample("node_filesystem_avail_bytes", 1.5e20,
           (("device", "/dev/sda1"), ("fstype", "ext4"), ("mountpoint", '/mnt/a "b" \\c\nd é'))),
    Sample("x", -3.0, (("a", "1"),)),
    Sample("x", 1e-05, (("a", "2"),)),
    Sample("x", 2.0**60, (("a", "3"),)),
    Sample("x", math.inf, (("a", "4"),)),
    Sample("x", -math.inf, (("a", "5"),)),
    Sample("x", math.nan, (("a", "6"),)),
    Sample("ns:colon_name", 0.0),
]


def test_rendered_text_becomes_the_lines_the_orchestrator_writes() -> None:
    text = host_text(ODD)
    assert check_text(text) is None
    assert text.count("\n") == text.count(MARK) == len(ODD)
    assert finish_text(text, 1700000000000, EXTRA) == exposition_lines(ODD, 1700000000000, EXTRA)
    assert finish_text(text, None, ()) == exposition_lines(ODD, None, ())
    back = samples_from_text(text)
    assert [(s.name, s.labels) for s in back] == [(s.name, s.labels) for s in ODD]
    assert [repr(s.value) for s in back] == [repr(s.value) for s in ODD]
    assert host_text([]) == "" and check_text("") is None and finish_text("", 5, EXTRA) == []


def test_a_mark_in_a_label_value_is_refused_on_the_host() -> None:
    with pytest.raises(RenderedError, match="mark"):
        host_text([Sample("x", 1.0, (("iface", f"eth{MARK}0"),))])


@pytest.mark.parametrize(("text", "why"), [
    ('node_x{instance="db9",\x01 1\n', "malformed line"),  # another host's series
    ('node_x{job="other",\x01 1\n', "malformed line"),
    ('node_x{__name__="up",\x01 1\n', "malformed line"),  # a reserved label renames it
    ("node_x 1\n", "malformed line"),  # no room for the target labels
    ("node_x{\x01 1 1700000000000\n", "malformed line"),  # a timestamp of its own
    ("node_x{\x01 0x10\n", "malformed line"),
    ("9node{\x01 1\n", "malformed line"),
    ('node_x{a="b\x01 1\n', "malformed line"),  # an unterminated label value
    ('node_x{a="\n",\x01 1\n', "malformed line"),  # a raw newline in a value
    ('node_x{a="1",\x01 1\x01 1\n', "malformed line"),
    ("node_x{\x01 1", "does not end with a newline"),
])
def test_the_orchestrator_refuses_rendered_text_that_is_not_the_readers(text, why) -> None:
    good = "node_ok{\x01 1\n"
    problem = check_text(good + text + (good if text.endswith("\n") else ""))
    assert problem is not None and why in problem
    assert repr(text.split("\n")[0])[1:-1][:20] in problem  # it quotes the line at fault


def test_split_reply() -> None:
    text = host_text(ODD[:2])
    reports = [["loadavg", True, 0.01, 0, [], []]]
    assert split_reply(reply("ab12", reports, text), "ab12") == (reports, text)
    assert split_reply("\n@@SG ab12 BEGIN files\n", "ab12") is None  # raw output
    with pytest.raises(RenderedError, match="first lines"):
        split_reply(reply("ffff", reports, text), "ab12")
    with pytest.raises(RenderedError, match="not JSON"):
        split_reply("@@SGR ab12\n{oops\n" + text, "ab12")
    with pytest.raises(RenderedError, match="reports"):
        split_reply("@@SGR ab12\n[1, 2]\n" + text, "ab12")
    with pytest.raises(RenderedError, match="malformed"):
        split_reply(reply("ab12", reports, 'up{instance="x",\x01 1\n'), "ab12")


class Custom(Collector):
    name = "custom"

    def command(self, options: Options) -> str:
        return "echo 1"

    def parse(self, stdout: str, options: Options) -> Samples:
        return Samples()


def test_what_the_host_cannot_render_is_parsed_here() -> None:
    reg = default_registry()
    defaults = reg.defaults()
    assert render_spec(defaults, None) is not None
    assert render_spec([*defaults, Custom()], None) is None  # not a built-in collector
    assert render_spec([reg.get("textfile")], None) is None  # output of unbounded size
    assert render_spec(defaults, {"filesystem": {"x": ("a",)}}) is None  # not JSON as is
    assert build_script(defaults).renders is False
    assert "render" not in json.loads(build_script(defaults).host_plan)


def test_the_reader_parses_on_this_machine_as_the_orchestrator_would(reader) -> None:
    cols = default_registry().defaults()
    script = build_script(cols, render=render_spec(cols, None))
    out, status = reader.run(script.host_plan_id, script.host_plan)
    assert status == 0
    got = split_reply(out, script.nonce)
    assert got is not None, out[:200]
    reports, text = got
    assert {r[0] for r in reports} == {c.name for c in cols}
    assert all(r[1] is True for r in reports), reports
    rendered = samples_from_text(text)
    names = {s.name for s in rendered}
    assert {"node_cpu_seconds_total", "node_memory_MemTotal_bytes", "node_load1",
            "serverguard_collector_success"} <= names
    # the same plan without rendering, parsed here: the same series
    raw_script = build_script(cols, nonce=script.nonce)
    raw, status = reader.run(raw_script.host_plan_id, raw_script.host_plan)
    assert status == 0 and raw.startswith("\n@@SG ")
    parsed = run_parsers(raw, cols, nonce=script.nonce, plan=raw_script.plan)
    here = parsed.samples + parsed.collector_samples
    assert [(s.name, s.labels) for s in rendered] == [(s.name, s.labels) for s in here]
    total = {s.name: s.value for s in rendered + here if s.name == "node_memory_MemTotal_bytes"}
    assert len(total) == 1 and next(iter(total.values())) > 0
    # and on one and the same output, line for line what the orchestrator writes
    renderer = HostRenderer([c.name for c in cols], None, script.nonce, CpuCounterGuard())
    again = split_reply(renderer.reply(raw) or "", script.nonce)
    assert again is not None
    mine = run_parsers(raw, cols, nonce=script.nonce, cpu_guard=CpuCounterGuard(),
                       plan=raw_script.plan)
    assert finish_text(again[1], 7, EXTRA) == exposition_lines(
        mine.samples + mine.collector_samples, 7, EXTRA)


def _spec_with(**change: object) -> dict[str, object]:
    cols = default_registry().defaults()
    spec = render_spec(cols, None)
    assert spec is not None
    return {**spec, **change}


@pytest.mark.parametrize(("spec", "why"), [
    # a python3 older than the parsers need
    (_spec_with(python=[99, 0]), r"python3 3\.\d+ is older than 99\.0"),
    (_spec_with(id="broken", code=base64.b64encode(zlib.compress(json.dumps(
        {"collectors": "raise ImportError('no such thing')"}).encode())).decode()),
     r"the parsers did not load here \(ImportError: no such thing\)"),
], ids=["old python", "code that does not load"])
def test_a_reader_that_cannot_parse_sends_its_raw_output(reader, spec, why) -> None:
    cols = default_registry().defaults()
    script = build_script(cols, render=spec)
    for sweep in range(2):  # and it keeps working, sweep after sweep
        out, status = reader.run(script.host_plan_id, None if sweep else script.host_plan)
        if sweep == 0:  # the first reply says why, on a line before the output
            note, _, out = out.partition("\n")
            assert re.fullmatch("@@SGRAW " + why, note), note
        assert status == 0 and out.startswith("\n@@SG ")
        parsed = run_parsers(out, cols, nonce=script.nonce, plan=script.plan)
        assert all(r.success for r in parsed.reports.values())
