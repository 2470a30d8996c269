"""The inventory model: hosts, groups, variables, patterns and connection targets.

Built by :func:`inventory.load_inventory` from what ansible-core read; plain data, no ansible
objects. Example::

    inv = load_inventory(["examples/inventory.yml"])
    inv.hosts                      # ['bastion', 'web01', 'web02', 'db1']  (``all`` order)
    inv.select("web:&prod:!web02") # ['web01']
    inv.host_vars("web01")         # {'ansible_host': '169.254.10.11', ...}
    inv.target("db1").describe()   # 'sglab@169.254.20.11:22 via bastion'
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from inventory.patterns import PatternMatch, PatternMatcher
from inventory.problems import Problem
from inventory.resolve import TargetResolver
from inventory.targets import ConnectionTarget, HostKeyPolicy
from orchestrator.errors import InventoryError

log = logging.getLogger(__name__)

PROFILE = "inventory_legacy"  # what ``ansible-inventory --list`` writes in ``_meta.profile``


@dataclass(frozen=True, slots=True)
class Group:
    """One group as ansible-core built it."""

    name: str
    hosts: tuple[str, ...]  # direct members, in Ansible's order
    children: tuple[str, ...]  # child groups, in Ansible's order
    parents: tuple[str, ...]
    depth: int
    priority: int  # ``ansible_group_priority``
    # Variables set on the group in the inventory sources, JSON form (group_vars/ files are
    # not included: Inventory.host_vars() gives the merged view).
    vars: dict[str, Any] = field(default_factory=dict)


class Inventory:
    """Hosts and groups with Ansible's meaning; see the module docstring for an example."""

    def __init__(self, *, sources: Iterable[str], groups: Mapping[str, Group],
                 host_order: Iterable[str], hostvars_json: Mapping[str, dict[str, Any]],
                 problems: Iterable[Problem] = ()) -> None:
        self.sources = tuple(sources)
        self._groups = dict(groups)
        self._hostvars_json = dict(hostvars_json)
        self._hostvars = {h: _plain(v) for h, v in self._hostvars_json.items()}
        self._problems = list(problems)
        self._matcher = PatternMatcher(
            {name: (g.hosts, g.children) for name, g in self._groups.items()}, list(host_order))
        self._resolver = TargetResolver(self._hostvars)
        self._hosts = self._matcher.group_hosts("all") if "all" in self._groups else []
        self._member_of = self._memberships()

    # -- hosts and groups ---------------------------------------------------------------------

    @property
    def hosts(self) -> list[str]:
        """Every host, in the order ``ansible all --list-hosts`` gives."""
        return list(self._hosts)

    @property
    def groups(self) -> Mapping[str, Group]:
        """Groups in Ansible's order (``all`` and ``ungrouped`` always exist)."""
        return MappingProxyType(self._groups)

    def __contains__(self, name: object) -> bool:
        return name in self._hostvars

    def __len__(self) -> int:
        return len(self._hosts)

    def group_names(self, host: str) -> list[str]:
        """The host's groups, ancestors included, sorted, without ``all`` (Ansible's
        ``group_names``)."""
        self._require(host)
        return sorted(self._member_of.get(host, set()) - {"all"})

    def host_vars(self, name: str) -> dict[str, Any]:
        """The host's variables merged with Ansible's precedence (a copy).

        The values of ``ansible-inventory --list``'s ``_meta.hostvars``, with ``!unsafe``
        strings unwrapped; templates are left as written.
        """
        self._require(name)
        return copy.deepcopy(self._hostvars[name])

    # -- problems -----------------------------------------------------------------------------

    @property
    def problems(self) -> list[Problem]:
        """Warnings from loading and from target resolution so far (errors raise instead)."""
        extra = [Problem("warning", w) for w in self._resolver.warnings]
        return [*self._problems, *extra]

    @property
    def warnings(self) -> list[str]:
        return [str(p) for p in self.problems if not p.is_error]

    # -- patterns -----------------------------------------------------------------------------

    def match(self, pattern: str, limit: str | None = None) -> PatternMatch:
        """Hosts for an Ansible pattern, with the warnings Ansible would print."""
        return self._matcher.match(pattern, limit)

    def select(self, pattern: str, limit: str | None = None) -> list[str]:
        """Host names for an Ansible pattern (and ``--limit``), in Ansible's order.

        A pattern that matches nothing gives ``[]``; the warning is logged.

        >>> inv.select("web*:!web02", limit="@hosts.txt")  # doctest: +SKIP
        ['web01', 'web03']
        """
        found = self.match(pattern, limit)
        for text in found.warnings:
            log.warning("%s", text)
        return found.hosts

    # -- connection targets -------------------------------------------------------------------

    def target(self, name: str, *,
               default_policy: HostKeyPolicy = HostKeyPolicy.STRICT) -> ConnectionTarget:
        """How to reach ``name``; raises :class:`InventoryError` naming host and variable."""
        self._require(name)
        before = len(self._resolver.warnings)
        target = self._resolver.target(name, default_policy)
        for text in self._resolver.warnings[before:]:
            log.warning("%s", text)
        return target

    def targets(self, names: Iterable[str], *,
                default_policy: HostKeyPolicy = HostKeyPolicy.STRICT) -> list[ConnectionTarget]:
        return [self.target(n, default_policy=default_policy) for n in names]

    # -- ansible-inventory --list -------------------------------------------------------------

    def to_ansible_list(self, limit: str | None = None) -> dict[str, Any]:
        """The JSON ``ansible-inventory -i SOURCES --list [--limit L]`` prints, as a dict."""
        hosts = self._matcher.match("all", limit).hosts if limit else self._hosts
        available = frozenset(hosts)
        seen: set[str] = set()

        def format_group(group: Group) -> dict[str, dict[str, list[str]]]:
            entry: dict[str, list[str]] = {}
            results = {group.name: entry}
            if group.name != "all":
                entry["hosts"] = [h for h in group.hosts if h in available]
            entry["children"] = []
            for sub in group.children:
                entry["children"].append(sub)
                if sub not in seen:
                    results.update(format_group(self._groups[sub]))
                    seen.add(sub)
            for key in ("hosts", "children"):
                if key in entry and not entry[key]:
                    del entry[key]
            if not entry:
                del results[group.name]
            return results

        out: dict[str, Any] = dict(format_group(self._groups["all"]))
        out["_meta"] = {
            "hostvars": {h: copy.deepcopy(self._hostvars_json[h]) for h in hosts
                         if self._hostvars_json.get(h)},
            "profile": PROFILE,
        }
        return out

    def to_ansible_json(self, limit: str | None = None) -> str:
        """The text ``ansible-inventory --list`` prints (sorted keys, indent 4, UTF-8)."""
        return json.dumps(self.to_ansible_list(limit), sort_keys=True, indent=4,
                          ensure_ascii=False)

    # -- internals ----------------------------------------------------------------------------

    def _require(self, name: str) -> None:
        if name not in self._hostvars:
            raise InventoryError(f"unknown host '{name}'")

    def _memberships(self) -> dict[str, set[str]]:
        member: dict[str, set[str]] = {}
        for group in self._groups.values():
            ancestors = self._ancestors(group.name)
            for host in group.hosts:
                member.setdefault(host, set()).update(ancestors)
        return member

    def _ancestors(self, name: str) -> set[str]:
        found = {name}
        todo = [name]
        while todo:
            for parent in self._groups[todo.pop()].parents:
                if parent not in found:
                    found.add(parent)
                    todo.append(parent)
        return found


def _plain(value: Any) -> Any:
    """Unwrap the ``{"__ansible_unsafe": s}`` markers of Ansible's inventory JSON."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
