"""How fan-out results are summarised and streamed (no network)."""

from __future__ import annotations

import pytest

from orchestrator.cli.run_cmd import LineStream
from orchestrator.executor import summarize
from orchestrator.ssh.exec import ExecResult


def test_exit_code_like_ansible() -> None:
    ok = ExecResult(host="a", rc=0)
    bad = ExecResult(host="b", rc=3)
    gone = ExecResult(host="c", error="c: cannot connect: refused")
    gone.extra["unreachable"] = True
    assert summarize([ok], 0.1).exit_code == 0
    assert summarize([ok, bad], 0.1).exit_code == 2
    assert summarize([ok, bad, gone], 0.1).exit_code == 4
    s = summarize([ok, bad, gone], 0.1)
    assert (s.ok, s.failed, s.unreachable) == (1, 1, 1)


def test_timeout_counts_as_failed_not_ok() -> None:
    timed_out = ExecResult(host="a", error="command timed out after 1s")
    s = summarize([timed_out], 1.0)
    assert s.failed == 1 and s.exit_code == 2


def test_line_stream_joins_partial_lines_per_host(capsys: pytest.CaptureFixture[str]) -> None:
    lines = LineStream(width=5)
    lines.feed("web1", "stdout", b"hel")
    lines.feed("web2", "stdout", b"other\n")
    lines.feed("web1", "stdout", b"lo\nwor")
    lines.flush("web1")
    out = [line.rstrip() for line in capsys.readouterr().out.splitlines()]
    assert out == ["web2  | other", "web1  | hello", "web1  | wor"]
