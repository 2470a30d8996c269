"""The filesystem command puts its statfs under ``timeout`` only when a network or FUSE
filesystem is mounted: run for real by /bin/sh on a made-up mountinfo, with ``stat`` and
``timeout`` replaced by scripts that log how they were called."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from collectors.registry import default_registry

EXT4 = "29 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n"
TMPFS = "30 29 0:25 / /run rw,nosuid shared:5 - tmpfs tmpfs rw,size=100k\n"
NFS = "31 29 0:50 / /mnt/nfs rw,relatime shared:9 - nfs4 srv:/export rw,vers=4.2\n"
SSHFS = "32 29 0:51 / /mnt/s\\040f rw shared:10 - fuse.sshfs me@h:/ rw,user_id=0\n"
VIRTIOFS = "34 29 0:52 / /mnt/nfs rw,relatime shared:11 - virtiofs share rw\n"
CGROUP = "33 29 0:26 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw\n"

STAT = """#!/bin/sh
echo "stat $*" >> "$LOG"
shift 3
for m in "$@"; do echo "S 4096 100 50 40 1000 900 $m"; done
"""
TIMEOUT = """#!/bin/sh
echo "timeout $*" >> "$LOG"
shift
exec "$@"
"""


def run(tmp_path: Path, mountinfo: str, options: dict | None = None) -> tuple[list[str], str]:
    c = default_registry().get("filesystem")
    command = c.command(c.resolve_options(options))
    info = tmp_path / "mountinfo"
    info.write_text(mountinfo)
    assert "/proc/self/mountinfo" in command
    command = command.replace("/proc/self/mountinfo", str(info))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("stat", STAT), ("timeout", TIMEOUT)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    log = tmp_path / "log"
    log.unlink(missing_ok=True)
    env = dict(os.environ, PATH=f"{bin_dir}:/usr/bin:/bin", LOG=str(log))
    out = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, env=env,
                         timeout=30, check=True).stdout
    return log.read_text().splitlines(), out


def test_local_filesystems_only_no_timeout_process(tmp_path: Path) -> None:
    calls, out = run(tmp_path, EXT4 + TMPFS + CGROUP)
    assert calls == ["stat -f -c S %s %b %f %a %c %d %n / /run"]  # cgroup2 not even stat'ed
    assert "S 4096 100 50 40 1000 900 /run" in out and out.rstrip().endswith("R 0")


@pytest.mark.parametrize("extra", [NFS, SSHFS, VIRTIOFS], ids=["nfs4", "fuse.sshfs", "virtiofs"])
def test_a_network_or_fuse_mount_puts_statfs_under_timeout(tmp_path: Path, extra: str) -> None:
    calls, _ = run(tmp_path, EXT4 + extra + TMPFS)
    assert calls[0].startswith("timeout 5 stat -f ")
    assert calls[1].startswith("stat -f ")
    assert ("/mnt/nfs" in calls[1]) or ("/mnt/s f" in calls[1])


def test_timeout_zero_never_uses_timeout(tmp_path: Path) -> None:
    calls, _ = run(tmp_path, EXT4 + NFS, {"statfs_timeout_seconds": 0})
    assert calls == ["stat -f -c S %s %b %f %a %c %d %n / /mnt/nfs"]
