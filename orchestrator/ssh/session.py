"""A persistent shell per host: one round trip per script, no new remote session.

One long-lived ``/bin/sh`` channel is fed scripts framed by unique markers::

    __sg_s='<script, single-quote escaped>'
    ( eval "$__sg_s" ) </dev/null
    printf '\\n%s %s\\n' SG-<id> "$?"; printf '\\n%s\\n' SG-<id> >&2

The script runs in a subshell (one fork, no exec), so ``exit``, ``cd``, variables or a
syntax error in it never disturb the long-lived shell, and it reads ``/dev/null``, not the
channel. On timeout the channel's process group is killed and the next run opens a new
shell. When a host refuses the shell channel, every run falls back to a plain exec.

``buffered=True`` (the metric sweep) runs the subshell as a command substitution instead, so
the shell holds the output and writes it at once at the end: the same one fork, but one or
two SSH packets instead of one per small write (a sweep made 23, each costing the
orchestrator asyncssh's per-packet work). Only for text of bounded size: the host's shell
keeps all of it in memory until the end, drops NUL bytes, and nothing streams; a script
that calls ``exit`` loses its trailing newlines::

    __sg_o=$(eval "$__sg_s" </dev/null; __sg_r=$?; printf %s SG-<id>.; exit $__sg_r)
    __sg_r=$?; printf '%s\n%s %s\n' "${__sg_o%SG-<id>.}" SG-<id> "$__sg_r"; __sg_o=

``keep=True`` (the metric sweep, the same script every interval) sends the script once per
shell, as a variable of its own (``__sg_k<hash>='<script>'``), and afterwards only the lines
that run it: a sweep's upload shrinks from the whole script (5 KB for the default collectors)
to about 310 bytes. A shell keeps at most ``KEPT_SCRIPTS`` of them (the oldest is unset);
a new shell (after a timeout, or a reconnect) starts with none.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import cast

import asyncssh

from orchestrator.ssh.exec import ExecResult, exec_command, kill_channel, open_session

KEPT_SCRIPTS = 8  # scripts one shell keeps defined (keep=True); the oldest goes first


def shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


class _CappedStream:
    """Bytes up to ``cap`` kept; the marker found even when the output overflowed."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.kept = bytearray()
        self.window = bytearray()
        self.truncated = False
        self.marker = b""
        self.found = False
        self.after = bytearray()  # bytes after the marker (the rc line on stdout)

    def reset(self, marker: bytes) -> None:
        self.kept.clear()
        self.window.clear()
        self.after.clear()
        self.truncated = False
        self.marker = marker
        self.found = False

    def release(self) -> None:
        """Drop the last run's buffers: an idle session must not hold a sweep's output."""
        self.kept = bytearray()
        self.window = bytearray()
        self.after = bytearray()

    def _commit(self, data: bytes | bytearray) -> None:
        room = self.cap - len(self.kept)
        if room < len(data):
            self.truncated = True
            data = data[: max(room, 0)]
        self.kept += data

    def feed(self, data: bytes) -> None:
        if self.found:
            self.after += data
            return
        self.window += data
        idx = self.window.find(self.marker)
        if idx >= 0:
            self._commit(self.window[:idx])
            self.after += self.window[idx + len(self.marker):]
            self.window.clear()
            self.found = True
            return
        keep = len(self.marker) - 1  # a marker may straddle two chunks
        if len(self.window) > keep:
            self._commit(self.window[: len(self.window) - keep])
            del self.window[: len(self.window) - keep]


class _ShellChannel(asyncssh.SSHClientSession[bytes]):
    def __init__(self, cap: int) -> None:
        self.out = _CappedStream(cap)
        self.err = _CappedStream(cap)
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.close_exc: Exception | None = None
        self.kept_scripts: dict[str, str] = {}  # shell variable -> the script it holds

    def script_ref(self, script: str) -> tuple[str, str]:
        """The shell text defining ``script`` in this shell ("" when it is already) and the
        variable holding it. Checked by content, so two scripts never share a variable."""
        var = f"__sg_k{hash(script) & 0xFFFFFFFFFFFF:x}"
        held = self.kept_scripts.get(var)
        if held is script or held == script:
            return "", var
        define = ""
        if held is None and len(self.kept_scripts) >= KEPT_SCRIPTS:
            oldest = next(iter(self.kept_scripts))
            del self.kept_scripts[oldest]
            define = f"unset {oldest}\n"
        self.kept_scripts[var] = script
        return f"{define}{var}={shell_quote(script)}\n", var

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        (self.err if datatype == asyncssh.EXTENDED_DATA_STDERR else self.out).feed(data)
        if (
            self.waiter is not None
            and not self.waiter.done()
            and self.err.found
            and self.out.found
            and b"\n" in self.out.after
        ):
            self.waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.close_exc = exc
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(
                exc or asyncssh.ConnectionLost("persistent shell closed by the host")
            )


async def exchange(
    chan: asyncssh.SSHClientChannel[bytes],
    shell: _ShellChannel,
    host: str,
    data: bytes,
    timeout: float | None,
) -> tuple[ExecResult, bool]:
    """Write ``data`` to ``chan`` and wait for the markers ``shell``'s streams were reset to;
    the result, and whether the channel is still usable (a timeout kills it)."""
    shell.waiter = asyncio.get_running_loop().create_future()
    started = time.perf_counter()
    chan.write(data)
    result = ExecResult(host=host)
    alive = True
    try:
        await asyncio.wait_for(asyncio.shield(shell.waiter), timeout)
    except TimeoutError:
        kill_channel(chan)
        alive = False
        result.error = f"command timed out after {timeout:g}s (remote process killed)"
    except asyncio.CancelledError:
        kill_channel(chan)
        raise
    finally:
        shell.waiter = None
    result.duration_s = time.perf_counter() - started
    result.stdout_bytes = bytes(shell.out.kept)
    result.stderr_bytes = bytes(shell.err.kept)
    result.truncated = shell.out.truncated or shell.err.truncated
    if result.error is None:
        rc_text = bytes(shell.out.after).split(b"\n", 1)[0].strip()
        result.rc = int(rc_text) if rc_text.isdigit() else None
    shell.out.release()
    shell.err.release()
    return result, alive


class PersistentSession:
    """Feeds scripts to one long-lived shell on ``conn``; one run at a time."""

    def __init__(
        self, conn: asyncssh.SSHClientConnection, host: str, *, max_output: int
    ) -> None:
        self.conn = conn
        self.host = host
        self.max_output = max_output
        self.fallback = False  # the host refused a shell channel: exec each time
        self.runs = 0
        self.shells_opened = 0
        self._lock = asyncio.Lock()
        self._chan: asyncssh.SSHClientChannel[bytes] | None = None
        self._shell: _ShellChannel | None = None

    @property
    def closed(self) -> bool:
        return self._shell is not None and self._shell.closed

    async def _ensure_shell(self) -> _ShellChannel | None:
        if self._shell is not None and not self._shell.closed:
            return self._shell
        try:
            chan, raw = await open_session(
                self.conn, lambda: _ShellChannel(self.max_output), "exec /bin/sh"
            )
        except asyncssh.ChannelOpenError:
            if self.conn.is_closed():
                raise
            self.fallback = True
            return None
        shell = cast(_ShellChannel, raw)
        self._chan, self._shell = chan, shell
        self.shells_opened += 1
        return shell

    async def run(
        self, script: str, *, timeout: float | None, buffered: bool = False, keep: bool = False
    ) -> ExecResult:
        async with self._lock:
            self.runs += 1
            shell = None if self.fallback else await self._ensure_shell()
            if shell is None:
                return await exec_command(
                    self.conn, self.host, script, timeout=timeout, max_output=self.max_output
                )
            return await self._run_framed(shell, script, timeout, buffered, keep)

    async def _run_framed(
        self,
        shell: _ShellChannel,
        script: str,
        timeout: float | None,
        buffered: bool,
        keep: bool = False,
    ) -> ExecResult:
        assert self._chan is not None
        mark = f"SG-{uuid.uuid4().hex}"
        shell.out.reset(f"\n{mark} ".encode())
        shell.err.reset(f"\n{mark}\n".encode())
        if keep:
            define, var = shell.script_ref(script)
        else:
            define, var = f"__sg_s={shell_quote(script)}\n", "__sg_s"
        if buffered:
            # the "." keeps trailing newlines from being stripped with the substitution
            body = (
                f'__sg_o=$(eval "${var}" </dev/null; __sg_r=$?; printf %s {mark}.; '
                "exit $__sg_r)\n"
                f"__sg_r=$?; printf '%s\\n%s %s\\n' \"${{__sg_o%{mark}.}}\" {mark} "
                '"$__sg_r"; __sg_o=\n'
            )
        else:
            body = f'( eval "${var}" ) </dev/null\nprintf \'\\n%s %s\\n\' {mark} "$?"\n'
        framed = f"{define}{body}printf '\\n%s\\n' {mark} >&2\n"
        try:
            result, alive = await exchange(self._chan, shell, self.host, framed.encode(), timeout)
        except asyncio.CancelledError:
            self._shell = None  # killed by exchange
            raise
        if not alive:
            self._shell = None
        return result

    def close(self) -> None:
        if self._chan is not None:
            self._chan.close()
        self._chan = self._shell = None
