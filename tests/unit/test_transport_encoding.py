"""The gzip bodies the VictoriaMetrics writer sends and spools."""

from __future__ import annotations

import gzip

import pytest

from orchestrator.metrics.transport import ENCODE_PIECE, encode_lines, split_body


@pytest.mark.parametrize("count", [0, 1, ENCODE_PIECE - 1, ENCODE_PIECE, ENCODE_PIECE + 1, 2500])
def test_a_body_holds_every_line_once_in_order(count: int) -> None:
    lines = [f'node_load1{{instance="web{i}",job="node"}} 0.{i} 17000000{i:05d}'
             for i in range(count)]
    body, n = encode_lines(lines)
    assert n == count
    text = gzip.decompress(body).decode()
    assert text == "".join(line + "\n" for line in lines)


def test_a_split_body_keeps_every_line() -> None:
    lines = [f"up{{instance=\"h{i}\"}} 1 {i}" for i in range(3 * ENCODE_PIECE + 7)]
    halves = split_body(encode_lines(lines)[0])
    assert [n for _, n in halves] == [len(lines) // 2, len(lines) - len(lines) // 2]
    joined = "".join(gzip.decompress(body).decode() for body, _ in halves)
    assert joined.splitlines() == lines
