"""The embedded VictoriaMetrics: a ``victoria-metrics`` child process on loopback.

``serverguard serve`` starts one when no ``--vm-url`` is given. Its storage is ``data_dir``
and its log ``data_dir/victoria-metrics.log``; it runs in its own session (so a Ctrl-C at
the terminal reaches ServerGuard, which then flushes its writer *before* stopping
VictoriaMetrics). ``data_dir/victoria-metrics.pid`` names the child and its parent (pid and
start time): a child orphaned by a killed ServerGuard is stopped by the next ``start``
instead of holding the storage lock; one whose ServerGuard still runs makes ``start`` fail
with "in use".

Flags: ``-storageDataPath``, ``-httpListenAddr 127.0.0.1:PORT``, ``-retentionPeriod`` and,
by default, ``-dedup.minScrapeInterval=1ms``: ServerGuard writes one sample per series per
sweep, so this only removes the identical duplicates an at-least-once replay can produce.
``-search.latencyOffset`` (a query flag, 30 s by default) is left alone; tests that query
right after writing pass ``extra_args=["-search.latencyOffset=0s"]`` or use
``/api/v1/export``.

Example::

    with EmbeddedVictoriaMetrics(state_dir / "victoria-metrics") as vm:
        writer = VMWriter(vm.url, spool=spool)
        ...

Blocking (``subprocess`` and a few HTTP polls): async callers wrap ``start``/``stop`` in
``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import requests

from orchestrator.errors import MetricsError
from orchestrator.procinfo import start_time

log = logging.getLogger(__name__)

BINARY = "victoria-metrics"
MISSING_BINARY = (
    "victoria-metrics not found: install the Debian package 'victoria-metrics' "
    "(apt-get install victoria-metrics) or pass --vm-url"
)
LOG_NAME = "victoria-metrics.log"
PID_NAME = "victoria-metrics.pid"
LOG_ROTATE_BYTES = 10 << 20


def port_in_use(host: str, port: int) -> bool:
    """Whether something listens on ``host:port`` already (a bind test, as a server's)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def find_binary(binary: str | None = None) -> str:
    """The path of ``victoria-metrics``; :class:`MetricsError` with the fix when missing."""
    if binary is not None:
        if os.path.isfile(binary) and os.access(binary, os.X_OK):
            return binary
        found = shutil.which(binary)
    else:
        found = shutil.which(BINARY) or next(
            (
                p
                for p in ("/usr/bin/victoria-metrics", "/usr/local/bin/victoria-metrics")
                if os.access(p, os.X_OK)
            ),
            None,
        )
    if found is None:
        raise MetricsError(MISSING_BINARY)
    return found


def log_tail(path: Path, lines: int = 8, width: int = 240) -> str:
    """The last lines of a log file, each cut to ``width`` characters."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode(errors="replace")
    except OSError:
        return "(no log)"
    tail = [line[:width] for line in text.splitlines()[-lines:]]
    return "\n".join("  " + line for line in tail) or "(empty log)"


class EmbeddedVictoriaMetrics:
    """A ``victoria-metrics`` child on ``127.0.0.1``; ``port=0`` picks a free port."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        port: int = 0,
        retention: str = "30d",
        host: str = "127.0.0.1",
        binary: str | None = None,
        dedup_interval: str | None = "1ms",
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
        stop_timeout: float = 15.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.retention = retention
        self.binary = binary
        self.dedup_interval = dedup_interval
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._auto_port = port == 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_NAME

    @property
    def url(self) -> str:
        if not self.port:
            raise MetricsError("the embedded VictoriaMetrics has no port yet: start() it first")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self, binary: str) -> list[str]:
        args = [
            binary,
            f"-storageDataPath={self.data_dir}",
            f"-httpListenAddr={self.host}:{self.port}",
            f"-retentionPeriod={self.retention}",
        ]
        if self.dedup_interval:
            args.append(f"-dedup.minScrapeInterval={self.dedup_interval}")
        return args + self.extra_args

    def start(self) -> None:
        """Start the child and wait until ``/health`` answers (``startup_timeout``)."""
        if self.running:
            return
        binary = find_binary(self.binary)
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MetricsError(f"{self.data_dir}: cannot create: {exc.strerror}") from exc
        self._stop_orphan()
        for attempt in range(3):
            if self._auto_port and (attempt or not self.port):
                self.port = free_port(self.host)  # a restart keeps its port (and URL) if it can
            if not self._auto_port and port_in_use(self.host, self.port):
                # else another server's /health would pass for our child's (the Debian
                # victoria-metrics service listens on 8428, the default here too)
                raise MetricsError(
                    f"cannot start the embedded victoria-metrics: {self.host}:{self.port} is "
                    "in use by another program; set SERVERGUARD_VM_PORT to a free port, or "
                    "give that server's URL with --vm-url (SERVERGUARD_VM_URL)")
            why = self._spawn(binary)
            if why is None:
                log.info(
                    "VictoriaMetrics started at %s (pid %s, data %s)",
                    self.url,
                    self.pid,
                    self.data_dir,
                )
                return
            tail = log_tail(self.log_path)
            self._close_log()
            if self._auto_port and attempt < 2 and "address already in use" in tail:
                continue  # someone took the free port meanwhile: pick another one
            raise MetricsError(
                f"victoria-metrics did not start at {self.host}:{self.port} ({why}); "
                f"last lines of {self.log_path}:\n{tail}"
            )

    def stop(self) -> None:
        """SIGTERM, wait ``stop_timeout`` seconds, then SIGKILL."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    log.warning(
                        "VictoriaMetrics (pid %d) ignored SIGTERM for %.0f s: killing it",
                        proc.pid,
                        self.stop_timeout,
                    )
                    proc.kill()
                    proc.wait()
            self._proc = None
        self._close_log()
        with contextlib.suppress(OSError):
            (self.data_dir / PID_NAME).unlink()

    def kill(self) -> None:
        """SIGKILL, as a crash would (tests)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None
        self._close_log()

    def __enter__(self) -> EmbeddedVictoriaMetrics:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals --------------------------------------------------------------------------

    def _spawn(self, binary: str) -> str | None:
        """Start the process; None when healthy, else why not."""
        if self.log_path.exists() and self.log_path.stat().st_size > LOG_ROTATE_BYTES:
            os.replace(self.log_path, self.log_path.with_suffix(".log.1"))
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (lives as long as the child)
        cmd = self.command(binary)
        self._log.write(f"--- serverguard: starting {' '.join(cmd)}\n".encode())
        self._log.flush()
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            return f"cannot execute {binary}: {exc.strerror}"
        me = os.getpid()
        (self.data_dir / PID_NAME).write_text(f"{self._proc.pid} {me} {start_time(me)}\n")
        deadline = time.monotonic() + self.startup_timeout
        with requests.Session() as session:
            while True:
                code = self._proc.poll()
                if code is not None:
                    self._proc = None
                    return f"exited with status {code}"
                try:
                    if session.get(self.url + "/health", timeout=1.0).status_code == 200:
                        return None
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    return f"/health did not answer within {self.startup_timeout:.0f} s"
                time.sleep(0.05)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _stop_orphan(self) -> None:
        """Stop a child left behind by a ServerGuard that was killed (it holds the lock).

        The pid file names the child and its parent (pid and start time): a child whose
        parent still runs belongs to someone else and is left alone.
        """
        try:
            fields = (self.data_dir / PID_NAME).read_text().split()
            pid, parent, parent_start = int(fields[0]), int(fields[1]), int(fields[2])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            return
        storage_flag = f"-storageDataPath={self.data_dir}".encode()
        if not cmdline[0].endswith(BINARY.encode()) or storage_flag not in cmdline:
            return  # the pid was reused by something else
        if _alive(pid) and start_time(parent) == parent_start:
            raise MetricsError(
                f"{self.data_dir}: in use by victoria-metrics (pid {pid}) of process {parent}"
            )
        log.warning("stopping a VictoriaMetrics left running (pid %d) on %s", pid, self.data_dir)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while _alive(pid) and time.monotonic() < deadline + 5:
                time.sleep(0.05)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
