"""One remote script per host and sweep: build it, split its output, run the parsers.

``build_script`` joins the enabled collectors' commands, each between two marker lines that
carry a per-script nonce, the part's exit status and ``/proc/uptime`` read before and after
(a shell builtin ``read``: no ``date`` process; the resolution is 10 ms, which is what the
kernel prints). Collectors whose commands are identical share one section (``cpu`` and
``stat`` both read ``/proc/stat``: one ``cat``)::

    @@SG 3f2a... BEGIN cpu,stat
    cpu  8137 0 2176 ...
    @@SG 3f2a... END cpu,stat 0 1234.56 1234.57

``split_output`` finds the sections again, tolerating a missing section, a section cut short
(no END marker: its last line, maybe cut, is dropped), markers with a foreign nonce (they are
output, not markers) and garbage between sections. ``run_parsers`` feeds each part to its
parser and adds ``serverguard_collector_success{collector}`` and
``serverguard_collector_duration_seconds{collector}``.

Example::

    >>> from collectors.registry import default_registry
    >>> reg = default_registry()
    >>> cols = [reg.get("loadavg")]
    >>> script = build_script(cols, nonce="ab12")
    >>> out = ("\\n@@SG ab12 BEGIN loadavg\\n0.10 0.20 0.30 1/99 42\\n"
    ...        "\\n@@SG ab12 END loadavg 0 5.00 5.01\\n")
    >>> sweep = run_parsers(out, cols)
    >>> [s.exposition() for s in sweep.samples]
    ['node_load1 0.1', 'node_load5 0.2', 'node_load15 0.3']
    >>> [s.exposition() for s in sweep.collector_samples]
    ['serverguard_collector_success{collector="loadavg"} 1', \
'serverguard_collector_duration_seconds{collector="loadavg"} 0.01']
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from collectors.base import Collector, CollectorParseError, Samples
from collectors.sample import Sample

# Shell functions shared by the collectors' commands (all builtins: no process). The framing's
# own variables are upper case (__SG_*) so that no collector's lower case __sg_* clobbers them.
# Caution for commands: sh's read builtin reads one byte per read(2), and numeric sysctl files
# (/proc/sys/...) answer only a read at offset 0: those need cat.
PRELUDE = r"""__sg_up() { __SG_u=; read -r __SG_u __SG_x < /proc/uptime; } 2>/dev/null
__sg_cat() {
  for __sg_f; do
    while IFS= read -r __sg_l || [ -n "$__sg_l" ]; do
      printf '%s\n' "$__sg_l"
    done < "$__sg_f" || return
  done
}
"""

_MARKER = re.compile(
    r"^@@SG (?P<nonce>[0-9a-f]+) (?P<kind>BEGIN|END) (?P<names>[a-z0-9_]+(?:,[a-z0-9_]+)*)"
    r"(?: (?P<rc>\S*) (?P<t0>\S*) (?P<t1>\S*))?$",
    re.MULTILINE,
)


class SweepScript(str):
    """The script text; ``.nonce`` is what ``split_output`` needs to trust its markers."""

    nonce: str

    def __new__(cls, text: str, nonce: str) -> SweepScript:
        obj = super().__new__(cls, text)
        obj.nonce = nonce
        return obj


@dataclass(frozen=True)
class SectionResult:
    """One collector's part of the output."""

    stdout: str
    rc: int | None  # None: no END marker (cut short) or no section at all
    duration_seconds: float | None = None
    complete: bool = True
    problem: str | None = None  # why the section is not usable as is


@dataclass
class CollectorReport:
    """What happened to one collector in one sweep (for the error report)."""

    name: str
    success: bool
    duration_seconds: float | None
    rc: int | None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class ParsedSweep(NamedTuple):
    samples: list[Sample]
    collector_samples: list[Sample]
    reports: dict[str, CollectorReport]


def new_nonce() -> str:
    return secrets.token_hex(8)


def _sections(
    collectors: Sequence[Collector], options: Mapping[str, Mapping[str, Any]] | None
) -> list[tuple[list[str], str]]:
    """Group collectors by identical command text, keeping the first one's position."""
    groups: dict[str, list[str]] = {}
    for c in collectors:
        resolved = c.resolve_options((options or {}).get(c.name))
        cmd = c.command(resolved).strip() or ":"
        groups.setdefault(cmd, []).append(c.name)
    return [(names, cmd) for cmd, names in groups.items()]


def build_script(
    collectors: Sequence[Collector],
    options: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    nonce: str | None = None,
) -> SweepScript:
    """The POSIX sh script running every collector in ``collectors`` once, in order."""
    nonce = nonce or new_nonce()
    if not re.fullmatch(r"[0-9a-f]+", nonce):
        raise ValueError("nonce must be lowercase hex")
    parts = [PRELUDE]
    for names, cmd in _sections(collectors, options):
        label = ",".join(names)
        parts.append(
            f"__sg_up; __SG_b=$__SG_u; printf '\\n@@SG %s BEGIN %s\\n' {nonce} {label}\n"
            f"{{ {cmd}\n}} </dev/null 2>/dev/null\n"
            f"__SG_rc=$?; __sg_up; printf '\\n@@SG %s END %s %s %s %s\\n' {nonce} {label} "
            f'"$__SG_rc" "$__SG_b" "$__SG_u"\n'
        )
    return SweepScript("".join(parts), nonce)


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def split_output(
    stdout: str, collectors: Sequence[Collector], *, nonce: str | None = None
) -> dict[str, SectionResult]:
    """Each collector's section of ``stdout`` (a missing one has ``problem`` set)."""
    markers = list(_MARKER.finditer(stdout))
    if nonce is None:
        first = next((m for m in markers if m["kind"] == "BEGIN"), None)
        nonce = first["nonce"] if first else ""
    markers = [m for m in markers if m["nonce"] == nonce]
    found: dict[str, SectionResult] = {}
    for i, m in enumerate(markers):
        if m["kind"] != "BEGIN":
            continue
        start = m.end() + 1
        nxt = markers[i + 1] if i + 1 < len(markers) else None
        if nxt is not None and nxt["kind"] == "END" and nxt["names"] == m["names"]:
            text = stdout[start : max(start, nxt.start() - 1)]
            rc = int(nxt["rc"]) if (nxt["rc"] or "").isdigit() else None
            t0, t1 = _float(nxt["t0"]), _float(nxt["t1"])
            duration = round(max(t1 - t0, 0.0), 2) if t0 is not None and t1 is not None else None
            problem = None if rc is not None else "the end marker carries no exit status"
            result = SectionResult(text, rc, duration, True, problem)
        else:
            end = nxt.start() - 1 if nxt is not None else len(stdout)
            text = stdout[start : max(start, end)]
            # the last line may be cut in the middle, even if a newline happens to follow it
            body = text[:-1] if text.endswith("\n") else text
            text = body[: body.rfind("\n") + 1]
            result = SectionResult(text, None, None, False, "output cut short (no end marker)")
        for name in m["names"].split(","):
            found.setdefault(name, result)
    missing = SectionResult("", None, None, False, "no output section (the script stopped early?)")
    return {c.name: found.get(c.name, missing) for c in collectors}


def run_parsers(
    stdout: str,
    collectors: Sequence[Collector],
    options: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    nonce: str | None = None,
    cpu_guard: Any = None,
) -> ParsedSweep:
    """Parse every section; per collector success and duration samples; never raises.

    ``cpu_guard`` is the host's ``collectors.cpu.CpuCounterGuard`` (kept across sweeps).
    """
    sections = split_output(stdout, collectors, nonce=nonce)
    samples: list[Sample] = []
    meta: list[Sample] = []
    reports: dict[str, CollectorReport] = {}
    for c in collectors:
        section = sections[c.name]
        problems: list[str] = [section.problem] if section.problem else []
        notes: list[str] = []
        got: list[Sample] = []
        try:
            resolved = c.resolve_options((options or {}).get(c.name))
            parsed = c.parse(section.stdout, resolved)
            got = list(parsed)
            problems += parsed.problems
            notes += parsed.notes
        except CollectorParseError as exc:
            problems.append(str(exc))
        except Exception as exc:  # a parser bug must not lose the other collectors
            problems.append(f"parser failed: {type(exc).__name__}: {exc}")
        if section.rc not in (None, 0):
            problems.append(f"remote command exited with status {section.rc}")
        if cpu_guard is not None and c.name == "cpu" and got:
            from collectors.cpu import boot_time_from_stat

            got = cpu_guard.apply(got, boot_time=boot_time_from_stat(section.stdout))
        samples.extend(got)
        success = not problems
        meta.append(
            Sample.of("serverguard_collector_success", 1 if success else 0, collector=c.name)
        )
        if section.duration_seconds is not None:
            meta.append(
                Sample.of(
                    "serverguard_collector_duration_seconds",
                    section.duration_seconds,
                    collector=c.name,
                )
            )
        reports[c.name] = CollectorReport(
            c.name, success, section.duration_seconds, section.rc, problems, notes
        )
    return ParsedSweep(samples, meta, reports)


__all__ = [
    "CollectorReport",
    "ParsedSweep",
    "Samples",
    "SectionResult",
    "SweepScript",
    "build_script",
    "new_nonce",
    "run_parsers",
    "split_output",
]
