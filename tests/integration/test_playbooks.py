"""Playbooks on the lab's real hosts: the runner, the shipped playbooks, the dead-man switch.

Root work logs in as root inside the lab hosts (``ansible_user=root``: sudo is not on these
machines, see docs/lab.md). Everything a test changes on a host is put back at the end of
the module (rulesets, sshd_config, files), since the lab is shared by the whole session.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from orchestrator.errors import PlaybookNotFound, PlaybookSyntaxError
from orchestrator.playbooks import (
    PlaybookConfig,
    PlaybookRun,
    RunStatus,
    Tuning,
    load_run,
    run,
    run_async,
)
from orchestrator.playbooks.run import LOCAL_TEMP
from orchestrator.settings import Settings

pytestmark = pytest.mark.lab

TOUCHED = ("host01", "host02", "host03", "private01", "deep01")
FILES = ("/etc/ssh/sshd_config", "/etc/passwd", "/etc/group", "/etc/shadow")


def sh(lab: Any, host: str, script: str, *, check: bool = True) -> str:
    proc = lab.lab.host_exec(host, ["sh", "-c", script], timeout=60)
    if check:
        assert proc.returncode == 0, f"{host}: {script}: {proc.stderr}"
    return str(proc.stdout)


def snapshot(lab: Any, host: str) -> dict[str, str]:
    """What the playbooks may change on a host, as text."""
    out = {"ruleset": sh(lab, host, "nft -s list ruleset")}
    for path in FILES:
        out[path] = sh(lab, host, f"cat {path}")
    out["etc"] = sh(lab, host, "ls -la /etc/sysctl.d /etc/systemd/timesyncd.conf.d "
                               "/etc/nftables.conf /var/lib/serverguard /home 2>&1; "
                               "readlink /etc/localtime; cat /etc/timezone 2>&1", check=False)
    return out


@pytest.fixture(scope="module")
def pb_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    state = tmp_path_factory.mktemp("pb-state")
    return Settings(state_dir=state, user_known_hosts=state / "no_known_hosts",
                    use_ssh_agent=False)


@pytest.fixture(scope="module")
def hosts(lab: Any) -> Iterator[Any]:
    """The lab, with every touched host restored afterwards."""
    saved = {h: snapshot(lab, h) for h in TOUCHED}
    yield lab
    for host, before in saved.items():
        lab.lab.host_exec(host, ["sh", "-c", "{ echo 'flush ruleset'; cat; } | nft -f -"],
                          input=before["ruleset"])
        lab.lab.host_exec(host, ["sh", "-c", "cat > /etc/ssh/sshd_config && "
                                 "kill -HUP $(cat /run/sshd.pid)"],
                          input=before["/etc/ssh/sshd_config"])
        lab.lab.host_exec(host, ["sh", "-c", "pkill -f '[s]g-deadman'; pkill -f '[h]ttp.server'; "
                                 "rm -rf /etc/sysctl.d/60-serverguard.conf /var/lib/serverguard "
                                 "/etc/systemd/timesyncd.conf.d/60-serverguard.conf"])


def play(lab: Any, settings: Settings, playbook: str | Path, limit: str,
         **extra: Any) -> PlaybookRun:
    check = bool(extra.pop("_check", False))
    timeout = extra.pop("_timeout", None)
    config = PlaybookConfig(playbook, inventory=[str(lab.inventory_path)], limit=limit,
                            extra_vars={"ansible_user": "root", **extra}, check=check,
                            timeout=timeout)
    return run(config, settings)


def changed(result: PlaybookRun) -> dict[str, int]:
    return {h: s.changed for h, s in result.stats.items()}


def failures(result: PlaybookRun, *statuses: str) -> list[str]:
    wanted = statuses or ("failed", "unreachable")
    return [f"{e.host}: {e.task}: {e.message}" for e in result.host_results()
            if e.status in wanted]


def notes(result: PlaybookRun, host: str) -> list[Any]:
    return [e.result.get("msg") for e in result.host_results(host)
            if e.action and e.action.endswith("debug") and "msg" in e.result]


def only(items: list[Any]) -> Any:
    assert len(items) == 1, items
    return items[0]


def tcp_open(address: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


# -- firewall ------------------------------------------------------------------------------------


def test_firewall_policy_ports_and_idempotence(hosts: Any, pb_settings: Settings) -> None:
    lab = hosts
    for port in (8080, 8081):  # listeners inside host01, started without SSH
        sh(lab, "host01", f"setsid python3 -m http.server {port} --bind 0.0.0.0 "
                          ">/dev/null 2>&1 < /dev/null &")
    address = lab.info.host("host01").address
    deadline = time.monotonic() + 10
    while not (tcp_open(address, 8080) and tcp_open(address, 8081)):
        assert time.monotonic() < deadline, "http.server did not start in host01"
        time.sleep(0.2)

    limit = "host01,private01,deep01"
    first = play(lab, pb_settings, "firewall", limit,
                 firewall_allowed_ports=["8080/tcp", {"port": 5432, "proto": "tcp",
                                                      "sources": ["169.254.99.0/24"]}],
                 firewall_denied_sources=["169.254.10.0/24"])
    assert first.status is RunStatus.SUCCESSFUL, failures(first)
    assert first.plan.strategy.startswith("mitogen")

    ruleset = sh(lab, "host01", "nft list ruleset")
    assert "policy drop;" in ruleset
    assert "tcp dport 8080 accept" in ruleset
    assert "ip saddr 169.254.99.0/24 tcp dport 5432 accept" in ruleset
    # the orchestrator's own path (this machine, as host01 sees it) comes before the deny
    orchestrator = ruleset.index("ip saddr 169.254.10.1 tcp dport 22 accept")
    assert orchestrator < ruleset.index("ip saddr @denied_v4 drop")
    # behind the bastion, the orchestrator's path is the bastion's address
    assert "ip saddr 169.254.20.1 tcp dport 22 accept" in sh(lab, "private01",
                                                              "nft list ruleset")
    assert "ip saddr 169.254.30.1 tcp dport 22 accept" in sh(lab, "deep01", "nft list ruleset")
    assert sh(lab, "host01", "cat /etc/nftables.conf") == sh(
        lab, "host01", "cat /var/lib/serverguard/firewall.nft")

    # a denied source (this machine is in 169.254.10.0/24) reaches nothing but SSH
    assert not tcp_open(address, 8081) and not tcp_open(address, 8080)
    second = play(lab, pb_settings, "firewall", limit, firewall_allowed_ports=["8080/tcp"])
    assert second.status is RunStatus.SUCCESSFUL, failures(second)
    assert tcp_open(address, 8080), "allowed port refused"
    assert not tcp_open(address, 8081), "blocked port accepted a connection"

    again = play(lab, pb_settings, "firewall", limit, firewall_allowed_ports=["8080/tcp"])
    assert again.status is RunStatus.SUCCESSFUL, failures(again)
    assert set(changed(again).values()) == {0}, changed(again)


def test_firewall_rolls_back_when_it_cuts_the_ssh_path(hosts: Any,
                                                       pb_settings: Settings) -> None:
    lab = hosts
    before = sh(lab, "host03", "nft -s list ruleset")
    started = time.monotonic()
    result = play(lab, pb_settings, "firewall", "host03",
                  firewall_test_exclude_orchestrator=True, firewall_ssh_open=False,
                  firewall_rollback_timeout=5)
    assert result.status is RunStatus.FAILED
    assert result.exit_code == 2
    failure = only(failures(result, "failed"))
    assert "ROLLED BACK" in failure and "after 5 s" in failure
    assert time.monotonic() - started < 90
    # the host put its previous ruleset back by itself and is reachable through SSH again
    assert sh(lab, "host03", "nft -s list ruleset") == before
    assert sh(lab, "host03", "cat /var/lib/serverguard/firewall.rolledback").strip()
    reach = play(lab, pb_settings, "time_sync", "host03", _check=True)
    assert reach.status is RunStatus.SUCCESSFUL, failures(reach)


def test_firewall_refuses_to_fight_ufw(hosts: Any, pb_settings: Settings) -> None:
    lab = hosts
    sh(lab, "host02", "printf '#!/bin/sh\\necho Status: active\\n' > /usr/local/sbin/ufw && "
                      "chmod +x /usr/local/sbin/ufw")
    try:
        before = sh(lab, "host02", "nft -s list ruleset")
        result = play(lab, pb_settings, "firewall", "host02")
        failure = only(failures(result))
        assert "ufw is active" in failure
        assert sh(lab, "host02", "nft -s list ruleset") == before
    finally:
        sh(lab, "host02", "rm -f /usr/local/sbin/ufw")


def test_firewall_without_nftables_refuses_or_installs_it(hosts: Any,
                                                         pb_settings: Settings) -> None:
    lab = hosts
    # the nftables package removed inside host02 (its own dpkg database, in its upper layer);
    # its .deb stays in the apt cache of the shared lower layer, so apt installs it offline
    sh(lab, "host02", "dpkg -r nftables >/dev/null 2>&1 && test ! -e /usr/sbin/nft")
    try:
        for check in (True, False):
            refused = play(lab, pb_settings, "firewall", "host02", _check=check)
            assert refused.exit_code == 2
            failure = only(failures(refused))
            assert "nftables is not installed on this host" in failure, failure
            assert "firewall_install_nftables=true" in failure
            assert not [e for e in refused.host_results() if e.status == "changed"]
        installed = play(lab, pb_settings, "firewall", "host02", firewall_install_nftables=True)
        assert installed.status is RunStatus.SUCCESSFUL, failures(installed)
        assert next(e.task for e in installed.host_results("host02")
                    if e.status == "changed") == "Install nftables"
        assert "table inet serverguard" in sh(lab, "host02", "nft list ruleset")
        again = play(lab, pb_settings, "firewall", "host02", firewall_install_nftables=True)
        assert set(changed(again).values()) == {0}, changed(again)
    finally:
        sh(lab, "host02", "test -e /usr/sbin/nft || dpkg -i /var/cache/apt/archives/nftables_*.deb")


# -- sshd ----------------------------------------------------------------------------------------


async def _login(address: str, port: int, user: str, *, known_hosts: str,
                 password: str | None = None, key: str | None = None) -> str:
    options = {"known_hosts": known_hosts, "username": user, "password": password,
               "client_keys": [key] if key else None, "agent_path": None,
               "preferred_auth": "password" if password else "publickey"}
    async with asyncssh.connect(address, port, **options) as conn:
        return str((await conn.run("id -un", check=True)).stdout).strip()


def login(lab: Any, host: str, user: str, **kwargs: Any) -> str:
    machine = lab.info.host(host)
    return asyncio.run(asyncio.wait_for(_login(
        machine.address, machine.port, user, known_hosts=str(lab.info.known_hosts_path),
        **kwargs), 20))


def test_ssh_hardening_refuses_passwords_keeps_keys(hosts: Any, pb_settings: Settings) -> None:
    lab = hosts
    sh(lab, "host02", "echo 'sglab:Lab-pw-123' | chpasswd")
    assert login(lab, "host02", "sglab", password="Lab-pw-123") == "sglab"

    result = play(lab, pb_settings, "ssh_hardening", "host02,deep01",
                  ssh_allow_users=["sglab"])
    assert result.status is RunStatus.SUCCESSFUL, failures(result)
    config = sh(lab, "host02", "cat /etc/ssh/sshd_config")
    assert config.startswith("# BEGIN SERVERGUARD ssh_hardening")
    assert "PasswordAuthentication no" in config and "AllowUsers sglab root" in config
    assert "chacha20-poly1305@openssh.com" in sh(lab, "host02", "sshd -T | grep ^ciphers")

    with pytest.raises(asyncssh.PermissionDenied):
        login(lab, "host02", "sglab", password="Lab-pw-123")
    key = str(lab.info.key_path)
    assert login(lab, "host02", "sglab", key=key) == "sglab"
    assert login(lab, "host02", "root", key=key) == "root"

    again = play(lab, pb_settings, "ssh_hardening", "host02,deep01",
                 ssh_allow_users=["sglab"])
    assert set(changed(again).values()) == {0}, changed(again)


def test_ssh_hardening_refuses_a_broken_config_before_reload(hosts: Any,
                                                             pb_settings: Settings) -> None:
    lab = hosts
    before = sh(lab, "host01", "cat /etc/ssh/sshd_config")
    hups = sh(lab, "host01", "grep -c 'Received SIGHUP' /run/sglab/sshd.log", check=False)
    result = play(lab, pb_settings, "ssh_hardening", "host01",
                  ssh_extra_options={"NoSuchKeyword": "yes"})
    failure = only(failures(result))
    assert "Write the hardened settings" in failure and "failed to validate" in failure
    assert sh(lab, "host01", "cat /etc/ssh/sshd_config") == before
    assert sh(lab, "host01", "grep -c 'Received SIGHUP' /run/sglab/sshd.log",
              check=False) == hups


def test_ssh_hardening_rolls_back_a_lockout(hosts: Any, pb_settings: Settings) -> None:
    lab = hosts
    before = sh(lab, "host03", "cat /etc/ssh/sshd_config")
    # the orchestrator logs in as root: forbidding root logins locks it out
    result = play(lab, pb_settings, "ssh_hardening", "host03", ssh_permit_root_login="no",
                  ssh_rollback_timeout=5)
    failure = only(failures(result, "failed"))
    assert "sshd ROLLED BACK" in failure and "after 5 s" in failure, failure
    assert sh(lab, "host03", "cat /etc/ssh/sshd_config") == before
    assert login(lab, "host03", "root", key=str(lab.info.key_path)) == "root"


# -- every playbook: idempotent, check mode, jump hosts ----------------------------------------

USERS = {
    "users_groups": ["sgops", {"name": "sgdev", "gid": 3101}],
    "users_accounts": [
        {"name": "alice", "shell": "/bin/sh", "groups": ["sgops"],
         "sudo": "ALL=(ALL) NOPASSWD: ALL"},
        {"name": "bob", "shell": "/bin/sh", "keys_exclusive": False,
         "authorized_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBob bob@example"]},
    ],
}
IDEMPOTENT = {
    "sysctl_baseline": {"sysctl_profile": "web"},
    "time_sync": {"time_sync_timezone": "Europe/Paris"},
    "users_keys": USERS,
}


@pytest.mark.parametrize("name", sorted(IDEMPOTENT))
def test_second_run_changes_nothing(hosts: Any, pb_settings: Settings, name: str) -> None:
    lab = hosts
    limit = "host01,private01,deep01"  # direct, one jump host, two jump hosts
    first = play(lab, pb_settings, name, limit, **IDEMPOTENT[name])
    assert first.status is RunStatus.SUCCESSFUL, failures(first)
    assert set(first.stats) == {"host01", "private01", "deep01"}
    assert all(v > 0 for v in changed(first).values()), changed(first)
    second = play(lab, pb_settings, name, limit, **IDEMPOTENT[name])
    assert second.status is RunStatus.SUCCESSFUL, failures(second)
    assert set(changed(second).values()) == {0}, changed(second)


def test_playbooks_report_what_they_could_not_do(hosts: Any, pb_settings: Settings) -> None:
    lab = hosts
    user_key = asyncssh.generate_private_key("ssh-ed25519")
    keyed = {**USERS, "users_accounts": [
        {**USERS["users_accounts"][0],
         "authorized_keys": [user_key.export_public_key().decode().strip()]}]}
    sysctl = play(lab, pb_settings, "sysctl_baseline", "host01")
    time_sync = play(lab, pb_settings, "time_sync", "host01")
    users = play(lab, pb_settings, "users_keys", "host01", **keyed)
    for result in (sysctl, time_sync, users):
        assert result.status is RunStatus.SUCCESSFUL, failures(result)
    note = only(notes(sysctl, "host01"))
    assert "live apply skipped because /proc/sys is read-only here: kernel.kptr_restrict" in note
    note = only(notes(time_sync, "host01"))
    assert "timesyncd configured but not started: no systemd here" in note
    note = only(notes(users, "host01"))
    assert "sudo rules skipped for alice" in note and "visudo is not installed" in note
    # the managed authorized_keys lets alice in
    key_file = lab.lab.dir / "alice_key"
    user_key.write_private_key(str(key_file))
    assert login(lab, "host01", "alice", key=str(key_file)) == "alice"
    assert sh(lab, "host01", "grep ^alice: /etc/shadow").split(":")[1] == "*"


def test_check_mode_changes_nothing(hosts: Any, pb_settings: Settings) -> None:
    lab = hosts
    before = snapshot(lab, "host03")
    for name in ("firewall", "ssh_hardening", "sysctl_baseline", "time_sync", "users_keys"):
        result = play(lab, pb_settings, name, "host03", _check=True, **USERS)
        assert result.status is RunStatus.SUCCESSFUL, (name, failures(result))
        assert result.stats["host03"].changed > 0, name  # there was something to change
    assert snapshot(lab, "host03") == before


def test_baseline_audit_reports_findings(hosts: Any, pb_settings: Settings) -> None:
    lab = hosts
    before = snapshot(lab, "host03")
    result = play(lab, pb_settings, "baseline_audit", "host03")
    assert result.config.check and "--check added" in result.warnings[0]
    assert result.status is RunStatus.SUCCESSFUL, failures(result)
    findings = only([e.result["msg"] for e in result.host_results("host03")
                     if e.task == "Baseline findings"])
    assert findings["drift"] is True
    assert set(findings["areas"]) == {"firewall", "ssh", "sysctl", "time_sync", "users"}
    assert findings["areas"]["firewall"]["drift"] is True
    assert "no ServerGuard policy applied yet" in findings["areas"]["firewall"]["details"]
    assert findings["areas"]["ssh"]["drift"] is True
    assert "kernel.kptr_restrict" in findings["areas"]["sysctl"]["readonly"]
    assert snapshot(lab, "host03") == before


# -- bad input, unreachable hosts, cancellation ---------------------------------------------------


def test_bad_input_is_one_clear_line(lab: Any, pb_settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(PlaybookNotFound, match=r"'nope' not found.*firewall"):
        play(lab, pb_settings, "nope", "host01")
    broken = tmp_path / "broken.yml"
    broken.write_text("- hosts: all\n  tasks:\n    - debug: msg=hi\n   bad: [\n")
    with pytest.raises(PlaybookSyntaxError, match=r"broken\.yml:4:4: YAML error"):
        play(lab, pb_settings, broken, "host01")
    undefined = tmp_path / "undefined.yml"
    undefined.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n"
                         "    - ansible.builtin.debug:\n        msg: '{{ nosuchvar }}'\n")
    result = play(lab, pb_settings, undefined, "host01")
    assert result.exit_code == 2
    failure = only(failures(result))
    assert failure.endswith("'nosuchvar' is undefined"), failure


def test_one_host_unreachable_the_others_complete(lab: Any, pb_settings: Settings,
                                                  tmp_path: Path) -> None:
    simple = tmp_path / "simple.yml"
    simple.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n"
                      "    - ansible.builtin.command: hostname\n      changed_when: false\n")
    lab.lab.stop_sshd("host02")
    try:
        result = play(lab, pb_settings, simple, "host01,host02,private02")
    finally:
        lab.lab.start_sshd("host02")
    assert result.exit_code == 4
    assert result.stats["host02"].unreachable == 1
    assert result.stats["host01"].ok == 1 and result.stats["private02"].ok == 1
    events = [json.loads(line) for line in result.events_path.read_text().splitlines()]
    assert any(e.get("status") == "unreachable" and e.get("host") == "host02" for e in events)
    summary = json.loads((result.dir / "run.json").read_text())
    assert summary["status"] == "failed" and summary["exit_code"] == 4


def run_processes(run: PlaybookRun | Path) -> list[str]:
    """Live processes of a run: its id in their environment (every process ansible-playbook
    starts inherits it, ssh and mitogen included) or its directory on their command line."""
    run_dir = run if isinstance(run, Path) else run.dir
    marker = f"SERVERGUARD_RUN_ID={run_dir.name}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            state = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state != b"Z" and (marker in environ or str(run_dir).encode() in cmdline):
            found.append(f"{entry.name} {cmdline.decode(errors='replace')[:120]}")
    return found


def is_ssh(process: str) -> bool:
    return process.split()[1] in ("ssh", "/usr/bin/ssh")


def none_left(run: PlaybookRun | Path, within: float) -> list[str]:
    deadline = time.monotonic() + within
    while (left := run_processes(run)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


SLOW = "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.command: sleep 60\n"


def test_cancel_and_timeout(lab: Any, pb_settings: Settings, tmp_path: Path) -> None:
    slow = tmp_path / "slow.yml"
    slow.write_text(SLOW)
    started = PlaybookConfig(slow, inventory=[str(lab.inventory_path)], limit="host01,private01")
    running = run_async(started, pb_settings)
    deadline = time.monotonic() + 30
    # the task runs on both hosts: ssh connections up (direct, and through the bastion)
    while not (any(e.kind == "task_start" for e in running.events)
               and sum(map(is_ssh, run_processes(running))) >= 2):
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.1)
    assert running.status is RunStatus.RUNNING
    t0 = time.monotonic()
    running.cancel()
    assert running.wait(30) is RunStatus.CANCELED
    assert time.monotonic() - t0 < 5
    assert running.exit_code == 99
    # ansible-playbook, its workers (own sessions), mitogen and its ssh children: all gone
    assert none_left(running, 2) == []
    # what the killed ansible-playbook could not clean up stays in the run's own directory
    scratch = running.dir / LOCAL_TEMP
    assert scratch.is_dir() and stat.S_IMODE(scratch.stat().st_mode) == 0o700
    assert list(scratch.glob("ansible-local-*")), "Ansible did not use the run's scratch dir"

    timed = run(PlaybookConfig(slow, inventory=[str(lab.inventory_path)], limit="host01",
                               timeout=4, tuning=Tuning(strategy="free")), pb_settings)
    assert timed.status is RunStatus.TIMEOUT and timed.exit_code == 124
    assert any("timeout of 4 s" in w for w in timed.warnings)
    assert none_left(timed, 2) == []


@pytest.mark.parametrize(("signum", "strategy"), [(signal.SIGKILL, "auto"),
                                                  (signal.SIGTERM, "free")])
def test_no_process_outlives_a_killed_serverguard(lab: Any, tmp_path: Path, signum: int,
                                                  strategy: str) -> None:
    """ServerGuard dies mid-run (SIGKILL: no chance to clean up): the run's processes follow."""
    slow = tmp_path / "slow.yml"
    slow.write_text(SLOW)
    state = tmp_path / "state"
    code = (
        "from pathlib import Path\n"
        "from orchestrator.playbooks import PlaybookConfig, Tuning, run\n"
        "from orchestrator.settings import Settings\n"
        f"state = Path({str(state)!r})\n"
        "settings = Settings(state_dir=state, user_known_hosts=state / 'none', "
        "use_ssh_agent=False)\n"
        f"run(PlaybookConfig({str(slow)!r}, inventory=[{str(lab.inventory_path)!r}], "
        "limit='host01,private01', "
        f"tuning=Tuning(strategy={strategy!r})), settings)\n")
    serverguard = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 60
        # wait until the remote commands run (ssh connections to both hosts are up)
        while not ((runs := list((state / "runs").glob("*/events.jsonl"))) and
                   '"task_start"' in runs[0].read_text() and
                   sum(map(is_ssh, run_processes(runs[0].parent))) >= 2):
            assert serverguard.poll() is None, "the run ended early"
            assert time.monotonic() - deadline < 0, "the task never started"
            time.sleep(0.2)
        run_dir = runs[0].parent
        assert len(run_processes(run_dir)) >= 4
    finally:
        serverguard.send_signal(signum)
        serverguard.wait(30)
    assert none_left(run_dir, 5) == []
    # Its record says so instead of "running" forever.
    summary = load_run(Settings(state_dir=state), run_dir.name)
    assert summary["status"] == "interrupted"
    assert summary["errors"][-1] == "the process running this playbook ended before it finished"
