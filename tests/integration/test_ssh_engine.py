"""The SSH engine against the lab's real sshd processes: direct, one hop, two hops."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import asyncssh
import pytest

from inventory import load_inventory
from inventory.targets import ConnectionTarget, HostKeyPolicy
from orchestrator.errors import AuthError, ConnectError, HostKeyError
from orchestrator.executor import fan_out
from orchestrator.settings import Settings
from orchestrator.ssh.exec import ExecResult
from orchestrator.ssh.pool import ConnectionPool
from orchestrator.ssh.session import KEPT_SCRIPTS, shell_quote

pytestmark = pytest.mark.lab


def targets_for(lab, pattern: str) -> list[ConnectionTarget]:
    inv = load_inventory([str(lab.inventory_path)])
    return inv.targets(inv.select(pattern))


def target(lab, name: str) -> ConnectionTarget:
    return targets_for(lab, name)[0]


def remote_procs(lab, host: str, needle: str) -> list[str]:
    """Processes on the lab host whose command line contains ``needle`` (checked in-host)."""
    out = lab.lab.host_exec(host, ["ps", "-eo", "pid,args"]).stdout
    return [line for line in out.splitlines() if needle in line and "ps -eo" not in line]


async def test_direct_one_hop_and_two_hops(lab, settings: Settings) -> None:
    async with ConnectionPool(settings) as pool:
        for name in ("host01", "private01", "deep01"):
            t = target(lab, name)
            result = await pool.run(t, "hostname")
            assert result.ok, result.error
            assert result.stdout.strip() == name
        assert len(target(lab, "deep01").jump) == 2


async def test_hosts_behind_a_bastion_share_one_bastion_connection(lab, settings) -> None:
    privates = targets_for(lab, "private")
    assert len(privates) >= 2
    async with ConnectionPool(settings) as pool:
        results, summary = await fan_out(pool, privates, "hostname", forks=10)
        assert summary.ok == len(privates), [r.error for r in results]
        # Seen from the bastion itself: exactly one SSH connection from the orchestrator side.
        ss = lab.lab.host_exec("bastion", ["ss", "-Htn", "state", "established", "sport", "= :22"])
        peers = [line.split()[-1] for line in ss.stdout.splitlines()]
        outside = [p for p in peers if p.startswith("169.254.10.")]
        assert len(outside) == 1, ss.stdout
        assert pool.stats["connects"] == 1 + len(privates)


async def test_stopped_sshd_fails_fast_while_others_succeed(lab, settings) -> None:
    hosts = targets_for(lab, "public")
    victim = hosts[1].name
    lab.lab.stop_sshd(victim)
    try:
        async with ConnectionPool(settings) as pool:
            started = time.monotonic()
            results, summary = await fan_out(pool, hosts, "echo ok", forks=10, timeout=5)
            elapsed = time.monotonic() - started
        by_host = {r.host: r for r in results}
        assert "cannot connect" in (by_host[victim].error or "")
        assert by_host[victim].extra["error_type"] == "ConnectError"
        assert all(by_host[t.name].ok for t in hosts if t.name != victim)
        assert summary.exit_code == 4
        assert elapsed < settings.connect_timeout + 5
    finally:
        lab.lab.start_sshd(victim)


async def test_hanging_command_times_out_and_remote_process_is_gone(lab, settings) -> None:
    t = target(lab, "host01")
    async with ConnectionPool(settings) as pool:
        result = await pool.run(t, "sleep 987; echo never", timeout=1.0)
        assert result.rc is None
        assert "timed out" in (result.error or "")
        assert "never" not in result.stdout
        for _ in range(20):
            if not remote_procs(lab, "host01", "sleep 987"):
                break
            await asyncio.sleep(0.1)
        assert remote_procs(lab, "host01", "sleep 987") == []
        # The pooled connection is still good for the next command.
        assert (await pool.run(t, "echo again")).stdout == "again\n"


async def test_cancelling_a_command_kills_the_remote_process(lab, settings) -> None:
    t = target(lab, "host02")
    async with ConnectionPool(settings) as pool:
        task = asyncio.create_task(pool.run(t, "sleep 988"))
        for _ in range(50):
            if remote_procs(lab, "host02", "sleep 988"):
                break
            await asyncio.sleep(0.1)
        assert remote_procs(lab, "host02", "sleep 988")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(20):
            if not remote_procs(lab, "host02", "sleep 988"):
                break
            await asyncio.sleep(0.1)
        assert remote_procs(lab, "host02", "sleep 988") == []


async def test_cancel_while_the_channel_opens_kills_the_command_and_frees_the_channel(
    lab, settings
) -> None:
    """sshd starts the command before it answers the exec request: a cancel landing in
    between (the answer still unread) once left the command running and the channel open,
    until the host's MaxSessions (10) refused every new channel."""
    t = target(lab, "host02")
    async with ConnectionPool(settings) as pool:
        for i in range(12):
            needle = f"sleep {960 + i}"
            task = asyncio.create_task(pool.run(t, needle))
            for _ in range(5000):  # yield without reading the socket much: cancel at once
                if remote_procs(lab, "host02", needle):
                    break
                await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            for _ in range(20):
                if not remote_procs(lab, "host02", needle):
                    break
                await asyncio.sleep(0.1)
            assert remote_procs(lab, "host02", needle) == [], f"cancel #{i + 1}"
        assert (await pool.run(t, "echo still-usable")).stdout == "still-usable\n"


async def test_changed_host_key_is_refused_naming_both_fingerprints(lab, settings, tmp_path):
    t = target(lab, "host01")
    other_key = asyncssh.generate_private_key("ssh-ed25519")
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(
        f"{t.address} {other_key.export_public_key('openssh').decode().strip()}\n"
    )
    bad = dataclasses.replace(t, known_hosts_files=(str(wrong),))
    async with ConnectionPool(settings) as pool:
        with pytest.raises(HostKeyError) as err:
            await pool.connection(bad)
    message = str(err.value)
    assert "host01" in message and "CHANGED" in message
    assert other_key.get_fingerprint() in message  # what known_hosts has
    assert message.count("SHA256:") == 2  # and what the server offered


async def test_unknown_host_key_strict_refused_accept_new_recorded(lab, settings) -> None:
    t = dataclasses.replace(target(lab, "host02"), known_hosts_files=())
    async with ConnectionPool(settings) as pool:
        with pytest.raises(HostKeyError, match="unknown host key"):
            await pool.connection(t)
    tofu = dataclasses.replace(t, host_key_policy=HostKeyPolicy.ACCEPT_NEW)
    async with ConnectionPool(settings) as pool:
        assert (await pool.run(tofu, "hostname")).stdout.strip() == "host02"
    recorded = settings.known_hosts_file.read_text()
    assert recorded.startswith(f"{t.address} ssh-ed25519 ")
    # Now known: the strict policy accepts it from the service's own known_hosts.
    async with ConnectionPool(settings) as pool:
        assert (await pool.run(t, "hostname")).ok


async def test_bad_key_is_auth_error_and_not_hammered(lab, settings, tmp_path) -> None:
    stranger = tmp_path / "stranger_key"
    asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(stranger))
    t = dataclasses.replace(target(lab, "host03"), key_files=(str(stranger),))
    async with ConnectionPool(settings) as pool:
        with pytest.raises(AuthError, match="refused every credential"):
            await pool.connection(t)
        started = time.monotonic()
        with pytest.raises(AuthError, match="not retrying"):
            await pool.connection(t)
        assert time.monotonic() - started < 0.5  # refused locally, sshd never asked again


async def test_encrypted_key_with_passphrase_from_environment(
    lab, settings, tmp_path, monkeypatch
) -> None:
    t = target(lab, "host01")
    plain = asyncssh.read_private_key(t.key_files[0])
    locked = tmp_path / "locked_key"
    plain.write_private_key(str(locked), passphrase="s3cret-pass")
    enc = dataclasses.replace(t, key_files=(str(locked),), key_passphrase_env="SG_TEST_PASS")
    async with ConnectionPool(settings) as pool:
        with pytest.raises(AuthError, match="SG_TEST_PASS") as err:
            await pool.connection(enc)
        assert "s3cret" not in str(err.value)
    monkeypatch.setenv("SG_TEST_PASS", "s3cret-pass")
    async with ConnectionPool(settings) as pool:
        assert (await pool.run(enc, "hostname")).stdout.strip() == "host01"


async def test_password_from_environment(lab, settings, monkeypatch) -> None:
    # Give sglab a password inside host03 only (its own /etc/shadow in its upper layer).
    done = lab.lab.host_exec("host03", ["sh", "-c", "echo 'sglab:pw-9f2e' | chpasswd"])
    assert done.returncode == 0, done.stderr
    t = dataclasses.replace(target(lab, "host03"), key_files=(), password_env="SG_TEST_PW")
    monkeypatch.setenv("SG_TEST_PW", "pw-9f2e")
    monkeypatch.setenv("HOME", "/nonexistent")  # no default keys from ~/.ssh
    async with ConnectionPool(settings) as pool:
        assert (await pool.run(t, "id -un")).stdout.strip() == "sglab"


async def test_huge_output_is_capped_and_flagged(lab, settings) -> None:
    t = target(lab, "host01")
    async with ConnectionPool(settings) as pool:
        result = await pool.run(t, "head -c 20000000 /dev/zero; echo done >&2", max_output=1 << 20)
    assert result.rc == 0
    assert result.truncated
    assert len(result.stdout_bytes) == 1 << 20
    assert result.stderr == "done\n"


async def test_non_utf8_output_survives(lab, settings) -> None:
    t = target(lab, "private02")
    async with ConnectionPool(settings) as pool:
        result = await pool.run(t, r"printf 'caf\351 \377\376 ok\n'")
    assert result.stdout_bytes == b"caf\xe9 \xff\xfe ok\n"
    assert result.stdout.encode("utf-8", "surrogateescape") == result.stdout_bytes
    back = json.loads(json.dumps(result.to_json()))["stdout"]
    assert back.encode("utf-8", "surrogateescape") == result.stdout_bytes


async def test_fifty_hosts_in_one_fan_out(lab, settings) -> None:
    hosts = targets_for(lab, "loopback")
    assert len(hosts) == 50
    tuned = settings.model_copy(update={"handshakes_per_sshd": 50})
    async with ConnectionPool(tuned) as pool:
        results, summary = await fan_out(pool, hosts, "cat /proc/loadavg", forks=50)
    assert summary.ok == 50, [r.error for r in results if not r.ok][:3]
    assert all(len(r.stdout.split()) == 5 for r in results)


@pytest.mark.parametrize("buffered", [False, True], ids=["streamed", "buffered"])
async def test_persistent_session_one_shell_many_scripts(lab, settings, buffered) -> None:
    t = target(lab, "private01")

    async def run(script: str, timeout: float | None = None) -> ExecResult:
        return await pool.run_in_session(t, script, timeout=timeout, buffered=buffered)

    async with ConnectionPool(settings) as pool:
        first = await run("echo $$; hostname")
        second = await run("echo $$; printf 'no newline'")
        session = await pool.session(t)
        assert session.shells_opened == 1 and session.runs == 2
        assert first.stdout.split()[1] == "private01"
        assert second.stdout.endswith("no newline")
        # output comes back byte for byte: trailing newlines, text that looks like framing
        exact = "a\n\n  b \n@@SG 00 END x 0 1 2\nSG-0123 7\n.\n\n\n"
        assert (await run(f"printf %s {shell_quote(exact)}")).stdout == exact
        assert (await run("printf 'x.'; exit 4")).stdout == "x."
        # exit, syntax errors and stdin reads are contained in the script's subshell
        assert (await run("exit 3")).rc == 3
        broken = await run("if then fi")
        assert broken.rc != 0 and broken.stderr
        assert (await run("cat; echo after")).stdout == "after\n"
        assert session.shells_opened == 1
        # a hang kills that shell; the next script gets a fresh one
        hung = await run("sleep 989", timeout=0.5)
        assert "timed out" in (hung.error or "")
        assert (await run("echo back")).stdout == "back\n"
        assert session.shells_opened == 2


async def test_kept_script_is_uploaded_once_per_shell(lab, settings) -> None:
    """A sweep's script goes up once per shell; later runs send only a reference to it."""
    t = target(lab, "private01")
    script = "echo kept-$((6 * 7)); " + "# padding\n" * 200  # 2 KB, like a sweep's 5 KB
    sent: list[int] = []

    async with ConnectionPool(settings) as pool:
        session = await pool.session(t)

        async def run(text: str, timeout: float = 10.0, keep: bool = True) -> str:
            await session._ensure_shell()
            chan = session._chan
            assert chan is not None
            if not hasattr(chan, "_sg_counted"):
                write = chan.write

                def counted(data: bytes) -> None:
                    sent.append(len(data))
                    write(data)

                chan.write = counted  # type: ignore[method-assign]
                chan._sg_counted = True  # type: ignore[attr-defined]
            result = await pool.run_in_session(t, text, timeout=timeout, buffered=True,
                                               keep=keep)
            return result.error or result.stdout

        assert [await run(script) for _ in range(3)] == ["kept-42\n"] * 3
        assert sent[0] > len(script) and max(sent[1:]) < 400, sent
        # two kept scripts never share a variable; a plain run does not disturb them
        other = "echo other"
        assert await run(other) == "other\n"
        assert await run("echo plain", keep=False) == "plain\n"
        assert await run(script) == "kept-42\n" and await run(other) == "other\n"
        # a shell keeps a bounded number of them: the oldest is unset, then sent again
        for i in range(KEPT_SCRIPTS + 1):
            assert await run(f"echo n{i}") == f"n{i}\n"
        listing = await run("set | grep -c '^__sg_k'", keep=False)
        assert int(listing) == KEPT_SCRIPTS
        sent.clear()
        assert await run(script) == "kept-42\n" and sent[0] > len(script)
        # a timeout kills the shell; the new shell gets the script again
        assert "timed out" in await run("sleep 979", timeout=0.5)
        sent.clear()
        assert await run(script) == "kept-42\n" and sent[0] > len(script)
        assert session.shells_opened == 2


async def test_idle_connections_are_evicted_and_reopened(lab, settings) -> None:
    t = target(lab, "deep01")
    async with ConnectionPool(settings) as pool:
        assert (await pool.run(t, "true")).ok
        assert pool.open_connections() == 3  # bastion, bastion2, deep01
        evicted = await pool.evict_idle(now=time.monotonic() + settings.idle_timeout + 3600)
        assert evicted == 3 and pool.open_connections() == 0
        assert (await pool.run(t, "hostname")).stdout.strip() == "deep01"


async def test_unreachable_jump_host_is_named(lab, settings) -> None:
    t = target(lab, "deep01")
    lab.lab.stop_sshd("bastion2")
    try:
        async with ConnectionPool(settings) as pool:
            with pytest.raises(ConnectError) as err:
                await pool.connection(t)
        assert err.value.host == "deep01" and err.value.hop == "bastion2"
        assert "deep01 (at jump host bastion2)" in str(err.value)
    finally:
        lab.lab.start_sshd("bastion2")


def run_cli(*args: str, inventory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli.main", "run", "-i", str(inventory), *args],
        capture_output=True, text=True, timeout=120,
    )


def test_cli_run_json_and_exit_status(lab) -> None:
    done = run_cli("--json", "public:private", "--", "hostname", inventory=lab.inventory_path)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert {r["host"] for r in rows} == {"host01", "host02", "host03", "private01", "private02"}
    assert all(r["stdout"].strip() == r["host"] and r["rc"] == 0 for r in rows)
    assert set(rows[0]) == {"host", "rc", "stdout", "stderr", "duration_s", "truncated", "error"}

    failed = run_cli("--json", "host01", "--", "exit 7", inventory=lab.inventory_path)
    assert failed.returncode == 2 and json.loads(failed.stdout)[0]["rc"] == 7


def test_cli_run_stream_prefixes_lines_by_host(lab) -> None:
    done = run_cli(
        "--stream", "public", "--", "echo one; echo two >&2", inventory=lab.inventory_path
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if " | " in line]
    for host in ("host01", "host02", "host03"):
        assert any(line.startswith(host) and line.endswith("| one") for line in lines)
        assert any(line.startswith(host) and line.endswith("| two") for line in lines)


def test_cli_run_unknown_pattern_is_one_clear_line(lab) -> None:
    done = run_cli("nosuchgroup", "--", "true", inventory=lab.inventory_path)
    assert done.returncode == 1
    assert "nosuchgroup" in done.stderr and "Traceback" not in done.stderr
