"""The sweep reader's channel: a python3 process on the host, kept for the collection
session, that runs sweep plans without starting a process per sweep.

The program (``collectors.host_reader``) is not installed: the host's login shell runs
``boot_command`` (one line handing over to /bin/sh, whatever the login shell), which starts
``python3 -I -S`` when the host has one, and the program's compressed source goes to its
stdin. It answers ``SG-READER <version>``; afterwards every sweep is one line (plus the
plan, the first time) and one reply, framed as the persistent shell frames a script
(``orchestrator.ssh.session``), so the output is collected the same way.

A host without python3, or whose python3 cannot run the program or does not answer in time,
is marked ``unavailable`` (with the reason, logged) for the connection's lifetime and ``run``
returns ``None``: the caller runs the sh script in the persistent shell instead. A reader
that stops later (killed on the host, during a sweep or between two) is logged and opened
again at the next sweep (a sweep it stopped in runs the sh script); after ``MAX_CRASHES``
deaths without ``RECOVERED`` good sweeps in between, it is given up too. A timeout kills its
process group (SIGKILL: the reader, and any command it runs), like the persistent shell's;
the next sweep opens a new one.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import cast

import asyncssh

from collectors import host_reader
from orchestrator.ssh.exec import ExecResult, kill_channel, open_session
from orchestrator.ssh.session import _ShellChannel, exchange, shell_quote

log = logging.getLogger(__name__)

VERSION = int(host_reader.VERSION)  # what the program answers at start
MAX_PLANS = host_reader.MAX_PLANS  # plans the program keeps
MAX_CRASHES = 3
RECOVERED = 20  # good sweeps after which earlier deaths are forgotten
# python3's part: read the length of the compressed program, then the program, and run it
# as __main__
BOOTSTRAP = (
    "import sys,zlib;"
    "exec(zlib.decompress(sys.stdin.buffer.read(int(sys.stdin.buffer.readline()))))"
)
# /bin/sh's part: python3 (isolated, no site packages) if the host has one
_START = (
    'command -v {py} >/dev/null 2>&1 && exec {py} -I -S -c "' + BOOTSTRAP + '"; '
    'printf "\\nSG-READER none\\n"; printf "\\nSG-READER\\n" >&2'
)


def boot_command(python: str) -> str:
    """What the host's login shell runs: one line (csh and tcsh take no newline inside
    quotes) handing the rest to /bin/sh, as the persistent shell does."""
    return "exec /bin/sh -c " + shell_quote(_START.format(py=shell_quote(python)))


class HostReader:
    """One host's sweep reader; one run at a time."""

    def __init__(
        self,
        conn: asyncssh.SSHClientConnection,
        host: str,
        *,
        max_output: int,
        python: str = "python3",
    ) -> None:
        self.conn = conn
        self.host = host
        self.python = python
        self.max_output = max_output
        self.unavailable: str | None = None  # why the sh script runs instead
        self.opened = 0
        self.crashes = 0
        self.good_sweeps = 0  # since the last death
        self._lock = asyncio.Lock()
        self._chan: asyncssh.SSHClientChannel[bytes] | None = None
        self._shell: _ShellChannel | None = None
        self._plans: dict[str, None] = {}  # plan ids the program holds, oldest first

    async def run(
        self, program: bytes, plan_id: str, plan: bytes, *, timeout: float | None
    ) -> ExecResult | None:
        """Run ``plan`` (sent once per program); ``None``: the host cannot, run the sh script."""
        async with self._lock:
            if self.unavailable is not None:
                return None
            shell = self._shell
            if shell is not None and shell.closed:  # it died between two sweeps
                self._stopped(shell, "stopped between two sweeps")
                if self.unavailable is not None:
                    return None
                shell = None
            if shell is None:
                shell = await self._open(program, timeout)
                if shell is None:
                    return None
            assert self._chan is not None
            size = 0 if plan_id in self._plans else len(plan)
            if size:
                self._plans[plan_id] = None
                while len(self._plans) > MAX_PLANS:
                    del self._plans[next(iter(self._plans))]
            mark = f"SG-{uuid.uuid4().hex}"
            shell.out.reset(f"\n{mark} ".encode())
            shell.err.reset(b"\n")
            shell.err.found = True  # the program writes no stderr marker per run
            data = f"{mark} {plan_id} {size}\n".encode() + (plan if size else b"")
            answer = await self._talk(self._chan, shell, data, timeout, "stopped during a sweep")
            if answer is None:
                return None
            result, alive = answer
            if not alive:
                self._forget()
            elif result.rc != 0:  # 2: it lost track of the plan; run the sh script this time
                self._plans.clear()
                return None
            else:
                self.good_sweeps += 1
                if self.good_sweeps >= RECOVERED:
                    self.crashes = 0
            return result

    async def _open(self, program: bytes, timeout: float | None) -> _ShellChannel | None:
        try:
            chan, raw = await open_session(
                self.conn,
                lambda: _ShellChannel(self.max_output),
                boot_command(self.python),
            )
        except asyncssh.ChannelOpenError as exc:
            if self.conn.is_closed():
                raise
            self._give_up(f"the host refused a channel for it ({exc.reason})")
            return None
        shell = cast(_ShellChannel, raw)
        self._chan, self._shell = chan, shell
        self._plans.clear()
        self.opened += 1
        shell.out.reset(b"\nSG-READER ")
        shell.err.reset(b"\nSG-READER\n")
        answer = await self._talk(
            chan, shell, b"%d\n" % len(program) + program, timeout,
            f"{self.python} could not run it", at_start=True,
        )
        if answer is None:
            return None
        result, alive = answer
        if not alive:  # no answer in time (a login shell that is not sh-like?): give up
            self._forget()
            self._give_up(f"{self.python} did not answer within {timeout or 0:g}s")
            return None
        if result.rc != VERSION:
            self._forget()
            what = "no such program" if result.rc is None else f"version {result.rc}"
            self._give_up(f"{self.python} on the host: {what}")
            return None
        return shell

    async def _talk(
        self,
        chan: asyncssh.SSHClientChannel[bytes],
        shell: _ShellChannel,
        data: bytes,
        timeout: float | None,
        stopped: str,
        *,
        at_start: bool = False,
    ) -> tuple[ExecResult, bool] | None:
        """``exchange`` with the program; ``None`` when its channel closed on its own (noted
        as ``stopped``). A timeout kills its process group."""
        try:
            return await exchange(chan, shell, self.host, data, timeout)
        except asyncio.CancelledError:
            self._forget()
            raise
        except (asyncssh.Error, OSError):
            if self.conn.is_closed():
                raise
            self._stopped(shell, stopped, at_start=at_start)
            return None

    def _stopped(self, shell: _ShellChannel, what: str, *, at_start: bool = False) -> None:
        """The program's channel closed on its own: ``what``, with its last stderr line."""
        err = bytes(shell.err.kept + shell.err.window + shell.err.after)
        last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
        self._forget()
        self.crashes += 1
        self.good_sweeps = 0
        reason = f"{what}: {last[0][:200]}"
        if at_start or self.crashes >= MAX_CRASHES:
            self._give_up(reason)
        else:
            log.warning("%s: the sweep reader %s; it is started again", self.host, reason)

    def _give_up(self, reason: str) -> None:
        self.unavailable = reason
        log.info("%s: sweeps run the sh script (no sweep reader: %s)", self.host, reason)

    def _forget(self) -> None:
        if self._chan is not None:
            kill_channel(self._chan)
        self._chan = self._shell = None
        self._plans.clear()

    def close(self) -> None:
        if self._chan is not None:
            self._chan.close()
        self._chan = self._shell = None
        self._plans.clear()
