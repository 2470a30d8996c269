"""Containers made of kernel namespaces: start them, find their processes, run commands inside.

One ``supervisor.sh`` per lab starts every container at once (``container_init.sh`` is
each container's PID 1) and reaps them. A container is found again through
``<lab>/<host>/init.pid``: its init's pid as the machine sees it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from orchestrator.lab import procs
from orchestrator.lab.model import LabHost

HERE = Path(__file__).resolve().parent
INIT_SCRIPT = HERE / "container_init.sh"
SUPERVISOR = HERE / "supervisor.sh"
INIT_TAG = "sg-lab-init"
SUPERVISOR_TAG = "sg-lab-supervisor"
HOME_ENV = {**procs.CLEAN_ENV, "HOME": "/root", "USER": "root", "LOGNAME": "root"}


def start(lab_dir: Path, fs: Path, hosts: Sequence[LabHost]) -> int:
    """Start the supervisor, which starts every container in ``hosts``; returns its pid."""
    argv = ["/bin/sh", str(SUPERVISOR), SUPERVISOR_TAG, str(INIT_SCRIPT)]
    for h in hosts:
        argv += [
            h.name,
            h.netns or "-",
            str(fs / h.name),
            str(lab_dir / h.name),
            "own" if h.kind == "netns" else "shared",
        ]
    return procs.spawn(argv, log=lab_dir / "supervisor.log")


def init_pid(hostdir: Path) -> int | None:
    """The container's PID 1 (machine pid), when it is up and running."""
    pid = procs.read_pid(hostdir / "init.pid")
    if pid is None or not procs.alive(pid):
        return None
    if procs.ns_id(pid, "pid") == procs.ns_id(os.getpid(), "pid"):
        return None  # a recycled pid: a container's init lives in its own PID namespace
    return pid


def failed(hostdir: Path) -> bool:
    """The container's set-up stopped with an error (see its init.log)."""
    return (hostdir / "init.failed").exists()


def exec_argv(pid: int, argv: Sequence[str], *, own_net: bool) -> list[str]:
    """Run ``argv`` as root inside the container of init ``pid``: all its namespaces + root."""
    ns = ["-n"] if own_net else []
    return ["nsenter", "-t", str(pid), *ns, "-u", "-i", "-m", "-p", "-r", "-w", "--", *argv]


def processes(init_pids: Iterable[int]) -> dict[int, list[procs.Proc]]:
    """The processes of each container (keyed by its init pid), from one scan of /proc."""
    by_ns = {procs.ns_id(pid, "pid"): pid for pid in init_pids}
    by_ns.pop(None, None)
    out: dict[int, list[procs.Proc]] = {pid: [] for pid in by_ns.values()}
    if not by_ns:
        return out
    for proc in procs.scan():
        owner = by_ns.get(procs.ns_id(proc.pid, "pid"))
        if owner is not None:
            out[owner].append(proc)
    return out


def sshd_listener(init: int, members: Sequence[procs.Proc]) -> procs.Proc | None:
    """The container's listening sshd: its /run/sshd.pid, else an sshd child of PID 1."""
    nspid = procs.read_pid(Path(f"/proc/{init}/root/run/sshd.pid"))
    for proc in members:
        if proc.nspid == nspid and proc.comm == "sshd":
            return proc
    for proc in members:
        if proc.comm == "sshd" and proc.ppid == init:
            return proc
    return None
