"""Samples rendered on the host: the text the sweep reader sends back, and its check.

When the sweep reader runs the parsers itself (``collectors.host_render``), a sweep's reply
is this text instead of the collectors' raw output; the orchestrator then adds ``job``,
``instance`` and the timestamp with two ``str.replace`` and one ``split``, instead of parsing
and formatting some 300 samples in Python per host and sweep. Each sample is one line, its
labels left open for the target labels::

    node_load1{<MARK> 0.42
    node_cpu_seconds_total{cpu="0",mode="user",<MARK> 13808.93

``<MARK>`` is the character ``\\x01``: the kernel's files never hold it and the host falls
back to its raw output when they do (``host_text`` refuses). The orchestrator trusts
nothing in the text: ``check_text`` lets through only lines of exactly that shape, with
label names that are neither ``instance``, ``job`` nor reserved (``__name__``), so a host
can never write series of another host, drop its own ``instance`` or break a batch it
shares with others. A reply that fails the check fails that host's sweep.

Example::

    >>> text = host_text([Sample("node_load1", 0.42), Sample("a", 1.0, (("z", "1"),))])
    >>> text
    'node_load1{\\x01 0.42\\na{z="1",\\x01 1\\n'
    >>> check_text(text) is None
    True
    >>> finish_text(text, 7, (("instance", "web1"), ("job", "node")))
    ['node_load1{instance="web1",job="node"} 0.42 7', 'a{z="1",instance="web1",job="node"} 1 7']
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

from collectors.sample import Labels, Sample, _labels_text, exposition_lines

MARK = "\x01"
REPLY = "@@SGR "  # a rendered reply starts with this, the nonce and a newline

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*+"
_LABEL = r'(?!__|(?:instance|job)=)[a-zA-Z_][a-zA-Z0-9_]*+="(?:[^"\\\n\x01]++|\\["\\n])*+",'
_VALUE = r"(?:[-+]?(?:[0-9]++(?:\.[0-9]*+)?(?:e[-+]?[0-9]++)?|Inf)|NaN)"
# the whole text in one match (C speed; possessive: no backtracking)
_TEXT = re.compile(rf"(?:{_NAME}\{{(?:{_LABEL})*+\x01 {_VALUE}\n)*+")
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",')
_UNESCAPE = re.compile(r"\\(.)")


class RenderedError(ValueError):
    """A rendered reply that is not what the sweep reader writes."""


def host_text(samples: Iterable[Sample]) -> str:
    """The samples as rendered text (see the module docstring); raises ``RenderedError`` when
    a label value holds ``MARK`` (the host then sends its raw output)."""
    lines = exposition_lines(samples, None, (("\x00", ""),))
    # exposition_lines closes with the extra label: '...,\x00=""} 0.42' -> '...,\x01 0.42'
    text = "\n".join(lines).replace('\x00=""} ', MARK + " ") + "\n" if lines else ""
    if text.count(MARK) != len(lines):
        raise RenderedError("a label value holds the mark character")
    return text


def check_text(text: str) -> str | None:
    """``None`` when ``text`` is well-formed rendered text; else what is wrong, with the
    first offending line."""
    m = _TEXT.match(text)  # always matches (zero lines at least)
    end = m.end() if m is not None else 0
    if end == len(text):
        return None
    line_end = text.find("\n", end)
    bad = text[end : line_end if line_end != -1 else len(text)]
    if line_end == -1:
        return f"the text does not end with a newline: {bad[:120]!r}"
    return f"malformed line: {bad[:120]!r}"


def finish_text(text: str, timestamp_ms: int | None, extra: Labels) -> list[str]:
    """Prometheus text lines of checked rendered text, each with ``extra`` and the
    timestamp: what ``exposition_lines`` gives for the same samples."""
    if not text:
        return []
    if extra:
        close = _labels_text(extra) + "} "
        text = text.replace("{" + MARK + " ", "{" + close).replace(MARK + " ", close)
    else:
        text = text.replace("{" + MARK + " ", " ").replace("," + MARK + " ", "} ")
    if timestamp_ms is not None:
        text = text.replace("\n", f" {timestamp_ms}\n")
    lines = text.split("\n")
    lines.pop()  # the text ends with a newline
    return lines


def samples_from_text(text: str) -> list[Sample]:
    """The samples of checked rendered text, as objects (for ``--print`` and callers that
    want samples; the writer uses ``finish_text``)."""
    out: list[Sample] = []
    for line in text.splitlines():
        head, _, value = line.rpartition(MARK + " ")
        name, _, inner = head.partition("{")
        labels = tuple(
            (k, _UNESCAPE.sub(lambda m: "\n" if m[1] == "n" else m[1], v))
            for k, v in _PAIR.findall(inner)
        )
        out.append(Sample(name, float(value), tuple(sorted(labels))))
    return out


def reply(nonce: str, reports: Sequence[Sequence[object]], text: str) -> str:
    """The reader's reply: the ``REPLY`` line, the collectors' reports (JSON), the text."""
    return f"{REPLY}{nonce}\n{json.dumps(reports, separators=(',', ':'))}\n{text}"


def split_reply(stdout: str, nonce: str) -> tuple[list[list[object]], str] | None:
    """The reports and text of a rendered reply; ``None`` when ``stdout`` is raw output.
    Raises ``RenderedError`` for a reply that is malformed (checked here: see
    ``check_text``)."""
    if not stdout.startswith(REPLY):
        return None
    first = stdout.find("\n")
    second = stdout.find("\n", first + 1)
    if first == -1 or second == -1 or stdout[len(REPLY) : first] != nonce:
        raise RenderedError("the rendered reply's first lines are not the reader's")
    try:
        reports = json.loads(stdout[first + 1 : second])
    except ValueError:
        raise RenderedError("the rendered reply's reports are not JSON") from None
    if not isinstance(reports, list) or not all(
        isinstance(r, list) and len(r) == 6 for r in reports
    ):
        raise RenderedError("the rendered reply's reports are not the reader's")
    text = stdout[second + 1 :]
    problem = check_text(text)
    if problem is not None:
        raise RenderedError(problem)
    return reports, text
