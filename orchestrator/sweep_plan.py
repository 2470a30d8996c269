"""Which collectors, with which options, for which hosts.

Hosts choose collectors through the inventory variable ``serverguard_collectors``::

    all:
      vars:
        serverguard_collectors:
          enable: [systemd]            # default-off collectors to add
          disable: [docker]            # default-on collectors to skip
          options:
            filesystem: {mount_points_exclude: "^/(dev|proc|sys)($|/)"}
          python: /usr/bin/python3.11  # the sweep reader's interpreter; false: the sh script
          parse_on_host: false         # the reader sends raw output, parsed here

``python`` defaults to ``ansible_python_interpreter`` when that is a path, else ``python3``
(found on the host's PATH; a host without it gets the sh script anyway). ``parse_on_host``
(default true) lets the reader run the parsers on the host when its python3 is recent
enough (``collectors.host_render``: less CPU here, about 4 MB more memory there).

Hosts with the same settings share one ``SweepGroup`` and so one script, built once: the
planner runs once per inventory load, never per sweep.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from collectors.base import Collector
from collectors.registry import Registry, default_registry
from inventory import Inventory
from inventory.targets import ConnectionTarget, HostKeyPolicy
from orchestrator.errors import ConfigError, ServerGuardError

VARIABLE = "serverguard_collectors"
KEYS = {"enable", "disable", "options", "python", "parse_on_host"}


@dataclass
class SweepGroup:
    collectors: list[Collector]
    options: dict[str, dict[str, Any]]
    targets: list[ConnectionTarget] = field(default_factory=list)
    python: str | None = "python3"  # the sweep reader's interpreter; None: the sh script
    parse_on_host: bool = True  # the reader parses its own output where it can


def host_python(host: str, host_vars: Mapping[str, Any]) -> str | None:
    """The interpreter for ``host``'s sweep reader (``None``: the sh script), from
    ``serverguard_collectors.python`` or ``ansible_python_interpreter`` (``host_settings``
    has checked that the former is a mapping)."""
    value = (host_vars.get(VARIABLE) or {}).get("python")
    if value is None:
        given = host_vars.get("ansible_python_interpreter")
        if isinstance(given, str) and given.startswith("/") and given.split() == [given]:
            return given
        return "python3"
    if value is False:
        return None
    if not isinstance(value, str) or not value or value.split() != [value]:
        raise ConfigError(
            f"host {host}: {VARIABLE}.python: expected an interpreter's name or path "
            "(no spaces), or false for the sh script"
        )
    return value


def host_parses(host: str, host_vars: Mapping[str, Any]) -> bool:
    """``serverguard_collectors.parse_on_host`` (default true)."""
    value = (host_vars.get(VARIABLE) or {}).get("parse_on_host", True)
    if not isinstance(value, bool):
        raise ConfigError(f"host {host}: {VARIABLE}.parse_on_host: expected true or false, "
                          f"not {value!r}")
    return value


def _names(value: Any, host: str, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(f"host {host}: {VARIABLE}.{key}: expected a list of collector names")


def host_settings(host: str, value: Any) -> tuple[list[str], list[str], dict[str, Any]]:
    """``(enable, disable, options)`` from one host's ``serverguard_collectors``."""
    if value is None:
        return [], [], {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"host {host}: {VARIABLE}: expected a mapping with {sorted(KEYS)}")
    unknown = set(value) - KEYS
    if unknown:
        raise ConfigError(
            f"host {host}: {VARIABLE}: unknown key {sorted(unknown)[0]!r} "
            f"(expected {', '.join(sorted(KEYS))})"
        )
    options = value.get("options") or {}
    if not isinstance(options, Mapping) or not all(
        isinstance(v, Mapping) for v in options.values()
    ):
        raise ConfigError(
            f"host {host}: {VARIABLE}.options: expected collector name -> mapping of options"
        )
    return (
        _names(value.get("enable"), host, "enable"),
        _names(value.get("disable"), host, "disable"),
        {k: dict(v) for k, v in options.items()},
    )


def plan_sweeps(
    inventory: Inventory,
    names: Sequence[str],
    *,
    enable: Iterable[str] = (),
    disable: Iterable[str] = (),
    registry: Registry | None = None,
    default_policy: HostKeyPolicy = HostKeyPolicy.STRICT,
) -> list[SweepGroup]:
    """Group ``names`` by their collector settings; command-line choices apply to all."""
    registry = registry or default_registry()
    enable, disable = list(enable), list(disable)
    if enable or disable:  # the command line's own names: blamed on the option, not a host
        try:
            registry.select(enable=enable, disable=disable)
        except ServerGuardError as exc:
            raise ConfigError(f"--enable/--disable: {exc}") from exc
    groups: dict[str, SweepGroup] = {}
    targets = inventory.targets(names, default_policy=default_policy)
    for target in targets:
        host_vars = inventory.host_vars(target.name)
        h_enable, h_disable, h_options = host_settings(target.name, host_vars.get(VARIABLE))
        wanted_on = sorted(set(h_enable) | set(enable))
        wanted_off = sorted(set(h_disable) | set(disable))
        python = host_python(target.name, host_vars)
        parses = host_parses(target.name, host_vars)
        key = json.dumps([wanted_on, wanted_off, h_options, python, parses], sort_keys=True,
                         default=str)
        if key not in groups:
            try:
                collectors = registry.select(enable=wanted_on, disable=wanted_off)
                options = registry.resolve_options(h_options)
            except ServerGuardError as exc:
                raise ConfigError(f"host {target.name}: {VARIABLE}: {exc}") from exc
            groups[key] = SweepGroup(collectors, options, python=python, parse_on_host=parses)
        groups[key].targets.append(target)
    return list(groups.values())
