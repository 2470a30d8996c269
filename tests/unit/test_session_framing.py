"""The persistent session's output framing: pure parsing, no network."""

from __future__ import annotations

import pytest

from orchestrator.ssh.session import _CappedStream, shell_quote

MARK = b"\nSG-0123456789abcdef "


def feed_chunks(stream: _CappedStream, data: bytes, size: int) -> None:
    for i in range(0, len(data), size):
        stream.feed(data[i : i + size])


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 10_000])
def test_marker_found_whatever_the_chunking(chunk: int) -> None:
    s = _CappedStream(cap=1 << 20)
    s.reset(MARK)
    feed_chunks(s, b"line one\nline two" + MARK + b"0\n", chunk)
    assert s.found
    assert bytes(s.kept) == b"line one\nline two"
    assert bytes(s.after) == b"0\n"


def test_output_over_cap_is_truncated_and_marker_still_found() -> None:
    s = _CappedStream(cap=100)
    s.reset(MARK)
    feed_chunks(s, b"x" * 5000 + MARK + b"17\n", 333)
    assert s.found and s.truncated
    assert bytes(s.kept) == b"x" * 100
    assert bytes(s.after) == b"17\n"


def test_text_resembling_the_marker_is_output() -> None:
    s = _CappedStream(cap=1000)
    s.reset(MARK)
    s.feed(b"\nSG-0123456789abcdeX not it\n")
    assert not s.found
    s.feed(MARK + b"0\n")
    assert bytes(s.kept) == b"\nSG-0123456789abcdeX not it\n"


def test_reset_between_runs_forgets_previous_output() -> None:
    s = _CappedStream(cap=1000)
    s.reset(MARK)
    s.feed(b"first" + MARK + b"0\n")
    s.reset(b"\nSG-other ")
    s.feed(b"second\nSG-other 1\n")
    assert bytes(s.kept) == b"second" and bytes(s.after) == b"1\n"


@pytest.mark.parametrize("text", ["plain", "it's", "'", "a'b'c", "$HOME `x` \"q\"\n\\n"])
def test_shell_quote_round_trips_through_sh(text: str) -> None:
    import subprocess

    out = subprocess.run(
        ["sh", "-c", f"printf %s {shell_quote(text)}"], capture_output=True, text=True, check=True
    )
    assert out.stdout == text
