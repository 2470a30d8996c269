"""The inventory Ansible gets for a run: ServerGuard's targets rendered as ssh options.

Every host and group of the user's inventory is kept (so ``hostvars`` and ``groups`` mean the
same), with variables merged as ``ansible-inventory --list`` merges them. For every host the
run may contact, the connection variables are rewritten from its
:class:`~inventory.targets.ConnectionTarget`, the one place ServerGuard decides how a host is
reached::

    ansible_host / ansible_port / ansible_user / ansible_ssh_private_key_file
    ansible_ssh_common_args:
        -o "UserKnownHostsFile=<service> <target's files> <user's>"
        -o StrictHostKeyChecking=yes            # or accept-new; never "no"
        -o IdentitiesOnly=yes
        -o "ProxyCommand=ssh ... -W %h:%p bastion"   # jump chain, nested for several hops

A jump hop is reached with its own key, port, user, known_hosts and host key policy. For two
hops the first hop's command is nested inside the second's as its ``ProxyCommand``, with its
``%`` tokens doubled so that each ``ssh`` expands only its own::

    ssh -o 'ProxyCommand=ssh ... -W %%h:%%p 169.254.10.2' ... -W %h:%p 169.254.20.2

Options of the user's ssh args that ServerGuard does not render itself (``-o
ServerAliveInterval=5``, ``-F file``...) are passed on unchanged.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from inventory import ConnectionTarget, HostKeyPolicy, Inventory
from orchestrator.errors import InventoryError

# Connection variables replaced by the rendered ones (all their aliases).
_REPLACED = (
    "ansible_host", "ansible_ssh_host", "ansible_port", "ansible_ssh_port", "ansible_user",
    "ansible_ssh_user", "ansible_private_key_file", "ansible_ssh_private_key_file",
    "ansible_ssh_common_args", "ansible_ssh_extra_args", "serverguard_jump",
)
# ssh options rendered here; the user's values for them are dropped (the target has them).
_RENDERED_OPTIONS = frozenset({
    "proxyjump", "proxycommand", "stricthostkeychecking", "userknownhostsfile",
})
_WITH_ARGUMENT = set("BbcDEeFIiJLlmOoPpQRSWw")
HOP_OPTIONS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=10")


@dataclass(frozen=True)
class KnownHostsFiles:
    """The known_hosts files every connection checks: new keys go to ``service``."""

    service: Path
    user: Path | None

    def for_target(self, target: ConnectionTarget) -> list[str]:
        files = [str(self.service), *target.known_hosts_files]
        if self.user is not None:
            files.append(str(self.user))
        return list(dict.fromkeys(files))


def _pct(text: str) -> str:
    """A literal for ssh's ``%`` token expansion."""
    return text.replace("%", "%%")


def _known_hosts_option(files: list[str]) -> str:
    quoted = " ".join(f'"{_pct(f)}"' if " " in f else _pct(f) for f in files)
    return f"UserKnownHostsFile={quoted}"


def _policy_option(policy: HostKeyPolicy) -> str:
    value = "accept-new" if policy is HostKeyPolicy.ACCEPT_NEW else "yes"
    return f"StrictHostKeyChecking={value}"


def hop_command(target: ConnectionTarget, known: KnownHostsFiles) -> str | None:
    """The ``ProxyCommand`` that reaches ``target`` through its jump chain (``None``: direct).

    Each hop is an ``ssh -W %h:%p`` with that hop's own credentials and host key settings;
    the hop before it, if any, is its ``ProxyCommand``.
    """
    if not target.jump:
        return target.proxy_command
    command: str | None = None
    for index, hop in enumerate(target.jump):
        argv = ["ssh", *HOP_OPTIONS]
        if index == 0 and target.proxy_command:
            argv += ["-o", f"ProxyCommand={target.proxy_command}"]
        elif command is not None:
            argv += ["-o", "ProxyCommand=" + command.replace("%", "%%")]
        argv += ["-o", _known_hosts_option(known.for_target(hop)),
                 "-o", _policy_option(hop.host_key_policy)]
        for key in hop.key_files:
            argv += ["-i", _pct(key)]
        if hop.key_files:
            argv += ["-o", "IdentitiesOnly=yes"]
        if hop.user:
            argv += ["-l", _pct(hop.user)]
        argv += ["-p", str(hop.port), "-W", "%h:%p", hop.address]
        command = shlex.join(argv)
    return command


def passthrough_args(text: str) -> list[str]:
    """The words of a user's ssh args minus the options rendered from the target."""
    words = shlex.split(text)
    kept: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if not word.startswith("-") or len(word) < 2 or word[1] not in _WITH_ARGUMENT:
            kept.append(word)
            continue
        flag, value = word[1], word[2:]
        group = [word]
        if not value and i < len(words):
            value = words[i]
            group.append(value)
            i += 1
        if flag == "J":
            continue
        if flag == "o":
            name = value.replace("=", " ").split(None, 1)[0].lower() if value.strip() else ""
            if name in _RENDERED_OPTIONS:
                continue
        kept += group
    return kept


def connection_vars(target: ConnectionTarget, known: KnownHostsFiles,
                    user_args: str = "") -> dict[str, Any]:
    """The Ansible connection variables that reach ``target`` as ServerGuard would."""
    args = ["-o", _known_hosts_option(known.for_target(target)),
            "-o", _policy_option(target.host_key_policy)]
    if target.key_files:
        args += ["-o", "IdentitiesOnly=yes"]
        args += [a for key in target.key_files[1:] for a in ("-o", f"IdentityFile={_pct(key)}")]
    proxy = hop_command(target, known)
    if proxy:
        args += ["-o", f"ProxyCommand={proxy}"]
    args += passthrough_args(user_args)
    out: dict[str, Any] = {
        # str(): without ansible_host the address is the inventory name, an ansible-core
        # tagged string that yaml.SafeDumper refuses
        "ansible_host": str(target.address),
        "ansible_port": target.port,
        "ansible_ssh_common_args": shlex.join(args),
    }
    if target.user:
        out["ansible_user"] = str(target.user)
    if target.key_files:
        out["ansible_ssh_private_key_file"] = str(target.key_files[0])
    return out


class _Unsafe(str):
    """A value Ansible must never template (``!unsafe`` in the inventory)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    _Unsafe, lambda d, v: d.represent_scalar("!unsafe", str(v)))


def _restore_unsafe(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return _Unsafe(value["__ansible_unsafe"])
        return {str(k): _restore_unsafe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore_unsafe(v) for v in value]
    if isinstance(value, str) and type(value) is not str:
        return str(value)  # ansible's own str subclasses (tagged values)
    return value


@dataclass(frozen=True)
class GeneratedInventory:
    """The YAML inventory of one run, and the targets it was rendered from."""

    document: dict[str, Any]
    targets: dict[str, ConnectionTarget]

    def write(self, path: Path) -> Path:
        path.write_text(
            "# Generated by ServerGuard for one playbook run; connection variables are "
            "rendered from its targets.\n"
            + yaml.dump(self.document, Dumper=_Dumper, sort_keys=False, width=10_000))
        return path


def generate_inventory(inv: Inventory, selected: Iterable[str], known: KnownHostsFiles, *,
                       default_policy: HostKeyPolicy = HostKeyPolicy.STRICT,
                       host_defaults: Mapping[str, Any] | None = None,
                       ) -> GeneratedInventory:
    """Every host and group of ``inv``; connection variables rendered for ``selected``.
    ``host_defaults``: variables a selected host gets when the user's inventory (the host
    or one of its groups) does not set them.

    A selected host whose target cannot be resolved raises :class:`InventoryError`.
    """
    listing = inv.to_ansible_list()
    hostvars: dict[str, dict[str, Any]] = listing["_meta"]["hostvars"]
    targets: dict[str, ConnectionTarget] = {}
    chosen = set(selected)
    rendered: dict[str, dict[str, Any]] = {}
    for host in inv.hosts:
        raw = _restore_unsafe(hostvars.get(host, {}))
        if host in chosen:
            target = inv.target(host, default_policy=default_policy)
            targets[host] = target
            plain = inv.host_vars(host)
            user_args = " ".join(
                str(plain[k]) for k in ("ansible_ssh_common_args", "ansible_ssh_extra_args")
                if plain.get(k))
            try:
                conn = connection_vars(target, known, user_args)
            except ValueError as exc:
                raise InventoryError(f"host '{host}': ssh args: {exc}") from exc
            raw = {k: v for k, v in raw.items() if k not in _REPLACED}
            raw.update(conn)
            for key, value in (host_defaults or {}).items():
                raw.setdefault(key, value)
        rendered[host] = raw

    def group_doc(name: str) -> dict[str, Any]:
        group = inv.groups[name]
        doc: dict[str, Any] = {}
        # ``all`` lists no hosts itself: every host is in ``ungrouped`` or another group.
        if name != "all" and group.hosts:
            doc["hosts"] = {str(h): (rendered[h] if first_seen(h) else None)
                            for h in group.hosts}
        if group.children:
            doc["children"] = {str(c): group_doc(c) for c in group.children}
        return doc

    seen: set[str] = set()

    def first_seen(host: str) -> bool:
        if host in seen:
            return False
        seen.add(host)
        return True

    return GeneratedInventory({"all": group_doc("all")}, targets)
