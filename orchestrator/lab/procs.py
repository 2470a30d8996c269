"""Process helpers: start detached children, reap them, find and stop processes through /proc.

PID 1 of the machines this runs on may not reap orphans, so the lab keeps its long-running
processes under one parent of its own (``supervisor.sh``) and reaps its direct children here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import LabError

CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CLEAN_ENV = {"PATH": CLEAN_PATH, "LANG": "C.UTF-8"}

_children: set[int] = set()  # started by this process, not yet reaped
_exit_status: dict[int, int] = {}  # reaped children: pid -> exit code (negative: signal)


def spawn(argv: Sequence[str], *, log: Path, env: dict[str, str] | None = None) -> int:
    """Start ``argv`` in a new session, stdin from /dev/null, stdout+stderr appended to ``log``.

    Returns its pid; :func:`reap` collects it once it has exited.
    """
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    try:
        pid = os.posix_spawn(
            argv[0], list(argv), env or CLEAN_ENV, file_actions=actions, setsid=True
        )
    except OSError as exc:
        raise LabError(f"cannot start {argv[0]}: {exc.strerror}") from exc
    _children.add(pid)
    _exit_status.pop(pid, None)
    return pid


def reap() -> None:
    """Collect every child started by :func:`spawn` that has exited."""
    for pid in list(_children):
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done, status = pid, 0
        if done:
            _children.discard(pid)
            _exit_status[pid] = os.waitstatus_to_exitcode(status)


def exit_status(pid: int) -> int | None:
    """The exit code of a reaped child started by :func:`spawn` (None while running)."""
    reap()
    return _exit_status.get(pid)


def run(
    argv: Sequence[str], *, input: str | None = None, check: bool = True, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run a short tool (ip, nft, ssh-keygen...); a failure becomes a LabError."""
    try:
        proc = subprocess.run(
            list(argv),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=CLEAN_ENV,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabError(f"{argv[0]}: {exc}") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise LabError(f"{' '.join(argv[:3])}: {detail[-1] if detail else proc.returncode}")
    return proc


def alive(pid: int | None) -> bool:
    """True when ``pid`` exists and is not a zombie."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    comm: str
    cmdline: str  # NUL-separated arguments joined by spaces
    nspid: int  # pid inside its own (innermost) PID namespace
    sid: int  # session id, as the machine sees it


def scan() -> Iterator[Proc]:
    """Every live process on the machine (zombies skipped)."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        if fields.get("State", "").startswith("Z"):
            continue
        nspids = fields.get("NSpid", str(pid)).split()
        yield Proc(
            pid=pid,
            ppid=int(fields.get("PPid", "0")),
            comm=fields.get("Name", ""),
            cmdline=cmdline.replace(b"\0", b" ").decode(errors="replace").strip(),
            nspid=int(nspids[-1]),
            sid=int(fields.get("NSsid", "0").split()[0]),
        )


def ns_id(pid: int, ns: str) -> tuple[int, int] | None:
    """(device, inode) of a process's namespace ``ns`` (``net``, ``pid``...)."""
    try:
        st = os.stat(f"/proc/{pid}/ns/{ns}")
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def pids_in_ns(ns: str, ids: Iterable[tuple[int, int]]) -> dict[tuple[int, int], list[int]]:
    """Pids of every process in each of the given namespaces of type ``ns``."""
    wanted: dict[tuple[int, int], list[int]] = {i: [] for i in ids}
    if not wanted:
        return wanted
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            key = ns_id(int(entry.name), ns)
            if key in wanted:
                wanted[key].append(int(entry.name))
    return wanted


def kill(pids: Iterable[int], sig: int = signal.SIGKILL) -> list[int]:
    """Send ``sig`` to each pid; returns those that existed."""
    sent = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
            sent.append(pid)
    return sent


def wait_gone(pids: Iterable[int], timeout: float = 5.0) -> list[int]:
    """Wait until none of ``pids`` is alive; returns those still alive at the deadline."""
    pending = set(pids)
    deadline = time.monotonic() + timeout
    while pending:
        reap()
        pending = {p for p in pending if alive(p)}
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return sorted(pending)
