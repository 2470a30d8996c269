"""Host patterns, with the meaning and the order ``ansible PATTERN --list-hosts`` gives them.

ServerGuard's own implementation over the inventory model (ansible-core only parses
addresses). Supported, as in Ansible:

=====================  ===========================================================
``all``, ``*``         every host
``web``                a group (with its descendants) or a host
``web*``, ``*.lan``    shell wildcards over group names *and* host names
``~web\\d+``            a regular expression (``re.match``: anchored at the start only)
``a:b``, ``a,b``       union, in order
``a:&b``               intersection; ``a:!b`` exclusion (applied after all unions)
``web[0]``             subscripts: ``[i]``, ``[-1]``, ``[i:j]`` (inclusive), ``[i:]``
``--limit @file``      a limit read from a file, one pattern per line
=====================  ===========================================================

Like Ansible: a pattern that is exactly a host name is that host (even if a group has the
same name); ``all`` and ``ungrouped`` are ordinary group names for matching (so ``a*``
matches ``all``); duplicates keep their first position.

Differences, on purpose:

* a part that matches nothing yields nothing plus the warning Ansible prints ("Could not
  match supplied host pattern, ignoring: X"); a subscript out of range empties the whole
  result, with a warning (as ``ansible --list-hosts`` shows it); a ``--limit`` that leaves
  nothing is *not* an error (Ansible's ad-hoc CLI stops there): callers decide what an
  empty list means;
* no implicit ``localhost``: Ansible invents it when a pattern names ``localhost``,
  ``127.0.0.1`` or ``::1`` and the inventory has no such host; ServerGuard only reaches hosts
  over SSH, so it must be in the inventory;
* group descendants are walked breadth first, level by level in order. Ansible walks each
  level from a ``set``, so for groups nested two levels or more below the pattern's group
  its order varies from run to run (with address randomisation); ours is one of its orders,
  always the same.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from orchestrator.errors import PatternError

_SUBSCRIPT = re.compile(
    r"""^
        (.+)                    # a pattern followed by
        \[(?:                   # a [subscript]:
            (-?[0-9]+)|         # a single (possibly negative) index
            ([0-9]+)([:-])      # or an x:y or x: range
            ([0-9]*)
        )\]
        $
    """,
    re.X,
)
_COLON_PARTS = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")
_REGEX_OR_GLOB = (".", "?", "*", "[")


class _SubscriptOutOfRange(Exception):
    """``web[9]`` when ``web`` has fewer hosts: the whole pattern then selects nothing."""


def split_pattern(pattern: str) -> list[str]:
    """Split a pattern into its parts, as Ansible does.

    Commas always separate; otherwise colons do, unless the whole pattern is one address
    (an IPv6 address, ``host:port``, a ``[x:y]`` range).

    >>> split_pattern("web:&prod:!web3")
    ['web', '&prod', '!web3']
    >>> split_pattern("a, b[1], c[2:3]")
    ['a', 'b[1]', 'c[2:3]']
    >>> split_pattern("fe80::1")
    ['fe80::1']
    """
    from ansible.parsing.utils.addresses import parse_address

    if "," in pattern:
        parts = pattern.split(",")
    else:
        try:
            parse_address(pattern, allow_ranges=True)
            parts = [pattern]
        except Exception:  # not a single address: a colon-separated list
            parts = _COLON_PARTS.findall(pattern)
    return [p.strip() for p in parts if p.strip()]


@dataclass
class PatternMatch:
    """The hosts a pattern selects, in Ansible's order, and what Ansible would warn about."""

    hosts: list[str]
    warnings: list[str] = field(default_factory=list)


class PatternMatcher:
    """Evaluates patterns over groups and hosts.

    ``groups`` maps names to ``(direct hosts, child groups)`` in Ansible's insertion order;
    ``hosts`` lists host names in definition order (what wildcards iterate).
    """

    def __init__(self, groups: Mapping[str, tuple[Sequence[str], Sequence[str]]],
                 hosts: Sequence[str]) -> None:
        self._groups = groups
        self._hosts = list(hosts)
        self._host_set = frozenset(hosts)
        self._group_hosts: dict[str, list[str]] = {}

    def group_hosts(self, name: str) -> list[str]:
        """Hosts of a group and its descendants: the group's own first, then level by level.

        >>> m = PatternMatcher({"all": ((), ("web",)), "web": (("w1", "w2"), ())}, ["w1", "w2"])
        >>> m.group_hosts("all")
        ['w1', 'w2']
        """
        cached = self._group_hosts.get(name)
        if cached is not None:
            return cached
        ordered = [name, *self._groups[name][1]]
        frontier = list(dict.fromkeys(ordered))
        seen: set[str] = set()
        while frontier:
            seen.update(frontier)
            following: list[str] = []
            for parent in frontier:
                for child in self._groups[parent][1]:
                    if child not in seen:
                        ordered.append(child)
                        if child not in following:
                            following.append(child)
            frontier = following
        result = list(dict.fromkeys(h for g in ordered for h in self._groups[g][0]))
        self._group_hosts[name] = result
        return result

    def match(self, pattern: str, limit: str | None = None) -> PatternMatch:
        """Hosts for ``pattern``, restricted by ``limit`` (pattern or ``@file``).

        Raises :class:`PatternError` for an invalid regex or a missing limit file. A
        subscript out of range (``web[9]``) selects nothing at all, with a warning, as
        ``ansible --list-hosts`` shows it.
        """
        found = PatternMatch([])
        try:
            hosts = self._evaluate(split_pattern(pattern), found.warnings)
            if limit is not None:
                allowed = set(self._evaluate(self._limit_parts(limit), found.warnings))
                hosts = [h for h in hosts if h in allowed]
        except _SubscriptOutOfRange as exc:
            found.warnings.append(f"No hosts matched the subscripted pattern '{exc}'")
            return found
        found.hosts = list(dict.fromkeys(hosts))
        return found

    @staticmethod
    def _limit_parts(limit: str) -> list[str]:
        parts: list[str] = []
        for part in split_pattern(limit):
            if not part.startswith("@"):
                parts.append(part)
                continue
            path = part[1:]
            if not os.path.exists(path):
                raise PatternError(f"limit file not found: {path}")
            if not os.path.isfile(path):
                raise PatternError(f"a limit starting with '@' must name a file, not a "
                                   f"directory: {path}")
            with open(path, encoding="utf-8") as fh:
                parts.extend(line.strip() for line in fh.read().split("\n"))
        return parts

    def _evaluate(self, parts: list[str], warnings: list[str]) -> list[str]:
        regular = [p for p in parts if p and p[0] not in "&!"]
        ordered = (regular or ["all"]) + [p for p in parts if p[:1] == "&"] + [
            p for p in parts if p[:1] == "!"]
        hosts: list[str] = []
        for part in ordered:
            if part in self._host_set:
                hosts.append(part)
                continue
            that = self._match_one(part, warnings)
            if part[0] == "!":
                excluded = set(that)
                hosts = [h for h in hosts if h not in excluded]
            elif part[0] == "&":
                kept = set(that)
                hosts = [h for h in hosts if h in kept]
            else:
                existing = set(hosts)
                hosts.extend(h for h in that if h not in existing)
        return hosts

    def _match_one(self, part: str, warnings: list[str]) -> list[str]:
        pattern = part[1:] if part[0] in "&!" else part
        if not pattern:
            raise PatternError(f"empty host pattern after '{part}'")
        expr, subscript = self._split_subscript(pattern, warnings)
        hosts = self._enumerate(expr, warnings)
        if not hosts or subscript is None:
            return hosts
        start, end = subscript
        if end:
            return hosts[start:(len(hosts) - 1 if end == -1 else end) + 1]
        try:
            return [hosts[start]]
        except IndexError:
            raise _SubscriptOutOfRange(pattern) from None

    @staticmethod
    def _split_subscript(pattern: str,
                         warnings: list[str]) -> tuple[str, tuple[int, int | None] | None]:
        if pattern[0] == "~":
            return pattern, None
        m = _SUBSCRIPT.match(pattern)
        if not m:
            return pattern, None
        expr, index, start, sep, end = m.groups()
        if index:
            return expr, (int(index), None)
        if sep == "-":
            warnings.append("Use [x:y] inclusive subscripts instead of [x-y] which has been "
                            "removed")
        return expr, (int(start), int(end) if end else -1)

    def _enumerate(self, pattern: str, warnings: list[str]) -> list[str]:
        matches = _matcher(pattern)
        groups = [g for g in self._groups if matches(g)]
        results = [h for g in groups for h in self.group_hosts(g)]
        if not groups or pattern[0] == "~" or any(c in pattern for c in _REGEX_OR_GLOB):
            results.extend(h for h in self._hosts if matches(h))
        if not results and not groups and pattern != "all":
            hint = (" (ServerGuard has no implicit localhost: add it to the inventory)"
                    if pattern in ("localhost", "127.0.0.1", "::1") else "")
            warnings.append(f"Could not match supplied host pattern, ignoring: {pattern}{hint}")
        return results


def _matcher(pattern: str) -> Callable[[str], bool]:
    try:
        if pattern[0] == "~":
            regex = re.compile(pattern[1:])
        else:
            regex = re.compile(fnmatch.translate(pattern))
    except re.error as exc:
        raise PatternError(f"invalid host pattern '{pattern}': {exc}") from None
    return lambda name: regex.match(name) is not None
