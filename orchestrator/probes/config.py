"""Probe configuration: a probes YAML file or ``serverguard_probes`` in inventory variables.

A probes file (``examples/probes.yml``)::

    defaults:                       # optional; any probe field but name/type/target, each
      timeout: 5s                   # applied to the probes whose type has that field
    probes:                         # or the file is just this list
      - name: api-health
        type: http                  # tcp | http | tls | dns
        target: https://api.internal:8443/health
        vantage: bastion            # orchestrator (default) | an inventory host
        valid_status_codes: [200]
        fail_if_body_not_matches_regexp: ['"status":\\s*"ok"']

In inventory variables (on a host or a group), the same items under ``serverguard_probes``;
there ``vantage: self`` means "from the host that carries the definition", and strings may use
Jinja2 expressions over the host's variables (``target: "{{ ansible_host }}:22"``). A group's
probe is inherited by each member: identical ones collapse into one, and a probe defined
differently for the same (name, vantage, target) is an error.

Errors name the file or host, the probe and the field::

    probes.yml: probe 'api-health': field 'valid_status_codes': expected a list of integers

    >>> specs = parse_probes([{"name": "ssh", "type": "tcp", "target": "127.0.0.1:22"}], "x")
    >>> specs[0].describe()
    "probe 'ssh' (tcp 127.0.0.1:22 from orchestrator)"
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import jinja2
import jinja2.sandbox
import yaml

from inventory import Inventory
from orchestrator.probes.fields import (
    ALL_FIELDS,
    FIELDS_BY_TYPE,
    ProbeConfigError,
    ProbeParser,
    unknown_field,
)
from orchestrator.probes.spec import ProbeSpec

__all__ = ["INVENTORY_VAR", "ProbeConfigError", "load_probes", "parse_probes"]

INVENTORY_VAR = "serverguard_probes"


# ------------------------------------------------------------------------------ entry points


def load_probes(
    source: str | os.PathLike[str] | Inventory, *, inventory: Inventory | None = None
) -> list[ProbeSpec]:
    """Probe specs from a probes YAML file, or from an inventory's ``serverguard_probes``.

    With a file, ``inventory`` (optional) lets vantage host names be checked at load time.
    Raises :class:`ProbeConfigError`.
    """
    if isinstance(source, Inventory):
        return probes_from_inventory(source)
    return probes_from_file(source, inventory=inventory)


def probes_from_file(
    path: str | os.PathLike[str], *, inventory: Inventory | None = None
) -> list[ProbeSpec]:
    shown = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ProbeConfigError(shown, f"cannot read: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{shown}:{mark.line + 1}:{mark.column + 1}" if mark else shown
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProbeConfigError(where, f"not valid YAML: {problem}") from exc
    defaults: Any = {}
    if isinstance(data, dict):
        unknown = set(data) - {"defaults", "probes"}
        if unknown:
            raise ProbeConfigError(shown, f"unknown top-level key(s) {sorted(map(str, unknown))}"
                                          " (expected 'defaults' and 'probes')")
        defaults, items = data.get("defaults") or {}, data.get("probes")
        if not isinstance(defaults, dict):
            raise ProbeConfigError(shown, "'defaults' must be a mapping")
    else:
        items = data
    if items is None:
        return []
    if not isinstance(items, list):
        raise ProbeConfigError(shown, "expected a list of probes (or 'probes:' with a list)")
    return parse_probes(items, shown, defaults=defaults, inventory=inventory)


def probes_from_inventory(
    inventory: Inventory, hosts: Sequence[str] | None = None
) -> list[ProbeSpec]:
    """Every host's ``serverguard_probes`` (of ``hosts`` only, when given: a host pattern or
    ``--limit`` selects the probes defined on the hosts it selects); group definitions
    collapse across members."""
    found: dict[tuple[str, str, str], ProbeSpec] = {}
    for host in inventory.hosts if hosts is None else hosts:
        hostvars = inventory.host_vars(host)
        items = hostvars.get(INVENTORY_VAR)
        if items is None:
            continue
        source = f"inventory host '{host}': {INVENTORY_VAR}"
        if not isinstance(items, list):
            raise ProbeConfigError(source, "expected a list of probes")
        render = _renderer(source, {**hostvars, "inventory_hostname": host})
        for spec in parse_probes(items, source, inventory=inventory, host=host, render=render):
            seen = found.get(spec.key)
            if seen is None:
                found[spec.key] = spec
            elif replace(seen, source="") != replace(spec, source=""):
                raise ProbeConfigError(
                    source, f"defined differently in {seen.source} for the same vantage "
                            f"'{spec.vantage}' and target '{spec.target}'",
                    probe=f"'{spec.name}'")
    return list(found.values())


def parse_probes(
    items: list[Any],
    source: str,
    *,
    defaults: Mapping[str, Any] | None = None,
    inventory: Inventory | None = None,
    host: str | None = None,
    render: Callable[[Any, str, str], Any] | None = None,
    unique: bool = True,
) -> list[ProbeSpec]:
    """Validate probe items (plain data, as YAML gives them) into specs.

    ``host`` is the inventory host the items belong to (enables ``vantage: self``).
    """
    if defaults:
        bad = set(defaults) & {"name", "type", "target"}
        if bad:
            raise ProbeConfigError(source, f"'defaults' cannot set {sorted(bad)}")
        unknown = set(defaults) - ALL_FIELDS
        if unknown:
            field = sorted(map(str, unknown))[0]
            raise ProbeConfigError(source, unknown_field(field, ALL_FIELDS),
                                   field=f"defaults.{field}")
    specs: list[ProbeSpec] = []
    seen: dict[tuple[str, str, str], int] = {}
    for index, item in enumerate(items, 1):
        label = f"#{index}"
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            label = f"'{item['name']}'"
        if not isinstance(item, dict):
            raise ProbeConfigError(source, "expected a mapping with name, type and target",
                                   probe=label)
        kind = item.get("type")
        fields = FIELDS_BY_TYPE.get(kind, ALL_FIELDS) if isinstance(kind, str) else ALL_FIELDS
        # a default for another type's field (method: HEAD beside tcp probes) is not this
        # probe's business
        merged = {**{k: v for k, v in (defaults or {}).items() if k in fields}, **item}
        if render is not None:
            merged = {k: render(v, label, str(k)) for k, v in merged.items()}
        spec = ProbeParser(merged, source, label, inventory, host).spec()
        if unique and spec.key in seen:
            raise ProbeConfigError(
                source, f"defined twice (probes #{seen[spec.key]} and #{index}) for vantage "
                        f"'{spec.vantage}' and target '{spec.target}'", probe=label)
        seen.setdefault(spec.key, index)
        specs.append(spec)
    return specs


# ------------------------------------------------------------------------------ helpers


def _renderer(source: str, variables: dict[str, Any]) -> Callable[[Any, str, str], Any]:
    """Render Jinja2 expressions in strings with the host's variables (sandboxed, strict)."""
    env = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined)

    def render(value: Any, probe: str, field: str) -> Any:
        if isinstance(value, str) and ("{{" in value or "{%" in value):
            try:
                return env.from_string(value).render(variables)
            except jinja2.TemplateError as exc:
                raise ProbeConfigError(source, f"template error: {exc.message or exc}",
                                       probe=probe, field=field) from None
        if isinstance(value, list):
            return [render(v, probe, field) for v in value]
        if isinstance(value, dict):
            return {k: render(v, probe, f"{field}.{k}") for k, v in value.items()}
        return value

    return render
