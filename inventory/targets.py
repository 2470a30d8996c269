"""Connection targets: everything the SSH layer needs to reach one host.

A target is built from an inventory host's variables by ``inventory.resolve``; the SSH layer
never reads inventory variables itself.

Example::

    ConnectionTarget(
        name="db1", address="169.254.20.11", port=22, user="sglab",
        key_files=("/root/.serverguard/lab/id_ed25519",),
        jump=(ConnectionTarget(name="bastion", address="169.254.10.2", user="sglab"),),
    )
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class HostKeyPolicy(StrEnum):
    """How unknown host keys are treated. A *changed* key is always refused."""

    STRICT = "strict"  # only keys already in known_hosts (the user's or the service's)
    ACCEPT_NEW = "accept-new"  # trust on first use, recorded in the service's known_hosts


@dataclass(frozen=True, slots=True)
class ConnectionTarget:
    """How to reach one host: the host itself plus the jump hosts in front of it.

    ``jump`` lists hops first to last; each hop is itself a target without a ``jump`` of
    its own (chains are flattened at resolution time). ``proxy_command`` (from
    ``ProxyCommand=`` in ``ansible_ssh_common_args``) replaces the TCP connection of the
    first hop (or of the host when there is no hop).
    """

    name: str
    address: str
    port: int = 22
    user: str | None = None
    key_files: tuple[str, ...] = ()
    password_env: str | None = None
    password: str | None = field(default=None, repr=False)
    key_passphrase_env: str | None = None
    host_key_policy: HostKeyPolicy = HostKeyPolicy.STRICT
    known_hosts_files: tuple[str, ...] = ()  # extra files (``-o UserKnownHostsFile=``)
    jump: tuple[ConnectionTarget, ...] = ()
    proxy_command: str | None = None

    @property
    def endpoint(self) -> tuple[str | None, str, int]:
        """``(user, address, port)``: identifies one SSH login, whatever the route."""
        return (self.user, self.address, self.port)

    @property
    def route_key(self) -> tuple[tuple[str | None, str, int], ...]:
        """Identifies one connection: the hops in front plus the endpoint itself.

        Two targets with the same ``route_key`` share one pooled connection; hosts behind
        the same bastion share the bastion's (a prefix of their keys).
        """
        return (*(hop.endpoint for hop in self.jump), self.endpoint)

    @property
    def hop_names(self) -> tuple[str, ...]:
        return tuple(hop.name for hop in self.jump)

    def hop(self, index: int) -> ConnectionTarget:
        """The target that reaches hop ``index`` (its own jump = the hops before it)."""
        h = self.jump[index]
        return ConnectionTarget(
            name=h.name,
            address=h.address,
            port=h.port,
            user=h.user,
            key_files=h.key_files,
            password_env=h.password_env,
            password=h.password,
            key_passphrase_env=h.key_passphrase_env,
            host_key_policy=h.host_key_policy,
            known_hosts_files=h.known_hosts_files,
            jump=self.jump[:index],
            proxy_command=self.proxy_command if index == 0 else None,
        )

    def describe(self) -> str:
        """``user@address:port via a -> b`` for humans; never includes secrets."""
        who = f"{self.user}@" if self.user else ""
        via = f" via {' -> '.join(self.hop_names)}" if self.jump else ""
        return f"{who}{self.address}:{self.port}{via}"
