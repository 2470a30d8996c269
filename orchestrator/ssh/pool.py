"""The connection pool: one asyncssh connection per route, shared by everything.

A *route* is the chain of logins that reaches a host (``ConnectionTarget.route_key``). Hosts
behind the same bastion reuse the bastion's pooled connection as their tunnel, so N hosts
behind one bastion cost one bastion connection; chains of any length work the same way.

Being a good citizen towards sshd:
- at most ``connects_in_flight`` handshakes at once in total and ``handshakes_per_sshd`` to
  one sshd (its ``MaxStartups`` starts dropping at 10 unauthenticated connections);
- handshakes dropped by sshd are retried with jittered backoff inside the connect timeout;
- after a failure a route is not retried before an exponential backoff with jitter expires;
- after an authentication failure a route is not retried for ``auth_failure_backoff``
  seconds, so a wrong key never gets the orchestrator's address penalised (OpenSSH >= 9.8
  ``PerSourcePenalties``) or locked out of a fleet;
- at most ``channels_per_host`` channels open per host (sshd ``MaxSessions`` is 10).

Example::

    async with ConnectionPool(settings) as pool:
        result = await pool.run(target, "uptime", timeout=10)
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
import random
import shlex
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import asyncssh

from inventory.targets import ConnectionTarget
from orchestrator.errors import AuthError, SSHError
from orchestrator.settings import Settings
from orchestrator.ssh.exec import ExecResult, OutputCallback, exec_command
from orchestrator.ssh.hostkeys import KnownHosts, VerifyingClient
from orchestrator.ssh.reader import HostReader
from orchestrator.ssh.session import PersistentSession
from orchestrator.ssh.translate import (
    as_seen_from,
    is_retryable,
    translate_channel_error,
    translate_connect_error,
)

log = logging.getLogger(__name__)

RouteKey = tuple[tuple[str | None, str, int], ...]

HANDSHAKE_RETRIES = 4


@dataclass(eq=False)
class _Route:
    """Pool state for one route."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    conn: asyncssh.SSHClientConnection | None = None
    client: VerifyingClient | None = None
    channels: asyncio.Semaphore | None = None
    last_used: float = 0.0
    failures: int = 0
    retry_at: float = 0.0
    last_error: SSHError | None = None
    session: PersistentSession | None = None
    reader: HostReader | None = None
    in_use: int = 0

    def alive(self) -> bool:
        return self.conn is not None and self.client is not None and not self.client.lost


class ConnectionPool:
    """Pooled, paced, self-healing SSH connections. Use as an async context manager."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.known_hosts = KnownHosts(settings.user_known_hosts, settings.known_hosts_file)
        self._routes: dict[RouteKey, _Route] = {}
        self._connect_slots = asyncio.Semaphore(settings.connects_in_flight)
        self._sshd_slots: dict[tuple[Any, ...], asyncio.Semaphore] = {}
        self._keys: dict[tuple[str, str | None], asyncssh.SSHKey] = {}
        self._reaper: asyncio.Task[None] | None = None
        self.stats = {"connects": 0, "handshake_retries": 0, "evicted": 0}

    async def __aenter__(self) -> ConnectionPool:
        if self.settings.idle_timeout > 0:
            self._reaper = asyncio.create_task(self._reap_idle())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ---------------------------------------------------------------- public surface

    async def connection(self, target: ConnectionTarget) -> asyncssh.SSHClientConnection:
        """The pooled connection for ``target``, opened (with its hops) if needed."""
        route = self._routes.setdefault(target.route_key, _Route())
        route.last_used = time.monotonic()
        if route.alive():
            assert route.conn is not None
            return route.conn
        async with route.lock:
            if route.alive():
                assert route.conn is not None
                return route.conn
            await self._drop(route)
            now = time.monotonic()
            if route.last_error is not None and now < route.retry_at:
                raise type(route.last_error)(
                    target.name,
                    f"{route.last_error.detail} (not retrying for {route.retry_at - now:.1f}s)",
                    hop=route.last_error.hop,
                )
            try:
                conn, client = await self._open(target)
            except SSHError as exc:
                self._note_failure(route, exc)
                raise
            route.conn, route.client = conn, client
            route.failures, route.last_error = 0, None
            route.channels = asyncio.Semaphore(self.settings.channels_per_host)
            return conn

    @contextlib.asynccontextmanager
    async def channel_slot(self, target: ConnectionTarget) -> AsyncIterator[
        asyncssh.SSHClientConnection
    ]:
        """A connection plus one of the host's channel slots, held for the block."""
        conn = await self.connection(target)
        route = self._routes[target.route_key]
        assert route.channels is not None
        async with route.channels:
            route.in_use += 1
            try:
                yield conn
            finally:
                route.in_use -= 1
                route.last_used = time.monotonic()

    async def run(
        self,
        target: ConnectionTarget,
        command: str,
        *,
        timeout: float | None = None,
        max_output: int | None = None,
        on_output: OutputCallback | None = None,
        stdin: bytes | None = None,
    ) -> ExecResult:
        """Run one command; connection problems raise ``SSHError``, a timeout does not."""
        timeout = self.settings.command_timeout if timeout is None else timeout
        cap = self.settings.max_output_bytes if max_output is None else max_output
        async with self.channel_slot(target) as conn:
            try:
                return await exec_command(
                    conn, target.name, command,
                    timeout=timeout, max_output=cap, on_output=on_output, stdin=stdin,
                )
            except (asyncssh.Error, OSError) as exc:
                raise translate_channel_error(exc, target.name) from exc

    async def session(self, target: ConnectionTarget) -> PersistentSession:
        """The host's persistent shell session (opened on first use, reopened if lost)."""
        conn = await self.connection(target)
        route = self._routes[target.route_key]
        if route.session is None or route.session.conn is not conn:
            route.session = PersistentSession(
                conn, target.name, max_output=self.settings.max_output_bytes
            )
        return route.session

    async def run_in_session(
        self,
        target: ConnectionTarget,
        script: str,
        *,
        timeout: float | None = None,
        buffered: bool = False,
        keep: bool = False,
    ) -> ExecResult:
        """Run a script over the persistent session: one round trip, no new remote session.

        ``buffered``: the host's shell sends the output at once when the script ends (for
        text of bounded size); ``keep``: the shell keeps the script, so that the next runs
        of the same script send only a reference to it (a script run every interval). See
        ``orchestrator.ssh.session``."""
        timeout = self.settings.command_timeout if timeout is None else timeout
        session = await self.session(target)
        try:
            return await session.run(script, timeout=timeout, buffered=buffered, keep=keep)
        except (asyncssh.Error, OSError) as exc:
            raise translate_channel_error(exc, target.name) from exc

    async def run_with_reader(
        self,
        target: ConnectionTarget,
        program: bytes,
        plan_id: str,
        plan: bytes,
        *,
        timeout: float | None = None,
        python: str = "python3",
    ) -> ExecResult | None:
        """Run a sweep plan with the host's sweep reader (a ``python`` process kept on the
        host, ``orchestrator.ssh.reader``): no process started on the host per sweep.
        ``None`` when the host cannot run it (no python3): run the sh script instead."""
        timeout = self.settings.command_timeout if timeout is None else timeout
        conn = await self.connection(target)
        route = self._routes[target.route_key]
        reader = route.reader
        if reader is None or reader.conn is not conn or reader.python != python:
            if reader is not None:
                reader.close()
            reader = route.reader = HostReader(
                conn, target.name, max_output=self.settings.max_output_bytes, python=python
            )
        try:
            return await reader.run(program, plan_id, plan, timeout=timeout)
        except (asyncssh.Error, OSError) as exc:
            raise translate_channel_error(exc, target.name) from exc

    def reader(self, target: ConnectionTarget) -> HostReader | None:
        """The host's sweep reader, if a sweep opened one on its current connection."""
        route = self._routes.get(target.route_key)
        return route.reader if route is not None else None

    def open_connections(self) -> int:
        return sum(1 for r in self._routes.values() if r.alive())

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        # Close the deepest routes first so tunnels outlive what runs through them.
        for key in sorted(self._routes, key=len, reverse=True):
            await self._drop(self._routes[key])
        self._routes.clear()

    # ---------------------------------------------------------------- internals

    def _note_failure(self, route: _Route, exc: SSHError) -> None:
        route.failures += 1
        route.last_error = exc
        s = self.settings
        if isinstance(exc, AuthError):
            delay = s.auth_failure_backoff
        else:
            delay = s.reconnect_backoff_base * 2 ** (route.failures - 1)
            delay = min(s.reconnect_backoff_max, delay)
            delay *= random.uniform(0.5, 1.0)  # jitter: a fleet doesn't reconnect in lockstep
        route.retry_at = time.monotonic() + delay

    async def _drop(self, route: _Route) -> None:
        if route.session is not None:
            route.session.close()
            route.session = None
        if route.reader is not None:
            route.reader.close()
            route.reader = None
        if route.conn is not None:
            route.conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(route.conn.wait_closed(), 2)
        route.conn = route.client = None

    async def _open(
        self, target: ConnectionTarget
    ) -> tuple[asyncssh.SSHClientConnection, VerifyingClient]:
        tunnel: asyncssh.SSHClientConnection | None = None
        if target.jump:
            try:
                tunnel = await self.connection(target.hop(len(target.jump) - 1))
            except SSHError as exc:
                raise as_seen_from(exc, target) from exc
        options = self._options(target)
        sshd = (*target.route_key[:-1], (target.address, target.port))
        slots = self._sshd_slots.setdefault(
            sshd, asyncio.Semaphore(self.settings.handshakes_per_sshd)
        )
        timeout = self.settings.connect_timeout
        deadline = time.monotonic() + timeout
        attempt = 0
        async with self._connect_slots, slots:
            while True:
                attempt += 1
                client = VerifyingClient(target, self.known_hosts)
                try:
                    remaining = max(0.1, deadline - time.monotonic())
                    async with asyncio.timeout(remaining):
                        conn = await asyncssh.connect(
                            target.address, target.port, tunnel=tunnel,
                            client_factory=lambda c=client: c,
                            **options,
                        )
                except (OSError, asyncssh.Error, TimeoutError, ValueError) as exc:
                    retry = is_retryable(exc) and attempt < HANDSHAKE_RETRIES
                    pause = min(0.05 * 2**attempt, 1.0) * random.uniform(0.5, 1.5)
                    if retry and time.monotonic() + pause < deadline:
                        self.stats["handshake_retries"] += 1
                        await asyncio.sleep(pause)
                        continue
                    raise translate_connect_error(
                        exc, target, timeout=timeout, client=client
                    ) from exc
                self.stats["connects"] += 1
                return conn, client

    def _options(self, target: ConnectionTarget) -> dict[str, Any]:
        """Keyword arguments for ``asyncssh.connect`` (which builds its options once)."""
        s = self.settings
        keys = [self._load_key(path, target) for path in target.key_files] or None
        password = None
        if target.password_env:
            password = os.environ.get(target.password_env)
            if password is None:
                raise AuthError(
                    target.name, f"environment variable {target.password_env} is not set"
                )
        elif target.password:
            password = target.password
        agent_path: Any = () if s.use_ssh_agent and not keys else None
        return {
            "username": target.user or getpass.getuser(),
            "client_keys": keys,
            "password": password,
            "known_hosts": self.known_hosts.lookup(target),
            "agent_path": agent_path,
            "keepalive_interval": s.keepalive_interval,
            "keepalive_count_max": s.keepalive_count_max,
            "login_timeout": s.connect_timeout,
            "config": None,  # the inventory is the source of truth, not ~/.ssh/config
            "proxy_command": shlex.split(target.proxy_command) if target.proxy_command else None,
            "preferred_auth": "publickey,keyboard-interactive,password",
            "encryption_algs": s.ssh_ciphers or (),
        }

    def _load_key(self, path: str, target: ConnectionTarget) -> asyncssh.SSHKey:
        env = target.key_passphrase_env or "SERVERGUARD_KEY_PASSPHRASE"
        passphrase = os.environ.get(env)
        cache_key = (path, env if passphrase else None)
        if cache_key not in self._keys:
            try:
                self._keys[cache_key] = asyncssh.read_private_key(path, passphrase)
            except (OSError, asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
                hint = ""
                if "passphrase" in str(exc).lower():
                    hint = f" (set {env} to its passphrase)"
                reason = exc.strerror if isinstance(exc, OSError) else str(exc)
                raise AuthError(target.name, f"cannot load key {path}: {reason}{hint}") from exc
        return self._keys[cache_key]

    async def _reap_idle(self) -> None:
        period = max(1.0, self.settings.idle_timeout / 4)
        while True:
            await asyncio.sleep(period)
            await self.evict_idle()

    async def evict_idle(self, now: float | None = None) -> int:
        """Close connections idle longer than ``idle_timeout`` (tunnels in use are kept)."""
        now = time.monotonic() if now is None else now
        limit = self.settings.idle_timeout
        in_use_prefixes = {
            key[:n]
            for key, r in self._routes.items()
            if r.alive() and (r.in_use or now - r.last_used < limit)
            for n in range(1, len(key) + 1)
        }
        evicted = 0
        for key in sorted(self._routes, key=len, reverse=True):
            route = self._routes[key]
            if route.alive() and key not in in_use_prefixes and not route.lock.locked():
                await self._drop(route)
                evicted += 1
        self.stats["evicted"] += evicted
        return evicted
