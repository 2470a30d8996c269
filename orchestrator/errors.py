"""The one exception tree of ServerGuard.

Lower-level errors (asyncssh, OSError, ansible, HTTP) are translated at the boundary with
``raise ... from exc``; a user sees ``str(error)``: one line naming the host, hop, file or
field at fault, never a secret.

    ServerGuardError
    ├── ConfigError                  bad settings or command-line input
    ├── InventoryError               file:line:column or group/host and key at fault
    │   └── PatternError             a host pattern that cannot be resolved
    ├── SSHError                     anything on the way to or on a host (has .host, .hop)
    │   ├── ConnectError             TCP refused/unreachable/handshake failure/connect timeout
    │   ├── AuthError                the host refused every credential offered
    │   ├── HostKeyError             unknown or changed host key (strict policy)
    │   ├── ChannelError             the host refused a session/channel
    │   └── CommandTimeout           the command ran past its timeout (remote process killed)
    ├── LabError                     the local lab could not be built or torn down
    ├── PlaybookError                a playbook that cannot be found, read or run
    │   ├── PlaybookNotFound         no such file, and no shipped playbook of that name
    │   └── PlaybookSyntaxError      YAML or structure error (file:line:column)
    ├── MetricsError                 the metrics pipeline: VictoriaMetrics child, spool directory
    ├── StorageError                 the database cannot be reached, migrated or written
    │   └── AuditChainError          the audit chain fails verification (has .entry_id)
    ├── NotFound                     no such resource, or outside the caller's scope (.resource)
    ├── ConflictError                the resource exists already or is in the wrong state
    ├── ValidationFailed             a request that is well-formed but wrong (.errors per field)
    ├── AuthenticationError          missing, wrong, expired or revoked credentials
    │   └── AccountLocked            too many failed logins (has .until)
    └── PermissionDenied (Forbidden) the caller's role does not allow this action
        └── PolicyDenied             a command matched a deny rule of the command policy
"""

from __future__ import annotations


class ServerGuardError(Exception):
    """Base of every error ServerGuard raises on purpose."""


class ConfigError(ServerGuardError):
    """Invalid settings or command-line input."""


class InventoryError(ServerGuardError):
    """An inventory that cannot be read or means something invalid.

    ``source`` is the file (or ``None``), ``line``/``column`` are 1-based when known.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.column = column
        super().__init__(self._format())

    def _format(self) -> str:
        where = self.source or ""
        if self.source and self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.message}" if where else self.message


class PatternError(InventoryError):
    """A host pattern or ``--limit`` that cannot be resolved."""


class SSHError(ServerGuardError):
    """Something went wrong on the way to, or on, one host.

    ``host`` is the inventory name of the target; ``hop`` names the jump host at fault when
    the failure happened on the way (``None`` when it is the target itself).
    """

    kind = "ssh error"

    def __init__(self, host: str, detail: str, *, hop: str | None = None) -> None:
        self.host = host
        self.hop = hop
        self.detail = detail
        super().__init__(self._format())

    def _format(self) -> str:
        via = f" (at jump host {self.hop})" if self.hop and self.hop != self.host else ""
        return f"{self.host}{via}: {self.kind}: {self.detail}"


class ConnectError(SSHError):
    kind = "cannot connect"


class AuthError(SSHError):
    kind = "authentication failed"


class HostKeyError(SSHError):
    kind = "host key rejected"


class ChannelError(SSHError):
    kind = "channel refused"


class CommandTimeout(SSHError):
    kind = "command timed out"


class LabError(ServerGuardError):
    """The local lab could not be built, inspected or torn down."""


class PlaybookError(ServerGuardError):
    """A playbook that cannot be found, read or run (the message names file and host)."""


class PlaybookNotFound(PlaybookError):
    """No such playbook file, and no shipped playbook of that name (``.name``)."""

    def __init__(self, name: str, shipped: list[str]) -> None:
        self.name = name
        self.shipped = shipped
        super().__init__(f"playbook {name!r} not found: not a file, and not a shipped playbook "
                         f"({', '.join(shipped) or 'none'})")


class PlaybookSyntaxError(PlaybookError):
    """A playbook whose YAML or structure is wrong; ``source``:``line``:``column`` (1-based)."""

    def __init__(self, message: str, *, source: str, line: int | None = None,
                 column: int | None = None) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.column = column
        where = source + (f":{line}" if line is not None else "") + (
            f":{column}" if line is not None and column is not None else "")
        super().__init__(f"{where}: {message}")


class MetricsError(ServerGuardError):
    """The metrics pipeline failed: the embedded VictoriaMetrics, or the on-disk spool."""


class StorageError(ServerGuardError):
    """The database cannot be reached, migrated or written."""


class AuditChainError(StorageError):
    """An audit entry whose hash chain does not verify; ``entry_id`` is the first bad one."""

    def __init__(self, entry_id: int, reason: str) -> None:
        self.entry_id = entry_id
        self.reason = reason
        super().__init__(f"audit entry {entry_id}: {reason}")


class NotFound(ServerGuardError):
    """No such resource, or one outside the caller's scope (the two look the same).

    ``resource`` names the kind (``host``, ``run``...) and ``key`` the identifier asked for.
    """

    def __init__(self, resource: str, key: object, detail: str | None = None) -> None:
        self.resource = resource
        self.key = key
        super().__init__(detail or f"{resource} {key!r} not found")


class ConflictError(ServerGuardError):
    """The resource exists already, or is in a state that forbids the action."""


class ValidationFailed(ServerGuardError):
    """A well-formed request that is wrong; ``errors`` lists ``(field, message)`` pairs."""

    def __init__(self, message: str, errors: list[tuple[str, str]] | None = None) -> None:
        self.errors = errors or []
        super().__init__(message)


class AuthenticationError(ServerGuardError):
    """Missing, wrong, expired or revoked credentials."""


class AccountLocked(AuthenticationError):
    """Too many failed logins; ``until`` is when the lock ends (UTC)."""

    def __init__(self, username: str, until: object) -> None:
        self.username = username
        self.until = until
        super().__init__(f"account {username!r} is locked until {until} after repeated "
                         "failed logins")


class PermissionDenied(ServerGuardError):
    """The caller is known, but their role does not allow this action."""


Forbidden = PermissionDenied


class PolicyDenied(PermissionDenied):
    """A command matched a deny rule of the command policy (``rule`` names it)."""

    def __init__(self, command: str, rule: str, reason: str) -> None:
        self.command = command
        self.rule = rule
        self.reason = reason
        super().__init__(f"command refused by policy rule {rule!r}: {reason}")
