"""The process guard of one run: no process of the run outlives the run or ServerGuard.

    python -I -S guard.py PARENT_PID PIDFILE PROGRAM [ARG ...]

ansible-runner starts this in front of ``ansible-playbook`` (see ``run._execute``). Plain
process groups are not enough: Ansible's workers call ``setsid()``, mitogen's ssh children
get sessions of their own, ssh ControlPersist masters daemonize; ansible-runner's cancel
(``killpg(SIGKILL)``) misses all of them, and when ServerGuard itself is killed nothing stops
them at all (ansible-runner starts ansible-playbook with SIGHUP ignored). The guard:

1. asks the kernel for SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``), then checks
   the parent is still ``PARENT_PID`` (it may have died before the prctl);
2. becomes a child subreaper (``PR_SET_CHILD_SUBREAPER``): a descendant whose parent dies is
   re-parented to the guard instead of init, so every process of the run stays in its tree,
   whatever sessions or process groups it made;
3. writes its pid to ``PIDFILE``, runs ``PROGRAM`` as its child, in the guard's process group
   (so ansible-runner's ``killpg`` still reaches both), reaps what is re-parented to it, and
   exits with the program's status (``128 + N`` for signal N), leaving only what the
   program meant to outlive it (ssh ControlPersist masters, reused by the next run);
4. on SIGTERM or SIGINT (a cancel or timeout from ServerGuard, or ServerGuard's death):
   SIGTERM to every descendant, SIGKILL after ``GRACE`` seconds to whatever is left, until
   the tree is empty; then it removes ``PIDFILE`` and exits 143.

Standard library only, and run as a file (not ``-m``): it starts in a few milliseconds and
imports nothing of ServerGuard. Linux only (``/proc``, ``prctl``); elsewhere steps 1-2 are
skipped and it only forwards the exit status.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
GRACE = 1.0  # seconds between SIGTERM and SIGKILL
GIVE_UP = 15.0  # stop hunting after this long (a process stuck in D state cannot be killed)
EXIT_STOPPED = 128 + signal.SIGTERM


class Stop(Exception):
    """Raised by the signal handler: tear the tree down."""


def _prctl(option: int, value: int) -> bool:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _parents() -> dict[int, int]:
    """pid -> parent pid of every live (not zombie) process, from /proc."""
    out: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1 and fields[0] != b"Z":
            out[int(entry.name)] = int(fields[1])
    return out


def descendants(root: int) -> list[int]:
    """Every live process below ``root``, parents before their children."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents().items():
        children.setdefault(ppid, []).append(pid)
    found: list[int] = []
    queue = list(children.get(root, []))
    while queue:
        pid = queue.pop(0)
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_tree(root: int, *, grace: float = GRACE, give_up: float = GIVE_UP) -> list[int]:
    """SIGTERM every descendant of ``root``, SIGKILL the survivors after ``grace`` seconds,
    until none is left (or ``give_up`` seconds passed); returns the pids it never saw die.

    ``root`` must be this process or a subreaper above the tree, else orphans escape.
    """
    started = time.monotonic()
    termed: set[int] = set()
    while True:
        if root == os.getpid():
            _reap()
        pids = descendants(root)
        if not pids:
            return []
        elapsed = time.monotonic() - started
        if elapsed > give_up:
            return pids
        for pid in pids:
            if elapsed <= grace and pid in termed:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM if elapsed <= grace else signal.SIGKILL)
            termed.add(pid)
        time.sleep(0.05)


def _on_signal(signum: int, frame: object) -> None:
    raise Stop(signum)


def main(argv: list[str]) -> int:
    if len(argv) < 4:
        sys.stderr.write("usage: guard.py PARENT_PID PIDFILE PROGRAM [ARG ...]\n")
        return 2
    parent, pidfile, program = int(argv[1]), argv[2], argv[3:]
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    if sys.platform.startswith("linux"):
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        _prctl(PR_SET_CHILD_SUBREAPER, 1)
    me = os.getpid()
    try:
        if os.getppid() != parent:  # the parent died before the prctl took effect
            raise Stop(signal.SIGTERM)
        tmp = f"{pidfile}.tmp"
        with open(tmp, "w") as fh:
            fh.write(f"{me}\n")
        os.replace(tmp, pidfile)
        child = os.fork()
        if child == 0:
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                os.execvp(program[0], program)
            except OSError as exc:  # as Ansible words its errors: the run records this line
                sys.stderr.write(f"ERROR! cannot run {program[0]}: {exc.strerror}\n")
            finally:
                os._exit(127)
        while True:
            pid, status = os.waitpid(-1, 0)
            if pid == child:
                code = os.waitstatus_to_exitcode(status)
                return code if code >= 0 else 128 - code
    except Stop:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        kill_tree(me)
        return EXIT_STOPPED
    finally:
        if os.getpid() == me:
            with contextlib.suppress(OSError):
                os.unlink(pidfile)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
