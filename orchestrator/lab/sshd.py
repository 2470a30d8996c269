"""Each lab machine's sshd: its config, its host key, and waiting until it accepts connections."""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from orchestrator.errors import LabError
from orchestrator.lab import procs
from orchestrator.lab.model import LabHost

SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
# Paths as a container sees them (its /run/sglab is the machine's <lab>/<host>).
CONTAINER_CONFIG = "/etc/ssh/sshd_config"
CONTAINER_LOG = "/run/sglab/sshd.log"
CONTAINER_PIDFILE = "/run/sshd.pid"
LOOPBACK_LIMITS = ("MaxStartups 10000:30:10000", "MaxSessions 1000")


def _q(path: Path | str) -> str:
    return '"' + str(path) + '"'


def config(host: LabHost, lab_dir: Path) -> str:
    """sshd_config for one machine; containers get the usual paths of a real host."""
    lines = [
        f"# ServerGuard lab machine {host.name!r} ({host.role}), written by 'serverguard lab up'.",
        "# No init system runs here: after editing, reload with",
        "#   kill -HUP $(cat /run/sshd.pid)" if host.kind != "process" else "#   kill -HUP PID",
        f"Port {host.port}",
        f"ListenAddress {host.address}",
    ]
    if host.kind == "process":
        hostdir = lab_dir / host.name
        lines += [
            f"HostKey {_q(hostdir / 'ssh_host_ed25519_key')}",
            f"PidFile {_q(hostdir / 'sshd.pid')}",
            f"AuthorizedKeysFile {_q(lab_dir / 'authorized_keys')}",
            "StrictModes no",
            "PasswordAuthentication no",
            "PermitTTY no",  # an unprivileged sshd cannot hand a pty over (nor log it)
            "PrintLastLog no",
        ]
    else:
        lines += [
            "HostKey /etc/ssh/ssh_host_ed25519_key",
            f"PidFile {CONTAINER_PIDFILE}",
            "AuthorizedKeysFile .ssh/authorized_keys",
            "PermitRootLogin prohibit-password",
            # Every account's password field is "*" (no password matches) until a test sets
            # one (chpasswd inside the host) to exercise password logins.
            "PasswordAuthentication yes",
        ]
    lines += [
        "UsePAM no",
        "PubkeyAuthentication yes",
        "KbdInteractiveAuthentication no",
        "AllowTcpForwarding yes",
        "AcceptEnv LANG LC_*",
        "PrintMotd no",
        f"Subsystem sftp {SFTP_SERVER if Path(SFTP_SERVER).exists() else 'internal-sftp'}",
    ]
    if host.role == "loopback":
        lines += list(LOOPBACK_LIMITS)
    return "\n".join(lines) + "\n"


def container_argv() -> list[str]:
    """How a container starts its sshd (daemon; pid in /run/sshd.pid, log in /run/sglab)."""
    return [SSHD, "-f", CONTAINER_CONFIG, "-E", CONTAINER_LOG]


def process_argv(host: LabHost, lab_dir: Path) -> list[str]:
    hostdir = lab_dir / host.name
    return [SSHD, "-f", str(hostdir / "sshd_config"), "-E", str(hostdir / "sshd.log")]


def keygen(keys: Sequence[tuple[Path, str]]) -> None:
    """Generate unencrypted ed25519 keys (path, comment) with ssh-keygen, all at once."""
    running = [
        (
            path,
            subprocess.Popen(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=procs.CLEAN_ENV,
            ),
        )
        for path, comment in keys
    ]
    failed = []
    for path, proc in running:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            failed.append(f"{path}: {out.decode(errors='replace').strip()}")
    if failed:
        raise LabError(f"ssh-keygen failed for {failed[0]}")


def _hex(address: str) -> str:
    """An IPv4 address as /proc/net/tcp prints it (native-endian hex)."""
    return f"{struct.unpack('=I', socket.inet_aton(address))[0]:08X}"


def listening(netpid: int | None, address: str, port: int) -> bool:
    """Is a TCP socket listening on address:port in the network namespace of ``netpid``?

    (``None``: the caller's own namespace.) Reads /proc, so it works for namespaces the
    machine has no route to.
    """
    path = f"/proc/{netpid}/net/tcp" if netpid else "/proc/self/net/tcp"
    try:
        text = Path(path).read_text()
    except OSError:
        return False
    want = (f"{_hex(address)}:{port:04X}", f"00000000:{port:04X}")
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A" and fields[1] in want:
            return True
    return False


def accepts(address: str, port: int, timeout: float = 0.5) -> bool:
    """A real TCP connection from here (only for machines reachable from here)."""
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def log_tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no {path.name})"
    tail = text.strip().splitlines()[-lines:]
    return "\n".join("    " + ln for ln in tail) if tail else f"({path.name} is empty)"


def logs(hostdir: Path) -> str:
    """The tails of a machine's sshd.log and init.log, for error messages."""
    out = ""
    for name in ("sshd.log", "init.log"):
        if (hostdir / name).exists():
            out += f"\n  {hostdir.name}/{name}:\n{log_tail(hostdir / name)}"
    return out


def wait_ready(
    hosts: Sequence[LabHost],
    *,
    netpid: Callable[[LabHost], int | bool | None],
    reachable: Callable[[LabHost], bool],
    lab_dir: Path,
    timeout: float,
) -> None:
    """Wait until every machine's sshd accepts TCP, else a LabError naming the first late one.

    ``netpid(host)`` gives a pid in the host's network namespace, ``None`` for the caller's
    own, ``False`` while not known yet; it raises LabError when the host is known dead.
    """
    pending = list(hosts)
    deadline = time.monotonic() + timeout
    while pending:
        still = []
        for host in pending:
            pid = netpid(host)
            ready = pid is not False and listening(pid or None, host.address, host.port)
            if ready and reachable(host):
                ready = accepts(host.address, host.port)
            if not ready:
                still.append(host)
        pending = still
        if not pending:
            return
        if time.monotonic() > deadline:
            host = pending[0]
            hostdir = lab_dir / host.name
            raise LabError(
                f"{host.name}: sshd did not accept connections on {host.endpoint} within "
                f"{timeout:g}s ({len(pending)} host(s) late)" + logs(hostdir)
            )
        time.sleep(0.02)
