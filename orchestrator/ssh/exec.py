"""One command on one open connection: capped output, timeout, kill on cancel.

Output is kept as bytes up to a cap per stream (the rest is read and dropped, so the
remote side never blocks and memory stays bounded) and exposed as text decoded with
``surrogateescape``: non-UTF-8 bytes survive a round trip through ``.stdout`` (and through
JSON, which escapes them as ``\\udcXX``).

On timeout or cancellation the remote process group is sent SIGKILL through the SSH
``signal`` request (OpenSSH runs each session's command as its own process group and
signals the group), then the channel is closed. That holds for a cancellation that lands
while the channel is still opening, too (:func:`open_session`): sshd starts the command
before it confirms the request, so a channel abandoned half-open would leave the command
running and the channel counted against the host's ``MaxSessions``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import asyncssh

# (host, stream, data) -> None; stream is "stdout" or "stderr".
OutputCallback = Callable[[str, str, bytes], None]
Channel = asyncssh.SSHClientChannel[bytes]


def decode(data: bytes) -> str:
    return data.decode("utf-8", errors="surrogateescape")


@dataclass(slots=True)
class ExecResult:
    """What happened when one host ran one command.

    ``rc`` is ``None`` when the command did not finish (timeout, connection error) or was
    killed by a signal (then ``signal`` names it); ``error`` is one line for humans.
    """

    host: str
    rc: int | None = None
    stdout_bytes: bytes = b""
    stderr_bytes: bytes = b""
    duration_s: float = 0.0
    truncated: bool = False
    error: str | None = None
    signal: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def stdout(self) -> str:
        return decode(self.stdout_bytes)

    @property
    def stderr(self) -> str:
        return decode(self.stderr_bytes)

    @property
    def ok(self) -> bool:
        return self.error is None and self.rc == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "rc": self.rc,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "duration_s": round(self.duration_s, 6),
            "truncated": self.truncated,
            "error": self.error,
        }


class CappedCapture(asyncssh.SSHClientSession[bytes]):
    """Collects stdout/stderr up to ``cap`` bytes each; calls ``on_output`` per chunk."""

    def __init__(
        self, host: str, cap: int, on_output: OutputCallback | None, done: asyncio.Future[None]
    ) -> None:
        self.host = host
        self.cap = cap
        self.on_output = on_output
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.truncated = False
        self.exit_status: int | None = None
        self.exit_signal: str | None = None
        self.done = done

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        is_err = datatype == asyncssh.EXTENDED_DATA_STDERR
        buf = self.stderr if is_err else self.stdout
        room = self.cap - len(buf)
        if room < len(data):
            self.truncated = True
            data = data[: max(room, 0)]
        if data:
            buf += data
            if self.on_output is not None:
                self.on_output(self.host, "stderr" if is_err else "stdout", data)

    def exit_status_received(self, status: int) -> None:
        self.exit_status = status

    def exit_signal_received(
        self, signal: str, core_dumped: bool, msg: str, lang: str
    ) -> None:
        self.exit_signal = signal

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            if exc is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(exc)


def kill_channel(chan: Channel) -> None:
    """SIGKILL the remote process group, then close the channel (best effort)."""
    with contextlib.suppress(OSError, asyncssh.Error):  # channel gone: nothing to kill
        chan.send_signal("KILL")
    chan.close()


async def open_session(
    conn: asyncssh.SSHClientConnection,
    factory: Callable[[], asyncssh.SSHClientSession[bytes]],
    command: str,
) -> tuple[Channel, asyncssh.SSHClientSession[bytes]]:
    """``conn.create_session`` that a cancellation cannot cut in half.

    The caller's cancellation is raised at once; the opening itself runs on, and the
    channel, once open, is killed and closed (:func:`kill_channel`).
    """
    opening = asyncio.ensure_future(conn.create_session(factory, command, encoding=None))
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(_kill_when_open)
        raise


def _kill_when_open(opening: asyncio.Future[tuple[Channel, Any]]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        kill_channel(opening.result()[0])


async def exec_command(
    conn: asyncssh.SSHClientConnection,
    host: str,
    command: str,
    *,
    timeout: float | None,
    max_output: int,
    on_output: OutputCallback | None = None,
    stdin: bytes | None = None,
) -> ExecResult:
    """Run ``command`` over ``conn``. A timeout sets ``error`` (it does not raise).

    Connection-level failures (channel refused, connection lost) raise asyncssh errors
    for the pool to translate.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    started = time.perf_counter()
    chan, raw_session = await open_session(
        conn, lambda: CappedCapture(host, max_output, on_output, done), command
    )
    session = cast(CappedCapture, raw_session)
    if stdin:
        chan.write(stdin)
    chan.write_eof()
    result = ExecResult(host=host)
    try:
        await asyncio.wait_for(asyncio.shield(done), timeout)
    except TimeoutError:
        kill_channel(chan)
        result.error = f"command timed out after {timeout:g}s (remote process killed)"
    except asyncio.CancelledError:
        kill_channel(chan)
        raise
    result.duration_s = time.perf_counter() - started
    result.stdout_bytes = bytes(session.stdout)
    result.stderr_bytes = bytes(session.stderr)
    result.truncated = session.truncated
    if result.error is None:
        result.rc = session.exit_status
        if session.exit_signal:
            result.rc = None
            result.signal = session.exit_signal
            result.error = f"killed by signal {session.exit_signal}"
    return result
