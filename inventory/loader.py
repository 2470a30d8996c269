"""Load inventory sources: our YAML checks first, then ansible-core, then the model.

>>> inv = load_inventory(["inventory.yml", "more/"])  # doctest: +SKIP
>>> report = check_inventory(["inventory.yml"])         # doctest: +SKIP
>>> [str(p) for p in report.problems]                   # doctest: +SKIP
["inventory.yml:7:5: group 'web': unknown key 'host' (expected hosts, vars, children)"]

Sources are what ``ansible-inventory -i`` accepts: files, directories (read as Ansible reads
them: sorted, hidden and ignored names skipped, every file an inventory source), ``a,b,``
host lists, scripts and plugin configurations. ``group_vars/``/``host_vars/`` next to each
source are checked for YAML syntax, then read by Ansible.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from inventory.model import Inventory
from inventory.problems import Problem, error, first_error
from inventory.reader import read_with_ansible
from inventory.validate import YamlInventoryCheck, check_vars_dir
from orchestrator.errors import InventoryError

log = logging.getLogger(__name__)

YAML_EXTENSIONS = (".yml", ".yaml", ".json")  # Ansible's yaml plugin default


@dataclass
class InventoryReport:
    """Everything found wrong or doubtful; ``inventory`` is ``None`` when errors stopped it."""

    problems: list[Problem] = field(default_factory=list)
    inventory: Inventory | None = None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    @property
    def ok(self) -> bool:
        return not self.errors


def load_inventory(sources: Sequence[str | os.PathLike[str]]) -> Inventory:
    """Read ``sources`` with ansible-core and return the model.

    Raises :class:`InventoryError` for the first problem that is an error (with its file,
    line and column when known); warnings are logged and kept on ``Inventory.problems``.
    """
    report = _load([os.fspath(s) for s in sources])
    failure = first_error(report.problems)
    if failure is not None:
        raise failure
    assert report.inventory is not None
    for problem in report.problems:
        log.warning("%s", problem)
    return report.inventory


def check_inventory(sources: Sequence[str | os.PathLike[str]]) -> InventoryReport:
    """Every problem in ``sources``, including each host's connection target; never raises
    for inventory problems."""
    report = _load([os.fspath(s) for s in sources])
    inventory = report.inventory
    if inventory is None:
        return report
    target_errors = []
    for host in inventory.hosts:
        try:
            inventory.target(host)
        except InventoryError as exc:
            target_errors.append(Problem("error", exc.message, exc.source, exc.line,
                                         exc.column))
    report.problems = [*inventory.problems, *target_errors]
    if not inventory.hosts:
        report.problems.append(Problem("warning", "the inventory has no hosts"))
    return report


def _load(sources: list[str]) -> InventoryReport:
    from ansible.utils.path import unfrackpath

    report = InventoryReport()
    if not sources:
        report.problems.append(error("no inventory sources given"))
        return report
    names: dict[str, str] = {}  # absolute path as ansible sees it -> name shown to the user
    check = YamlInventoryCheck()
    checked: set[str] = set()
    vars_dirs: list[str] = []
    for given in sources:
        if "," in given and not os.path.exists(given):
            continue  # "a,b," host list
        shown = os.path.expanduser(given)
        if not os.path.exists(shown):
            report.problems.append(error("inventory source not found", shown))
            continue
        for absolute, display in _source_files(unfrackpath(given, follow=False), shown):
            names[absolute] = display
            if _check_yaml(check, display):
                checked.add(absolute)
        base = shown if os.path.isdir(shown) else os.path.dirname(shown)
        vars_dirs.extend(os.path.join(base, d) for d in ("group_vars", "host_vars")
                         if os.path.join(base, d) not in vars_dirs)
    report.problems.extend(check.finish())
    for vars_dir in vars_dirs:
        if os.path.isdir(vars_dir):
            report.problems.extend(check_vars_dir(vars_dir))
    if report.errors:
        return report

    snapshot = read_with_ansible(sources, display_names=names, yaml_checked=frozenset(checked))
    report.problems.extend(snapshot.problems)
    if report.errors:
        return report
    report.inventory = Inventory(
        sources=sources,
        groups=snapshot.groups,
        host_order=snapshot.hosts,
        hostvars_json=snapshot.hostvars_json,
        problems=report.problems,
    )
    return report


def _check_yaml(check: YamlInventoryCheck, path: str) -> bool:
    """Run our YAML checks on files Ansible's YAML plugin would read."""
    if os.access(path, os.X_OK):
        return False  # an inventory script: Ansible runs it
    ext = os.path.splitext(path)[1].lower()
    if ext in YAML_EXTENSIONS:
        return check.check_file(path, required=True)
    if not ext:
        return check.check_file(path, required=False)
    return False


def _source_files(absolute: str, shown: str) -> list[tuple[str, str]]:
    """The files Ansible reads for one source, as (absolute path, name shown)."""
    from ansible.inventory.manager import IGNORED

    if not os.path.isdir(absolute):
        return [(absolute, shown)]
    found: list[tuple[str, str]] = []
    for entry in sorted(os.listdir(absolute)):
        if IGNORED.search(os.fsencode(entry)):
            continue
        found.extend(_source_files(os.path.join(absolute, entry), os.path.join(shown, entry)))
    return found
