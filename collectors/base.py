"""What every collector is: a remote POSIX sh command and a pure parser, with options.

A collector never runs anything itself. ``command(options)`` returns shell text that the sweep
joins with the other collectors' into ONE script per host (see ``collectors.script``);
``parse(stdout, options)`` turns that part's output into samples. Parsers are pure and never
raise on garbage: they return what they could read and list the rest in ``Samples.problems``
(the collector then reports ``serverguard_collector_success 0``) or ``Samples.notes`` (reported,
success unaffected). A missing file or tool yields no samples and no problem.

Example::

    >>> from collectors.loadavg import LoadavgCollector
    >>> c = LoadavgCollector()
    >>> opts = c.resolve_options(None)
    >>> [s.exposition() for s in c.parse("0.25 0.50 1.00 2/345 6789\\n", opts)]
    ['node_load1 0.25', 'node_load5 0.5', 'node_load15 1']
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

from collectors.sample import Sample
from orchestrator.errors import ConfigError, ServerGuardError

Options = Mapping[str, Any]
OptionKind = Literal["regex", "int", "bool", "str", "str_map"]


class CollectorConfigError(ConfigError):
    """A collector name or option that cannot be used: one line naming the collector and option."""


class CollectorParseError(ServerGuardError):
    """Raised by a parser for output it cannot use at all; the runner reports success 0."""


class Samples(list[Sample]):
    """A parser's result: the samples, plus what went wrong on the way.

    ``problems`` make the collector report ``serverguard_collector_success 0``; ``notes`` are
    reported to the user but do not (a rejected textfile line, a mount that could not be read).
    """

    def __init__(
        self,
        samples: Iterable[Sample] = (),
        *,
        problems: Iterable[str] = (),
        notes: Iterable[str] = (),
    ) -> None:
        super().__init__(samples)
        self.problems: list[str] = list(problems)
        self.notes: list[str] = list(notes)

    def add(self, metric: str, value: float, /, **labels: str) -> None:
        """Append ``metric{labels} value`` (labels may include one called ``name``)."""
        pairs = tuple(labels.items()) if len(labels) < 2 else tuple(sorted(labels.items()))
        self.append(tuple.__new__(Sample, (metric, float(value), pairs)))


@dataclass(frozen=True)
class Option:
    """One option of a collector: its name, default, kind (validated) and a help line."""

    name: str
    default: Any
    help: str
    kind: OptionKind = "str"

    def validate(self, collector: str, value: Any) -> Any:
        where = f"collector {collector}: option {self.name}"
        if self.kind == "regex":
            if not isinstance(value, str):
                raise CollectorConfigError(f"{where}: expected a regular expression string")
            try:
                re.compile(value)
            except re.error as exc:
                raise CollectorConfigError(f"{where}: invalid regular expression: {exc}") from exc
            return value
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise CollectorConfigError(f"{where}: expected a non-negative integer")
            return value
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise CollectorConfigError(f"{where}: expected true or false")
            return value
        if self.kind == "str_map":
            if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise CollectorConfigError(f"{where}: expected a mapping of names to strings")
            return dict(value)
        if not isinstance(value, str):
            raise CollectorConfigError(f"{where}: expected a string")
        return value


class Collector:
    """Base of every collector; subclasses set the class attributes and the two methods.

    ``processes`` documents how many processes the command starts on the host in the usual
    case (forks of subshells included) when it runs in the sh script; the reading itself
    prefers shell builtins. The sweep reader (``host_op``) starts none for most collectors.
    """

    name: ClassVar[str]
    default_enabled: ClassVar[bool] = True
    # False when the output's size is up to the host's users (textfile): the sweep then
    # streams it instead of letting the host's shell hold all of it (orchestrator.ssh.session)
    bounded_output: ClassVar[bool] = True
    # True when the samples come from the host's users (textfile): a series another
    # collector of the same sweep produced is dropped from them and noted (run_parsers)
    user_series: ClassVar[bool] = False
    options: ClassVar[tuple[Option, ...]] = ()
    processes: ClassVar[str] = "0"

    def command(self, options: Options) -> str:
        """Shell text for what ``files`` cannot do ("" when the files are all it needs)."""
        raise NotImplementedError

    def host_op(self, options: Options) -> dict[str, Any] | None:
        """What the sweep reader (``collectors.host_reader``, python3 on the host) does
        instead of running ``command`` with ``/bin/sh``: an operation of its own (``statfs``,
        ``date``, ``uname``, ``attributes``), or ``{"op": "sh", ...}`` with a condition for
        starting the shell at all (``if_dir``, ``if_command``). ``None``: always the shell.
        ``"own_files": True``: the operation prints what ``files`` would have given (they
        are then not read, unless another collector wants them)."""
        return None

    def files(self, options: Options) -> tuple[str, ...]:
        """Plain text files this collector reads (sh glob patterns allowed).

        The sweep reads the files of ALL collectors with one process (``collectors.script``),
        instead of each collector reading its own with the shell's byte-at-a-time ``read`` or a
        ``cat`` of its own; ``render`` turns what was read into the text ``parse`` expects.
        Only files whose content the kernel formats belong here (a file's content could
        otherwise fake the header of another file); a file that cannot be read is absent.
        """
        return ()

    def render(self, files: Sequence[tuple[str, str]], stdout: str) -> str:
        """The input of ``parse``: the ``(path, content)`` pairs read for ``files`` (in the
        order of ``files``, globs expanded) and the output of ``command``. By default, the
        contents, then ``stdout``."""
        return "".join(content for _, content in files) + stdout

    def parse(self, stdout: str, options: Options) -> Samples:
        raise NotImplementedError

    def resolve_options(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """Defaults overlaid with ``given``, each value validated; unknown names refused."""
        known = {o.name: o for o in self.options}
        resolved = {o.name: o.default for o in self.options}
        for key, value in (given or {}).items():
            if key not in known:
                names = ", ".join(sorted(known)) or "none"
                raise CollectorConfigError(
                    f"collector {self.name}: unknown option {key!r} (known: {names})"
                )
            resolved[key] = known[key].validate(self.name, value)
        return resolved


class DeviceFilter:
    """node_exporter's deviceFilter: ignored if it matches ``exclude`` or misses ``include``.

    Matching is unanchored (Go's ``MatchString``), so ``re.search``; empty means unset.
    ``DeviceFilter.of`` shares one filter per pair of patterns, and each filter remembers its
    answers (device names repeat from sweep to sweep and host to host).
    """

    _shared: ClassVar[dict[tuple[str, str], DeviceFilter]] = {}

    def __init__(self, exclude: str = "", include: str = "") -> None:
        self.exclude = re.compile(exclude) if exclude else None
        self.include = re.compile(include) if include else None
        self._seen: dict[str, bool] = {}

    @classmethod
    def of(cls, exclude: str = "", include: str = "") -> DeviceFilter:
        found = cls._shared.get((exclude, include))
        if found is None:
            found = cls._shared[(exclude, include)] = cls(exclude, include)
        return found

    def ignored(self, name: str) -> bool:
        seen = self._seen.get(name)
        if seen is None:
            seen = bool(self.exclude is not None and self.exclude.search(name)) or bool(
                self.include is not None and not self.include.search(name)
            )
            if len(self._seen) < 4096:
                self._seen[name] = seen
        return seen


_C = TypeVar("_C", bound="Collector")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


def kernel_text(
    parse: Callable[[_C, str, Options], Samples],
) -> Callable[[_C, str, Options], Samples]:
    """For a ``parse`` of text the kernel formats, which is ASCII: other characters are read
    as an unreadable value (``x``), handled as the parser handles any, and reported once
    (Python's ``int`` and ``float`` read ``"٣"`` as 3; node_exporter's Go parsers refuse
    it). ASCII input costs one check."""

    @functools.wraps(parse)
    def checked(self: _C, stdout: str, options: Options) -> Samples:
        if stdout.isascii():
            return parse(self, stdout, options)
        lines = sum(not line.isascii() for line in stdout.splitlines())
        out = parse(self, _NON_ASCII.sub("x", stdout), options)
        out.problems.append(
            f"{lines} line(s) with non-ASCII characters, read as unreadable values"
            " (the kernel writes ASCII here)"
        )
        return out

    return checked


def parse_number(text: str) -> float | None:
    """A decimal or ``0x`` hex number, or ``None`` (never raises).

    ``None`` also for a number too large for a float, and for digits other than ASCII ones
    (``"²".isdigit()`` is true, but no kernel prints it).
    """
    text = text.strip()
    if not text.isascii():
        return None
    try:
        if text.startswith(("0x", "0X")):
            return float(int(text[2:], 16))
        return float(int(text)) if text.lstrip("-").isdigit() else float(text)
    except (ValueError, OverflowError):
        return None


def shell_quote(text: str) -> str:
    """Single-quote ``text`` for POSIX sh."""
    return "'" + text.replace("'", "'\"'\"'") + "'"
