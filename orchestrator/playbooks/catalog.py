"""Which playbook a name means, and a first read of it that fails with ``file:line``.

A playbook is a path (``site.yml``, ``./deploy/web.yml``) or the name of one shipped with
ServerGuard (``firewall``, ``firewall.yml``), in the ``playbooks`` package::

    resolve_playbook("firewall")        # Path('.../playbooks/firewall.yml')
    shipped_playbooks()                  # ['baseline_audit', 'firewall', 'ssh_hardening', ...]
    check_playbook(path)                 # PlaybookSyntaxError('site.yml:12:5: ...')

The check is the cheap part of ``ansible-playbook --syntax-check`` done in-process before
anything starts: the YAML parses, the document is a list of plays (or ``import_playbook``
entries), each play names its ``hosts``. Everything else is Ansible's to say at run time.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

import playbooks as _shipped_package
from orchestrator.errors import PlaybookNotFound, PlaybookSyntaxError

SHIPPED_DIR = Path(_shipped_package.__file__).resolve().parent
_EXTENSIONS = (".yml", ".yaml")
CHECK_ONLY = frozenset({"baseline_audit"})  # shipped playbooks that only run in check mode
# Play keywords that make the ``free`` strategy unsafe: they rely on hosts moving together.
_LOCKSTEP_KEYWORDS = re.compile(
    r"^\s*-?\s*(serial|run_once|any_errors_fatal|max_fail_percentage|throttle|order|"
    r"delegate_to|delegate_facts|strategy)\s*:|hostvars\s*\[|\bgroups\s*\[", re.M)


def shipped_playbooks() -> list[str]:
    """Names of the playbooks shipped with ServerGuard, sorted (without ``.yml``)."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.yml"))


def is_shipped(path: Path) -> bool:
    return path.resolve().parent == SHIPPED_DIR


def check_only(path: Path) -> bool:
    """A shipped playbook that only reports (runs in check mode, always)."""
    return is_shipped(path) and path.stem in CHECK_ONLY


_HEADER_VARIABLE = re.compile(r"^#\s+([a-z][a-z0-9_]*)\s{2,}\S", re.M)
_ROLE_NAME = re.compile(r"\bsg_[a-z0-9_]+\b")


def user_variables(path: Path) -> frozenset[str] | None:
    """The variables a shipped playbook documents for its users: those in its header, the
    defaults of the roles it names and its plays' ``vars``. ``None`` for other playbooks.

    The roles' ``vars/main.yml`` and the parameters they pass each other (the dead-man
    switch's connection, the command it runs after a confirm...) are not among them.
    """
    if not is_shipped(path):
        return None
    text = path.read_text(encoding="utf-8")
    header = text.split("\n- ", 1)[0]
    names = set(_HEADER_VARIABLE.findall(header))
    for role in set(_ROLE_NAME.findall(text)):
        defaults = SHIPPED_DIR / "roles" / role / "defaults" / "main.yml"
        if defaults.is_file():
            data = yaml.load(defaults.read_text(encoding="utf-8"), Loader=_Loader)
            names.update(k for k in (data or {}) if isinstance(k, str))
    plays = yaml.load(text, Loader=_Loader)
    for play in plays if isinstance(plays, list) else []:
        if isinstance(play, dict) and isinstance(play.get("vars"), dict):
            names.update(k for k in play["vars"] if isinstance(k, str))
    return frozenset(names)


def resolve_playbook(name: str | Path) -> Path:
    """The playbook file for ``name``: an existing path first, then a shipped playbook.

    Raises :class:`PlaybookNotFound` naming the shipped playbooks.
    """
    text = str(name)
    path = Path(text).expanduser()
    if path.is_file():
        return path.resolve()
    if path.is_dir():
        raise PlaybookNotFound(text, shipped_playbooks())
    if "/" not in text:
        stem = text[: -len(path.suffix)] if path.suffix in _EXTENSIONS else text
        for ext in _EXTENSIONS:
            candidate = SHIPPED_DIR / f"{stem}{ext}"
            if candidate.is_file():
                return candidate
    raise PlaybookNotFound(text, shipped_playbooks())


class _Loader(yaml.SafeLoader):
    """Safe YAML that accepts Ansible's tags (``!unsafe``, ``!vault``) as plain values."""


def _any_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    return None


_Loader.add_multi_constructor("!", _any_tag)


def check_playbook(path: Path) -> list[dict[str, Any]]:
    """Parse ``path`` and check its outline; returns the plays as plain data.

    Raises :class:`PlaybookSyntaxError` with file, line and column.
    """
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlaybookSyntaxError(f"cannot read: {exc}", source=source) from exc
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        raise PlaybookSyntaxError(
            f"YAML error: {what or 'cannot parse'}", source=source,
            line=mark.line + 1 if mark else None, column=mark.column + 1 if mark else None,
        ) from exc
    except yaml.YAMLError as exc:
        raise PlaybookSyntaxError(f"YAML error: {exc}", source=source) from exc
    if data is None:
        raise PlaybookSyntaxError("empty playbook (expected a list of plays)", source=source)
    if not isinstance(data, list):
        raise PlaybookSyntaxError(
            f"a playbook is a list of plays, not a {type(data).__name__}", source=source,
            line=1)
    lines = _item_lines(text)
    for index, play in enumerate(data):
        line = lines[index] if index < len(lines) else None
        if not isinstance(play, dict):
            raise PlaybookSyntaxError(
                f"play {index + 1} is a {type(play).__name__}, not a mapping", source=source,
                line=line)
        if any(k in play for k in ("import_playbook", "ansible.builtin.import_playbook")):
            continue
        if "hosts" not in play:
            raise PlaybookSyntaxError(f"play {index + 1} has no 'hosts'", source=source,
                                      line=line)
    return data


def free_strategy_safe(path: Path) -> bool:
    """Whether hosts may run through ``path`` independently (the ``free`` strategy).

    Conservative: shipped playbooks are written for it; another playbook qualifies only when
    nothing in its own file orders hosts against each other (``serial``, ``run_once``,
    ``delegate_to``, ``hostvars[...]``...) and it pulls in no other file we cannot see.
    """
    if is_shipped(path):
        return True
    text = path.read_text(encoding="utf-8")
    if _LOCKSTEP_KEYWORDS.search(text):
        return False
    return not re.search(r"^\s*-?\s*(roles|include_\w+|import_\w+|ansible\.builtin\.(include|"
                         r"import)_\w+)\s*:", text, re.M)


def _item_lines(text: str) -> list[int]:
    """1-based line of every top-level ``- `` item (the plays), for messages."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError:
        return []
    if not isinstance(node, yaml.SequenceNode):
        return []
    return [item.start_mark.line + 1 for item in node.value]
