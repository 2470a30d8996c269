"""Every inventory problem is one line naming file:line:column (or host/group and key)."""

from __future__ import annotations

import logging
import os

import pytest
from inventory_helpers import LoadYaml, WriteFile, load_error

from inventory import check_inventory, load_inventory
from orchestrator.errors import InventoryError

# -- YAML syntax and shape --------------------------------------------------------------------


def test_yaml_syntax_error_names_line_and_column(write: WriteFile) -> None:
    path = write("inv.yml", """
        all:
          hosts:
            web1:
            web2
            web3:
        """)
    assert load_error(path) == (
        "inv.yml:5:5: YAML syntax error: could not find expected ':' "
        "(while scanning a simple key started at line 4, column 5)")


def test_unclosed_flow_sequence(write: WriteFile) -> None:
    path = write("inv.yml", "all:\n  hosts:\n    a: [1,\n")
    assert load_error(path) == ("inv.yml:4:1: YAML syntax error: expected the node content, "
                                "but found '<stream end>' (while parsing a flow node)")


def test_top_level_must_be_a_mapping(write: WriteFile) -> None:
    assert load_error(write("inv.yml", "- web1\n- web2\n")) == (
        "inv.yml:1:1: the top level must be a mapping of group names, got a list")


def test_empty_file_is_an_error(write: WriteFile) -> None:
    assert load_error(write("inv.yml", "# nothing yet\n")) == "inv.yml: empty inventory file"


def test_group_must_be_a_mapping(write: WriteFile) -> None:
    assert load_error(write("inv.yml", "all: [a, b]\n")) == (
        "inv.yml:1:6: group 'all': expected a mapping with hosts, vars or children, got a list")


# -- wrong types under hosts/vars/children are errors -----------------------------------------


def test_hosts_as_a_list(write: WriteFile) -> None:
    path = write("inv.yml", """
        all:
          children:
            web:
              hosts:
                - web1
                - web2
        """)
    assert load_error(path) == (
        "inv.yml:5:9: group 'web': 'hosts' must be a mapping of host names, got a list "
        "(write each host as 'name:')")


def test_host_variables_as_a_string(write: WriteFile) -> None:
    path = write("inv.yml", "all:\n  hosts:\n    web1: 10.0.0.1\n")
    assert load_error(path) == (
        "inv.yml:3:11: group 'all': host 'web1': variables must be a mapping, got a string")


def test_host_name_must_be_a_string(write: WriteFile) -> None:
    path = write("inv.yml", "all:\n  hosts:\n    10:\n")
    assert load_error(path) == "inv.yml:3:5: group 'all': host name 10 must be a string (quote it)"


def test_vars_as_a_string(write: WriteFile) -> None:
    assert load_error(write("inv.yml", "web:\n  vars: http_port=80\n")) == (
        "inv.yml:2:9: group 'web': 'vars' must be a mapping of variable names to values, "
        "got a string")


def test_children_as_a_list(write: WriteFile) -> None:
    assert load_error(write("inv.yml", "web:\n  children: [a, b]\n")) == (
        "inv.yml:2:13: group 'web': 'children' must be a mapping of group names, got a list")


def test_all_cannot_be_a_child(write: WriteFile) -> None:
    assert load_error(write("inv.yml", "web:\n  children:\n    all:\n")) == (
        "inv.yml:3:5: group 'web': 'all' cannot be a child group (every group is already "
        "inside 'all')")


def test_bad_host_range(write: WriteFile) -> None:
    path = write("inv.yml", "all:\n  hosts:\n    web[1:x]:\n")
    assert load_error(path) == (
        "inv.yml:3:5: group 'all': host 'web[1:x]': bad range (invalid literal for int() "
        "with base 10: 'x'); ranges look like [01:20], [a:f] or [0:10:2]")


def test_single_name_shorthand_is_accepted(load_yaml: LoadYaml) -> None:
    inv = load_yaml("web:\n  hosts: web1\nprod:\n  children: web\n")
    assert inv.select("prod") == ["web1"]


# -- unknown keys are warnings -----------------------------------------------------------------


def test_unknown_key_is_a_warning_with_location(write: WriteFile,
                                                caplog: pytest.LogCaptureFixture) -> None:
    path = write("inv.yml", """
        all:
            hosts:
                db1:
        web:
            hosts:
                web1:
            host:
                web2:
        """)
    with caplog.at_level(logging.WARNING, logger="inventory"):
        inv = load_inventory([path])
    expected = ("inv.yml:7:5: group 'web': unknown key 'host' "
                "(expected hosts, vars, children)")
    assert inv.warnings == [expected]  # Ansible's own, vaguer warning is not repeated
    assert [r.getMessage() for r in caplog.records] == [expected]
    assert inv.select("all") == ["db1", "web1"]  # like Ansible, the unknown key is ignored


def test_duplicate_key_is_a_warning(write: WriteFile) -> None:
    inv = load_inventory([write("inv.yml", "all:\n  hosts:\n    h1:\n    h1:\n")])
    assert inv.warnings == [
        "inv.yml:4:5: group 'all' hosts: duplicate key 'h1' (only the last one is used)"]


# -- cycles --------------------------------------------------------------------------------------


def test_children_cycle_in_one_file(write: WriteFile) -> None:
    path = write("inv.yml", "a:\n  children:\n    b:\n      children:\n        a:\n")
    assert load_error(path) == "inv.yml:5:9: group 'a' -> 'b' -> 'a': children form a cycle"


def test_children_cycle_across_files_of_a_directory(write: WriteFile) -> None:
    write("inv/1.yml", "a:\n  children:\n    b:\n")
    write("inv/2.yml", "b:\n  children:\n    c:\nc:\n  children:\n    a:\n")
    assert load_error("inv") == (
        "inv/2.yml:6:5: group 'a' -> 'b' -> 'c' -> 'a': children form a cycle")


def test_group_that_is_its_own_child(write: WriteFile) -> None:
    assert load_error(write("inv.yml", "a:\n  children:\n    a:\n")) == (
        "inv.yml:3:5: group 'a' -> 'a': children form a cycle")


# -- duplicate host definitions -----------------------------------------------------------------


def test_same_host_with_different_values_is_an_error(write: WriteFile) -> None:
    path = write("inv.yml", """
        all:
          children:
            a:
              hosts:
                h1:
                  x: 1
            b:
              hosts:
                h1:
                  x: 2
        """)
    assert load_error(path) == (
        "inv.yml:10:11: host 'h1': variable 'x' differs from its definition at inv.yml:6:11")


def test_disagreement_across_files(write: WriteFile) -> None:
    write("inv/a.yml", "web:\n  hosts:\n    h1:\n      ansible_user: ops\n")
    write("inv/b.yml", "db:\n  hosts:\n    h1:\n      ansible_user: root\n")
    assert load_error("inv") == (
        "inv/b.yml:4:7: host 'h1': variable 'ansible_user' differs from its definition at "
        "inv/a.yml:4:7")


def test_host_port_syntax_counts_as_ansible_port(write: WriteFile) -> None:
    path = write("inv.yml", "web:\n  hosts:\n    h1:2222:\ndb:\n  hosts:\n    h1:2200:\n")
    assert load_error(path) == (
        "inv.yml:6:5: host 'h1': variable 'ansible_port' differs from its definition at "
        "inv.yml:3:5")


def test_ranges_expand_before_comparing(write: WriteFile) -> None:
    path = write("inv.yml", """
        web:
          hosts:
            web[1:3]:
              tier: front
        canary:
          hosts:
            web2:
              tier: canary
        """)
    assert load_error(path) == (
        "inv.yml:8:7: host 'web2': variable 'tier' differs from its definition at "
        "inv.yml:4:7")


def test_agreeing_definitions_are_merged(load_yaml: LoadYaml) -> None:
    inv = load_yaml("""
        web:
          hosts:
            h1:
              ansible_user: ops
              x: 1
        db:
          hosts:
            h1:
              ansible_user: ops
              y: 2
        monitored:
          hosts:
            h1:
        """)
    assert inv.host_vars("h1") == {"ansible_user": "ops", "x": 1, "y": 2}
    assert inv.group_names("h1") == ["db", "monitored", "web"]


# -- group_vars / host_vars ------------------------------------------------------------------------


def test_group_vars_syntax_error(write: WriteFile) -> None:
    path = write("inv.yml", "web:\n  hosts:\n    h1:\n")
    write("group_vars/web.yml", "a: 1\nb: c: d\n")
    assert load_error(path) == (
        "group_vars/web.yml:2:5: YAML syntax error: mapping values are not allowed here")


def test_host_vars_file_must_be_a_mapping(write: WriteFile) -> None:
    path = write("inv.yml", "web:\n  hosts:\n    h1:\n")
    write("host_vars/h1/base.yml", "- ntp\n- dns\n")
    assert load_error(path) == (
        "host_vars/h1/base.yml:1:1: a variables file must be a mapping of variable names to "
        "values, got a list")


# -- what Ansible reads: parse failures are errors, not warnings ----------------------------------


def test_missing_source(write: WriteFile) -> None:
    assert load_error("nope.yml") == "nope.yml: inventory source not found"


def test_no_sources() -> None:
    with pytest.raises(InventoryError, match="no inventory sources given"):
        load_inventory([])


def test_ini_parse_failure(write: WriteFile) -> None:
    path = write("hosts.ini", "[web]\nweb1 ansible_port\n")
    assert load_error(path) == (
        "hosts.ini: cannot be read as an inventory (ini plugin: Failed to parse inventory: "
        "Expected key=value host variable assignment, got: ansible_port)")


def test_ini_cycle(write: WriteFile) -> None:
    path = write("hosts.ini", "[a:children]\nb\n[b:children]\na\n")
    assert load_error(path) == (
        "hosts.ini: cannot be read as an inventory (ini plugin: Failed to parse inventory: "
        "Adding group 'a' as child to 'b' creates a recursive dependency loop.)")


def test_one_broken_file_in_a_directory_fails_the_load(write: WriteFile) -> None:
    # Ansible warns and keeps the other files' hosts; a missing group of hosts is worse.
    write("inv/1.yml", "all:\n  hosts:\n    h1:\n")
    write("inv/2.ini", "[web\nweb1\n")
    error = load_error("inv")
    assert error.startswith("inv/2.ini: cannot be read as an inventory (ini plugin: ")


def test_plugin_configuration_failure_gives_the_plugin_reason(write: WriteFile) -> None:
    write("inv/1.yml", "all:\n  hosts:\n    h1:\n      mem_gb: 32\n    h2:\n")
    write("inv/2.yml", "plugin: ansible.builtin.constructed\nstrict: true\n"
                       "groups:\n  big: mem_gb > 16\n")
    error = load_error("inv")
    assert error.startswith("inv/2.yml: cannot be read as an inventory (auto plugin: ")
    assert "'mem_gb' is undefined" in error


def test_first_error_is_raised_and_check_lists_them_all(write: WriteFile) -> None:
    path = write("inv.yml", "web:\n  vars: nope\ndb:\n  hosts: [a]\n")
    assert load_error(path) == (
        "inv.yml:2:9: group 'web': 'vars' must be a mapping of variable names to values, got "
        "a string (+1 more error: run 'serverguard inventory check')")
    report = check_inventory([path])
    assert [str(p) for p in report.errors] == [
        "inv.yml:2:9: group 'web': 'vars' must be a mapping of variable names to values, "
        "got a string",
        "inv.yml:4:10: group 'db': 'hosts' must be a mapping of host names, got a list "
        "(write each host as 'name:')",
    ]
    assert report.inventory is None and not report.ok


def test_error_fields_carry_the_location(write: WriteFile) -> None:
    path = write("inv.yml", "web:\n  children: [a]\n")
    with pytest.raises(InventoryError) as caught:
        load_inventory([path])
    assert (caught.value.source, caught.value.line, caught.value.column) == ("inv.yml", 2, 13)


def test_plain_text_inventories_are_not_read_as_yaml(write: WriteFile) -> None:
    # An extensionless INI file must not trip the YAML checks.
    path = write("hosts", "[web]\nweb1\nweb2\n")
    assert load_inventory([path]).select("web") == ["web1", "web2"]
    assert os.path.exists(path)


def test_control_character_is_one_clear_error_not_a_crash(tmp_path) -> None:
    bad = tmp_path / "inv.yml"
    bad.write_text("all:\n  hosts:\n    web\x01:\n")
    with pytest.raises(InventoryError) as err:
        load_inventory([str(bad)])
    message = str(err.value)
    assert str(bad) in message and "#x0001" in message and "\n" not in message
