"""Loading through ansible-core: what reaches the user, variables, the model."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from inventory_helpers import LoadYaml, WriteFile

from inventory import load_inventory
from orchestrator.errors import InventoryError

CORPUS = Path(__file__).resolve().parents[2] / "inventory_corpus"


def test_ansible_output_is_captured_and_reemitted(write: WriteFile,
                                                  capfd: pytest.CaptureFixture[str],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    path = write("inv.yml", """
        web-servers:
          hosts:
            web1:
              "bad var": 1
        """)
    with caplog.at_level(logging.WARNING, logger="inventory"):
        inv = load_inventory([path])
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")  # nothing printed by ansible's display
    assert inv.warnings == [
        "inv.yml: Invalid characters were found in group names but not replaced, use -vvvv "
        "to see details",
        "inv.yml:4:7: deprecated: Accepting inventory variable with invalid name 'bad var'.",
    ]
    assert [r.getMessage() for r in caplog.records] == inv.warnings


def test_host_vars_merge_with_ansible_precedence() -> None:
    inv = load_inventory([str(CORPUS / "precedence" / "inventory.yml")])
    h1, h2, h3 = (inv.host_vars(h) for h in ("h1", "h2", "h3"))
    assert h1["color"] == "child"  # deeper group beats its parent
    assert h2["color"] == "host"  # host variable beats every group
    assert h1["shape"] == "beta"  # same depth: later by name wins
    assert h3["owner"] == "gamma"  # ansible_group_priority beats the name order (zulu)
    # group_vars/ files beat variables written in the inventory, whatever the group
    assert h1["size"] == "alpha-group_vars"
    assert inv.groups["gamma"].priority == 10


def test_group_vars_and_host_vars_files_and_dirs() -> None:
    files = load_inventory([str(CORPUS / "vars_files" / "inventory.yml")])
    assert files.host_vars("web1")["color"] == "from-host_vars"
    assert files.host_vars("web2")["color"] == "from-group_vars-web"
    assert files.host_vars("db1")["backup"] == {"enabled": True, "keep_days": 30}
    assert files.host_vars("db1")["db_engine"] == "postgres"  # group_vars/db, no extension
    dirs = load_inventory([str(CORPUS / "vars_dirs" / "inventory.yml")])
    assert dirs.host_vars("web1") == {"http_port": 8080, "tls": True, "ntp": "pool.ntp.org",
                                      "from_nested_dir": True, "owner": "team-a"}


def test_unsafe_values_are_plain_in_host_vars_but_marked_in_the_list() -> None:
    inv = load_inventory([str(CORPUS / "vars_files" / "inventory.yml")])
    assert inv.host_vars("db1")["listen"] == "{{ not a template }}"
    listed = inv.to_ansible_list()["_meta"]["hostvars"]["db1"]["listen"]
    assert listed == {"__ansible_unsafe": "{{ not a template }}"}


def test_host_vars_is_a_copy(load_yaml: LoadYaml) -> None:
    inv = load_yaml("all:\n  hosts:\n    h1:\n      pkgs: [a]\n")
    inv.host_vars("h1")["pkgs"].append("b")
    assert inv.host_vars("h1") == {"pkgs": ["a"]}


def test_model(load_yaml: LoadYaml) -> None:
    inv = load_yaml("""
        all:
          hosts:
            loner:
          children:
            prod:
              children:
                web:
                  hosts:
                    web2:
                    web1:
        """)
    assert inv.hosts == ["loner", "web2", "web1"]
    assert list(inv.groups) == ["all", "ungrouped", "prod", "web"]
    assert inv.groups["web"].parents == ("prod",) and inv.groups["web"].depth == 2
    assert inv.group_names("web1") == ["prod", "web"]
    assert inv.group_names("loner") == ["ungrouped"]
    assert "web1" in inv and "nope" not in inv and len(inv) == 3
    with pytest.raises(InventoryError, match="unknown host 'nope'"):
        inv.host_vars("nope")


def test_host_list_source_and_several_sources(write: WriteFile) -> None:
    path = write("inv.yml", "web:\n  hosts:\n    web1:\n")
    inv = load_inventory([path, "10.0.0.1,10.0.0.2,"])
    assert inv.hosts == ["10.0.0.1", "10.0.0.2", "web1"]
    assert inv.sources == ("inv.yml", "10.0.0.1,10.0.0.2,")


def test_path_objects_are_accepted() -> None:
    inv = load_inventory([CORPUS / "ranges"])
    assert inv.select("odd") == ["node1", "node5", "node9"]


def test_list_with_limit_keeps_only_those_hosts(load_yaml: LoadYaml) -> None:
    inv = load_yaml("web:\n  hosts:\n    w1:\n      x: 1\n    w2:\ndb:\n  hosts:\n    d1:\n")
    listed = inv.to_ansible_list(limit="w1")
    assert listed == {"all": {"children": ["ungrouped", "web", "db"]},
                      "web": {"hosts": ["w1"]},
                      "_meta": {"hostvars": {"w1": {"x": 1}}, "profile": "inventory_legacy"}}
