"""Byte streams to a probe target: from the orchestrator, or through a host's SSH connection.

A :class:`Dialer` opens a :class:`Stream` to ``host:port`` from one vantage point:

* :class:`LocalDialer` — from the orchestrator process: the name is resolved here
  (``loop.getaddrinfo``, timed, honouring ``ip_protocol``) and a TCP socket is opened;
* :class:`SSHDialer` — from an inventory host: an SSH ``direct-tcpip`` channel is opened on
  the host's pooled connection (jump hosts included), so the *host's* sshd makes the TCP
  connection. Nothing is installed or run on the host. A name is resolved by that sshd, so
  the resolve phase is not measured separately (it is part of ``connect``).

Both record the connection metrics blackbox_exporter emits (``probe_ip_protocol``,
``probe_ip_addr_hash``, ``probe_dns_lookup_time_seconds``) where they are known.

Example::

    dialer = SSHDialer(pool, inventory.target("bastion"))
    dialed = await dialer.dial("169.254.20.11", 8080, metrics)
    dialed.stream.write(b"GET / HTTP/1.1\r\n...")
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import asyncssh

from inventory.targets import ConnectionTarget
from orchestrator.errors import SSHError
from orchestrator.probes.addresses import choose_address, is_ip, join_host_port, record_address
from orchestrator.probes.dns import GETENT_SCRIPT, parse_getent
from orchestrator.probes.result import ProbeFailed, ProbeMetrics
from orchestrator.probes.spec import ORCHESTRATOR, IPProtocol
from orchestrator.ssh.pool import ConnectionPool
from orchestrator.ssh.session import shell_quote
from orchestrator.ssh.translate import translate_channel_error

READ_SIZE = 65536


class VantageError(Exception):
    """The vantage host could not be reached: the probe did not run."""

    def __init__(self, error: SSHError) -> None:
        self.error = error
        super().__init__(str(error))


# -------------------------------------------------------------------- streams


class _Reader(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


class _Writer(Protocol):
    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def close(self) -> None: ...


class Stream:
    """A byte stream in both directions; ``read`` returns ``b""`` at the end.

    Wraps an asyncio ``StreamReader``/``StreamWriter`` pair or asyncssh's ``SSHReader``/
    ``SSHWriter`` (same shape); ``on_close`` releases what the stream holds (a channel slot).
    """

    def __init__(
        self,
        reader: _Reader,
        writer: _Writer,
        peer: str,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.peer = peer  # host:port as dialled, for messages
        self._on_close = on_close
        self.closed = False

    async def read(self, n: int = READ_SIZE) -> bytes:
        try:
            return await self._reader.read(n)
        except (ConnectionError, asyncssh.Error) as exc:
            raise ProbeFailed(f"connection to {self.peer} lost: {describe_error(exc)}") from exc

    def write(self, data: bytes) -> None:
        self._writer.write(data)

    async def drain(self) -> None:
        try:
            await self._writer.drain()
        except (ConnectionError, asyncssh.Error) as exc:
            raise ProbeFailed(f"connection to {self.peer} lost: {describe_error(exc)}") from exc

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):  # closing a dead stream: nothing to report
            self._writer.close()
        if self._on_close is not None:
            await self._on_close()


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, asyncssh.ChannelOpenError):
        return exc.reason or "channel refused"
    if isinstance(exc, asyncssh.Error):
        return exc.reason or type(exc).__name__
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno)  # asyncio's "Connect call failed (...)" says less
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


# -------------------------------------------------------------------- dialers


@dataclass
class Dialed:
    stream: Stream
    connect_s: float  # TCP connect, or the channel open (sshd's connect included)
    resolve_s: float = 0.0


class Dialer(Protocol):
    """Opens streams and resolves names from one vantage point."""

    vantage: str

    async def dial(
        self, host: str, port: int, m: ProbeMetrics, *,
        ip_protocol: IPProtocol = "ip4", fallback: bool = True,
    ) -> Dialed: ...

    async def resolve(self, name: str) -> list[str]: ...


class LocalDialer:
    """From the orchestrator process itself."""

    vantage = ORCHESTRATOR

    async def resolve(self, name: str) -> list[str]:
        """Addresses for ``name`` from the system resolver, in its order, de-duplicated."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ProbeFailed(f"cannot resolve {name}: {exc.strerror}") from exc
        seen: dict[str, None] = {}
        for family, *_rest, sockaddr in infos:
            if family in (socket.AF_INET, socket.AF_INET6):
                seen.setdefault(str(sockaddr[0]).split("%", 1)[0])
        return list(seen)

    async def dial(
        self, host: str, port: int, m: ProbeMetrics, *,
        ip_protocol: IPProtocol = "ip4", fallback: bool = True,
    ) -> Dialed:
        started = time.perf_counter()
        address = host if is_ip(host) else choose_address(
            await self.resolve(host), ip_protocol, fallback, host)
        resolved = time.perf_counter()
        record_address(m, address, resolved - started)
        peer = join_host_port(host, port)
        try:
            reader, writer = await asyncio.open_connection(address, port)
        except OSError as exc:
            raise ProbeFailed(f"cannot connect to {peer}: {describe_error(exc)}") from exc
        connected = time.perf_counter()
        return Dialed(Stream(reader, writer, peer), connected - resolved, resolved - started)


class SSHDialer:
    """From an inventory host, through its pooled SSH connection (``direct-tcpip``)."""

    def __init__(self, pool: ConnectionPool, target: ConnectionTarget) -> None:
        self.pool = pool
        self.target = target
        self.vantage = target.name

    async def dial(
        self, host: str, port: int, m: ProbeMetrics, *,
        ip_protocol: IPProtocol = "ip4", fallback: bool = True,
    ) -> Dialed:
        if is_ip(host):
            record_address(m, host, 0.0)
        peer = join_host_port(host, port)
        stack = contextlib.AsyncExitStack()
        try:
            try:
                conn = await stack.enter_async_context(self.pool.channel_slot(self.target))
            except SSHError as exc:
                raise VantageError(exc) from exc
            started = time.perf_counter()
            try:
                reader, writer = await conn.open_connection(host, port)
            except asyncssh.ChannelOpenError as exc:
                hint = ""
                if exc.code == asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED:
                    hint = f" (does sshd on {self.vantage} allow TCP forwarding?)"
                raise ProbeFailed(
                    f"{self.vantage} cannot connect to {peer}: {describe_error(exc)}{hint}"
                ) from exc
            except (asyncssh.Error, OSError) as exc:  # the pooled connection broke
                raise VantageError(translate_channel_error(exc, self.vantage)) from exc
            connected = time.perf_counter()
        except BaseException:
            await stack.aclose()
            raise
        stream = Stream(reader, writer, peer, on_close=stack.aclose)
        return Dialed(stream, connected - started)

    async def resolve(self, name: str) -> list[str]:
        """``getent ahosts NAME`` on the host (``getent hosts`` where ``ahosts`` is unknown)."""
        try:
            script = GETENT_SCRIPT.format(name=shell_quote(name))
            result = await self.pool.run(self.target, script)
        except SSHError as exc:
            raise VantageError(exc) from exc
        return parse_getent(name, self.vantage, result.rc, result.stdout, result.error)

