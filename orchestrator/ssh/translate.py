"""asyncssh and socket errors -> ServerGuard's tree, at the boundary, one line each."""

from __future__ import annotations

import socket

import asyncssh

from inventory.targets import ConnectionTarget
from orchestrator.errors import (
    AuthError,
    ChannelError,
    ConnectError,
    HostKeyError,
    SSHError,
)
from orchestrator.ssh.hostkeys import VerifyingClient

# Handshake failures worth another try: sshd's MaxStartups drops and penalties close the
# connection before or during key exchange.
RETRYABLE = (asyncssh.ConnectionLost, ConnectionResetError, BrokenPipeError)


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, asyncssh.DisconnectError):
        return isinstance(exc, asyncssh.ConnectionLost) or exc.code in (
            asyncssh.DISC_CONNECTION_LOST,
            asyncssh.DISC_TOO_MANY_CONNECTIONS,
        )
    return isinstance(exc, RETRYABLE)


def translate_connect_error(
    exc: BaseException,
    target: ConnectionTarget,
    *,
    timeout: float,
    client: VerifyingClient | None,
) -> SSHError:
    """Map one failure to reach ``target`` (its last hop is already open) to our tree."""
    where = f"{target.address}:{target.port}"
    via = f" via {target.jump[-1].name}" if target.jump else ""
    host = target.name
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        detail = client.describe_refusal() if client else str(exc)
        return HostKeyError(host, detail)
    if isinstance(exc, asyncssh.PermissionDenied):
        user = target.user or "(local user)"
        return AuthError(host, f"{where} refused every credential offered for user {user}")
    if isinstance(exc, TimeoutError):
        return ConnectError(host, f"no SSH answer from {where}{via} within {timeout:g}s")
    if isinstance(exc, ConnectionRefusedError):
        return ConnectError(host, f"connection refused by {where} (is sshd running?)")
    if isinstance(exc, socket.gaierror):
        return ConnectError(host, f"cannot resolve {target.address}: {exc.strerror}")
    if isinstance(exc, asyncssh.ChannelOpenError):
        # The jump host could not open the TCP connection onwards.
        return ConnectError(host, f"{target.jump[-1].name if target.jump else 'proxy'} "
                                  f"could not reach {where}: {exc.reason}")
    if isinstance(exc, asyncssh.KeyImportError | asyncssh.KeyEncryptionError):
        return AuthError(host, f"cannot load private key: {exc}")
    if isinstance(exc, asyncssh.DisconnectError):
        return ConnectError(host, f"{where}{via} closed the connection: {exc.reason}")
    if isinstance(exc, OSError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        return ConnectError(host, f"cannot reach {where}{via}: {reason}")
    return ConnectError(host, f"{where}{via}: {type(exc).__name__}: {exc}")


def translate_channel_error(exc: BaseException, host: str) -> SSHError:
    """A failure after the connection was up (opening a channel, connection dropped)."""
    if isinstance(exc, asyncssh.ChannelOpenError):
        return ChannelError(host, f"{exc.reason} (sshd MaxSessions reached?)")
    if isinstance(exc, asyncssh.DisconnectError):
        return ConnectError(host, f"connection lost: {exc.reason}")
    if isinstance(exc, OSError):
        return ConnectError(host, f"connection lost: {exc.strerror or exc}")
    return ConnectError(host, f"{type(exc).__name__}: {exc}")


def as_seen_from(exc: SSHError, target: ConnectionTarget) -> SSHError:
    """Re-home a failure of a jump host onto the target behind it, naming the hop."""
    if exc.host == target.name:
        return exc
    return type(exc)(target.name, exc.detail, hop=exc.hop or exc.host)
