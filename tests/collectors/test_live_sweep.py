"""The default sweep, for real: build_script() run by /bin/sh on this machine the way the
persistent session runs it (a subshell, stdin from /dev/null), split and parsed."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from collectors.base import Collector
from collectors.cpu import CpuCounterGuard
from collectors.registry import default_registry
from collectors.sample import Sample
from collectors.script import ParsedSweep, build_script, run_parsers

WRAPPER = '__sg_s=$1; ( eval "$__sg_s" ) </dev/null'


def collectors() -> list[Collector]:
    """The default set plus processes (off by default, checked here too)."""
    return [*default_registry().defaults(), default_registry().get("processes")]


def sweep(shell: list[str], env: dict[str, str] | None = None) -> ParsedSweep:
    cols = collectors()
    script = build_script(cols)
    proc = subprocess.run(
        [*shell, "-c", WRAPPER, "sh", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return run_parsers(proc.stdout, cols, nonce=script.nonce, cpu_guard=CpuCounterGuard())


def one(samples: list[Sample], name: str, **labels: str) -> float:
    found = [
        s.value for s in samples if s.name == name and labels.items() <= dict(s.labels).items()
    ]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def check_real_values(result: ParsedSweep) -> None:
    failed = {n: r.problems for n, r in result.reports.items() if not r.success}
    assert failed == {}
    s = result.samples
    meminfo = Path("/proc/meminfo").read_text()
    mem_kb = int(re.findall(r"^MemTotal:\s+(\d+) kB", meminfo, re.M)[0])
    assert one(s, "node_memory_MemTotal_bytes") == mem_kb * 1024
    cpus = {dict(x.labels)["cpu"] for x in s if x.name == "node_cpu_seconds_total"}
    assert len(cpus) == os.cpu_count()
    st = os.statvfs("/")
    assert one(s, "node_filesystem_size_bytes", mountpoint="/") == st.f_blocks * st.f_bsize
    btime = int(re.findall(r"^btime (\d+)", Path("/proc/stat").read_text(), re.M)[0])
    assert one(s, "node_boot_time_seconds") == btime
    assert abs(one(s, "node_time_seconds") - time.time()) < 30
    assert one(s, "node_uname_info", nodename=os.uname().nodename, release=os.uname().release) == 1
    assert one(s, "node_network_up", device="lo") in (0, 1)  # lo's operstate is "unknown"
    assert one(s, "node_network_receive_bytes_total", device="lo") >= 0
    for iface in Path("/sys/class/net").iterdir():  # every interface, each attribute once
        if (iface / "mtu").exists():
            mtu = int((iface / "mtu").read_text())
            assert one(s, "node_network_mtu_bytes", device=iface.name) == mtu
    assert one(s, "node_processes_pids") > 1
    assert len([x for x in s if x.name == "serverguard_process_cpu_seconds_total"]) == 5
    assert one(s, "node_load1") >= 0
    assert one(s, "node_filefd_maximum") == int(Path("/proc/sys/fs/file-nr").read_text().split()[2])
    durations = [x for x in result.collector_samples if x.name.endswith("duration_seconds")]
    assert len(durations) == len(result.reports)


def test_default_sweep_with_bin_sh() -> None:
    check_real_values(sweep(["/bin/sh"]))


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox is not installed")
def test_default_sweep_with_busybox_sh_and_applets(tmp_path: Path) -> None:
    for applet in ("cat", "head", "stat", "date", "timeout", "uname"):
        (tmp_path / applet).symlink_to(shutil.which("busybox"))  # type: ignore[arg-type]
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")
    check_real_values(sweep(["busybox", "sh"], env=env))


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_default_sweep_process_count(tmp_path: Path) -> None:
    """4 execs on a systemd-less kernel >= 6.1 host without network mounts, as documented
    (+1 timeout with a network or FUSE mount; processes, off by default, +1)."""
    script = build_script(collectors())
    trace = tmp_path / "trace"
    subprocess.run(
        [
            "strace",
            "-f",
            "-qq",
            "-e",
            "trace=execve",
            "-o",
            str(trace),
            "/bin/sh",
            "-c",
            WRAPPER,
            "sh",
            script,
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )
    lines = trace.read_text().splitlines()
    # one pid per started program (PATH lookups failing with ENOENT come from the same pid)
    pids = {ln.split()[0] for ln in lines if "execve(" in ln and "ENOENT" not in ln}
    expected = 1 + 1 + 1 + 1  # head (every collector's files), date, stat -f, cat */stat
    expected += shutil.which("timeout") is not None and network_mount()
    expected += not Path("/proc/sys/kernel/arch").exists()
    expected += 2 * Path("/run/systemd/system").is_dir()
    assert len(pids) - 1 == expected, [ln for ln in lines if "execve(" in ln]  # minus sh


def network_mount() -> bool:
    """This machine has a network or FUSE filesystem the filesystem collector would stat."""
    from collectors.filesystem import FS_TYPES_EXCLUDE, NETWORK_FS_TYPES

    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fstype = line.split(" - ", 1)[1].split()[0] if " - " in line else ""
        if re.match(FS_TYPES_EXCLUDE, fstype):
            continue
        if any(fnmatch.fnmatchcase(fstype, p) for p in NETWORK_FS_TYPES.split("|")):
            return True
    return False
