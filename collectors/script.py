"""One remote script per host and sweep: build it, split its output, run the parsers.

``build_script`` joins the enabled collectors' work into one POSIX sh script. Every plain text
file the collectors read (``Collector.files``: /proc/stat, /proc/meminfo, sysfs attributes...)
is read by ONE ``head`` process, which prints each file behind a ``==> path <==`` header (the
shell's ``read`` builtin makes one system call per byte; a ``cat`` per file is a process per
file). What files cannot do (``date``, ``stat -f``) runs as command sections. Every section
sits between two marker lines that carry a per-script nonce, the part's exit status and
``/proc/uptime`` at its start and end (a builtin ``read``; 10 ms resolution; a section starts
when the previous one ends, so the file is read once per section plus once). Collectors
whose commands are identical share one section::

    @@SG 3f2a... BEGIN files
    ==> /proc/stat <==
    cpu  8137 0 2176 ...
    @@SG 3f2a... END files 0 1234.56 1234.57

``split_output`` finds the sections again, tolerating a missing section, a section cut short
(no END marker: its last line, maybe cut, is dropped), markers with a foreign nonce (they are
output, not markers) and garbage between sections. ``split_files`` cuts the files section
at the headers of requested paths only. ``run_parsers`` gives each collector
``Collector.render`` of its files (and its command's output) to parse and adds
``serverguard_collector_success{collector}`` and
``serverguard_collector_duration_seconds{collector}`` (a file collector reports the files
section's duration).

Example::

    >>> from collectors.registry import default_registry
    >>> reg = default_registry()
    >>> cols = [reg.get("loadavg")]
    >>> script = build_script(cols, nonce="ab12")
    >>> "head -n 100000 -- /proc/loadavg /dev/null" in script
    True
    >>> out = ("\\n@@SG ab12 BEGIN files\\n==> /proc/loadavg <==\\n0.10 0.20 0.30 1/99 42\\n"
    ...        "\\n@@SG ab12 END files 1 5.00 5.01\\n")
    >>> sweep = run_parsers(out, cols)
    >>> [s.exposition() for s in sweep.samples]
    ['node_load1 0.1', 'node_load5 0.2', 'node_load15 0.3']
    >>> [s.exposition() for s in sweep.collector_samples]
    ['serverguard_collector_success{collector="loadavg"} 1', \
'serverguard_collector_duration_seconds{collector="loadavg"} 0.01']
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from collectors.base import Collector, CollectorParseError, Samples
from collectors.cpu import boot_time_from_stat
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
__sg_heads() {
  __SG_h=
  for __SG_f; do
    [ -r "$__SG_f" ] || continue
    [ -z "$__SG_h" ] || echo
    __SG_h=1; printf '==> %s <==\n' "$__SG_f"; __sg_cat "$__SG_f"
  done
}
"""

_MARKER = re.compile(
    r"^@@SG (?P<nonce>[0-9a-f]+) (?P<kind>BEGIN|END) (?P<names>[a-z0-9_]+(?:,[a-z0-9_]+)*)"
    r"(?: (?P<rc>\S*) (?P<t0>\S*) (?P<t1>\S*))?$",
    re.MULTILINE,
)


class SweepScript(str):
    """The script text; ``.nonce`` is what ``split_output`` needs to trust its markers;
    ``.bounded``: every collector's output has a bounded size (it may be buffered)."""

    nonce: str
    plan: ScriptPlan
    bounded: bool
    host_plan: bytes  # the sections for the sweep reader (JSON), and its id
    host_plan_id: str

    renders: bool  # the reader is asked to parse on the host (collectors.host_render)

    def __new__(
        cls, text: str, nonce: str, plan: ScriptPlan, render: dict[str, Any] | None = None
    ) -> SweepScript:
        obj = super().__new__(cls, text)
        obj.nonce = nonce
        obj.plan = plan
        obj.bounded = plan.bounded
        obj.renders = render is not None
        host_plan = plan.host_plan(nonce)
        if render is not None:
            host_plan["render"] = render
        obj.host_plan = json.dumps(host_plan, separators=(",", ":")).encode()
        obj.host_plan_id = _sha256(obj.host_plan)[:16]
        return obj


class SectionResult(NamedTuple):
    """One collector's part of the output (a named tuple: several per host and sweep)."""

    stdout: str
    rc: int | None  # None: no END marker (cut short) or no section at all
    duration_seconds: float | None = None
    complete: bool = True
    problem: str | None = None  # why the section is not usable as is


class CollectorReport(NamedTuple):
    """What happened to one collector in one sweep (for the error report); read-only."""

    name: str
    success: bool
    duration_seconds: float | None
    rc: int | None
    problems: Sequence[str] = ()
    notes: Sequence[str] = ()


class ParsedSweep(NamedTuple):
    samples: list[Sample]
    collector_samples: list[Sample]
    reports: dict[str, CollectorReport]


@functools.cache
def host_reader_source() -> bytes:
    """The sweep reader's program (``collectors/host_reader.py``), zlib-compressed as it
    goes to hosts: 6 KB instead of 17 KB per connection."""
    import zlib
    from pathlib import Path

    return zlib.compress(Path(__file__).with_name("host_reader.py").read_bytes(), 9)


def new_nonce() -> str:
    import secrets

    return secrets.token_hex(8)


def _sha256(data: bytes) -> str:
    # imported here: the parsers also run on hosts (collectors.host_render), where this
    # module's start-up is paid per connection and these are never used
    import hashlib

    return hashlib.sha256(data).hexdigest()


FILES_SECTION = "files"  # the label of the section that reads every collector's files
_HEADER = re.compile(r"^==> (.+) <==$", re.MULTILINE)
_GLOB = re.compile(r"[*?\[]")


class _Step(NamedTuple):
    collector: Collector
    has_files: bool
    has_cmd: bool
    options: Mapping[str, Any]
    label: tuple[tuple[str, str]]


class ScriptPlan:
    """What ``build_script`` decided, kept for parsing every sweep of that script.

    ``patterns`` are the file patterns of all collectors (first use first), read by one
    ``head`` in the ``files`` section; ``commands`` the remaining command sections
    (collectors with identical commands share one). ``owners`` maps a file path seen in the
    output to the collectors that asked for it, learnt once per path (paths are stable from
    one sweep to the next), so a sweep pays a dict lookup per file, not a glob match.
    """

    def __init__(
        self,
        collectors: Sequence[Collector],
        options: Mapping[str, Mapping[str, Any]] | None,
    ) -> None:
        self.collectors = list(collectors)
        self.resolved = {
            c.name: c.resolve_options((options or {}).get(c.name)) for c in self.collectors
        }
        self.file_patterns: dict[str, tuple[str, ...]] = {}
        self.commands: dict[str, str] = {}
        patterns: dict[str, None] = {}
        groups: dict[str, list[str]] = {}
        for c in self.collectors:
            opts = self.resolved[c.name]
            files = tuple(c.files(opts))
            cmd = c.command(opts).strip()
            if files:
                self.file_patterns[c.name] = files
                patterns.update(dict.fromkeys(files))
            if cmd or not files:
                groups.setdefault(cmd or ":", []).append(c.name)
                self.commands[c.name] = cmd or ":"
        self.patterns = list(patterns)
        self.sections = [(names, cmd) for cmd, names in groups.items()]
        self.known_owners: dict[str, tuple[str, ...]] = {}
        # what run_parsers needs of each collector, worked out once (it runs for every host
        # on every sweep)
        self.steps = self.steps_for(self.collectors, options)

    def steps_for(
        self, collectors: Sequence[Collector], options: Mapping[str, Mapping[str, Any]] | None
    ) -> list[_Step]:
        """``run_parsers``' view of ``collectors``: a collector the plan was not made with
        gets its options from ``options``."""
        return [
            _Step(
                c,
                c.name in self.file_patterns,
                c.name in self.commands,
                resolved
                if (resolved := self.resolved.get(c.name)) is not None
                else c.resolve_options((options or {}).get(c.name)),
                (("collector", c.name),),
            )
            for c in collectors
        ]

    def owners(self, path: str) -> tuple[str, ...]:
        found = self.known_owners.get(path)
        if found is None:
            found = tuple(
                name
                for name, pats in self.file_patterns.items()
                if any(
                    p == path or (_GLOB.search(p) and fnmatch.fnmatchcase(path, p))
                    for p in pats
                )
            )
            if len(self.known_owners) < 100_000:
                self.known_owners[path] = found
        return found

    def files_command(self) -> str:
        """One process for every file: ``head`` prints each behind a ``==> path <==`` header
        (GNU and busybox alike) and goes on after a file the kernel refuses to read (GNU
        ``tail -n +1`` stops there); without ``head``, builtins print the same."""
        setup, args = _file_arguments(self.patterns)
        return (
            f"{setup}if command -v head >/dev/null 2>&1; then LC_ALL=C head -n 100000 -- {args}\n"
            f"else __sg_heads {args}\nfi\n:"
        )

    @property
    def bounded(self) -> bool:
        """Every collector's output has a bounded size (it may be buffered)."""
        return all(c.bounded_output for c in self.collectors)

    def host_plan(self, nonce: str) -> dict[str, Any]:
        """The same sections for the sweep reader (``collectors.host_reader``): the files
        (patterns in the collectors' order, as ``Collector.render`` expects them), each
        command section as its collectors' ``host_op`` (all the same) or, failing that, the
        command for ``/bin/sh`` with the shared functions."""
        ops = {n: c.host_op(self.resolved[n]) for c in self.collectors
               if (n := c.name) in self.commands}
        wanted: dict[str, None] = {}  # files some collector still reads from the files op
        for name, patterns in self.file_patterns.items():
            if not (ops.get(name) or {}).get("own_files"):
                wanted.update(dict.fromkeys(patterns))
        sections: list[dict[str, Any]] = []
        if wanted:
            items = [p for p in self.patterns if p in wanted]
            sections.append({"label": FILES_SECTION, "op": "files", "items": items})
        for names, cmd in self.sections:
            first = ops[names[0]]
            spec = dict(first) if first is not None and all(ops[n] == first for n in names) \
                else {}
            if spec.get("op", "sh") == "sh":
                spec.update(op="sh", cmd=PRELUDE + cmd)
            spec.pop("own_files", None)
            spec["label"] = ",".join(names)
            sections.append(spec)
        return {"nonce": nonce, "stream": not self.bounded, "sections": sections}


_GROUPABLE = re.compile(r"(?P<dir>/[^*?\[\]\s'\"$`\\]+)/\*/(?P<leaf>[^*?\[\]\s'\"$`\\]+)")


def _file_arguments(patterns: Sequence[str]) -> tuple[str, str]:
    """Shell code setting ``"$@"`` to every file to read, and the arguments to read them.

    Patterns ``DIR/*/LEAF`` sharing a ``DIR`` (netclass's 21 attributes of
    ``/sys/class/net/*``) become one loop over ``DIR``: one directory scan instead of one
    per pattern plus a stat per match, 0.6 ms of the host's CPU per sweep on 4 interfaces.
    The loop joins the paths with newlines and splits them once (appending to ``"$@"`` per
    entry would copy the list every time); names under such directories have no newline.
    Without groups the arguments are written out, as they always were.
    """
    groups: dict[str, list[str]] = {}
    for p in patterns:
        m = _GROUPABLE.fullmatch(p)
        if m:
            groups.setdefault(m["dir"], []).append(m["leaf"])
    grouped = {d for d, leaves in groups.items() if len(leaves) > 1}
    if not grouped:
        listed = list(patterns) + ["/dev/null"] * (len(patterns) < 2)
        return "", " ".join(listed)
    lines = ["set --"]
    words: list[str] = []  # patterns outside a group, added to "$@" by one `set`
    for p in patterns:
        m = _GROUPABLE.fullmatch(p)
        if m is None or m["dir"] not in grouped:
            words.append(p)
            continue
        leaves = groups.pop(m["dir"], None)
        if leaves is None:
            continue  # the directory's loop is written already
        if words:
            lines.append(f'set -- "$@" {" ".join(words)}')
            words = []
        paths = "".join(f"\n$__SG_d/{leaf}" for leaf in leaves)
        lines.append(
            f'__SG_a=; for __SG_d in {m["dir"]}/*; do __SG_a="$__SG_a{paths}"; done\n'
            "IFS='\n'; set -f; set -- \"$@\" $__SG_a; set +f; IFS=' \t\n'; __SG_a="
        )
    if words:
        lines.append(f'set -- "$@" {" ".join(words)}')
    lines.append('[ $# -ge 2 ] || set -- /dev/null "$@"')
    return "\n".join(lines) + "\n", '"$@"'


def build_script(
    collectors: Sequence[Collector],
    options: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    nonce: str | None = None,
    render: dict[str, Any] | None = None,
) -> SweepScript:
    """The POSIX sh script running every collector in ``collectors`` once, in order.

    ``render``: the reader's plan asks it to parse on the host
    (``collectors.host_code.render_spec``); the sh script is the same either way."""
    nonce = nonce or new_nonce()
    if not re.fullmatch(r"[0-9a-f]+", nonce):
        raise ValueError("nonce must be lowercase hex")
    plan = ScriptPlan(collectors, options)
    parts = [PRELUDE]
    sections = list(plan.sections)
    if plan.patterns:
        sections.insert(0, ([FILES_SECTION], plan.files_command()))
    for i, (names, cmd) in enumerate(sections):
        label = ",".join(names)
        # a section starts when the previous one ended: its END already read /proc/uptime
        # (the shell reads that file one byte per system call)
        up = "" if i else "__sg_up; "
        parts.append(
            f"{up}__SG_b=$__SG_u; printf '\\n@@SG %s BEGIN %s\\n' {nonce} {label}\n"
            f"{{ {cmd}\n}} </dev/null 2>/dev/null\n"
            f"__SG_rc=$?; __sg_up; printf '\\n@@SG %s END %s %s %s %s\\n' {nonce} {label} "
            f'"$__SG_rc" "$__SG_b" "$__SG_u"\n'
        )
    return SweepScript("".join(parts), nonce, plan, render)


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _markers(stdout: str, nonce: str) -> list[re.Match[str]]:
    """The marker lines of ``stdout`` (with ``nonce``, when given).

    ``str.find`` for the fixed prefix, then the regex at each line start it finds: a
    ``re.MULTILINE`` scan tries the pattern at every line of 15+ KB, five times slower.
    """
    needle = f"@@SG {nonce} " if nonce else "@@SG "
    found: list[re.Match[str]] = []
    at = stdout.find(needle)
    while at != -1:
        if at == 0 or stdout[at - 1] == "\n":
            m = _MARKER.match(stdout, at)
            if m is not None:
                found.append(m)
        at = stdout.find(needle, at + 1)
    return found


def _find_sections(stdout: str, nonce: str | None) -> dict[str, SectionResult]:
    """Every section of the output, by collector name (and ``files``)."""
    if nonce is None:
        first = next((m for m in _markers(stdout, "") if m["kind"] == "BEGIN"), None)
        nonce = first["nonce"] if first else ""
    markers = [m for m in _markers(stdout, nonce) if m["nonce"] == nonce]
    found: dict[str, SectionResult] = {}
    for i, m in enumerate(markers):
        if m["kind"] != "BEGIN":
            continue
        start = m.end() + 1
        nxt = markers[i + 1] if i + 1 < len(markers) else None
        if nxt is not None and nxt["kind"] == "END" and nxt["names"] == m["names"]:
            text = stdout[start : max(start, nxt.start() - 1)]
            status = nxt["rc"] or ""  # $?: 0 to 255 (ASCII digits: "²".isdigit() is true)
            rc = int(status) if status.isascii() and status.isdigit() and len(status) < 20 else None
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
    return found


_MISSING = SectionResult("", None, None, False, "no output section (the script stopped early?)")


def split_output(
    stdout: str, collectors: Sequence[Collector], *, nonce: str | None = None
) -> dict[str, SectionResult]:
    """Each collector's section of ``stdout`` (a missing one has ``problem`` set).

    A collector that only reads files gets the ``files`` section (all files, with headers).
    """
    found = _find_sections(stdout, nonce)
    files = found.get(FILES_SECTION, _MISSING)
    return {c.name: found.get(c.name, files) for c in collectors}


def split_files(text: str, plan: ScriptPlan) -> dict[str, list[tuple[str, str]]]:
    """The ``files`` section cut into ``(path, content)`` per collector, in output order.

    Only headers naming a path some collector asked for count; anything else is content.
    """
    per: dict[str, list[tuple[str, str]]] = {}
    if not text.startswith("==> "):
        return per
    owners = plan.owners
    known = plan.known_owners  # owners() without a Python call for paths seen before
    last: list[tuple[str, str]] = []
    path = ""
    # head writes "==> path <==\n" before each file and an empty line between files, so
    # "\n==> " ends one file's content (with its own last newline) and starts a header
    for chunk in text[4:].split("\n==> "):
        name, sep, content = chunk.partition(" <==\n")
        if not sep and chunk.endswith(" <=="):  # a header at the very end: an empty file
            name, sep, content = chunk[:-4], " <==", ""
        found = (known.get(name) or owners(name)) if sep else ()
        if not found:  # not a header of ours: the previous file's content goes on
            if last:
                previous = last[-1][1]
                last[-1] = (path, previous + "\n==> " + chunk)
            continue
        path = name
        entry = (name, content)
        last = []
        for owner in found:
            files = per.setdefault(owner, [])
            files.append(entry)
            last = files
    return per


def run_parsers(
    stdout: str,
    collectors: Sequence[Collector],
    options: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    nonce: str | None = None,
    cpu_guard: Any = None,
    plan: ScriptPlan | None = None,
) -> ParsedSweep:
    """Parse every section; per collector success and duration samples; never raises.

    ``cpu_guard`` is the host's ``collectors.cpu.CpuCounterGuard`` (kept across sweeps);
    ``plan`` is the script's (``SweepScript.plan``), made from the collectors when not given.
    """
    if plan is None:
        plan = ScriptPlan(collectors, options)
    found = _find_sections(stdout, nonce)
    files_section = found.get(FILES_SECTION, _MISSING)
    per_file = split_files(files_section.stdout, plan) if plan.patterns else {}
    samples: list[Sample] = []
    meta: list[Sample] = []
    reports: dict[str, CollectorReport] = {}
    users: list[tuple[list[Sample], list[str]]] = []  # user_series samples, notes: last
    new = tuple.__new__  # builds the named tuple without its Python-level __new__
    get_section = found.get
    steps = plan.steps if collectors == plan.collectors else plan.steps_for(collectors, options)
    for c, has_files, has_cmd, resolved, label in steps:
        name = c.name
        section = get_section(name, _MISSING) if has_cmd else files_section
        problems: list[str] = [section.problem] if section.problem else []
        if has_files and has_cmd and files_section.problem:
            problems.append(files_section.problem)
        notes: list[str] = []
        got: list[Sample] = []
        text = section.stdout
        try:
            if has_files:
                text = c.render(per_file.get(name, ()), text if has_cmd else "")
            parsed = c.parse(text, resolved)
            got = parsed
            if parsed.problems:
                problems += parsed.problems
            if parsed.notes:
                notes += parsed.notes
        except CollectorParseError as exc:
            problems.append(str(exc))
        except Exception as exc:  # a parser bug must not lose the other collectors
            problems.append(f"parser failed: {type(exc).__name__}: {exc}")
        # head's status says whether EVERY file could be read: not this collector's failure
        if has_cmd and section.rc not in (None, 0):
            problems.append(f"remote command exited with status {section.rc}")
        if cpu_guard is not None and name == "cpu" and got:
            got = cpu_guard.apply(got, boot_time=boot_time_from_stat(text))
        if c.user_series:
            users.append((got, notes))
        else:
            samples += got
        success = not problems
        meta.append(new(Sample, ("serverguard_collector_success", 1.0 if success else 0.0, label)))
        duration = section.duration_seconds
        if duration is not None:
            meta.append(
                new(Sample, ("serverguard_collector_duration_seconds", float(duration), label))
            )
        reports[name] = new(
            CollectorReport, (name, success, duration, section.rc, problems, notes)
        )
    if users:
        samples += _not_repeating(samples, users)
    return ParsedSweep(samples, meta, reports)


def _not_repeating(
    theirs: list[Sample], users: list[tuple[list[Sample], list[str]]]
) -> list[Sample]:
    """The user collectors' samples whose series no other collector of the sweep wrote;
    each one dropped (``node_load1`` in a .prom file) is noted: one series, one value per
    timestamp, as node_exporter refuses such a collision."""
    taken = {(s[0], s[2]) for s in theirs}
    kept: list[Sample] = []
    for got, notes in users:
        for sample in got:
            if (sample[0], sample[2]) in taken:
                notes.append(f"{sample.series()}: another collector writes this series; "
                             "dropped")
            else:
                kept.append(sample)
    return kept


__all__ = [
    "CollectorReport",
    "ParsedSweep",
    "Samples",
    "ScriptPlan",
    "SectionResult",
    "SweepScript",
    "build_script",
    "host_reader_source",
    "new_nonce",
    "run_parsers",
    "split_files",
    "split_output",
]
