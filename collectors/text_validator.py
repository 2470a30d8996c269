"""Validation of Prometheus text lines, for the textfile collector.

Example::

    >>> v = TextValidator()
    >>> v.feed("a.prom", 1, 'up{job="x"} 1') is None, v.rejected[0][1]
    (True, 'a.prom:1: reserved label job (set by ServerGuard)')
    >>> v.feed("a.prom", 2, "backup_ok 1").exposition()
    'backup_ok 1'
    >>> v.feed("a.prom", 3, "up 0") is None, v.rejected[1][1]
    (True, 'a.prom:3: reserved metric name up (set by ServerGuard)')
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from collectors.sample import Sample

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_VALUE = re.compile(r"[+-]?(?:[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?|[0-9]+\.|Inf|inf|NaN|nan)")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
RESERVED = ("job", "instance")
# Metric names ServerGuard itself writes for every host: a file's `up 1` or
# `serverguard_collector_success{collector="cpu"} 1` would forge (or collide with) its own
# series, as node_exporter refuses a text file's collision with its own metrics.
RESERVED_NAMES = frozenset({"up", "node_textfile_scrape_error", "node_textfile_mtime_seconds"})
RESERVED_PREFIX = "serverguard_"


def reserved_name(name: str) -> bool:
    """True for a metric name only ServerGuard may write (``up``, ``serverguard_*``, the
    textfile collector's own ``node_textfile_scrape_error`` and ``node_textfile_mtime_seconds``).
    """
    return name in RESERVED_NAMES or name.startswith(RESERVED_PREFIX)


@dataclass
class TextValidator:
    """Line-by-line validation of Prometheus text, shared by all files of one sweep.

    ``feed(source, lineno, line)`` returns the sample or ``None``; rejections are collected in
    ``rejected`` as ``"source:line: reason"``.
    """

    types: dict[str, str] = field(default_factory=dict)
    seen_families: set[str] = field(default_factory=set)
    seen_series: set[str] = field(default_factory=set)
    rejected: list[tuple[str, str]] = field(default_factory=list)

    def _reject(self, source: str, lineno: int, reason: str) -> None:
        self.rejected.append((source, f"{source}:{lineno}: {reason}"))

    def _family(self, name: str) -> str:
        for suffix, kinds in (
            ("_bucket", ("histogram",)),
            ("_sum", ("histogram", "summary")),
            ("_count", ("histogram", "summary")),
        ):
            base = name[: -len(suffix)]
            if name.endswith(suffix) and self.types.get(base) in kinds:
                return base
        return name

    def feed(self, source: str, lineno: int, line: str) -> Sample | None:
        line = line.strip()
        if not line:
            return None
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 2 and parts[1] == "TYPE":
                self._type_line(source, lineno, parts)
            return None
        parsed = self._sample(line)
        if isinstance(parsed, str):
            self._reject(source, lineno, parsed)
            return None
        name, labels, value = parsed
        if reserved_name(name):
            self._reject(source, lineno, f"reserved metric name {name} (set by ServerGuard)")
            return None
        family = self._family(name)
        kind = self.types.get(family)
        if kind == "histogram" and name.endswith("_bucket") and "le" not in labels:
            self._reject(source, lineno, f"histogram bucket {name} without an le label")
            return None
        sample = Sample(name, value, tuple(sorted(labels.items())))
        series = sample.series()
        if series in self.seen_series:
            self._reject(source, lineno, f"duplicate series {series}")
            return None
        self.seen_series.add(series)
        self.seen_families.add(family)
        return sample

    def _type_line(self, source: str, lineno: int, parts: list[str]) -> None:
        if len(parts) != 4 or not _NAME.fullmatch(parts[2]) or parts[3].strip() not in TYPES:
            self._reject(source, lineno, "malformed # TYPE line")
            return
        name, kind = parts[2], parts[3].strip()
        if reserved_name(name):
            self._reject(source, lineno, f"reserved metric name {name} (set by ServerGuard)")
        elif name in self.types and self.types[name] != kind:
            self._reject(source, lineno, f"# TYPE {name} {kind} contradicts {self.types[name]}")
        elif name in self.seen_families and name not in self.types:
            self._reject(source, lineno, f"# TYPE {name} after samples of {name}")
        else:
            self.types[name] = kind

    @staticmethod
    def _sample(line: str) -> tuple[str, dict[str, str], float] | str:
        m = _NAME.match(line)
        if not m:
            return f"invalid metric name in {line[:60]!r}"
        name, pos = m.group(), m.end()
        if pos < len(line) and line[pos] not in "{ \t":
            return f"invalid metric name in {line[:60]!r}"
        labels: dict[str, str] = {}
        if pos < len(line) and line[pos] == "{":
            pos += 1
            while True:
                while pos < len(line) and line[pos] == " ":
                    pos += 1
                if pos < len(line) and line[pos] == "}":
                    pos += 1
                    break
                lm = _LABEL.match(line, pos)
                if not lm:
                    return f"invalid label name in {line[:60]!r}"
                key = lm.group()
                pos = lm.end()
                if line[pos : pos + 2] != '="':
                    return f"label {key} without a quoted value"
                pos += 2
                value: list[str] = []
                while pos < len(line) and line[pos] != '"':
                    if line[pos] == "\\":
                        nxt = line[pos + 1 : pos + 2]
                        if nxt not in ("\\", '"', "n"):
                            return f"invalid escape in the value of label {key}"
                        value.append("\n" if nxt == "n" else nxt)
                        pos += 2
                    else:
                        value.append(line[pos])
                        pos += 1
                if pos >= len(line):
                    return f"unterminated value of label {key}"
                pos += 1
                if key in labels:
                    return f"label {key} given twice"
                if key in RESERVED or key.startswith("__"):
                    return f"reserved label {key} (set by ServerGuard)"
                labels[key] = "".join(value)
                if pos < len(line) and line[pos] == ",":
                    pos += 1
                elif line[pos : pos + 1] != "}":
                    return f"expected , or }} after label {key}"
        rest = line[pos:].split()
        if not rest or not line[pos : pos + 1].isspace():
            return f"missing value in {line[:60]!r}"
        if len(rest) > 1:
            return "client-side timestamps are not allowed" if len(rest) == 2 else "trailing text"
        if not _VALUE.fullmatch(rest[0]):
            return f"invalid value {rest[0][:30]!r}"
        value_f = float(rest[0].replace("Inf", "inf"))
        if math.isnan(value_f) and rest[0].lower() != "nan":
            return f"invalid value {rest[0][:30]!r}"
        return name, labels, value_f
