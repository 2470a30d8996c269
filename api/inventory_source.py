"""The service's inventory: loaded once, reloaded when its files change.

Reading an inventory through ansible-core takes a while, so the loaded model is kept and
reloaded only when a file under the sources (or their ``group_vars``/``host_vars``) changes
size or modification time, checked at most every ``RECHECK`` seconds. Dynamic inventory
scripts are therefore run once per change of the script itself, not per request.
"""

from __future__ import annotations

import fnmatch
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from api.schemas import GroupPublic, HostPublic, InventoryCheck, InventoryProblem
from inventory import Inventory, InventoryReport, Problem, check_inventory, load_inventory
from orchestrator.auth.masking import is_secret, mask_vars
from orchestrator.auth.principal import HostScope
from orchestrator.errors import InventoryError, NotFound, ValidationFailed

RECHECK = 2.0  # seconds between looks at the files' timestamps
MAX_FILES = 10_000  # stop walking huge directories for the stamp
Stamp = tuple[tuple[str, int, int], ...]


def _stamp(sources: list[str]) -> Stamp:
    seen: list[tuple[str, int, int]] = []
    roots: list[str] = []
    for source in sources:
        path = os.path.expanduser(source)
        roots.append(path)
        base = path if os.path.isdir(path) else os.path.dirname(path)
        roots.extend(os.path.join(base, d) for d in ("group_vars", "host_vars"))
    for root in roots:
        if os.path.isdir(root):
            for dirpath, _dirs, files in os.walk(root):
                for name in files:
                    _add(seen, os.path.join(dirpath, name))
                if len(seen) > MAX_FILES:
                    break
        else:
            _add(seen, root)
    return tuple(sorted(seen))


def _add(seen: list[tuple[str, int, int]], path: str) -> None:
    try:
        st = os.stat(path)
    except OSError:
        return
    seen.append((path, st.st_mtime_ns, st.st_size))


class InventorySource:
    """Thread-safe cache of the inventory read from ``sources`` (none: no inventory)."""

    def __init__(self, sources: list[str]) -> None:
        self.sources = list(sources)
        self._lock = threading.Lock()
        self._inventory: Inventory | None = None
        self._stamp: Stamp | None = None
        self._checked = 0.0
        self._failed = False  # the last (re)load raised

    def get(self) -> Inventory | None:
        """The current inventory; raises ``InventoryError`` when it cannot be read."""
        if not self.sources:
            return None
        with self._lock:
            now = time.monotonic()
            if self._inventory is not None and now - self._checked < RECHECK:
                return self._inventory
            stamp = _stamp(self.sources)
            if self._inventory is None or stamp != self._stamp:
                try:
                    self._inventory = load_inventory(self.sources)
                except Exception:
                    self._failed = True
                    raise
                self._stamp = stamp
                self._failed = False
            self._checked = now
            return self._inventory

    def reload(self) -> InventoryCheck:
        """Check the files now, whatever their timestamps say, and keep what they hold when
        it has no error; with errors, the inventory loaded before stays. One reading does
        both (the check's model is the inventory)."""
        with self._lock:
            stamp = _stamp(self.sources)
            try:
                report = check_inventory(self.sources)
            except yaml.YAMLError as exc:  # characters YAML refuses outright
                report = InventoryReport(problems=[_yaml_problem(exc, "", self.sources[0])])
            check = _as_check(report, lambda message: message, lambda source: source)
            if check.valid and report.inventory is not None:
                self._inventory, self._stamp = report.inventory, stamp
                self._failed, self._checked = False, time.monotonic()
            return check

    def cached(self) -> tuple[Inventory | None, bool]:
        """Without blocking (for the event loop): the kept inventory, and whether its files
        are due for a look (every ``RECHECK`` s; :meth:`get` looks). None: nothing loaded
        yet, or the last reload failed: call :meth:`get`, which raises what went wrong."""
        inventory = None if self._failed else self._inventory
        return inventory, time.monotonic() - self._checked >= RECHECK

    def status(self) -> str:
        if not self.sources:
            return "none"
        return "loaded" if self._inventory is not None else "not loaded"


def check_document(text: str, *, name: str = "inventory.yml") -> InventoryCheck:
    """Validate one YAML inventory document as ``serverguard inventory check`` would."""
    with tempfile.TemporaryDirectory(prefix="serverguard-check-") as tmp:
        path = Path(tmp) / name
        path.write_text(text, encoding="utf-8")
        try:
            report = check_inventory([str(path)])
        except yaml.YAMLError as exc:
            # Characters YAML refuses outright (control characters) escape the checker.
            report = InventoryReport(problems=[_yaml_problem(exc, text, str(path))])

    return _as_check(report, lambda message: message.replace(str(path), name),
                     lambda source: name if source else None)


def _as_check(report: InventoryReport, message_of: Callable[[str], str],
              source_of: Callable[[str | None], str | None]) -> InventoryCheck:
    def shown(p: Problem) -> InventoryProblem:
        message = message_of(p.message)
        text = str(Problem(p.severity, message, source_of(p.source), p.line, p.column))
        return InventoryProblem(severity=p.severity, message=message, line=p.line,
                                column=p.column, text=text)

    errors = [shown(p) for p in report.problems if p.is_error]
    warnings = [shown(p) for p in report.problems if not p.is_error]
    inventory = report.inventory
    return InventoryCheck(
        valid=not errors, errors=errors, warnings=warnings,
        hosts=len(inventory.hosts) if inventory is not None and not errors else 0,
        groups=len(inventory.groups) if inventory is not None and not errors else 0,
    )


def _yaml_problem(exc: yaml.YAMLError, text: str, source: str) -> Problem:
    position = getattr(exc, "position", None)
    line = column = None
    if isinstance(position, int):
        line = text.count("\n", 0, position) + 1
        column = position - (text.rfind("\n", 0, position) + 1) + 1
    reason = getattr(exc, "reason", None) or str(exc).splitlines()[0]
    return Problem("error", f"YAML: {reason}", source, line, column)


# ---------------------------------------------------------------------------- queries


def parse_var_filters(filters: list[str]) -> list[tuple[str, str | None]]:
    """``["env=prod", "has_gpu"]`` -> ``[("env", "prod"), ("has_gpu", None)]``.

    Filtering on a secret variable is refused: it would reveal the value by trial.
    """
    parsed: list[tuple[str, str | None]] = []
    for item in filters:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not name:
            raise ValidationFailed(f"variable filter {item!r} has no name",
                                   [("var", "expected NAME or NAME=VALUE")])
        if is_secret(name):
            raise ValidationFailed(f"cannot filter on secret variable {name!r}",
                                   [("var", f"{name} is a secret variable")])
        parsed.append((name, value if sep else None))
    return parsed


def _matches(variables: dict[str, Any], filters: list[tuple[str, str | None]]) -> bool:
    for name, wanted in filters:
        if name not in variables:
            return False
        if wanted is None:
            continue
        value = variables[name]
        shown = value if isinstance(value, str) else json.dumps(value)
        if shown != wanted:
            return False
    return True


def find_hosts(
    inventory: Inventory | None,
    scope: HostScope,
    *,
    pattern: str | None,
    var_filters: list[str],
) -> list[str]:
    """Hosts in scope matching ``pattern`` (Ansible syntax) and every variable filter."""
    if inventory is None:
        return []
    try:
        names = inventory.select(pattern) if pattern else inventory.hosts
    except InventoryError as exc:
        raise ValidationFailed(f"invalid pattern: {exc}", [("pattern", str(exc))]) from exc
    filters = parse_var_filters(var_filters)
    return [h for h in scope.filter(names)
            if not filters or _matches(inventory.host_vars(h), filters)]


def host_public(inventory: Inventory, name: str) -> HostPublic:
    return HostPublic(name=name, groups=inventory.group_names(name),
                      vars=mask_vars(inventory.host_vars(name)))


def visible_host(inventory: Inventory | None, scope: HostScope, name: str) -> HostPublic:
    if inventory is None or not scope.allows(name):
        raise NotFound("host", name)
    return host_public(inventory, name)


def visible_groups(inventory: Inventory | None, scope: HostScope,
                   name_glob: str | None = None) -> list[GroupPublic]:
    """Groups with at least one host in scope (admins: every group), hosts filtered."""
    if inventory is None:
        return []
    found = []
    for group in inventory.groups.values():
        if name_glob and not fnmatch.fnmatchcase(group.name, name_glob):
            continue
        hosts = scope.filter(inventory.select(group.name))
        if hosts or scope.everything:
            found.append(GroupPublic(name=group.name, children=list(group.children),
                                     parents=list(group.parents), hosts=hosts,
                                     vars=mask_vars(group.vars)))
    return found


def visible_group(inventory: Inventory | None, scope: HostScope, name: str) -> GroupPublic:
    if inventory is not None and name in inventory.groups:
        for group in visible_groups(inventory, scope, name):
            if group.name == name:
                return group
    raise NotFound("group", name)
