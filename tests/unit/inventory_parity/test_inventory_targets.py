"""Connection targets: every variable ServerGuard reads, jump chains and their errors."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest
from inventory_helpers import LoadYaml

from inventory import ConnectionTarget, HostKeyPolicy, Inventory, check_inventory
from orchestrator.errors import InventoryError

CORPUS = Path(__file__).resolve().parents[2] / "inventory_corpus"


def one(load_yaml: LoadYaml, variables: str, name: str = "h1") -> ConnectionTarget:
    """The target of a single host whose variables are given as YAML lines."""
    body = "".join(f"      {line}\n" for line in textwrap.dedent(variables).strip().splitlines())
    return load_yaml(f"all:\n  hosts:\n    {name}:\n{body}").target(name)


def target_error(load_yaml: LoadYaml, text: str, host: str) -> str:
    inv = load_yaml(text)
    with pytest.raises(InventoryError) as caught:
        inv.target(host)
    return str(caught.value)


# -- address, port, user, key ------------------------------------------------------------------


def test_defaults(load_yaml: LoadYaml) -> None:
    t = load_yaml("all:\n  hosts:\n    web1.example.com:\n").target("web1.example.com")
    assert (t.name, t.address, t.port, t.user, t.key_files, t.jump) == (
        "web1.example.com", "web1.example.com", 22, None, (), ())
    assert t.host_key_policy is HostKeyPolicy.STRICT
    assert t.password is None and t.password_env is None and t.proxy_command is None


def test_address_port_user_and_key(load_yaml: LoadYaml, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/ops")
    t = one(load_yaml, """
        ansible_host: 192.0.2.10
        ansible_port: 2222
        ansible_user: deploy
        ansible_ssh_private_key_file: ~/.ssh/id_ed25519
        """)
    assert (t.address, t.port, t.user, t.key_files) == (
        "192.0.2.10", 2222, "deploy", ("/home/ops/.ssh/id_ed25519",))
    assert t.describe() == "deploy@192.0.2.10:2222"


def test_ssh_aliases_win_like_in_ansible(load_yaml: LoadYaml) -> None:
    t = one(load_yaml, """
        ansible_host: 192.0.2.1
        ansible_ssh_host: 192.0.2.2
        ansible_port: 2201
        ansible_ssh_port: 2202
        ansible_user: a
        ansible_ssh_user: b
        """)
    assert (t.address, t.port, t.user) == ("192.0.2.2", 2202, "b")


def test_port_from_host_colon_port_and_from_a_string(load_yaml: LoadYaml) -> None:
    assert load_yaml("all:\n  hosts:\n    h1:2200:\n").target("h1").port == 2200
    assert one(load_yaml, 'ansible_port: "2022"').port == 2022


@pytest.mark.parametrize(("value", "shown"), [
    ('"ssh"', "'ssh'"), ("70000", "70000"), ("0", "0"), ("true", "True"), ("[22]", "[22]")])
def test_bad_port_names_host_and_variable(load_yaml: LoadYaml, value: str, shown: str) -> None:
    text = f"all:\n  hosts:\n    h1:\n      ansible_port: {value}\n"
    assert target_error(load_yaml, text, "h1") == (
        f"host 'h1': ansible_port: {shown} is not a port number (1-65535)")


def test_templates_are_refused_in_connection_variables(load_yaml: LoadYaml) -> None:
    text = 'all:\n  hosts:\n    h1:\n      ansible_host: "{{ inventory_hostname }}.lan"\n'
    assert target_error(load_yaml, text, "h1") == (
        "host 'h1': ansible_host: templates are not supported in connection variables")


def test_unknown_host(load_yaml: LoadYaml) -> None:
    inv = load_yaml("all:\n  hosts:\n    h1:\n")
    with pytest.raises(InventoryError, match="unknown host 'h2'"):
        inv.target("h2")


# -- passwords ---------------------------------------------------------------------------------


def test_password_env(load_yaml: LoadYaml) -> None:
    t = one(load_yaml, "serverguard_password_env: DB_PASSWORD\nserverguard_key_passphrase_env: KP")
    assert (t.password_env, t.password, t.key_passphrase_env) == ("DB_PASSWORD", None, "KP")


@pytest.mark.parametrize("template", [
    "\"{{ lookup('env', 'SSH_PASS') }}\"",
    "'{{lookup(\"env\",\"SSH_PASS\")}}'",
    "\"{{ lookup('ansible.builtin.env', 'SSH_PASS') }}\"",
])
@pytest.mark.parametrize("var", ["ansible_password", "ansible_ssh_pass"])
def test_env_lookup_password_becomes_password_env(load_yaml: LoadYaml, var: str,
                                                  template: str) -> None:
    t = one(load_yaml, f"{var}: {template}")
    assert (t.password_env, t.password) == ("SSH_PASS", None)


def test_plain_password_is_accepted_with_a_warning_that_hides_it(
        load_yaml: LoadYaml, caplog: pytest.LogCaptureFixture) -> None:
    secret = "Tr0ub4dor&3"
    inv = load_yaml(f"all:\n  hosts:\n    h1:\n      ansible_password: '{secret}'\n")
    with caplog.at_level(logging.WARNING):
        t = inv.target("h1")
    assert t.password == secret and t.password_env is None
    expected = ("host 'h1': ansible_password is stored in plain text in the inventory (the "
                "value is not shown); prefer serverguard_password_env: NAME")
    assert [r.getMessage() for r in caplog.records] == [expected]
    assert inv.warnings == [expected]
    assert secret not in repr(t) + t.describe() + caplog.text + " ".join(inv.warnings)


def test_other_password_templates_are_refused_without_the_value(load_yaml: LoadYaml) -> None:
    text = "all:\n  hosts:\n    h1:\n      ansible_password: \"{{ vault_secret_s3cr3t }}\"\n"
    error = target_error(load_yaml, text, "h1")
    assert error == ("host 'h1': ansible_password: only \"{{ lookup('env', 'NAME') }}\" is "
                     "understood (the value is not shown); use serverguard_password_env: NAME")
    assert "s3cr3t" not in error


def test_bad_env_variable_name(load_yaml: LoadYaml) -> None:
    text = "all:\n  hosts:\n    h1:\n      serverguard_password_env: 'MY-PASS'\n"
    assert target_error(load_yaml, text, "h1") == (
        "host 'h1': serverguard_password_env: 'MY-PASS' is not an environment variable name")


# -- host keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("variables", "policy"), [
    ("serverguard_host_key_policy: accept-new", HostKeyPolicy.ACCEPT_NEW),
    ("serverguard_host_key_policy: strict", HostKeyPolicy.STRICT),
    ("ansible_ssh_common_args: -o StrictHostKeyChecking=accept-new", HostKeyPolicy.ACCEPT_NEW),
    ("ansible_ssh_common_args: -oStrictHostKeyChecking=yes", HostKeyPolicy.STRICT),
    ("ansible_ssh_extra_args: '-o \"StrictHostKeyChecking accept-new\"'",
     HostKeyPolicy.ACCEPT_NEW),
])
def test_host_key_policy(load_yaml: LoadYaml, variables: str, policy: HostKeyPolicy) -> None:
    assert one(load_yaml, variables).host_key_policy is policy


def test_default_policy_applies_when_nothing_is_set(load_yaml: LoadYaml) -> None:
    inv = load_yaml("all:\n  hosts:\n    h1:\n    h2:\n      serverguard_host_key_policy: strict\n")
    assert inv.target("h1", default_policy=HostKeyPolicy.ACCEPT_NEW).host_key_policy \
        is HostKeyPolicy.ACCEPT_NEW
    assert inv.target("h2", default_policy=HostKeyPolicy.ACCEPT_NEW).host_key_policy \
        is HostKeyPolicy.STRICT


def test_strict_host_key_checking_no_is_refused(load_yaml: LoadYaml) -> None:
    text = "all:\n  hosts:\n    h1:\n      ansible_ssh_common_args: -o StrictHostKeyChecking=no\n"
    assert target_error(load_yaml, text, "h1") == (
        "host 'h1': StrictHostKeyChecking=no in the ssh args is not supported (it would accept "
        "any host key); use StrictHostKeyChecking=accept-new or serverguard_host_key_policy: "
        "accept-new")


def test_host_key_checking_false_is_refused(load_yaml: LoadYaml) -> None:
    text = "all:\n  hosts:\n    h1:\n      ansible_host_key_checking: false\n"
    assert target_error(load_yaml, text, "h1").startswith(
        "host 'h1': ansible_host_key_checking: false is not supported")


def test_explicit_policy_overrides_ansible_settings(load_yaml: LoadYaml) -> None:
    t = one(load_yaml, "serverguard_host_key_policy: accept-new\n"
                       "ansible_ssh_common_args: -o StrictHostKeyChecking=no")
    assert t.host_key_policy is HostKeyPolicy.ACCEPT_NEW


def test_bad_policy_value(load_yaml: LoadYaml) -> None:
    text = "all:\n  hosts:\n    h1:\n      serverguard_host_key_policy: tofu\n"
    assert target_error(load_yaml, text, "h1") == (
        "host 'h1': serverguard_host_key_policy: 'tofu' is not one of strict, accept-new")


def test_user_known_hosts_files(load_yaml: LoadYaml, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/ops")
    t = one(load_yaml, "ansible_ssh_common_args: "
                       "'-o \"UserKnownHostsFile=~/.ssh/lab_hosts /etc/ssh/lab_hosts\"'")
    assert t.known_hosts_files == ("/home/ops/.ssh/lab_hosts", "/etc/ssh/lab_hosts")


# -- jump chains -------------------------------------------------------------------------------

LAB = """
all:
  vars:
    ansible_user: sglab
  children:
    bastions:
      hosts:
        bastion1:
          ansible_host: 169.254.10.2
          ansible_ssh_private_key_file: /keys/b1
          serverguard_host_key_policy: accept-new
        bastion2:
          ansible_host: 169.254.20.2
          ansible_port: 2222
          serverguard_jump: [bastion1]
    private:
      hosts:
        db1:
          ansible_host: 169.254.20.11
          serverguard_jump: bastion2
        db2:
          ansible_host: 169.254.20.12
          serverguard_jump: [bastion1, bastion2]
        app1:
          ansible_ssh_common_args: -J bastion1,bastion2 -o ConnectTimeout=5
        app2:
          ansible_ssh_common_args: "-C -o ProxyJump=bastion1"
        ext1:
          ansible_ssh_private_key_file: /keys/ext
          serverguard_jump: "ops@gw.example.net:2200,[fe80::1]:2222"
        legacy:
          ansible_ssh_common_args: '-o ProxyCommand="ssh -W %h:%p ops@gw.example.net"'
"""


@pytest.fixture
def lab(load_yaml: LoadYaml) -> Inventory:
    return load_yaml(LAB)


def hops(t: ConnectionTarget) -> list[tuple[str, str, int, str | None]]:
    return [(h.name, h.address, h.port, h.user) for h in t.jump]


def test_inventory_hop_uses_that_hosts_settings(lab: Inventory) -> None:
    t = lab.target("db1")
    assert hops(t) == [("bastion1", "169.254.10.2", 22, "sglab"),
                       ("bastion2", "169.254.20.2", 2222, "sglab")]
    assert t.jump[0].key_files == ("/keys/b1",)
    assert t.jump[0].host_key_policy is HostKeyPolicy.ACCEPT_NEW
    assert t.jump[1].host_key_policy is HostKeyPolicy.STRICT
    assert all(h.jump == () and h.proxy_command is None for h in t.jump)
    assert t.describe() == "sglab@169.254.20.11:22 via bastion1 -> bastion2"


def test_explicit_full_path_is_not_doubled(lab: Inventory) -> None:
    assert lab.target("db2").hop_names == ("bastion1", "bastion2")


def test_hosts_behind_the_same_bastion_share_its_route(lab: Inventory) -> None:
    db1, db2 = lab.target("db1"), lab.target("db2")
    assert db1.route_key[:2] == db2.route_key[:2] == (
        ("sglab", "169.254.10.2", 22), ("sglab", "169.254.20.2", 2222))


def test_dash_j_and_proxyjump_in_ssh_args(lab: Inventory) -> None:
    assert lab.target("app1").hop_names == ("bastion1", "bastion2")
    assert lab.target("app2").hop_names == ("bastion1",)


def test_literal_hops_inherit_keys_and_policy(lab: Inventory) -> None:
    t = lab.target("ext1")
    assert hops(t) == [("ops@gw.example.net:2200", "gw.example.net", 2200, "ops"),
                       ("[fe80::1]:2222", "fe80::1", 2222, None)]
    assert all(h.key_files == ("/keys/ext",) for h in t.jump)


def test_proxy_command(lab: Inventory) -> None:
    t = lab.target("legacy")
    assert t.proxy_command == "ssh -W %h:%p ops@gw.example.net"
    assert t.jump == ()


def test_proxy_command_of_the_first_hop_is_carried(load_yaml: LoadYaml) -> None:
    inv = load_yaml("""
        all:
          hosts:
            gw:
              ansible_ssh_common_args: -o ProxyCommand="nc -X 5 -x proxy:1080 %h %p"
            inner:
              serverguard_jump: gw
        """)
    t = inv.target("inner")
    assert t.hop_names == ("gw",) and t.proxy_command == "nc -X 5 -x proxy:1080 %h %p"
    assert t.hop(0).proxy_command == t.proxy_command


def test_first_of_proxyjump_and_proxycommand_wins(load_yaml: LoadYaml) -> None:
    t = one(load_yaml, "ansible_ssh_common_args: -o ProxyCommand=none -J jump.example.com")
    assert (t.hop_names, t.proxy_command) == ((), None)
    t = one(load_yaml, "ansible_ssh_common_args: -J jump.example.com -o ProxyCommand='nc %h %p'")
    assert (t.hop_names, t.proxy_command) == (("jump.example.com",), None)


def test_targets_in_order(lab: Inventory) -> None:
    assert [t.name for t in lab.targets(["db2", "bastion1"])] == ["db2", "bastion1"]


def test_jump_cycle(load_yaml: LoadYaml) -> None:
    text = ("all:\n  hosts:\n    a:\n      serverguard_jump: b\n"
            "    b:\n      serverguard_jump: a\n")
    assert target_error(load_yaml, text, "a") == (
        "host 'b': serverguard_jump: jump hosts form a cycle: 'a' -> 'b' -> 'a'")


def test_host_jumping_through_itself(load_yaml: LoadYaml) -> None:
    text = "all:\n  hosts:\n    a:\n      ansible_ssh_common_args: -J a\n"
    assert target_error(load_yaml, text, "a") == (
        "host 'a': ProxyJump in the ssh args: jump hosts form a cycle: 'a' -> 'a'")


def test_unknown_jump_host(load_yaml: LoadYaml) -> None:
    text = "all:\n  hosts:\n    db1:\n      serverguard_jump: [bastoin]\n"
    assert target_error(load_yaml, text, "db1") == (
        "host 'db1': serverguard_jump: unknown jump host 'bastoin' (not in the inventory; write "
        "user@host, host:port or a full domain name for a host outside it)")


def test_bad_jump_port(load_yaml: LoadYaml) -> None:
    text = "all:\n  hosts:\n    db1:\n      serverguard_jump: ops@gw.example.net:22x\n"
    assert target_error(load_yaml, text, "db1") == (
        "host 'db1': serverguard_jump: jump host 'ops@gw.example.net:22x': port '22x' is not a "
        "number from 1 to 65535")


def test_chain_visiting_a_host_twice(load_yaml: LoadYaml) -> None:
    text = ("all:\n  hosts:\n    b1:\n    b2:\n      serverguard_jump: b1\n"
            "    db:\n      serverguard_jump: [b2, b1]\n")
    assert target_error(load_yaml, text, "db") == (
        "host 'db': serverguard_jump: the jump chain b1 -> b2 -> b1 visits 'b1' twice")


def test_proxy_command_on_a_later_hop_is_refused(load_yaml: LoadYaml) -> None:
    text = ("all:\n  hosts:\n    b1:\n    gw:\n"
            "      ansible_ssh_common_args: -o ProxyCommand='nc %h %p'\n"
            "    db:\n      serverguard_jump: [b1, gw]\n")
    assert target_error(load_yaml, text, "db") == (
        "host 'db': jump host 'gw' has a ProxyCommand, so it can only be the first hop")


def test_serverguard_jump_with_own_proxy_command_is_refused(load_yaml: LoadYaml) -> None:
    text = ("all:\n  hosts:\n    b1:\n    db:\n      serverguard_jump: b1\n"
            "      ansible_ssh_common_args: -o ProxyCommand='nc %h %p'\n")
    assert target_error(load_yaml, text, "db") == (
        "host 'db': serverguard_jump cannot be combined with a ProxyCommand in the ssh args; "
        "put the ProxyCommand on the first jump host")


def test_unbalanced_quotes_in_ssh_args(load_yaml: LoadYaml) -> None:
    text = "all:\n  hosts:\n    h1:\n      ansible_ssh_common_args: -o 'ProxyJump=a\n"
    assert target_error(load_yaml, text, "h1") == (
        "host 'h1': ansible_ssh_common_args: cannot split arguments: No closing quotation")


def test_corpus_lab_inventory_resolves() -> None:
    report = check_inventory([str(CORPUS / "jumps")])
    assert report.ok and report.problems == []
    inv = report.inventory
    assert inv is not None
    assert inv.target("outside").describe() == (
        "sglab@outside:22 via ops@gw.example.net:2200 -> bastion1")
    assert inv.target("outside").password_env == "OUTSIDE_PASSWORD"
    assert inv.target("legacy").port == 2222


def test_check_reports_each_bad_host(load_yaml: LoadYaml) -> None:
    load_yaml("all:\n  hosts:\n    ok:\n    bad:\n      ansible_port: x\n"
              "    lost:\n      serverguard_jump: nowhere\n")
    report = check_inventory(["inv.yml"])
    assert [str(p) for p in report.problems] == [
        "host 'bad': ansible_port: 'x' is not a port number (1-65535)",
        "host 'lost': serverguard_jump: unknown jump host 'nowhere' (not in the inventory; "
        "write user@host, host:port or a full domain name for a host outside it)",
    ]
