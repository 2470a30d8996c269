"""Who is asking, and which inventory hosts they may see and act on.

Scope: an admin sees every host; anyone else sees the hosts of the inventory groups granted
to them (a group's descendants included, as in Ansible patterns; a grant on ``all`` gives
every host). Hosts outside the scope are not secret-but-forbidden, they simply do not exist
for that user: the API answers 404 for them, exactly as for a host that is not there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from inventory import Inventory
from orchestrator.errors import PermissionDenied
from orchestrator.storage.models import Role, TokenKind


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one request."""

    user_id: int
    username: str
    role: Role
    groups: frozenset[str]  # inventory groups granted
    token_id: int
    token_kind: TokenKind
    token_family: str

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    def require(self, role: Role, action: str) -> None:
        """Raise :class:`PermissionDenied` unless the caller's role is at least ``role``."""
        if not self.role.allows(role):
            raise PermissionDenied(
                f"{action} needs the {role.value} role; {self.username!r} is "
                f"{self.role.value}"
            )


class HostScope:
    """The hosts of an inventory a principal may see."""

    def __init__(self, inventory: Inventory | None, principal: Principal) -> None:
        self.inventory = inventory
        self.everything = principal.is_admin or "all" in principal.groups
        self.groups = principal.groups

    def allows(self, host: str) -> bool:
        if self.inventory is None or host not in self.inventory:
            return False
        if self.everything:
            return True
        return not self.groups.isdisjoint(self.inventory.group_names(host))

    def filter(self, hosts: Iterable[str]) -> list[str]:
        return [h for h in hosts if self.allows(h)]

    def allows_all(self, hosts: Iterable[str]) -> bool:
        """True when every one of ``hosts`` is in scope (an admin: always)."""
        if self.everything and self.inventory is not None:
            return True
        return all(self.allows(h) for h in hosts)

    def hosts(self) -> list[str]:
        if self.inventory is None:
            return []
        return self.filter(self.inventory.hosts)
