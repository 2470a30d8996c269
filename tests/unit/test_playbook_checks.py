"""The shipped playbooks' variable checks, run alone on localhost with ansible-playbook.

Only the check tasks run (the roles' ``tasks/check.yml`` through ``include_role
tasks_from: check``, and baseline_audit.yml's first task, copied out of the playbook), on
made-up hosts with ``-c local`` and ``--check``: nothing here touches this machine's
firewall or sysctl. A bad variable must fail its host with one line naming the variable;
good values must pass (and the firewall ruleset renders the ports given, to a temp file).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.playbooks import resolve_playbook

PLAYBOOKS = resolve_playbook("firewall").parent
ANSIBLE_PLAYBOOK = shutil.which("ansible-playbook", path=str(Path(sys.executable).parent)) \
    or shutil.which("ansible-playbook")
KNOWN_AREAS = ["firewall", "ssh", "sysctl", "time_sync", "users"]
# What the firewall role's probe would have returned on a plain host (nft, no ufw).
PROBE = {"stdout": json.dumps({
    "ssh_connection": "192.0.2.1 50000 192.0.2.2 22", "nft": "/usr/sbin/nft", "ufw": "inactive",
    "firewalld": "inactive", "live": "", "applied": "", "persisted": "no", "os_family": "other"})}
SKIP_GUARD = "not (guard | default(false))"
GOOD_PORTS = ["443/tcp", 8080, "8000-8100/udp",
              {"port": 5432, "proto": "tcp", "sources": ["10.0.0.0/8", "fd00::/8"]}]

pytestmark = pytest.mark.skipif(ANSIBLE_PLAYBOOK is None, reason="ansible-playbook not installed")

# host -> (its variables, as an inventory gives them; what its failure says, None = passes)
FIREWALL: dict[str, tuple[dict[str, Any], str | None]] = {
    "fw_ports_string": ({"firewall_allowed_ports": "443"},
                        "firewall_allowed_ports: expected a list such as [\"443/tcp\"], "
                        "got the string '443'"),
    "fw_allowed_sources_string": ({"firewall_allowed_sources": "10.0.0.0/8"},
                                  "firewall_allowed_sources: expected a list such as "
                                  "[\"10.0.0.0/8\"], got the string '10.0.0.0/8'"),
    "fw_denied_sources_string": ({"firewall_denied_sources": "192.0.2.0/24"},
                                 "firewall_denied_sources: expected a list"),
    "fw_extra_rules_string": ({"firewall_extra_input_rules": "tcp dport 9 accept"},
                              "firewall_extra_input_rules: expected a list"),
    "fw_ports_number": ({"firewall_allowed_ports": 443},
                        "firewall_allowed_ports: expected a list such as [\"443/tcp\"], got 443"),
    "fw_port_sources_string": ({"firewall_allowed_ports": [{"port": 5432,
                                                            "sources": "10.0.0.0/8"}]},
                               "firewall_allowed_ports: sources of port 5432: expected a list "
                               "such as [\"10.0.0.0/8\"], got the string '10.0.0.0/8'"),
    "fw_port_too_high": ({"firewall_allowed_ports": ["70000/tcp"]},
                         "firewall_allowed_ports: port 70000 is out of the range 1-65535"),
    "fw_port_zero": ({"firewall_allowed_ports": [0]},
                     "firewall_allowed_ports: port 0 is out of the range 1-65535"),
    "fw_port_range_backwards": ({"firewall_allowed_ports": ["8100-8000/tcp"]},
                                "firewall_allowed_ports: port range 8100-8000 goes backwards"),
    "fw_port_shape": ({"firewall_allowed_ports": ["http"]},
                      "firewall_allowed_ports: expected entries such as \"80/tcp\""),
    "fw_port_proto": ({"firewall_allowed_ports": [{"port": 53, "proto": "icmp"}]},
                      "proto must be one of tcp, udp, sctp, dccp, got the string 'icmp'"),
    "fw_port_unknown_key": ({"firewall_allowed_ports": [{"port": 53, "protocol": "udp"}]},
                            "unknown key protocol (known: port, proto, sources)"),
    "fw_port_missing": ({"firewall_allowed_ports": [{"proto": "udp"}]}, "no port"),
    "fw_policy": ({"firewall_input_policy": "DROP"},
                  "firewall_input_policy: expected drop or accept, got the string 'DROP'"),
    "fw_good": ({"firewall_allowed_ports": GOOD_PORTS,
                 "firewall_allowed_sources": ["198.51.100.0/24"],
                 "firewall_extra_input_rules": ["tcp dport 9 drop"]}, None),
}

SYSCTL: dict[str, tuple[dict[str, Any], str | None]] = {
    "sysctl_extra_string": ({"sysctl_extra": "vm.swappiness"},
                            "sysctl_extra: expected a mapping of key: value such as "
                            "{\"vm.swappiness\": 10}, got the string 'vm.swappiness'"),
    "sysctl_extra_bad_value": ({"sysctl_extra": {"vm.swappiness": [1]}},
                               "sysctl_extra: vm.swappiness: expected a number or a string"),
    "sysctl_profile_list": ({"sysctl_profile": ["web"]},
                            "sysctl_profile: expected the name of one profile (default, web, "
                            "database), got [\"web\"]"),
    "sysctl_profile_unknown": ({"sysctl_profile": "webb"},
                               "sysctl_profile: unknown profile webb (known: default, web, "
                               "database)"),
    "sysctl_profiles_list": ({"sysctl_profiles": ["web"]},
                             "sysctl_profiles: expected a mapping of profile name -> mapping"),
    "sysctl_profiles_bad_profile": ({"sysctl_profiles": {"web": ["somaxconn"]},
                                     "sysctl_profile": "web"},
                                    "sysctl_profiles: profile web: expected a mapping of key: "
                                    "value, got [\"somaxconn\"]"),
    # sysctl_profiles overridden as a whole, without a default profile: the profile stands alone
    "sysctl_profiles_without_default": ({"sysctl_profiles": {"web": {"net.core.somaxconn": 4096}},
                                         "sysctl_profile": "web",
                                         "sysctl_extra": {"vm.swappiness": 10},
                                         "expected_values": {"net.core.somaxconn": 4096,
                                                             "vm.swappiness": 10}}, None),
    "sysctl_without_default_needs_a_profile": (
        {"sysctl_profiles": {"web": {"net.core.somaxconn": 4096}}},
        "sysctl_profile: unknown profile default (known: web)"),
    "sysctl_good": ({"sysctl_profile": "database", "sysctl_extra": {"vm.swappiness": 10},
                     "expected_subset": {"vm.swappiness": 10, "net.ipv4.tcp_syncookies": 1,
                                         "vm.dirty_ratio": 15}}, None),
}

AUDIT: dict[str, tuple[dict[str, Any], str | None]] = {
    "audit_unknown": ({"baseline_audit_areas": ["fw", "sshd"]},
                      "baseline_audit_areas: unknown area(s) fw, sshd (known: firewall, ssh, "
                      "sysctl, time_sync, users)"),
    "audit_one_unknown": ({"baseline_audit_areas": ["firewall", "sysctl", "time"]},
                          "baseline_audit_areas: unknown area(s) time (known:"),
    "audit_empty": ({"baseline_audit_areas": []},
                    "baseline_audit_areas is empty: nothing would be audited"),
    "audit_mapping": ({"baseline_audit_areas": {"firewall": True}},
                      "baseline_audit_areas: expected a list of areas"),
    # from the inventory: play vars must not shadow it
    "audit_inventory": ({"baseline_audit_areas": ["sysctl"], "expected_areas": ["sysctl"]},
                        None),
    "audit_string": ({"baseline_audit_areas": "firewall, ssh",
                      "expected_areas": ["firewall", "ssh"]}, None),
    "audit_default": ({"expected_areas": KNOWN_AREAS}, None),
}


def _baseline_check_play() -> dict[str, Any]:
    """baseline_audit.yml's play with only its first task (the checks), as shipped."""
    play = yaml.safe_load((PLAYBOOKS / "baseline_audit.yml").read_text(encoding="utf-8"))[0]
    first = play["tasks"][0]
    assert "ansible.builtin.assert" in first, first
    return {"name": "baseline_audit checks", "hosts": "audit", "gather_facts": False,
            "check_mode": True, "vars": play["vars"],
            "tasks": [{**first, "when": SKIP_GUARD}, {
                "name": "The areas", "when": SKIP_GUARD, "ansible.builtin.assert": {
                "that": "audit_areas == expected_areas", "quiet": True}}]}


def _write_run(tmp_path: Path, hosts: dict[str, dict[str, Any]]) -> tuple[Path, Path]:
    groups = {"fw": FIREWALL, "sysctl": SYSCTL, "audit": AUDIT}
    # Ansible ends the whole run when every host of a play failed: a guard host in each
    # group skips the checks, so that the next play still runs.
    inventory = {"all": {"children": {
        group: {"hosts": {f"{group}_guard": {"guard": True},
                          **{name: dict(hosts[name]) for name in cases if name in hosts}}}
        for group, cases in groups.items()}}}
    # the python ansible itself runs with, for the one module run (the template)
    for group in inventory["all"]["children"].values():
        for host_vars in group["hosts"].values():
            host_vars["ansible_python_interpreter"] = sys.executable
    playbook = [
        {"name": "firewall checks", "hosts": "fw", "gather_facts": False,
         "vars": {"fw_probe_raw": PROBE}, "tasks": [
             {"ansible.builtin.include_role": {"name": "sg_firewall", "tasks_from": "check",
                                               "public": True}, "when": SKIP_GUARD},
             {"name": "Render the ruleset", "when": "render_to is defined", "check_mode": False,
              "ansible.builtin.template": {
                  "src": str(PLAYBOOKS / "roles/sg_firewall/templates/ruleset.nft.j2"),
                  "dest": "{{ render_to }}", "mode": "0600"}}]},
        {"name": "sysctl checks", "hosts": "sysctl", "gather_facts": False, "tasks": [
            {"ansible.builtin.include_role": {"name": "sg_sysctl", "tasks_from": "check",
                                              "public": True}, "when": SKIP_GUARD},
            {"name": "The values", "when": SKIP_GUARD, "ansible.builtin.assert": {
                "quiet": True, "that": [
                "expected_values is not defined or sysctl_values == expected_values",
                "expected_subset is not defined or "
                "sysctl_values | combine(expected_subset) == sysctl_values"]}}]},
        _baseline_check_play(),
    ]
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory), encoding="utf-8")
    (tmp_path / "checks.yml").write_text(yaml.safe_dump(playbook, sort_keys=False),
                                          encoding="utf-8")
    return tmp_path / "inventory.yml", tmp_path / "checks.yml"


def _play(tmp_path: Path, hosts: dict[str, dict[str, Any]],
          *extra: str) -> dict[str, tuple[bool, str]]:
    """Run the checks; host -> (failed, its failure message)."""
    inventory, playbook = _write_run(tmp_path, hosts)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_HOME=str(tmp_path / "ansible"), ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"),
               ANSIBLE_ROLES_PATH=str(PLAYBOOKS / "roles"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_DEPRECATION_WARNINGS="0")
    assert ANSIBLE_PLAYBOOK is not None
    proc = subprocess.run(
        [ANSIBLE_PLAYBOOK, "-i", str(inventory), "-c", "local", "--check", "-f", "50",
         *extra, str(playbook)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    failures = {m[1]: json.loads(m[2]).get("msg", "")
                for m in re.finditer(r"^fatal: \[([^\]]+)\]: FAILED! => (\{.*\})$", proc.stdout,
                                     re.M)}
    recap = {m[1]: int(m[2]) for m in re.finditer(r"^(\S+)\s+: ok=\d+ .*failed=(\d+)",
                                                    proc.stdout, re.M)}
    assert set(recap) == set(hosts) | {f"{g}_guard" for g in ("fw", "sysctl", "audit")}, \
        proc.stdout + proc.stderr
    assert proc.returncode == (2 if failures else 0), proc.stdout + proc.stderr
    return {host: (recap[host] > 0, failures.get(host, "")) for host in hosts}


def test_bad_variables_fail_naming_the_variable(tmp_path: Path) -> None:
    cases = {**FIREWALL, **SYSCTL, **AUDIT}
    hosts = {name: dict(variables) for name, (variables, _) in cases.items()}
    hosts["fw_good"]["render_to"] = str(tmp_path / "ruleset.nft")
    results = _play(tmp_path, hosts)
    for name, (_, expected) in cases.items():
        failed, message = results[name]
        if expected is None:
            assert not failed, (name, message)
        else:
            assert failed and expected in message, (name, message)
            assert "\n" not in message, (name, message)
    # one wrong variable is named alone (a string sysctl_extra does not blame the profile)
    assert "profile" not in results["sysctl_extra_string"][1]
    assert results["fw_ports_string"][1].count("firewall_") == 2  # and the -e hint
    # the good ports are rendered as given, nothing split into characters
    rules = (tmp_path / "ruleset.nft").read_text(encoding="utf-8")
    for rule in ("tcp dport 443 accept", "tcp dport 8080 accept", "udp dport 8000-8100 accept",
                 "ip saddr { 10.0.0.0/8 } tcp dport 5432 accept",
                 "ip6 saddr { fd00::/8 } tcp dport 5432 accept", "tcp dport 9 drop",
                 "elements = { 198.51.100.0/24 }"):
        assert rule in rules, rule
    assert not re.search(r"dport [0-9] accept", rules)


def test_key_value_extra_vars_are_strings_and_refused(tmp_path: Path) -> None:
    """What the reviewer typed: -e name=value gives a string."""
    hosts: dict[str, dict[str, Any]] = {"fw_ports_string": {}, "sysctl_extra_string": {},
                                        "audit_unknown": {}}
    results = _play(tmp_path, hosts, "-e", "firewall_allowed_ports=443",
                    "-e", "sysctl_extra=vm.swappiness", "-e", "baseline_audit_areas=fw,sshd")
    assert results["fw_ports_string"] == (True, (
        "firewall_allowed_ports: expected a list such as [\"443/tcp\"], got the string '443' "
        "(-e name=value always gives a string: write -e '{\"firewall_allowed_ports\": "
        "[\"443/tcp\"]}')"))
    assert results["sysctl_extra_string"][1].startswith(
        "sysctl_extra: expected a mapping of key: value such as {\"vm.swappiness\": 10}, "
        "got the string 'vm.swappiness'")
    assert results["audit_unknown"] == (True, (
        "baseline_audit_areas: unknown area(s) fw, sshd (known: firewall, ssh, sysctl, "
        "time_sync, users)"))
