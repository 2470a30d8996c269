"""The files a lab hands to its users: inventory.yml, known_hosts and ssh_config.

* ``inventory.yml`` (Ansible YAML) - groups ``public``, ``bastions``, ``private``, ``deep``,
  ``loopback``; connection variables in ``all.vars``; hosts behind a bastion carry
  ``serverguard_jump`` (for ServerGuard) and a ProxyJump in ``ansible_ssh_common_args`` (for
  Ansible's ssh, with ``-F ssh_config`` so the jump hops get the lab key and known_hosts too).
* ``known_hosts`` - every machine's host key under the address it is reached at, so strict
  host key checking works out of the box.
* ``ssh_config`` - ``ssh -F <lab>/ssh_config private01`` reaches any host by name.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from collectors.filesystem import FS_TYPES_EXCLUDE
from orchestrator.lab.model import LabHost
from orchestrator.lab.topology import by_name, jump_endpoints

GROUPS = ("public", "bastions", "private", "deep", "loopback")
PYTHON = "/usr/bin/python3"


def known_host_name(host: LabHost) -> str:
    return host.address if host.port == 22 else f"[{host.address}]:{host.port}"


def write_known_hosts(path: Path, hosts: Sequence[LabHost], public_keys: dict[str, str]) -> None:
    lines = [f"{known_host_name(h)} {public_keys[h.name]}" for h in hosts]
    path.write_text("\n".join(lines) + "\n")


def write_ssh_config(path: Path, hosts: Sequence[LabHost], *, key: Path, known_hosts: Path) -> None:
    out = ["# ServerGuard lab: ssh -F " + shlex.quote(str(path)) + " <host>", ""]
    for h in hosts:
        names = list(h.inventory_names)
        for i in range(0, len(names), 20):
            out.append("Host " + " ".join(names[i : i + 20]))
            out.append(f"    HostName {h.address}")
            out.append(f"    Port {h.port}")
            out.append(f"    User {h.user}")
            if h.jump:
                out.append(f"    ProxyJump {','.join(h.jump)}")
    out += [
        "",
        "Host *",
        f'    IdentityFile "{key}"',
        "    IdentitiesOnly yes",
        f'    UserKnownHostsFile "{known_hosts}"',
        "    StrictHostKeyChecking yes",
        "    PasswordAuthentication no",
        "    KbdInteractiveAuthentication no",
        "",
    ]
    path.write_text("\n".join(out))


def common_args(known_hosts: Path) -> str:
    return f"-o UserKnownHostsFile={shlex.quote(str(known_hosts))} -o StrictHostKeyChecking=yes"


def write_inventory(
    path: Path,
    hosts: Sequence[LabHost],
    *,
    user: str,
    key: Path,
    known_hosts: Path,
    ssh_config: Path,
) -> None:
    machines = by_name(list(hosts))
    base_args = common_args(known_hosts)
    groups: dict[str, dict[str, Any]] = {g: {} for g in GROUPS}
    for h in hosts:
        for name in h.inventory_names:
            entry: dict[str, Any] = {"ansible_host": h.address}
            if h.port != 22:
                entry["ansible_port"] = h.port
            if h.user != user:
                entry["ansible_user"] = h.user
            if h.jump:
                entry["serverguard_jump"] = list(h.jump)
                entry["ansible_ssh_common_args"] = (
                    f"-F {shlex.quote(str(ssh_config))} {base_args} "
                    f"-o ProxyJump={','.join(jump_endpoints(h, machines))}"
                )
            groups[h.group][name] = entry
    all_vars: dict[str, Any] = {
        "ansible_user": user,
        "ansible_ssh_private_key_file": str(key),
        "ansible_ssh_common_args": base_args,
        "ansible_python_interpreter": PYTHON,
    }
    if any(h.kind in ("netns", "shared") for h in hosts):
        # A lab container's / is an overlay, which node_exporter's defaults skip; like a
        # node_exporter deployed in containers, the lab keeps overlay to report its root disk.
        fs_types = FS_TYPES_EXCLUDE.replace("|overlay", "")
        all_vars["serverguard_collectors"] = {
            "options": {"filesystem": {"fs_types_exclude": fs_types}}
        }
    if any(h.kind == "process" for h in hosts):
        all_vars["ansible_ssh_use_tty"] = False  # an unprivileged sshd hands out no pty
    document = {
        "all": {
            "vars": all_vars,
            "children": {g: {"hosts": hs} for g, hs in groups.items() if hs},
        }
    }
    header = (
        "# ServerGuard lab inventory, written by 'serverguard lab up'; removed by 'lab down'.\n"
        f"# Try: serverguard run -i {path} all -- uptime\n"
    )
    path.write_text(header + yaml.safe_dump(document, sort_keys=False, width=1000))
