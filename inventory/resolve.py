"""From an inventory host's variables to a :class:`~inventory.targets.ConnectionTarget`.

Variables read (when several aliases are set, the later one in each list wins, as in
Ansible's ssh connection plugin):

=================================  ==========================================================
address                            ``ansible_host``, ``ansible_ssh_host``; else the name
port                               ``ansible_port``, ``ansible_ssh_port`` (``host:port`` in
                                   the inventory sets ``ansible_port``); else 22
user                               ``ansible_user``, ``ansible_ssh_user``
key file                           ``ansible_private_key_file``,
                                   ``ansible_ssh_private_key_file`` (``~`` expanded)
password                           ``serverguard_password_env: VAR``; or ``ansible_password``
                                   / ``ansible_ssh_pass`` / ``ansible_ssh_password`` as
                                   ``"{{ lookup('env', 'VAR') }}"`` (read as
                                   ``password_env=VAR``), or plain text (accepted, with a
                                   warning that never shows the value)
key passphrase                     ``serverguard_key_passphrase_env: VAR``
host key policy                    ``serverguard_host_key_policy: strict|accept-new``; else
                                   ``StrictHostKeyChecking=accept-new|yes|ask`` in the ssh
                                   args (``no``/``off`` and ``ansible_host_key_checking:
                                   false`` are refused); else the caller's default
known hosts                        ``-o UserKnownHostsFile=PATH ...``
jump hosts                         ``serverguard_jump`` (list, or ``a,b``); else ``-J a,b`` /
                                   ``-o ProxyJump=a,b``; ``-o ProxyCommand=...``
=================================  ==========================================================

The ssh args are ``ansible_ssh_common_args`` then ``ansible_ssh_extra_args``.

Jump chains are flattened: a hop that is a bare inventory host name brings that host's own
resolved settings and, first, its own chain; a literal hop (``user@host``, ``host:port``, a
dotted name or an IP address not in the inventory) is used as written and inherits key
files, key passphrase, host key policy and known hosts files from the host that lists it. If
a hop's own chain already ends with the hops listed before it, they are not repeated::

    bastion2: serverguard_jump: [bastion1]
    db1:      serverguard_jump: [bastion1, bastion2]   ->  db1.jump = (bastion1, bastion2)
    db2:      serverguard_jump: bastion2               ->  db2.jump = (bastion1, bastion2)

A bare name that is neither an inventory host nor looks like an address (no dot, not an IP)
is an error, as are cycles (``'a' -> 'b' -> 'a'``), a chain that visits a host twice, a
``ProxyCommand`` anywhere but on the first hop, and templates in these variables (only the
``lookup('env', ...)`` form above is understood). Every error names the host and variable.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from inventory.ssh_options import HopSpec, SshArgsError, SshOptions, parse_hop, parse_ssh_args
from inventory.targets import ConnectionTarget, HostKeyPolicy
from orchestrator.errors import InventoryError

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_LOOKUP = re.compile(
    r"\{\{\s*lookup\(\s*(['\"])(?:ansible\.builtin\.)?env\1\s*,\s*(['\"])"
    r"([A-Za-z_][A-Za-z0-9_]*)\2\s*\)\s*\}\}")
_PASSWORD_VARS = ("ansible_password", "ansible_ssh_pass", "ansible_ssh_password")
_SSH_ARG_VARS = ("ansible_ssh_common_args", "ansible_ssh_extra_args")


@dataclass(frozen=True, slots=True)
class _Endpoint:
    """One host on its own: how to log in, plus the jump specs it declares."""

    target: ConnectionTarget  # no jump, no proxy command
    proxy_command: str | None
    hops: tuple[HopSpec, ...]
    hops_variable: str


class TargetResolver:
    """Resolves and caches targets for one inventory's host variables.

    ``warnings`` collects one line per host for questionable but accepted settings.
    """

    def __init__(self, hostvars: Mapping[str, Mapping[str, Any]]) -> None:
        self._vars = hostvars
        self._endpoints: dict[tuple[str, HostKeyPolicy], _Endpoint] = {}
        self._targets: dict[tuple[str, HostKeyPolicy], ConnectionTarget] = {}
        self.warnings: list[str] = []

    def target(self, name: str, policy: HostKeyPolicy = HostKeyPolicy.STRICT) -> ConnectionTarget:
        key = (name, policy)
        if key not in self._targets:
            if name not in self._vars:
                raise InventoryError(f"unknown host '{name}'")
            own = self._endpoint(name, policy)
            route = self._route(name, policy, ())
            for hop in route[1:]:
                if self._proxy_command(hop.name, policy):
                    raise InventoryError(
                        f"host '{name}': jump host '{hop.name}' has a ProxyCommand, so it can "
                        "only be the first hop")
            proxy = self._proxy_command(route[0].name, policy) if route else own.proxy_command
            self._targets[key] = replace(own.target, jump=tuple(route), proxy_command=proxy)
        return self._targets[key]

    # -- one host -----------------------------------------------------------------------------

    def _endpoint(self, name: str, policy: HostKeyPolicy) -> _Endpoint:
        key = (name, policy)
        if key not in self._endpoints:
            self._endpoints[key] = self._read_endpoint(name, policy)
        return self._endpoints[key]

    def _read_endpoint(self, name: str, default_policy: HostKeyPolicy) -> _Endpoint:
        v = self._vars[name]
        ssh = self._ssh_options(name, v)
        address = self._text(name, v, "ansible_host", "ansible_ssh_host") or name
        port = self._port(name, v)
        user = self._text(name, v, "ansible_user", "ansible_ssh_user")
        key_file = self._text(name, v, "ansible_private_key_file", "ansible_ssh_private_key_file")
        password_env, password = self._password(name, v)
        passphrase_env = self._env_name(name, v, "serverguard_key_passphrase_env")
        hops, hops_variable = self._hops(name, v, ssh)
        if hops and ssh.proxy_command and "serverguard_jump" in v:
            raise InventoryError(
                f"host '{name}': serverguard_jump cannot be combined with a ProxyCommand in "
                f"the ssh args; put the ProxyCommand on the first jump host")
        target = ConnectionTarget(
            name=name,
            address=address,
            port=port,
            user=user,
            key_files=(os.path.expanduser(key_file),) if key_file else (),
            password_env=password_env,
            password=password,
            key_passphrase_env=passphrase_env,
            host_key_policy=self._policy(name, v, ssh, default_policy),
            known_hosts_files=ssh.user_known_hosts_files,
        )
        return _Endpoint(target, ssh.proxy_command, hops, hops_variable)

    def _value(self, name: str, v: Mapping[str, Any], *names: str) -> tuple[str, Any] | None:
        """The last of ``names`` that is set (Ansible's precedence among aliases)."""
        found = None
        for var in names:
            if var in v and v[var] is not None:
                found = (var, v[var])
        if found and isinstance(found[1], Mapping) and "__ansible_vault" in found[1]:
            raise InventoryError(f"host '{name}': {found[0]}: vault-encrypted values are not "
                                 "supported here")
        return found

    def _text(self, name: str, v: Mapping[str, Any], *names: str) -> str | None:
        found = self._value(name, v, *names)
        if found is None:
            return None
        var, value = found
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise InventoryError(f"host '{name}': {var}: expected a string, got "
                                 f"{type(value).__name__}")
        text = str(value)
        if "{{" in text or "{%" in text:
            raise InventoryError(f"host '{name}': {var}: templates are not supported in "
                                 "connection variables")
        return text

    def _port(self, name: str, v: Mapping[str, Any]) -> int:
        found = self._value(name, v, "ansible_port", "ansible_ssh_port")
        if found is None:
            return 22
        var, value = found
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            raise InventoryError(f"host '{name}': {var}: {value!r} is not a port number "
                                 "(1-65535)")
        return value

    def _env_name(self, name: str, v: Mapping[str, Any], var: str) -> str | None:
        value = v.get(var)
        if value is None:
            return None
        if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
            raise InventoryError(f"host '{name}': {var}: {value!r} is not an environment "
                                 "variable name")
        return value

    def _password(self, name: str, v: Mapping[str, Any]) -> tuple[str | None, str | None]:
        env = self._env_name(name, v, "serverguard_password_env")
        if env:
            return env, None
        found = self._value(name, v, *_PASSWORD_VARS)
        if found is None:
            return None, None
        var, value = found
        text = value if isinstance(value, str) else None
        if isinstance(value, int) and not isinstance(value, bool):
            text = str(value)  # YAML turned a numeric password into a number
        if text is not None and (m := _ENV_LOOKUP.fullmatch(text.strip())):
            return m.group(3), None
        if text is None or "{{" in text or "{%" in text:
            raise InventoryError(
                f"host '{name}': {var}: only \"{{{{ lookup('env', 'NAME') }}}}\" is understood "
                "(the value is not shown); use serverguard_password_env: NAME")
        self.warnings.append(
            f"host '{name}': {var} is stored in plain text in the inventory (the value is not "
            "shown); prefer serverguard_password_env: NAME")
        return None, text

    def _ssh_options(self, name: str, v: Mapping[str, Any]) -> SshOptions:
        merged = SshOptions()
        for var in _SSH_ARG_VARS:
            text = self._text(name, v, var)
            if not text:
                continue
            try:
                opts = parse_ssh_args(text)
            except SshArgsError as exc:
                raise InventoryError(f"host '{name}': {var}: {exc}") from None
            decided = merged.proxy_jump is not None or merged.proxy_command is not None
            merged = SshOptions(  # ssh: the first value given for an option wins
                proxy_jump=merged.proxy_jump if decided else opts.proxy_jump,
                proxy_command=merged.proxy_command if decided else opts.proxy_command,
                strict_host_key_checking=merged.strict_host_key_checking
                or opts.strict_host_key_checking,
                user_known_hosts_files=merged.user_known_hosts_files
                or opts.user_known_hosts_files,
            )
        return merged

    def _policy(self, name: str, v: Mapping[str, Any], ssh: SshOptions,
                default: HostKeyPolicy) -> HostKeyPolicy:
        own = self._text(name, v, "serverguard_host_key_policy")
        if own is not None:
            try:
                return HostKeyPolicy(own.lower())
            except ValueError:
                raise InventoryError(f"host '{name}': serverguard_host_key_policy: {own!r} is "
                                     "not one of strict, accept-new") from None
        refused = ("is not supported (it would accept any host key); use "
                   "StrictHostKeyChecking=accept-new or serverguard_host_key_policy: accept-new")
        checking = ssh.strict_host_key_checking
        if checking in ("no", "off", "false"):
            raise InventoryError(f"host '{name}': StrictHostKeyChecking={checking} in the ssh "
                                 f"args {refused}")
        for var in ("ansible_host_key_checking", "ansible_ssh_host_key_checking"):
            if v.get(var) is False or str(v.get(var)).lower() in ("false", "no", "0"):
                raise InventoryError(f"host '{name}': {var}: false {refused}")
        if checking == "accept-new":
            return HostKeyPolicy.ACCEPT_NEW
        if checking in ("yes", "ask", "true"):
            return HostKeyPolicy.STRICT  # never prompts: 'ask' behaves like 'yes'
        if checking is not None:
            raise InventoryError(f"host '{name}': StrictHostKeyChecking={checking} in the ssh "
                                 "args is not one of yes, accept-new")
        return default

    def _hops(self, name: str, v: Mapping[str, Any],
              ssh: SshOptions) -> tuple[tuple[HopSpec, ...], str]:
        if "serverguard_jump" in v and v["serverguard_jump"] is not None:
            var, raw = "serverguard_jump", v["serverguard_jump"]
            if isinstance(raw, str):
                items: list[Any] = raw.split(",")
            elif isinstance(raw, list):
                items = raw
            else:
                raise InventoryError(f"host '{name}': serverguard_jump: expected a list of hosts "
                                     f"or 'a,b', got {type(raw).__name__}")
        else:
            var = "ProxyJump in the ssh args"
            items = list(ssh.proxy_jump or ())
        specs = []
        for item in items:
            if not isinstance(item, str) or "{{" in item:
                raise InventoryError(f"host '{name}': {var}: {item!r} is not a jump host "
                                     "([user@]host[:port])")
            if not item.strip():
                continue
            try:
                specs.append(parse_hop(item))
            except SshArgsError as exc:
                raise InventoryError(f"host '{name}': {var}: {exc}") from None
        return tuple(specs), var

    # -- chains -------------------------------------------------------------------------------

    def _proxy_command(self, hop_name: str, policy: HostKeyPolicy) -> str | None:
        if hop_name not in self._vars:
            return None  # a literal hop
        return self._endpoint(hop_name, policy).proxy_command

    def _route(self, name: str, policy: HostKeyPolicy,
               stack: tuple[str, ...]) -> list[ConnectionTarget]:
        """Every hop in front of ``name``, first to last, each without a jump of its own."""
        own = self._endpoint(name, policy)
        route: list[ConnectionTarget] = []
        for spec in own.hops:
            if spec.is_bare_name and spec.host in self._vars:
                hop = spec.host
                path = (*stack, name)
                if hop in path:
                    loop = " -> ".join(f"'{h}'" for h in (*path[path.index(hop):], hop))
                    raise InventoryError(f"host '{name}': {own.hops_variable}: jump hosts form "
                                         f"a cycle: {loop}")
                hop_route = [*self._route(hop, policy, path), self._endpoint(hop, policy).target]
            elif spec.is_bare_name and not _looks_like_address(spec.host):
                raise InventoryError(
                    f"host '{name}': {own.hops_variable}: unknown jump host '{spec.host}' (not "
                    "in the inventory; write user@host, host:port or a full domain name for a "
                    "host outside it)")
            else:
                hop_route = [self._literal(spec, own.target)]
            _append_route(route, hop_route)
        names = [hop.name for hop in route]
        for hop_name in names:
            if names.count(hop_name) > 1:
                raise InventoryError(f"host '{name}': {own.hops_variable}: the jump chain "
                                     f"{' -> '.join(names)} visits '{hop_name}' twice")
        return route

    @staticmethod
    def _literal(spec: HopSpec, owner: ConnectionTarget) -> ConnectionTarget:
        return ConnectionTarget(
            name=spec.text,
            address=spec.host,
            port=spec.port or 22,
            user=spec.user,
            key_files=owner.key_files,
            key_passphrase_env=owner.key_passphrase_env,
            host_key_policy=owner.host_key_policy,
            known_hosts_files=owner.known_hosts_files,
        )


def _append_route(route: list[ConnectionTarget], hop_route: list[ConnectionTarget]) -> None:
    """Append, skipping the longest head of ``hop_route`` that ``route`` already ends with."""
    names = [h.name for h in route]
    new = [h.name for h in hop_route]
    overlap = 0
    for k in range(min(len(names), len(new) - 1), 0, -1):
        if names[-k:] == new[:k]:
            overlap = k
            break
    route.extend(hop_route[overlap:])


def _looks_like_address(host: str) -> bool:
    if "." in host or ":" in host:
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
