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
from typing import NamedTuple

Labels = tuple[tuple[str, str], ...]


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
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
        inner = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in self.labels)
        return f"{self.name}{{{inner}}}"

    def exposition(self, timestamp_ms: int | None = None) -> str:
        line = f"{self.series()} {format_value(self.value)}"
        return line if timestamp_ms is None else f"{line} {timestamp_ms}"
