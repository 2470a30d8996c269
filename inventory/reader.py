"""Read inventory sources in-process through ansible-core, as ``ansible-inventory --list`` does.

:func:`read_with_ansible` builds ansible-core's own ``DataLoader``, ``InventoryManager`` and
``VariableManager``, so every format and rule is Ansible's (YAML, INI, scripts, plugin
configurations, ``group_vars``/``host_vars``, ranges, precedence). It returns a plain
:class:`AnsibleSnapshot` (no ansible objects escape), with two differences from the CLI:

* a source that no plugin could parse is an error (Ansible only warns and carries on), and so
  is every failing file inside an inventory directory;
* Ansible's display is captured while reading: nothing reaches our stdout/stderr; warnings and
  deprecations come back as :class:`~inventory.problems.Problem` lines.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from inventory.model import Group
from inventory.problems import Problem, error, warning

log = logging.getLogger(__name__)

_LOCK = threading.Lock()  # ansible-core keeps global state (display, plugin loader, config)
_PLUGIN_OF_FAILURE = re.compile(r"Failed to parse inventory with '([^']+)' plugin")
# Said better by our own error, or not applicable to ServerGuard.
_NOISE = ("Deprecation warnings can be disabled", "Unable to parse ", "No inventory was parsed")
# Ansible warnings that repeat, less precisely, what our YAML check already reported.
_COVERED_BY_YAML_CHECK = re.compile(
    r"^(Found duplicate mapping key|Skipping unexpected key|Skipping key \(|Skipping '.*' as "
    r"this is not a valid group definition)")
_PREFERRED_PLUGIN = {".yml": "yaml", ".yaml": "yaml", ".json": "yaml", ".toml": "toml",
                     ".ini": "ini", "": "ini"}


@dataclass
class AnsibleSnapshot:
    """What ansible-core made of the sources, as plain data."""

    groups: dict[str, Group]  # Ansible's insertion order ('all', 'ungrouped' first)
    hosts: list[str]  # Ansible's insertion (definition) order
    hostvars_json: dict[str, dict[str, Any]]  # as in ``_meta.hostvars`` (all hosts, may be {})
    problems: list[Problem] = field(default_factory=list)


@dataclass
class _Capture:
    """Collects what ansible-core would have displayed."""

    skip_covered: frozenset[str] = frozenset()
    names: dict[str, str] = field(default_factory=dict)  # absolute path -> name shown
    current: str | None = None  # the file being parsed: where unlocated warnings come from
    problems: list[Problem] = field(default_factory=list)
    failures: list[tuple[str, BaseException]] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    def warning(self, msg: str, *_: Any, obj: Any = None, **__: Any) -> None:
        text = " ".join(str(msg).split())  # one line per problem
        if any(text.startswith(n) for n in _NOISE):
            return
        source, line, column = _origin(obj)
        source = source or self.current
        if source and source in self.skip_covered and _COVERED_BY_YAML_CHECK.match(text):
            return
        self._add(warning(text, self.names.get(source or "", source), line, column))

    def deprecated(self, msg: str, *_: Any, obj: Any = None, **__: Any) -> None:
        self.warning(f"deprecated: {msg}", obj=obj)

    def error_as_warning(self, msg: str | None, exception: BaseException, **_: Any) -> None:
        self.failures.append((str(msg or ""), exception))

    def error(self, msg: Any, *_: Any, **__: Any) -> None:
        self._add(error(str(msg)))

    def display(self, msg: str, *_: Any, **__: Any) -> None:
        log.debug("ansible: %s", msg)

    def _add(self, problem: Problem) -> None:
        if str(problem) not in self._seen:
            self._seen.add(str(problem))
            self.problems.append(problem)


@contextlib.contextmanager
def _captured_display(capture: _Capture) -> Iterator[None]:
    """Route ansible's Display singleton into ``capture`` for the duration of the block."""
    from ansible.utils.display import Display

    display = Display()
    names = ("warning", "deprecated", "error_as_warning", "error", "display")
    saved = {n: display.__dict__.get(n) for n in names}
    for n in names:
        setattr(display, n, getattr(capture, n))
    try:
        yield
    finally:
        for n, old in saved.items():
            if old is None:
                delattr(display, n)
            else:  # pragma: no cover - someone else patched it before us
                setattr(display, n, old)


def _origin(obj: Any) -> tuple[str | None, int | None, int | None]:
    """File, line, column of an ansible object, when ansible tagged it (best effort)."""
    origin = obj if hasattr(obj, "line_num") else None
    if origin is None and obj is not None:
        try:  # ansible-core 2.19 keeps origins in a private tag; no public accessor exists
            from ansible._internal._datatag._tags import Origin

            origin = Origin.get_tag(obj)
        except Exception:  # any failure only costs the location
            origin = None
    if origin is None:
        return None, None, None
    return getattr(origin, "path", None), origin.line_num, getattr(origin, "col_num", None)


def _init_ansible() -> None:
    """What the ansible CLIs do before touching inventory: install the collection loader."""
    from ansible.plugins.loader import init_plugin_loader
    from ansible.utils.collection_loader import AnsibleCollectionConfig

    if AnsibleCollectionConfig.collection_finder is None:
        init_plugin_loader([])


def _failure_problem(source: str, display_name: str,
                     failures: list[tuple[str, BaseException]]) -> Problem:
    """One line for a source no plugin could parse: the relevant plugin's reason."""
    if not failures:
        return error("not an inventory source Ansible can read", display_name)
    by_plugin: dict[str, BaseException] = {}
    for msg, exc in failures:
        m = _PLUGIN_OF_FAILURE.search(msg)
        by_plugin.setdefault(m.group(1) if m else "?", exc)
    ext = os.path.splitext(source)[1].lower()
    auto = by_plugin.get("auto")
    if os.access(source, os.X_OK) and "script" in by_plugin:
        plugin = "script"
    elif auto is not None and "no root 'plugin' key" not in str(auto):
        plugin = "auto"  # a plugin configuration file: its plugin's failure is the one
    else:
        plugin = _PREFERRED_PLUGIN.get(ext, "")
    plugin = plugin if plugin in by_plugin else next(iter(by_plugin))
    exc = by_plugin[plugin]
    reason = " ".join(str(getattr(exc, "message", None) or exc).split())
    _, line, column = _origin(getattr(exc, "obj", None))
    return error(f"cannot be read as an inventory ({plugin} plugin: {reason})",
                 display_name, line, column if line else None)


def read_with_ansible(sources: list[str], *, display_names: dict[str, str] | None = None,
                      yaml_checked: frozenset[str] = frozenset()) -> AnsibleSnapshot:
    """Read ``sources`` with ansible-core; failures are returned as error problems.

    ``display_names`` maps absolute file paths to the names used in messages;
    ``yaml_checked`` lists absolute paths already checked by :mod:`inventory.validate`,
    whose overlapping Ansible warnings are dropped.
    """
    from ansible.errors import AnsibleError

    names = display_names or {}
    capture = _Capture(skip_covered=yaml_checked, names=names)
    with _LOCK, _captured_display(capture):
        try:
            return _read(sources, capture, names)
        except AnsibleError as exc:
            source, line, column = _origin(getattr(exc, "obj", None))
            source = names.get(source or "", source)
            message = " ".join(str(getattr(exc, "message", None) or exc).split())
            problems = [*capture.problems, error(message, source, line, column)]
            return AnsibleSnapshot(groups={}, hosts=[], hostvars_json={}, problems=problems)


def _read(sources: list[str], capture: _Capture, names: dict[str, str]) -> AnsibleSnapshot:
    from ansible import constants as C
    from ansible.errors import AnsibleError
    from ansible.inventory.manager import InventoryManager
    from ansible.module_utils.common.json import get_encoder
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    _init_ansible()
    unparsed: list[Problem] = []

    class RecordingInventoryManager(InventoryManager):
        """Remembers every file no plugin could parse (Ansible only warns)."""

        def parse_source(self, source: str, cache: bool = False) -> bool:
            if os.path.isdir(source):
                return bool(super().parse_source(source, cache=cache))
            before = len(capture.failures)
            capture.current = source
            try:
                parsed = bool(super().parse_source(source, cache=cache))
            except AnsibleError:  # any_unparsed_is_failed set in ansible.cfg: same outcome
                parsed = False
            finally:
                capture.current = None
            if not parsed:
                failures = capture.failures[before:]
                unparsed.append(_failure_problem(source, names.get(source, source), failures))
            del capture.failures[before:]
            return parsed

    loader = DataLoader()
    manager = RecordingInventoryManager(loader=loader, sources=list(sources))
    if unparsed:
        return AnsibleSnapshot({}, [], {}, problems=[*capture.problems, *unparsed])
    variables = VariableManager(loader=loader, inventory=manager)

    internal = C.INTERNAL_STATIC_VARS
    raw_hostvars: dict[str, dict[str, Any]] = {}
    for host in manager.hosts.values():
        hv = variables.get_vars(host=host, include_hostvars=False, stage="all")
        raw_hostvars[host.name] = {k: v for k, v in hv.items() if k not in internal}
    raw_groupvars = {name: g.get_vars() for name, g in manager.groups.items()}
    # The exact serialisation ``ansible-inventory --list`` uses (vault, unsafe, dates...);
    # the shape matters: the profile applies trust markers by position.
    encoder = get_encoder("inventory_legacy")
    encoded = json.loads(json.dumps(
        {"_meta": {"hostvars": raw_hostvars}, "groups": {"vars": raw_groupvars}},
        cls=encoder))

    groups = {
        name: Group(
            name=name,
            hosts=tuple(h.name for h in g.hosts),
            children=tuple(c.name for c in g.child_groups),
            parents=tuple(p.name for p in g.parent_groups),
            depth=g.depth,
            priority=g.priority,
            vars=encoded["groups"]["vars"][name],
        )
        for name, g in manager.groups.items()
    }
    for msg, exc in capture.failures:  # reported by ansible outside of parsing a source
        capture.warning(f"{msg} {getattr(exc, 'message', None) or exc}")
    return AnsibleSnapshot(groups=groups, hosts=[h for h in manager.hosts],
                           hostvars_json=encoded["_meta"]["hostvars"],
                           problems=list(capture.problems))
