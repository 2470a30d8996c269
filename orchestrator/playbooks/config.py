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
_JINJA = re.compile(r"\{[{%#]")  # where Jinja would find something to render


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
    # The extra vars' strings are data, never templates: Ansible renders a template on the
    # orchestrator ({{ lookup('pipe', ...) }} runs a command there). The API sets this for
    # every caller who is not an admin.
    extra_vars_as_data: bool = False

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

    ``k=v`` values stay strings (as Ansible's); YAML/JSON documents keep their types. An
    error names the ``-e`` (its position, the variable or the file) and the line and column,
    never the text itself: it may hold a password.
    """
    import shlex

    import yaml

    out: dict[str, Any] = {}
    for number, item in enumerate(items, 1):
        text = item.strip()
        where = f"-e #{number}"
        if text.startswith("@"):
            path = Path(text[1:]).expanduser()
            where = f"-e @{text[1:]}"
            try:
                loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
            except OSError as exc:
                raise ConfigError(f"{where}: cannot read: {exc.strerror or exc}") from exc
            except UnicodeDecodeError as exc:
                raise ConfigError(f"{where}: not UTF-8 text (byte {exc.start})") from exc
            except yaml.YAMLError as exc:
                raise ConfigError(f"{where}: {_yaml_problem(exc)}") from exc
            if not isinstance(loaded, dict):
                raise ConfigError(f"{where}: expected a mapping of variables")
            out.update(loaded)
        elif text.startswith(("{", "[")):
            try:
                loaded = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ConfigError(f"{where}: not valid JSON/YAML: {_yaml_problem(exc)}") from exc
            if not isinstance(loaded, dict):
                raise ConfigError(f"{where}: expected a mapping of variables")
            out.update(loaded)
        else:
            name = text.partition("=")[0]
            if "=" in text and _VAR_NAME.fullmatch(name):
                where = f"-e {name}=..."
            try:
                words = shlex.split(text)
            except ValueError as exc:  # "No closing quotation": the value is not shown
                raise ConfigError(f"{where}: {exc}") from exc
            for word in words:
                key, sep, value = word.partition("=")
                if not sep or not _VAR_NAME.fullmatch(key):
                    shown = f"{key!r}" if _VAR_NAME.fullmatch(key) or not sep else "a name"
                    raise ConfigError(
                        f"{where}: expected NAME=VALUE, JSON or @FILE (got {shown}"
                        f"{' without =' if not sep else ' that is not a variable name'})")
                out[key] = value
    return out


def extra_vars_document(values: dict[str, Any], *, as_data: bool) -> str:
    """The ``-e @file`` text for ``values``: JSON, or with ``as_data`` YAML in which every
    string that holds Jinja syntax (nested ones and mapping keys too) is tagged ``!unsafe``,
    so that Ansible keeps it as it is instead of rendering ``{{ ... }}`` in it.

    Only those: Ansible resolves an ``!unsafe`` scalar's type as if it were not quoted
    ("299.10" would become the float 299.1, "0123" the integer 83, "true" a boolean), and
    text without ``{{``, ``{%`` or ``{#`` has nothing to render anyway.

    >>> print(extra_vars_document({"a": "{{ x }}", "n": [1, {"k": "0123"}]}, as_data=True),
    ...       end="")
    a: !unsafe '{{ x }}'
    n:
    - 1
    - k: '0123'
    """
    import json

    if not as_data:
        return json.dumps(values, default=str)
    import yaml

    class Data(str):
        pass

    class Dumper(yaml.SafeDumper):
        pass

    def represent(dumper: yaml.SafeDumper, value: Data) -> yaml.Node:
        return dumper.represent_scalar("!unsafe", str(value), style="'")

    Dumper.add_representer(Data, represent)

    def mark(value: Any, top: bool = False) -> Any:
        if isinstance(value, str):
            return Data(value) if _JINJA.search(value) else value
        if isinstance(value, dict):
            return {(k if top else mark(k)): mark(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [mark(v) for v in value]
        if value is None or isinstance(value, (bool, int, float)):
            return value
        return mark(str(value))

    return str(yaml.dump(mark(values, top=True), Dumper=Dumper, allow_unicode=True,
                         sort_keys=False, default_flow_style=False, width=2**16))


def _yaml_problem(exc: Exception) -> str:
    """``line 1, column 4: found unexpected end of stream``, without PyYAML's snippet of the
    text (which may hold a secret)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "not valid YAML"
    if mark is None:
        return str(problem)
    text = f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    context, start = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and start is not None and start.line != mark.line:
        text += f" ({context} at line {start.line + 1}, column {start.column + 1})"
    return text
