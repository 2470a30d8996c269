"""What a playbook run is asked to do, checked before anything starts."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inventory import HostKeyPolicy
from orchestrator.errors import ConfigError
from orchestrator.playbooks.tuning import AUTO, Tuning

_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TAG = re.compile(r"[^,\s]+")


@dataclass(frozen=True)
class PlaybookConfig:
    """One run: which playbook, on which hosts, with what.

    >>> PlaybookConfig("firewall", inventory=["lab/inventory.yml"], limit="web",
    ...                extra_vars={"firewall_allowed_ports": ["80/tcp"]}, check=True)
    ... # doctest: +SKIP
    """

    playbook: str | Path  # a path, or the name of a shipped playbook
    inventory: list[str] = field(default_factory=list)  # inventory sources
    limit: str | None = None
    extra_vars: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()
    check: bool = False
    diff: bool = False
    timeout: float | None = None  # seconds for the whole run
    verbosity: int = 0
    tuning: Tuning = field(default_factory=Tuning)
    host_key_policy: HostKeyPolicy | None = None  # default for hosts that don't set one

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the field at fault."""
        if not str(self.playbook).strip():
            raise ConfigError("playbook: empty name")
        if not self.inventory:
            raise ConfigError("inventory: no source given")
        if not isinstance(self.extra_vars, dict):
            raise ConfigError("extra_vars: expected a mapping of names to values")
        for name in self.extra_vars:
            if not isinstance(name, str) or not _VAR_NAME.fullmatch(name):
                raise ConfigError(f"extra_vars: {name!r} is not a variable name")
        for label, tags in (("tags", self.tags), ("skip_tags", self.skip_tags)):
            for tag in tags:
                if not isinstance(tag, str) or not _TAG.fullmatch(tag):
                    raise ConfigError(f"{label}: {tag!r} is not a tag")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError(f"timeout: must be a number of seconds > 0, not {self.timeout!r}")
        if not 0 <= self.verbosity <= 6:
            raise ConfigError("verbosity: 0 to 6")
        t = self.tuning
        if t.forks is not None and not (isinstance(t.forks, int) and 1 <= t.forks <= 1000):
            raise ConfigError(f"forks: a whole number from 1 to 1000, not {t.forks!r}")
        if t.strategy != AUTO and not re.fullmatch(r"[A-Za-z0-9_.]+", t.strategy):
            raise ConfigError(f"strategy: {t.strategy!r} is not a strategy plugin name")
        if t.control_persist and not re.fullmatch(r"\d+[smhdw]?|yes|no", t.control_persist):
            raise ConfigError(f"control_persist: {t.control_persist!r} is not an ssh time "
                              "(e.g. 120s)")
        if not 1 <= t.connect_timeout <= 3600:
            raise ConfigError(f"connect_timeout: 1 to 3600 seconds, not {t.connect_timeout!r}")
        for key in t.env:
            if not key.startswith("ANSIBLE_"):
                raise ConfigError(f"tuning env: {key!r} is not an ANSIBLE_* setting")


def parse_extra_vars(items: list[str]) -> dict[str, Any]:
    """``-e`` values as ansible-playbook reads them: ``k=v`` pairs, JSON/YAML, or ``@file``.

    ``k=v`` values stay strings (as Ansible's); YAML/JSON documents keep their types.
    """
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        text = item.strip()
        if text.startswith("@"):
            path = Path(text[1:]).expanduser()
            try:
                loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError) as exc:
                raise ConfigError(f"-e {item}: cannot read: {exc}") from exc
            if not isinstance(loaded, dict):
                raise ConfigError(f"-e {item}: expected a mapping of variables")
            out.update(loaded)
        elif text.startswith(("{", "[")):
            try:
                loaded = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ConfigError(f"-e {item!r}: not valid JSON/YAML: {exc}") from exc
            if not isinstance(loaded, dict):
                raise ConfigError(f"-e {item!r}: expected a mapping of variables")
            out.update(loaded)
        else:
            import shlex

            try:
                words = shlex.split(text)
            except ValueError as exc:
                raise ConfigError(f"-e {item!r}: {exc}") from exc
            for word in words:
                key, sep, value = word.partition("=")
                if not sep or not _VAR_NAME.fullmatch(key):
                    raise ConfigError(f"-e {word!r}: expected NAME=VALUE, JSON or @FILE")
                out[key] = value
    return out
