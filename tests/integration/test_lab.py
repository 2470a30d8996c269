"""The local lab (orchestrator.lab) against real sshd, ssh, network namespaces and Ansible.

One small lab serves the module (2 public hosts, bastion, 2 private, bastion2, 1 deep,
3 loopback entries); the last tests tear it down and build a forced loopback-mode lab.
Tests that need network isolation or containers skip, with the reason, in the fallback.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from orchestrator.cli import lab_cmd
from orchestrator.errors import LabError
from orchestrator.lab import Lab, LabInfo, LabSpec, network
from orchestrator.settings import Settings

pytestmark = pytest.mark.lab

SSH = shutil.which("ssh")
if not SSH or not Path("/usr/sbin/sshd").exists():
    pytest.skip("needs the OpenSSH client and server", allow_module_level=True)

SPEC = LabSpec(hosts=2, private=2, deep=1, loopback_hosts=3)


def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def machine_passwd() -> str:
    return _digest("/etc/passwd")


@dataclass
class UnderTest:
    lab: Lab
    info: LabInfo
    owned: bool  # built by this module (False: another lab of the session, reused)


@pytest.fixture(scope="module")
def under_test(
    tmp_path_factory: pytest.TempPathFactory, machine_passwd: str
) -> Iterator[UnderTest]:
    """This module's own lab; or, when another lab's network is already up in this test
    session (network names are machine-wide), that lab, without the destructive tests."""
    lab = Lab(Settings(state_dir=tmp_path_factory.mktemp("lab-state")))
    try:
        info = lab.up(SPEC)
    except LabError as exc:
        if "another lab" not in str(exc):
            raise
        owner = network.discover().owner
        other = Lab(Settings(state_dir=Path(owner).parent)) if owner else None
        other_info = other.info() if other else None
        if other is None or other_info is None:
            pytest.skip(f"another lab is up on this machine: {exc}")
        yield UnderTest(other, other_info, owned=False)
        return
    yield UnderTest(lab, info, owned=True)
    lab.down()


@pytest.fixture
def lab(under_test: UnderTest) -> Lab:
    return under_test.lab


@pytest.fixture
def info(under_test: UnderTest) -> LabInfo:
    return under_test.info


def ssh(
    info: LabInfo,
    name: str,
    command: str,
    *,
    user: str | None = None,
    jump: Sequence[str] = (),
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    """The system ssh client with the lab's key and known_hosts (strict), in batch mode.

    ``-F`` gives the jump hops (``-J``) the same key and known_hosts.
    """
    host = info.host(name)
    argv = [
        str(SSH),
        "-F", str(info.ssh_config_path),
        "-i", str(info.key_path),
        "-o", f"UserKnownHostsFile={info.known_hosts_path}",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=10",
        "-p", str(host.port),
    ]  # fmt: skip
    hops = [f"{info.host(h).user}@{info.host(h).address}:{info.host(h).port}" for h in jump]
    if hops:
        argv += ["-J", ",".join(hops)]
    argv += [f"{user or host.user}@{host.address}", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def connect_error(address: str, port: int, timeout: float = 3.0) -> tuple[OSError | None, float]:
    started = time.monotonic()
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return None, time.monotonic() - started
    except OSError as exc:
        return exc, time.monotonic() - started


def need_containers(info: LabInfo) -> None:
    if not info.containers:
        pytest.skip("lab hosts are plain sshd processes here (not root): no containers")


def need_isolation(info: LabInfo) -> None:
    if not info.isolated:
        pytest.skip(f"lab in {info.mode} mode: no network isolation")


def test_public_host_answers_with_its_own_hostname(info: LabInfo) -> None:
    proc = ssh(info, "host01", "hostname; id -un; echo $0")
    assert proc.returncode == 0, proc.stderr
    hostname, user, shell = proc.stdout.split()
    assert user == info.user
    if info.containers:
        assert (hostname, shell) == ("host01", "sh")


@pytest.mark.netns
def test_private_host_only_through_the_bastion(info: LabInfo) -> None:
    need_isolation(info)
    private = info.host("private01")
    error, took = connect_error(private.address, 22)
    assert error is not None, "a private host must not be reachable from the machine"
    assert took < 1.0
    proc = ssh(info, "private01", "hostname", jump=["bastion"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "private01"


@pytest.mark.netns
def test_deep_host_through_two_hops(info: LabInfo) -> None:
    need_isolation(info)
    error, _ = connect_error(info.host("deep01").address, 22)
    assert error is not None
    proc = ssh(info, "deep01", "hostname", jump=["bastion", "bastion2"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "deep01"


def test_loopback_entries_share_one_sshd(info: LabInfo) -> None:
    for name in ("lo001", "lo003"):
        host = info.host(name)
        assert (host.address, host.name) == ("127.0.0.1", "loopback")
        proc = ssh(info, name, "hostname")
        assert proc.returncode == 0, proc.stderr
        if info.containers:
            assert proc.stdout.strip() == "loopback"


def test_host_exec_runs_inside_the_host(lab: Lab, info: LabInfo) -> None:
    need_containers(info)
    proc = lab.host_exec("private02", ["sh", "-c", "hostname; id -u; cat /proc/1/cmdline"])
    assert proc.returncode == 0, proc.stderr
    hostname, uid, init = proc.stdout.split(maxsplit=2)
    assert (hostname, uid) == ("private02", "0")
    assert "sshd" in init  # PID 1 is the host's own init, which started its sshd


def test_files_written_inside_a_host_stay_inside(lab: Lab, info: LabInfo) -> None:
    need_containers(info)
    marker = f"/etc/sg-lab-test-{uuid.uuid4().hex}"
    proc = lab.host_exec("host01", ["sh", "-c", f"echo inside > {marker} && cat {marker}"])
    assert (proc.returncode, proc.stdout.strip()) == (0, "inside"), proc.stderr
    assert not Path(marker).exists()
    over_ssh = ssh(info, "host02", "echo hello > ~/sg-note && cat ~/sg-note && pwd")
    assert over_ssh.returncode == 0, over_ssh.stderr
    text, home = over_ssh.stdout.split()
    assert text == "hello"
    assert not (Path(home) / "sg-note").exists()
    other = lab.host_exec("host02", ["test", "-e", marker])
    assert other.returncode != 0  # each host has its own upper layer


def test_root_logs_in_with_sh_and_machine_passwd_untouched(
    info: LabInfo, machine_passwd: str
) -> None:
    need_containers(info)
    proc = ssh(info, "host01", 'id -u; echo "$0"; grep "^root:" /etc/passwd', user="root")
    assert proc.returncode == 0, proc.stderr
    uid, shell, entry = proc.stdout.split()
    assert (uid, shell) == ("0", "sh")
    assert entry.endswith(":/bin/sh")
    assert _digest("/etc/passwd") == machine_passwd
    assert "sglab:" not in Path("/etc/passwd").read_text()


def test_kernel_settings_are_read_only_except_net(lab: Lab, info: LabInfo) -> None:
    need_containers(info)
    kernel = lab.host_exec("host01", ["sh", "-c", "echo x > /proc/sys/kernel/hostname"])
    assert kernel.returncode != 0
    assert lab.host_exec("bastion", ["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout == "0\n"
    if info.isolated:
        net = lab.host_exec("host01", ["sh", "-c", "echo 0 > /proc/sys/net/ipv4/ip_forward"])
        assert net.returncode == 0, net.stderr
        rules = lab.host_exec("host01", ["nft", "list", "ruleset"])
        assert "table inet filter" in rules.stdout


def test_stop_and_start_one_sshd(lab: Lab, info: LabInfo) -> None:
    host = info.host("host02")
    lab.stop_sshd("host02")
    assert not lab.status().host("host02").alive
    error, _ = connect_error(host.address, host.port)
    assert isinstance(error, ConnectionRefusedError)
    assert ssh(info, "host01", "true").returncode == 0  # the others are untouched
    lab.start_sshd("host02")
    row = lab.status().host("host02")
    assert row.alive and row.sshd_pid
    assert ssh(info, "host02", "true").returncode == 0


def test_status_lists_every_inventory_host(lab: Lab, info: LabInfo) -> None:
    status = lab.status()
    assert status.up
    assert [h.name for h in status.hosts] == info.inventory_hosts
    assert all(h.alive and h.sshd_pid for h in status.hosts)
    assert status.host("deep01").jump == ("bastion", "bastion2")
    lo = {h.sshd_pid for h in status.hosts if h.role == "loopback"}
    assert len(lo) == 1


def test_inventory_file(info: LabInfo) -> None:
    doc = yaml.safe_load(info.inventory_path.read_text())["all"]
    assert doc["vars"]["ansible_user"] == info.user
    assert doc["vars"]["ansible_ssh_private_key_file"] == str(info.key_path)
    assert f"UserKnownHostsFile={info.known_hosts_path}" in doc["vars"]["ansible_ssh_common_args"]
    groups = doc["children"]
    assert set(groups) == {"public", "bastions", "private", "deep", "loopback"}
    assert list(groups["public"]["hosts"]) == [h.name for h in info.hosts if h.role == "public"]
    deep = groups["deep"]["hosts"]["deep01"]
    assert deep["serverguard_jump"] == ["bastion", "bastion2"]
    assert "ProxyJump=" in deep["ansible_ssh_common_args"]
    assert groups["private"]["hosts"]["private01"]["serverguard_jump"] == ["bastion"]
    assert list(groups["loopback"]["hosts"]) == list(info.host("lo001").entries)


def test_ansible_ping_all(info: LabInfo, tmp_path: Path) -> None:
    ansible = Path(sys.executable).parent / "ansible"
    if not ansible.exists():
        pytest.skip("ansible-core is not installed next to this Python")
    env = {
        **os.environ,
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=no",  # no persistent masters left behind
        "ANSIBLE_FORKS": "20",
        "ANSIBLE_PIPELINING": "True",  # one ssh connection per host
        "ANSIBLE_LOCAL_TEMP": str(tmp_path),
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
    }
    # every machine once (the loopback entries all share one sshd: lo001 stands for them)
    pattern = "public:bastions:private:deep:lo001"
    expected = [n for n in info.inventory_hosts if not n.startswith("lo")] + ["lo001"]
    proc = subprocess.run(
        [str(ansible), "-i", str(info.inventory_path), pattern, "-m", "ping"],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.stdout.count("SUCCESS") == len(expected)


def test_up_refuses_when_already_up(lab: Lab) -> None:
    with pytest.raises(LabError, match="already up"):
        lab.up(SPEC)


def test_cli_status_json(lab: Lab) -> None:
    result = CliRunner().invoke(
        lab_cmd.app, ["status", "--json"], env={"SERVERGUARD_STATE_DIR": str(lab.dir.parent)}
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["up"] is True
    assert {h["name"] for h in data["hosts"]} >= {"host01", "bastion", "deep01", "lo002"}


def _sg_netns() -> list[str]:
    run = Path("/run/netns")
    return sorted(n for n in os.listdir(run) if n.startswith("sg-")) if run.is_dir() else []


def _sg_links() -> list[str]:
    return sorted(n for n in os.listdir("/sys/class/net") if n.startswith("sg-"))


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{entry.name}: {cmdline}")
    return found


def test_down_after_a_crash_removes_everything(under_test: UnderTest) -> None:
    if not under_test.owned:
        pytest.skip("another lab of this test session is up: not tearing it down")
    lab, info = under_test.lab, under_test.info
    (info.lab_dir / "state.json").unlink()  # as if the process that ran 'up' had died
    result = lab.down()
    assert result.processes
    if info.isolated:
        assert set(result.netns) >= {"sg-host01", "sg-bastion", "sg-private01", "sg-deep01"}
        assert "sg-br0" in result.links
    assert _sg_netns() == []
    assert _sg_links() == []
    assert str(info.lab_dir) not in Path("/proc/self/mountinfo").read_text()
    assert _processes_mentioning(str(info.lab_dir) + "/") == []
    assert not info.lab_dir.exists()
    again = lab.down()
    assert again.empty
    assert lab.status().up is False


def test_loopback_mode(tmp_path: Path) -> None:
    lab = Lab(Settings(state_dir=tmp_path))
    info = lab.up(LabSpec(hosts=1, private=1, deep=0, loopback_hosts=2, mode="loopback"))
    try:
        assert info.mode == "loopback"
        assert info.isolated is False
        assert {h.address for h in info.hosts} == {"127.0.0.1"}
        assert len({h.port for h in info.hosts}) == len(info.hosts)
        for name, jump in (("host01", []), ("private01", ["bastion"]), ("lo002", [])):
            proc = ssh(info, name, "hostname", jump=jump)
            assert proc.returncode == 0, proc.stderr
            if info.containers:
                assert proc.stdout.strip() == info.host(name).name
        assert all(h.alive for h in lab.status().hosts)
    finally:
        lab.down()
    assert not (tmp_path / "lab").exists()
