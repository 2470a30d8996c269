"""Which interpreter runs a host's sweep reader: ``serverguard_collectors.python``,
``ansible_python_interpreter``, or python3; false keeps the host on the sh script."""

from __future__ import annotations

from pathlib import Path

import pytest

from inventory import load_inventory
from orchestrator.errors import ConfigError
from orchestrator.sweep_plan import plan_sweeps

INVENTORY = """
all:
  hosts:
    plain: {ansible_host: 10.0.0.1}
    rhel8: {ansible_host: 10.0.0.2, ansible_python_interpreter: /usr/libexec/platform-python}
    auto: {ansible_host: 10.0.0.3, ansible_python_interpreter: auto_silent}
    pinned:
      ansible_host: 10.0.0.4
      serverguard_collectors: {python: /opt/py/bin/python3}
    nopython:
      ansible_host: 10.0.0.5
      ansible_python_interpreter: /usr/bin/python3
      serverguard_collectors: {python: false}
"""


def test_each_host_gets_its_interpreter_and_groups_follow_it(tmp_path: Path) -> None:
    (tmp_path / "inv.yml").write_text(INVENTORY)
    inv = load_inventory([str(tmp_path / "inv.yml")])
    groups = plan_sweeps(inv, inv.select("all"))
    by_host = {t.name: g.python for g in groups for t in g.targets}
    assert by_host == {
        "plain": "python3",
        "rhel8": "/usr/libexec/platform-python",
        "auto": "python3",  # Ansible's discovery keywords are not paths
        "pinned": "/opt/py/bin/python3",
        "nopython": None,
    }
    assert len(groups) == 4  # plain and auto share one sweeper


@pytest.mark.parametrize("value", ["'/usr/bin/env python3'", "''", "3", "[python3]"])
def test_a_bad_python_setting_names_the_host_and_key(tmp_path: Path, value: str) -> None:
    (tmp_path / "inv.yml").write_text(
        f"all:\n  hosts:\n    web1:\n      serverguard_collectors: {{python: {value}}}\n"
    )
    inv = load_inventory([str(tmp_path / "inv.yml")])
    with pytest.raises(ConfigError, match=r"host web1: serverguard_collectors\.python: "):
        plan_sweeps(inv, inv.select("all"))


def test_parse_on_host_is_on_unless_a_host_turns_it_off(tmp_path: Path) -> None:
    (tmp_path / "inv.yml").write_text(
        "all:\n  hosts:\n    web1: {}\n    tiny:\n"
        "      serverguard_collectors: {parse_on_host: false}\n"
    )
    inv = load_inventory([str(tmp_path / "inv.yml")])
    groups = plan_sweeps(inv, inv.select("all"))
    assert {t.name: g.parse_on_host for g in groups for t in g.targets} == {
        "web1": True, "tiny": False}


def test_a_bad_parse_on_host_setting_names_the_host_and_key(tmp_path: Path) -> None:
    (tmp_path / "inv.yml").write_text(
        "all:\n  hosts:\n    web1:\n      serverguard_collectors: {parse_on_host: 'no'}\n"
    )
    inv = load_inventory([str(tmp_path / "inv.yml")])
    with pytest.raises(ConfigError, match=r"host web1: serverguard_collectors\.parse_on_host: "
                                          r"expected true or false, not 'no'"):
        plan_sweeps(inv, inv.select("all"))
