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
    └── LabError                     the local lab could not be built or torn down
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
