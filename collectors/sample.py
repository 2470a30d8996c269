"""A time series sample and its Prometheus text form.

Collectors return samples without ``job``/``instance`` and without a timestamp; the sweep
adds both (one timestamp per host per sweep).

Example::

    >>> s = Sample("node_load1", 0.42)
    >>> s.with_labels(job="node", instance="web1").exposition(1700000000000)
    'node_load1{instance="web1",job="node"} 0.42 1700000000000'
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

Labels = tuple[tuple[str, str], ...]


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(value: float) -> str:
    """``42``, ``0.5``, ``1e+15``, ``NaN``, ``+Inf``: Go's Prometheus text, integers bare."""
    try:
        integral = value.is_integer()  # False for NaN and the infinities
    except AttributeError:  # an int (Python 3.11 ints have no is_integer)
        value = float(value)
        integral = value.is_integer()
    if integral and -1e15 < value < 1e15:
        return str(int(value))
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class Sample(NamedTuple):
    """One value of one series. ``labels`` are kept sorted by name.

    A named tuple, not a dataclass: a sweep makes hundreds per host, and a tuple is the
    cheapest object CPython builds (and the garbage collector untracks it once it holds
    only strings and numbers).
    """

    name: str
    value: float
    labels: Labels = ()

    @classmethod
    def of(cls, name: str, value: float, **labels: str) -> Sample:
        if len(labels) < 2:
            return cls(name, float(value), tuple(labels.items()))
        return cls(name, float(value), tuple(sorted(labels.items())))

    def with_sorted_extra(self, extra: Labels) -> Sample:
        """The sample with ``extra`` (sorted, names not in ``labels``) merged in."""
        labels = self.labels
        if not labels or labels[-1][0] < extra[0][0]:
            return Sample(self.name, self.value, labels + extra)
        return Sample(self.name, self.value, tuple(sorted(labels + extra)))

    def with_labels(self, **extra: str) -> Sample:
        merged = dict(self.labels)
        merged.update(extra)
        return Sample(self.name, self.value, tuple(sorted(merged.items())))

    def series(self) -> str:
        """``name{a="1",b="2"}``: the series identity in Prometheus text."""
        if not self.labels:
            return self.name
        return f"{self.name}{{{_labels_text(self.labels)}}}"

    def exposition(self, timestamp_ms: int | None = None) -> str:
        line = f"{self.series()} {format_value(self.value)}"
        return line if timestamp_ms is None else f"{line} {timestamp_ms}"


# 'a="1",b="2"' by label tuple: label sets repeat across samples, sweeps and hosts
# (cpu="0",mode="user"; device="eth0"), so each is escaped and joined once per process.
# Bounded: cleared when full.
_INNER_TEXT: dict[Labels, str] = {}
_TEXT_CACHE_MAX = 65_536


def _labels_text(labels: Labels) -> str:
    return ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels)


def _inner_text(labels: Labels) -> str:
    text = _labels_text(labels)
    if len(_INNER_TEXT) >= _TEXT_CACHE_MAX:
        _INNER_TEXT.clear()
    _INNER_TEXT[labels] = text
    return text


def exposition_lines(
    samples: Iterable[Sample], timestamp_ms: int | None = None, extra: Labels = ()
) -> list[str]:
    """Prometheus text lines of ``samples``, each also labelled with ``extra``.

    The sweep's way of adding ``job``/``instance``: no merged ``Sample`` per sample.
    ``extra``'s labels come after the sample's own (names must not repeat); the order of
    labels in the text does not matter to VictoriaMetrics, which sorts them into one series
    (checked in tests/integration/test_vm_writer.py). One sample at a time, with sorted
    labels: ``Sample.exposition``.

    >>> exposition_lines([Sample("up", 1.0), Sample("a", 0.5, (("z", "1"),))], 7,
    ...                  (("instance", "web1"),))
    ['up{instance="web1"} 1 7', 'a{z="1",instance="web1"} 0.5 7']
    """
    tail = "" if timestamp_ms is None else f" {timestamp_ms}"
    suffix = _labels_text(extra)
    bare_close = "{" + suffix + "} " if suffix else " "
    more_close = "," + suffix + "} " if suffix else "} "
    inner_get = _INNER_TEXT.get
    fmt = format_value
    lines: list[str] = []
    append = lines.append
    # This runs for every sample of every sweep: format_value's common case is inlined
    # ("%d" of an integral float is str(int(value)), a third quicker), and an f-string
    # builds each line in one allocation where "+" made four.
    for name, value, labels in samples:
        if value.__class__ is float and value.is_integer() and -1e15 < value < 1e15:
            text = "%d" % value  # noqa: UP031 (measured: quicker than f"{int(value)}")
        else:
            text = fmt(value)
        if not labels:
            append(f"{name}{bare_close}{text}{tail}")
        else:
            inner = inner_get(labels) or _inner_text(labels)
            append(f"{name}{{{inner}{more_close}{text}{tail}")
    return lines
