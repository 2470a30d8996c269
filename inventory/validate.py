"""Our own pass over YAML inventories before ansible-core reads them.

Ansible's YAML plugin skips what it does not understand with a warning and keeps going, and
its errors rarely say where. This pass reads the same files with line information and
reports one line per problem (``file:line:column: message``)::

    inv.yml:3:1: YAML syntax error: could not find expected ':' (while scanning a simple key)
    inv.yml:7:5: group 'web': unknown key 'host' (expected hosts, vars, children)     [warning]
    inv.yml:9:7: group 'web': 'hosts' must be a mapping of host names, got a list (...)
    inv.yml:12:11: group 'web': host 'web1': variables must be a mapping, got a string
    inv.yml:14:9: group 'a' -> 'b' -> 'a': children form a cycle
    site.yml:4:11: host 'web1': variable 'x' differs from its definition at inv.yml:5:11

Rules (Ansible's, made strict): a group is ``null`` or a mapping whose keys are ``hosts``,
``vars`` and ``children``; an unknown key is a warning (Ansible ignores it), a wrong type
under a known key is an error. ``hosts`` and ``children`` may also be a single name (Ansible's
shorthand). ``all`` cannot be anyone's child. Files whose top level has a ``plugin`` key are
dynamic-inventory configurations and are left to their plugin.

Duplicate host definitions that *disagree*: the same host (after range expansion, across every
YAML inventory file of the load, repeats inside one file included) is given the same variable
with a different value (compared after YAML parsing with ``==``; ``host:port`` counts as setting
``ansible_port``). Repeating a host with no variables, the same values or other variables is
fine: Ansible merges those, and listing a host under several groups is how it gets several
groups. Ansible would silently keep the last value; we refuse, because which one is "last"
depends on file and group order. ``group_vars``/``host_vars`` are not compared (they exist to
override) and INI files are not checked by this pass.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from inventory.problems import Problem, error, warning

SECTIONS = ("hosts", "vars", "children")
_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"
_MERGE = "tag:yaml.org,2002:merge"
VARS_EXTENSIONS = ("", ".yml", ".yaml", ".json")


class _Loader(yaml.SafeLoader):
    """SafeLoader that accepts Ansible's local tags (``!unsafe``, ``!vault``)."""


def _construct_tagged(loader: yaml.SafeLoader, suffix: str, node: Node) -> Any:
    if isinstance(node, ScalarNode):
        return (suffix, loader.construct_scalar(node))
    if isinstance(node, SequenceNode):
        return (suffix, tuple(loader.construct_sequence(node, deep=True)))
    assert isinstance(node, MappingNode)
    return (suffix, tuple(sorted(loader.construct_mapping(node, deep=True).items(), key=repr)))


_Loader.add_multi_constructor("!", _construct_tagged)


def _kind(node: Node | None) -> str:
    if node is None or (isinstance(node, ScalarNode) and node.tag == _NULL):
        return "nothing"
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _STR:
        return "a string"
    return f"a {node.tag.rsplit(':', 1)[-1]}"


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL


def _is_str(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _STR


@dataclass(frozen=True, slots=True)
class _Where:
    source: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.source}:{self.line}:{self.column}"


@dataclass
class YamlInventoryCheck:
    """Checks YAML inventory files one by one, then across them (:meth:`finish`).

    >>> check = YamlInventoryCheck()
    >>> check.check_file("inv.yml")  # doctest: +SKIP
    True
    >>> [str(p) for p in check.finish()]  # doctest: +SKIP
    []
    """

    problems: list[Problem] = field(default_factory=list)
    _host_vars: dict[str, dict[str, tuple[Any, _Where]]] = field(default_factory=dict)
    _edges: dict[str, list[tuple[str, _Where]]] = field(default_factory=dict)
    _source: str = ""
    _loader: _Loader | None = None

    # -- entry points -------------------------------------------------------------------------

    def check_file(self, path: str, *, required: bool = True) -> bool:
        """Check one file; return whether it was treated as a YAML inventory.

        ``required=False`` (files without an extension, which may be INI) only checks files
        that parse as a YAML mapping.
        """
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except UnicodeDecodeError as exc:
            if required:
                self.problems.append(error(f"not UTF-8 text ({exc.reason})", path))
            return required
        except OSError as exc:
            self.problems.append(error(f"cannot read: {exc.strerror}", path))
            return True
        try:
            loader = _Loader(text)  # the reader refuses control characters right here
        except yaml.YAMLError as exc:
            if required:
                reason = " ".join(str(exc).split()).replace('in "<unicode string>", ', "")
                self.problems.append(error(f"not YAML text: {reason}", path))
            return required
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            if required:
                self.problems.append(_syntax_problem(exc, path))
            return required
        except yaml.YAMLError as exc:  # pragma: no cover - PyYAML marks all parse errors
            if required:
                self.problems.append(error(f"YAML syntax error: {exc}", path))
            return required
        finally:
            loader.dispose()
        if not required and not isinstance(root, MappingNode):
            return False
        if root is None or _is_null(root):
            self.problems.append(error("empty inventory file", path))
            return True
        if not isinstance(root, MappingNode):
            line, col = _pos(root)
            self.problems.append(error(
                f"the top level must be a mapping of group names, got {_kind(root)}",
                path, line, col))
            return True
        if any(_is_str(k) and k.value == "plugin" for k, _ in root.value):
            return False  # configuration of a dynamic inventory plugin, not a YAML inventory
        self._source, self._loader = path, loader
        try:
            self._mapping_pairs(root, "top level")
            for key, value in root.value:
                name = self._name(key, "group name")
                if name is not None:
                    self._group(name, value)
        except yaml.MarkedYAMLError as exc:  # bad merge key, unknown !!tag...
            self.problems.append(_syntax_problem(exc, path))
        return True

    def finish(self) -> list[Problem]:
        """Cross-file checks (cycles in ``children``); returns every problem found so far."""
        self._cycles()
        return self.problems

    # -- structure ----------------------------------------------------------------------------

    def _group(self, name: str, node: Node) -> None:
        if _is_null(node):
            return
        if not isinstance(node, MappingNode):
            self._error(node, f"group '{name}': expected a mapping with hosts, vars or "
                              f"children, got {_kind(node)}")
            return
        for key, value in self._mapping_pairs(node, f"group '{name}'"):
            section = key.value if _is_str(key) else None
            if section not in SECTIONS:
                self.problems.append(warning(
                    f"group '{name}': unknown key {_show(key)} (expected hosts, vars, children)",
                    self._source, *_pos(key)))
            elif _is_null(value):
                continue
            elif section == "vars":
                if not isinstance(value, MappingNode):
                    self._error(value, f"group '{name}': 'vars' must be a mapping of variable "
                                       f"names to values, got {_kind(value)}")
                else:
                    self._mapping_pairs(value, f"group '{name}' vars")
            elif section == "hosts":
                self._hosts(name, value)
            else:
                self._children(name, value)

    def _hosts(self, group: str, node: Node) -> None:
        if _is_str(node):
            assert isinstance(node, ScalarNode)
            self._host(group, node, None)
            return
        if not isinstance(node, MappingNode):
            hint = " (write each host as 'name:')" if isinstance(node, SequenceNode) else ""
            self._error(node, f"group '{group}': 'hosts' must be a mapping of host names, "
                              f"got {_kind(node)}{hint}")
            return
        for key, value in self._mapping_pairs(node, f"group '{group}' hosts"):
            self._host(group, key, value)

    def _host(self, group: str, key: Node, value: Node | None) -> None:
        if not _is_str(key):
            self._error(key, f"group '{group}': host name {_show(key)} must be a string "
                             "(quote it)")
            return
        assert isinstance(key, ScalarNode)
        pattern = key.value
        if value is not None and not _is_null(value) and not isinstance(value, MappingNode):
            self._error(value, f"group '{group}': host '{pattern}': variables must be a "
                               f"mapping, got {_kind(value)}")
            return
        try:
            names, port = expand_host_pattern(pattern)
        except Exception as exc:  # ansible raises AnsibleError or ValueError for bad ranges
            self._error(key, f"group '{group}': host '{pattern}': bad range ({exc}); ranges "
                             "look like [01:20], [a:f] or [0:10:2]")
            return
        assignments: list[tuple[str, Any, _Where]] = []
        if port is not None:
            assignments.append(("ansible_port", int(port), self._where(key)))
        if isinstance(value, MappingNode):
            for var_key, var_value in self._mapping_pairs(value, f"host '{pattern}'"):
                if not isinstance(var_key, ScalarNode):
                    continue
                assert self._loader is not None
                constructed = self._loader.construct_object(var_value, deep=True)
                assignments.append((str(var_key.value), constructed, self._where(var_key)))
        for name in names:
            known = self._host_vars.setdefault(name, {})
            for var, val, where in assignments:
                if var in known and known[var][0] != val:
                    self.problems.append(error(
                        f"host '{name}': variable '{var}' differs from its definition at "
                        f"{known[var][1]}", where.source, where.line, where.column))
                else:
                    known[var] = (val, where)

    def _children(self, group: str, node: Node) -> None:
        if _is_str(node):
            assert isinstance(node, ScalarNode)
            pairs: list[tuple[Node, Node | None]] = [(node, None)]
        elif isinstance(node, MappingNode):
            pairs = list(self._mapping_pairs(node, f"group '{group}' children"))
        else:
            self._error(node, f"group '{group}': 'children' must be a mapping of group names, "
                              f"got {_kind(node)}")
            return
        for key, value in pairs:
            child = self._name(key, f"group '{group}': child group name")
            if child is None:
                continue
            if child == "all":
                self._error(key, f"group '{group}': 'all' cannot be a child group (every "
                                 "group is already inside 'all')")
                continue
            self._edges.setdefault(group, []).append((child, self._where(key)))
            if value is not None:
                self._group(child, value)

    # -- helpers ------------------------------------------------------------------------------

    def _mapping_pairs(self, node: MappingNode, what: str) -> list[tuple[Node, Node]]:
        """The node's pairs with YAML merge keys applied; warns about duplicate keys."""
        seen: set[str] = set()
        for key, _ in node.value:
            if _is_str(key) and key.tag != _MERGE:
                if key.value in seen:
                    self.problems.append(warning(
                        f"{what}: duplicate key '{key.value}' (only the last one is used)",
                        self._source, *_pos(key)))
                seen.add(key.value)
        if self._loader is not None and any(k.tag == _MERGE for k, _ in node.value):
            self._loader.flatten_mapping(node)
        return list(node.value)

    def _name(self, key: Node, what: str) -> str | None:
        if _is_str(key):
            assert isinstance(key, ScalarNode)
            return str(key.value)
        self._error(key, f"{what} {_show(key)} must be a string (quote it)")
        return None

    def _where(self, node: Node) -> _Where:
        return _Where(self._source, *_pos(node))

    def _error(self, node: Node, message: str) -> None:
        self.problems.append(error(message, self._source, *_pos(node)))

    def _cycles(self) -> None:
        reported: set[frozenset[str]] = set()
        done: set[str] = set()

        def visit(group: str, path: list[str]) -> None:
            for child, where in self._edges.get(group, []):
                if child in path:
                    loop = [*path[path.index(child):], child]
                    if frozenset(loop) not in reported:
                        reported.add(frozenset(loop))
                        chain = " -> ".join(f"'{g}'" for g in loop)
                        self.problems.append(error(
                            f"group {chain}: children form a cycle",
                            where.source, where.line, where.column))
                elif child not in done:
                    visit(child, [*path, child])
            done.add(group)

        for group in list(self._edges):
            if group not in done:
                visit(group, [group])


def expand_host_pattern(pattern: str) -> tuple[list[str], int | None]:
    """Host names and port for one YAML ``hosts`` key, exactly as Ansible expands it.

    >>> expand_host_pattern("web[01:03]:2222")
    (['web01', 'web02', 'web03'], 2222)
    >>> expand_host_pattern("db-[a:c]")
    (['db-a', 'db-b', 'db-c'], None)
    """
    from ansible.parsing.utils.addresses import parse_address
    from ansible.plugins.inventory import detect_range, expand_hostname_range

    try:
        host, port = parse_address(pattern, allow_ranges=True)
    except Exception:  # not an address: Ansible keeps the pattern as the name
        host, port = pattern, None
    names = list(expand_hostname_range(host)) if detect_range(host) else [host]
    return names, (int(port) if port is not None else None)


def check_vars_dir(path: str) -> list[Problem]:
    """Syntax check of a ``group_vars``/``host_vars`` directory, as Ansible would read it.

    Every file with no extension or ``.yml``/``.yaml``/``.json`` (also inside per-name
    directories), except hidden files and backups, must be empty or a YAML mapping.
    Vault-encrypted files are left to Ansible.
    """
    problems: list[Problem] = []
    for entry in sorted(os.listdir(path)):
        full = os.path.join(path, entry)
        ext = os.path.splitext(entry)[1]
        if entry.startswith(".") or entry.endswith("~"):
            continue
        if os.path.isdir(full):
            if not ext:
                problems.extend(check_vars_dir(full))
            continue
        if ext not in VARS_EXTENSIONS:
            continue
        problems.extend(_check_vars_file(full))
    return problems


def _check_vars_file(path: str) -> list[Problem]:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        return [error(f"cannot read variables file: {exc}", path)]
    if text.startswith("$ANSIBLE_VAULT"):
        return []
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        return [_syntax_problem(exc, path)]
    finally:
        loader.dispose()
    if root is None or _is_null(root) or isinstance(root, MappingNode):
        return []
    return [error(f"a variables file must be a mapping of variable names to values, "
                  f"got {_kind(root)}", path, *_pos(root))]


def _syntax_problem(exc: yaml.MarkedYAMLError, path: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or "invalid YAML"
    context = ""
    if exc.context:
        started = exc.context_mark
        at = (f" started at line {started.line + 1}, column {started.column + 1}"
              if started is not None and mark is not None and started.line != mark.line
              else "")
        context = f" ({exc.context}{at})"
    if mark is None:
        return error(f"YAML syntax error: {problem}{context}", path)
    return error(f"YAML syntax error: {problem}{context}", path, mark.line + 1, mark.column + 1)


def _pos(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _show(node: Node) -> str:
    if isinstance(node, ScalarNode):
        return f"'{node.value}'" if node.tag == _STR else str(node.value or "null")
    return _kind(node)
