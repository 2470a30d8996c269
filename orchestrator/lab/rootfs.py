"""The upper layer of each container's copy-on-write root (overlay, lower layer = ``/``).

Written from the machine before the container starts, on one tmpfs mounted at
``<lab>/fs`` (source name ``sg-lab``): ``fs/<host>/upper`` holds the files that differ from
the machine (accounts, hostname, sshd config and host key, authorized keys), ``work`` is
overlayfs's work dir, ``root`` the mount point used inside the container's mount namespace.
The machine's own files (``/etc/passwd``...) are only read.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import LabError
from orchestrator.lab import procs
from orchestrator.lab.model import LabHost

LAB_USER = "sglab"
LAB_SHELL = "/bin/sh"
FS_SOURCE = "sg-lab"  # the tmpfs's source name, as /proc/mounts shows it
HOST_KEY = "etc/ssh/ssh_host_ed25519_key"
_OCTAL = re.compile(r"\\([0-7]{3})")  # /proc/self/mountinfo escapes space, tab, newline, \\


def mount_tmpfs(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    procs.run(["mount", "-t", "tmpfs", "-o", "mode=0700", FS_SOURCE, str(path)])


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` in this mount namespace, deepest first."""
    prefix = str(path).rstrip("/")
    found = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            point = _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), line.split()[4])
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(set(found), key=len, reverse=True)


def unmount_under(path: Path) -> list[str]:
    """Unmount everything at or below ``path`` (lazily when busy); returns what was there."""
    found = mounts_under(path)
    for point in found:
        if procs.run(["umount", point], check=False).returncode != 0:
            procs.run(["umount", "-l", point], check=False)
    return found


def _today() -> int:
    return int(time.time() // 86400)


def _first_free(taken: set[int], start: int = 2000) -> int:
    n = start
    while n in taken:
        n += 1
    return n


@dataclass(frozen=True)
class Accounts:
    """The machine's account files with ``sglab`` added and root given ``/bin/sh``."""

    passwd: str
    shadow: str
    group: str
    gshadow: str
    uid: int
    gid: int

    @classmethod
    def from_machine(cls, etc: Path = Path("/etc")) -> Accounts:
        def lines(name: str) -> list[str]:
            try:
                text = (etc / name).read_text()
            except FileNotFoundError:
                return []
            except OSError as exc:
                raise LabError(f"cannot read {etc / name}: {exc.strerror}") from exc
            return [ln for ln in text.splitlines() if ln and not ln.startswith(LAB_USER + ":")]

        passwd, shadow, group, gshadow = (
            lines(n) for n in ("passwd", "shadow", "group", "gshadow")
        )
        uid = _first_free({int(ln.split(":")[2]) for ln in passwd if ln.count(":") >= 6})
        gids = {int(ln.split(":")[2]) for ln in group if ln.count(":") >= 3}
        gid = uid if uid not in gids else _first_free(gids)

        def root_shell(line: str) -> str:
            f = line.split(":")
            if f[0] == "root" and len(f) >= 7:
                f[6] = LAB_SHELL
            return ":".join(f)

        def root_unlocked(line: str) -> str:
            # sshd (UsePAM no) refuses accounts whose password field starts with "!"; "*" only
            # forbids password logins. A last-change of 0 would force a password change.
            f = line.split(":")
            if f[0] == "root" and len(f) >= 3:
                if f[1].startswith("!") or not f[1]:
                    f[1] = "*"
                if f[2] == "0":
                    f[2] = str(_today())
            return ":".join(f)

        passwd = [root_shell(ln) for ln in passwd]
        passwd.append(f"{LAB_USER}:x:{uid}:{gid}:ServerGuard lab:/home/{LAB_USER}:{LAB_SHELL}")
        shadow = [root_unlocked(ln) for ln in shadow]
        shadow.append(f"{LAB_USER}:*:{_today()}:0:99999:7:::")
        group.append(f"{LAB_USER}:x:{gid}:")
        gshadow.append(f"{LAB_USER}:!::")
        return cls(
            passwd="\n".join(passwd) + "\n",
            shadow="\n".join(shadow) + "\n",
            group="\n".join(group) + "\n",
            gshadow="\n".join(gshadow) + "\n",
            uid=uid,
            gid=gid,
        )


def _mkdirs(upper: Path, rel: str, lower: Path = Path("/")) -> Path:
    """Create ``upper/rel`` giving each new directory its lower twin's mode and owner.

    (An upper directory's attributes win in the merged view, so they must match.)
    """
    path = upper
    for part in Path(rel).parts:
        path = path / part
        lower = lower / part
        if path.is_dir():
            continue
        try:
            st = os.stat(lower)
            mode, uid, gid = st.st_mode & 0o7777, st.st_uid, st.st_gid
        except OSError:
            mode, uid, gid = 0o755, 0, 0
        path.mkdir()
        os.chown(path, uid, gid)
        os.chmod(path, mode)
    return path


def _write(path: Path, text: str, mode: int, uid: int = 0, gid: int = 0) -> None:
    path.write_text(text)
    os.chown(path, uid, gid)
    os.chmod(path, mode)


def _write_like(upper: Path, rel: str, text: str) -> None:
    """Write ``upper/rel`` with the mode and owner of the machine's ``/rel``."""
    _mkdirs(upper, str(Path(rel).parent))
    try:
        st = os.stat(Path("/") / rel)
        mode, uid, gid = st.st_mode & 0o7777, st.st_uid, st.st_gid
    except OSError:
        mode, uid, gid = 0o644, 0, 0
    _write(upper / rel, text, mode, uid, gid)


def _hide_lower(path: Path) -> None:
    """Make an upper directory opaque: the machine's files under it stay invisible."""
    with contextlib.suppress(OSError):
        os.setxattr(path, "trusted.overlay.opaque", b"y")


def prepare(
    fs: Path, host: LabHost, accounts: Accounts, authorized_keys: str, sshd_config: str
) -> Path:
    """Create ``fs/<host>/{upper,work,root}`` and the upper layer's files.

    Returns the path where the host key must be generated (``upper/etc/ssh/...``).
    """
    base = fs / host.name
    upper = base / "upper"
    for sub in ("upper", "work", "root"):
        (base / sub).mkdir(mode=0o755, parents=True, exist_ok=True)
    _write_like(upper, "etc/passwd", accounts.passwd)
    _write_like(upper, "etc/shadow", accounts.shadow)
    _write_like(upper, "etc/group", accounts.group)
    _write_like(upper, "etc/gshadow", accounts.gshadow)
    _write_like(upper, "etc/hostname", host.name + "\n")
    own_address = host.address if host.kind == "netns" else "127.0.1.1"
    _write_like(
        upper,
        "etc/hosts",
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        f"{own_address}\t{host.name}\n",
    )
    _write_like(upper, "etc/ssh/sshd_config", sshd_config)

    home = _mkdirs(upper, "home") / LAB_USER
    home.mkdir(mode=0o755)
    os.chown(home, accounts.uid, accounts.gid)
    for ssh_dir, uid, gid in (
        (home / ".ssh", accounts.uid, accounts.gid),
        (_mkdirs(upper, "root") / ".ssh", 0, 0),
    ):
        ssh_dir.mkdir(mode=0o700)
        os.chown(ssh_dir, uid, gid)
        _hide_lower(ssh_dir)
        _write(ssh_dir / "authorized_keys", authorized_keys, 0o600, uid, gid)
    return upper / HOST_KEY
