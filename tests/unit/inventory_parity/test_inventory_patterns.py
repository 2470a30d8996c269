"""Pattern behaviour ServerGuard decides itself (parity with Ansible: test_inventory_parity)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from inventory_helpers import LoadYaml

from inventory import Inventory, split_pattern
from inventory.patterns import PatternMatcher
from orchestrator.errors import PatternError

INV = """
all:
  hosts:
    loner:
  children:
    web:
      hosts:
        web1:
        web2:
        web3:
    db:
      hosts:
        db1:
    prod:
      children:
        web:
        db:
"""


@pytest.fixture
def inv(load_yaml: LoadYaml) -> Inventory:
    return load_yaml(INV)


@pytest.mark.parametrize(("pattern", "parts"), [
    ("web:&prod:!web3", ["web", "&prod", "!web3"]),
    ("a, b[1], c[2:3] , d", ["a", "b[1]", "c[2:3]", "d"]),
    ("web[1:3]", ["web[1:3]"]),
    ("fe80::1", ["fe80::1"]),
    ("web1:22", ["web1:22"]),  # one address with a port, as Ansible reads it
    ("~web.*:db", ["~web.*", "db"]),
    ("", []),
])
def test_split_pattern(pattern: str, parts: list[str]) -> None:
    assert split_pattern(pattern) == parts


def test_unions_keep_first_position(inv: Inventory) -> None:
    assert inv.select("web2:prod:web2") == ["web2", "web1", "web3", "db1"]


def test_unmatched_part_gives_nothing_and_a_warning(inv: Inventory,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="inventory"):
        assert inv.select("nosuch:db") == ["db1"]
    assert [r.getMessage() for r in caplog.records] == [
        "Could not match supplied host pattern, ignoring: nosuch"]


def test_no_implicit_localhost(inv: Inventory) -> None:
    found = inv.match("localhost")
    assert found.hosts == []
    assert found.warnings == ["Could not match supplied host pattern, ignoring: localhost "
                              "(ServerGuard has no implicit localhost: add it to the inventory)"]


def test_subscript_out_of_range_selects_nothing(inv: Inventory) -> None:
    found = inv.match("db:web[7]")
    assert found.hosts == []
    assert found.warnings == ["No hosts matched the subscripted pattern 'web[7]'"]


def test_dash_subscript_still_works_with_a_warning(inv: Inventory) -> None:
    found = inv.match("web[0-1]")
    assert found.hosts == ["web1", "web2"]
    assert found.warnings == [
        "Use [x:y] inclusive subscripts instead of [x-y] which has been removed"]


def test_invalid_regex(inv: Inventory) -> None:
    with pytest.raises(PatternError) as caught:
        inv.select("~web(")
    assert str(caught.value) == (
        "invalid host pattern '~web(': missing ), unterminated subpattern at position 3")


def test_empty_exclusion(inv: Inventory) -> None:
    with pytest.raises(PatternError, match="empty host pattern after '!'"):
        inv.select("web:!")


def test_limit_file(inv: Inventory, tmp_path: Path) -> None:
    path = tmp_path / "failed.txt"
    path.write_text("web3\n\ndb1\nloner\n")
    assert inv.select("prod", limit=f"@{path}") == ["web3", "db1"]
    assert inv.select("prod", limit=f"@{path}:!db1") == ["web3"]


def test_missing_limit_file(inv: Inventory, tmp_path: Path) -> None:
    with pytest.raises(PatternError) as caught:
        inv.select("all", limit=f"@{tmp_path}/nope.txt")
    assert str(caught.value) == f"limit file not found: {tmp_path}/nope.txt"
    with pytest.raises(PatternError, match="must name a file, not a directory"):
        inv.select("all", limit=f"@{tmp_path}")


def test_limit_leaving_nothing_is_not_an_error(inv: Inventory) -> None:
    assert inv.match("web", limit="db").hosts == []


def test_group_hosts_breadth_first() -> None:
    groups = {
        "all": ((), ("a", "b")),
        "a": (("a1",), ("a_child",)),
        "b": (("b1",), ("b_child",)),
        "a_child": (("deep_a",), ()),
        "b_child": (("deep_b", "a1"), ()),
    }
    matcher = PatternMatcher(groups, ["a1", "b1", "deep_a", "deep_b"])
    assert matcher.group_hosts("all") == ["a1", "b1", "deep_a", "deep_b"]
    assert matcher.match("*_child").hosts == ["deep_a", "deep_b", "a1"]
