"""ServerGuard's inventory against the real Ansible CLIs, case by case of the corpus.

* ``Inventory.to_ansible_json()`` must print what ``ansible-inventory -i CASE --list`` prints;
* ``Inventory.match(pattern, limit)`` must select what ``ansible -i CASE PATTERN --list-hosts
  [--limit L]`` lists, in the same order, and warn about the same unmatched patterns.

All Ansible runs happen once per module, in parallel (see ``ansible_oracle``).
"""

from __future__ import annotations

import fnmatch
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from ansible_oracle import CliResult, list_argv, list_hosts_argv, run_batch, run_cli

from inventory import Inventory, load_inventory, split_pattern

CORPUS = Path(__file__).resolve().parents[2] / "inventory_corpus"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())
LIMIT_FILE = "@LIMIT_FILE"  # replaced by a real file listing two hosts of the case

# (case, pattern, limit): every syntax and rule of patterns, across inventories.
PATTERNS: list[tuple[str, str, str | None]] = [
    ("single_yaml", "all", None),
    ("single_yaml", "*", None),
    ("single_yaml", "web", None),
    ("single_yaml", "web:db", None),
    ("single_yaml", "db,web", None),
    ("single_yaml", "db , web01.example.com", None),
    ("single_yaml", "prod:&staging", None),
    ("single_yaml", "prod:!web", None),
    ("single_yaml", "all:!ungrouped:!db02.example.com", None),
    ("single_yaml", "!web", None),
    ("single_yaml", "&db", None),
    ("single_yaml", "web*", None),
    ("single_yaml", "*.example.com", None),
    ("single_yaml", "w?b0*", None),
    ("single_yaml", "a*", None),
    ("single_yaml", "~web0[12]", None),
    ("single_yaml", "~.*example", None),
    ("single_yaml", "web[0]", None),
    ("single_yaml", "web[1:2]", None),
    ("single_yaml", "web[-1]", None),
    ("single_yaml", "web[1:]", None),
    ("single_yaml", "prod[3]", None),
    ("single_yaml", "web[9]", None),
    ("single_yaml", "nomatch", None),
    ("single_yaml", "nomatch:web", None),
    ("single_yaml", "empty_group", None),
    ("single_yaml", "ungrouped", None),
    ("single_yaml", "web01.example.com", None),
    ("single_yaml", "10.0.0.5", None),
    ("single_yaml", "all", "web"),
    ("single_yaml", "prod", "db*:staging"),
    ("single_yaml", "all", "!web"),
    ("single_yaml", "prod", "~db0[2]"),
    ("single_yaml", "all", LIMIT_FILE),
    ("single_yaml", "web", "nomatch"),
    ("ini_file", "backend", None),
    ("ini_file", "backend:!db", None),
    ("ini_file", "web[2:3]", None),
    ("ini_file", "web[1-2]", None),
    ("ini_file", "~db-[ab]", None),
    ("ini_file", "web-canary.lan", None),
    ("ini_file", "monitoring:&db", None),
    ("ini_file", "ungrouped", None),
    ("ranges", "node*", None),
    ("ranges", "rack-[a:c]", None),
    ("ranges", "odd:nodes", None),
    ("ranges", "nodes[10:12]", None),
    ("ranges", "x1*.lab", None),
    ("ranges", "api[1:3]", None),
    ("host_port", "2001:db8::2", None),
    ("host_port", "web1", None),
    ("host_port", "192.0.2.*", None),
    ("host_port", "edge", None),
    ("deep_nesting", "all", None),
    ("deep_nesting", "world", None),
    ("deep_nesting", "region_eu", None),
    ("deep_nesting", "dc_fra", None),
    ("deep_nesting", "region_eu:&tier_db", None),
    ("deep_nesting", "rack_*", None),
    ("deep_nesting", "tier_web:tier_db", None),
    ("deep_nesting", "dc_ams[1]", None),
    ("unicode", "データ", None),
    ("unicode", "sérveur-*", None),
    ("unicode", "~sér.*", None),
    ("unicode", "équipe:&データ", None),
    ("inventory_dir", "all", None),
    ("inventory_dir", "region_*", None),
    ("inventory_dir", "big_memory:!region_us", None),
    ("inventory_dir", "app", LIMIT_FILE),
    ("precedence", "all", None),
    ("precedence", "alpha:beta", None),
    ("precedence", "parent", None),
    ("ungrouped_empty", "ungrouped", None),
    ("ungrouped_empty", "all", None),
    ("ungrouped_empty", "nothing*", None),
    ("ungrouped_empty", "only_empty_children", None),
    ("script", "dynamic", None),
    ("script", "all:!dyn2", None),
    ("multi_source", "web:&db", None),
    ("multi_source", "all", None),
    ("jumps", "private", None),
    ("jumps", "bastion*:db1", None),
]
# Checked against plain `ansible` subprocesses too, to prove the batch oracle faithful.
CROSS_CHECK = [("single_yaml", "prod:!web", None), ("unicode", "sérveur-*", None),
               ("single_yaml", "all", LIMIT_FILE)]
CROSS_CHECK_LISTS = ["vars_dirs", "unicode"]
# ansible-inventory --list --limit L
LIST_LIMITS = [("single_yaml", "prod:!db02.example.com"), ("inventory_dir", "region_eu"),
               ("deep_nesting", "tier_db")]


def case_sources(case: str) -> list[str]:
    listing = CORPUS / case / "sources.txt"
    if not listing.exists():
        return [str(CORPUS / case)]
    return [str(CORPUS / case / line.strip()) for line in listing.read_text().splitlines()
            if line.strip()]


@pytest.fixture(scope="module")
def limit_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One limit file per case: two host names (and a blank line), as users write them."""
    base = tmp_path_factory.mktemp("limits")
    hosts = {"single_yaml": ["db02.example.com", "web01.example.com"],
             "inventory_dir": ["app3", "cache1"]}
    files = {}
    for case, names in hosts.items():
        path = base / f"{case}.txt"
        path.write_text("\n".join(names) + "\n\n")
        files[case] = f"@{path}"
    return files


def _limit(case: str, limit: str | None, files: dict[str, str]) -> str | None:
    return files[case] if limit == LIMIT_FILE else limit


@pytest.fixture(scope="module")
def ansible_says(limit_files: dict[str, str]) -> dict[str, Any]:
    """Every Ansible answer the module needs: one batch, plus a few plain subprocesses."""
    lists: list[tuple[Any, list[str]]] = [(case, list_argv(case_sources(case)))
                                          for case in CASES]
    lists += [((case, limit), [*list_argv(case_sources(case)), "--limit", limit])
              for case, limit in LIST_LIMITS]
    queries = [((case, pattern, limit),
                list_hosts_argv(case_sources(case), pattern, _limit(case, limit, limit_files)))
               for case, pattern, limit in PATTERNS]
    direct = [(key, list_hosts_argv(case_sources(key[0]), key[1],
                                    _limit(key[0], key[2], limit_files)))
              for key in CROSS_CHECK]
    direct += [(case, list_argv(case_sources(case))) for case in CROSS_CHECK_LISTS]
    with ThreadPoolExecutor(max_workers=len(direct) + 1) as pool:
        batch = pool.submit(run_batch, [argv for _, argv in lists + queries])
        plain = {key: pool.submit(run_cli, argv) for key, argv in direct}
        results = batch.result()
        return {
            "list": dict(zip([c for c, _ in lists], results[:len(lists)], strict=True)),
            "hosts": dict(zip([k for k, _ in queries], results[len(lists):], strict=True)),
            "direct": {key: f.result() for key, f in plain.items()},
        }


@pytest.fixture(scope="module")
def loaded() -> dict[str, Inventory]:
    return {case: load_inventory(case_sources(case)) for case in CASES}


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 12
    assert len(PATTERNS) >= 40


@pytest.mark.parametrize("case", CASES)
def test_list_json_is_ansible_inventory_list(case: str, ansible_says: dict[str, Any],
                                             loaded: dict[str, Inventory]) -> None:
    theirs: CliResult = ansible_says["list"][case]
    assert theirs.rc == 0, theirs.stderr
    inv = loaded[case]
    assert inv.to_ansible_list() == json.loads(theirs.stdout)
    assert inv.to_ansible_json() == theirs.stdout.rstrip("\n")  # byte for byte, as printed


@pytest.mark.parametrize(("case", "limit"), LIST_LIMITS)
def test_list_with_limit_is_ansible_inventory_list_limit(case: str, limit: str,
                                                         ansible_says: dict[str, Any],
                                                         loaded: dict[str, Inventory]) -> None:
    theirs: CliResult = ansible_says["list"][(case, limit)]
    assert theirs.rc == 0, theirs.stderr
    assert loaded[case].to_ansible_json(limit) == theirs.stdout.rstrip("\n")


@pytest.mark.parametrize(("case", "pattern", "limit"), PATTERNS,
                         ids=[f"{c}:{p}" + (f"--limit={lim}" if lim else "")
                              for c, p, lim in PATTERNS])
def test_select_is_ansible_list_hosts(case: str, pattern: str, limit: str | None,
                                      ansible_says: dict[str, Any],
                                      loaded: dict[str, Inventory],
                                      limit_files: dict[str, str]) -> None:
    theirs: CliResult = ansible_says["hosts"][(case, pattern, limit)]
    inv = loaded[case]
    ours = inv.match(pattern, _limit(case, limit, limit_files))
    if theirs.rc != 0:  # Ansible refuses a --limit that leaves no host; we return none
        assert "leaves us with no hosts" in theirs.stderr, theirs.stderr
        assert ours.hosts == []
    elif ours.hosts != theirs.hosts:
        # Only where Ansible's own order varies between runs (groups nested two levels
        # below a matched group are walked from a set); then the same hosts, any order.
        assert _touches_unordered_group(inv, pattern), (ours.hosts, theirs.hosts)
        assert sorted(ours.hosts) == sorted(theirs.hosts) or re.search(r"\[\d", pattern)
        assert len(ours.hosts) == len(theirs.hosts)
    unmatched = {w.split("ignoring: ", 1)[1].split(" (")[0] for w in ours.warnings
                 if "Could not match" in w}
    assert unmatched == theirs.unmatched


@pytest.mark.parametrize("key", CROSS_CHECK + CROSS_CHECK_LISTS, ids=str)
def test_oracle_matches_real_ansible_cli(key: Any, ansible_says: dict[str, Any]) -> None:
    direct: CliResult = ansible_says["direct"][key]
    batch: CliResult = (ansible_says["hosts"] if isinstance(key, tuple)
                        else ansible_says["list"])[key]
    assert (direct.rc, direct.stdout) == (batch.rc, batch.stdout)
    assert direct.stdout


def test_deep_nesting_order_is_breadth_first_in_definition_order(
        loaded: dict[str, Inventory]) -> None:
    # Ansible may give these in another order from run to run; ours never changes.
    assert loaded["deep_nesting"].hosts == [
        "fra-1b", "iad-1b", "fra-1a", "ams-1a", "iad-1a",  # tier_db, tier_web (level 1)
        "fra-2a",  # rack_fra2: child of tier_db (level 2)
        "ams-gw",  # dc_ams (level 3)
    ]
    assert _touches_unordered_group(loaded["deep_nesting"], "all")
    assert not _touches_unordered_group(loaded["single_yaml"], "all")


def _unordered_groups(inv: Inventory) -> set[str]:
    """Groups whose host order Ansible does not fix: at some level of its walk, two or more
    groups bring new child groups (Ansible iterates that level as a set)."""
    unordered = set()
    for name in inv.groups:
        frontier = {name, *inv.groups[name].children}
        seen: set[str] = set()
        while frontier:
            seen |= frontier
            parents_with_new = [g for g in frontier
                                if any(c not in seen for c in inv.groups[g].children)]
            if len(parents_with_new) > 1:
                unordered.add(name)
                break
            frontier = {c for g in frontier for c in inv.groups[g].children} - seen
    return unordered


def _touches_unordered_group(inv: Inventory, pattern: str) -> bool:
    unordered = _unordered_groups(inv)
    parts = split_pattern(pattern)
    if not [p for p in parts if p[0] not in "&!"]:
        parts.append("all")
    for part in parts:
        expr = re.sub(r"\[-?\d+(?:[:-]\d*)?\]$", "", part.lstrip("&!"))
        if expr.startswith("~"):
            matches = [g for g in unordered if re.match(expr[1:], g)]
        else:
            matches = fnmatch.filter(unordered, expr)
        if matches:
            return True
    return False
