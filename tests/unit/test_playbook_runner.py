"""The playbook runner without hosts: catalog, generated inventory, config, events, tuning."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from inventory import ConnectionTarget, HostKeyPolicy, load_inventory
from orchestrator.errors import ConfigError, PlaybookNotFound, PlaybookSyntaxError
from orchestrator.playbooks import (
    PlaybookConfig,
    Tuning,
    check_playbook,
    load_run,
    parse_extra_vars,
    resolve_playbook,
    shipped_playbooks,
)
from orchestrator.playbooks import tuning as tuning_mod
from orchestrator.playbooks.ansible_inventory import (
    KnownHostsFiles,
    connection_vars,
    generate_inventory,
    hop_command,
    passthrough_args,
)
from orchestrator.playbooks.catalog import check_only, free_strategy_safe
from orchestrator.playbooks.events import EventReducer, failure_message
from orchestrator.playbooks.run import (
    EXIT_CANCELED,
    EXIT_TIMEOUT,
    GUARD,
    PlaybookRun,
    RunStatus,
    guard_command,
)
from orchestrator.playbooks.tuning import host_defaults
from orchestrator.settings import Settings

SHIPPED = {"baseline_audit", "firewall", "ssh_hardening", "sysctl_baseline", "time_sync",
           "users_keys"}
KNOWN = KnownHostsFiles(Path("/state/known_hosts"), Path("/home/u/.ssh/known_hosts"))


# -- catalog ------------------------------------------------------------------------------------


def test_shipped_playbooks_resolve_by_name_and_parse() -> None:
    assert set(shipped_playbooks()) == SHIPPED
    for name in SHIPPED:
        path = resolve_playbook(name)
        assert resolve_playbook(f"{name}.yml") == path
        plays = check_playbook(path)
        assert plays and all(p["hosts"] == "all" for p in plays)
        assert free_strategy_safe(path)
        # every playbook documents its variables at the top
        assert path.read_text().splitlines()[1].startswith(f"# {name}.yml - ")
    assert check_only(resolve_playbook("baseline_audit"))
    assert not check_only(resolve_playbook("firewall"))


def test_shipped_playbooks_use_only_builtin_modules() -> None:
    root = resolve_playbook("firewall").parent
    for path in [*root.glob("*.yml"), *root.glob("roles/*/tasks/*.yml")]:
        for task in _tasks(yaml.safe_load(path.read_text()) or []):
            modules = [k for k in task if "." in k and not k.startswith("_")]
            assert all(m.startswith("ansible.builtin.") for m in modules), (path, modules)


def _tasks(items: list[Any]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        if not isinstance(item, dict):
            continue
        out.append(item)
        for key in ("tasks", "block", "rescue", "always", "pre_tasks", "post_tasks"):
            out += _tasks(item.get(key) or [])
    return out


def test_unknown_playbook_names_the_shipped_ones() -> None:
    with pytest.raises(PlaybookNotFound, match=r"'nope' not found.*baseline_audit, firewall"):
        resolve_playbook("nope")


@pytest.mark.parametrize(("text", "where", "what"), [
    ("- hosts: all\n  tasks:\n    - debug: msg=hi\n   bad: [\n", ":4:4:", "YAML error"),
    ("hosts: all\n", ":1:", "list of plays"),
    ("- hosts: all\n- tasks: []\n", ":2:", "play 2 has no 'hosts'"),
    ("", "", "empty playbook"),
])
def test_playbook_errors_name_file_and_line(tmp_path: Path, text: str, where: str,
                                            what: str) -> None:
    path = tmp_path / "site.yml"
    path.write_text(text)
    with pytest.raises(PlaybookSyntaxError) as caught:
        check_playbook(path)
    message = str(caught.value)
    assert message.startswith(f"{path}{where}") and what in message and "\n" not in message


def test_free_strategy_only_when_hosts_are_independent(tmp_path: Path) -> None:
    plain = tmp_path / "plain.yml"
    plain.write_text("- hosts: all\n  tasks:\n    - ansible.builtin.ping:\n")
    assert free_strategy_safe(plain)
    for text in ("  serial: 2\n", "    - debug: var=hostvars['x']\n", "  roles: [x]\n",
                 "    - ansible.builtin.command: x\n      run_once: true\n"):
        other = tmp_path / "other.yml"
        other.write_text("- hosts: all\n  tasks:\n    - ansible.builtin.ping:\n" + text)
        assert not free_strategy_safe(other), text


# -- generated inventory ---------------------------------------------------------------------------


def _target(name: str, address: str, **kw: Any) -> ConnectionTarget:
    return ConnectionTarget(name=name, address=address, user="ops",
                            key_files=(f"/keys/{name}",), **kw)


def test_two_hop_chain_is_nested_proxy_commands() -> None:
    b1 = _target("bastion", "10.0.0.2", port=2222, known_hosts_files=("/lab/kh",))
    b2 = _target("bastion2", "10.0.1.2", host_key_policy=HostKeyPolicy.ACCEPT_NEW)
    db = _target("db", "10.0.2.11", jump=(b1, b2))
    outer = shlex.split(hop_command(db, KNOWN) or "")
    assert outer[0] == "ssh" and outer[-3:] == ["-W", "%h:%p", "10.0.1.2"]
    assert "StrictHostKeyChecking=accept-new" in outer and "/keys/bastion2" in outer
    inner_opt = next(o for o in outer if o.startswith("ProxyCommand="))
    inner = shlex.split(inner_opt.removeprefix("ProxyCommand="))
    # the inner command's tokens are escaped once, so the outer ssh leaves them for it
    assert inner[-3:] == ["-W", "%%h:%%p", "10.0.0.2"]
    assert inner[inner.index("-p"):inner.index("-p") + 2] == ["-p", "2222"]
    assert "StrictHostKeyChecking=yes" in inner and "/keys/bastion" in inner
    assert "UserKnownHostsFile=/state/known_hosts /lab/kh /home/u/.ssh/known_hosts" in inner


def test_connection_vars_keep_host_key_checking_and_user_options() -> None:
    target = _target("web", "10.0.0.5", port=2200, known_hosts_files=("/lab/kh",),
                     proxy_command="nc -X 5 -x proxy:1080 %h %p")
    out = connection_vars(target, KNOWN, "-o ServerAliveInterval=5 -o ProxyJump=x "
                                          "-o StrictHostKeyChecking=no -J y -F /cfg")
    assert out["ansible_host"] == "10.0.0.5" and out["ansible_port"] == 2200
    assert out["ansible_user"] == "ops" and out["ansible_ssh_private_key_file"] == "/keys/web"
    args = shlex.split(out["ansible_ssh_common_args"])
    assert "StrictHostKeyChecking=yes" in args and "StrictHostKeyChecking=no" not in args
    assert "ProxyCommand=nc -X 5 -x proxy:1080 %h %p" in args
    assert "ServerAliveInterval=5" in args and "-F" in args and "ProxyJump=x" not in args
    assert passthrough_args("-J a -oProxyJump=b -C -o 'Compression yes'") == [
        "-C", "-o", "Compression yes"]


def test_generated_inventory_matches_ansible(tmp_path: Path) -> None:
    source = tmp_path / "inv.yml"
    source.write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_user": "ops", "app_port": 8080},
        "children": {
            "bastions": {"hosts": {"bastion": {"ansible_host": "10.0.0.2"}}},
            "web": {"hosts": {"web1": {"ansible_host": "10.0.1.5",
                                       "serverguard_jump": ["bastion"]},
                              "web2": {"ansible_host": "10.0.1.6", "note": "!unsafe"}},
                    "vars": {"role": "web"}},
            "slow_links": {"hosts": {"bastion": None},
                           "vars": {"mitogen_ssh_compression": True}},
        }}}))
    inv = load_inventory([str(source)])
    generated = generate_inventory(inv, ["web1", "bastion"], KNOWN,
                                   host_defaults=host_defaults(Tuning()))
    path = generated.write(tmp_path / "gen.yml")
    listed = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(path), "--list"],
        capture_output=True, text=True, check=True)
    import json

    data = json.loads(listed.stdout)
    hv = data["_meta"]["hostvars"]
    assert sorted(data["web"]["hosts"]) == ["web1", "web2"]
    assert hv["web1"]["role"] == "web" and hv["web1"]["app_port"] == 8080
    assert "ProxyCommand=ssh" in hv["web1"]["ansible_ssh_common_args"]
    assert "serverguard_jump" not in hv["web1"]
    assert "ansible_ssh_common_args" not in hv["web2"]  # not selected: left as written
    # ServerGuard's default for a host, unless the user's inventory sets the variable
    assert hv["web1"]["mitogen_ssh_compression"] is False
    assert hv["bastion"]["mitogen_ssh_compression"] is True
    assert "mitogen_ssh_compression" not in hv["web2"]


# -- config, events, tuning -----------------------------------------------------------------------


def test_config_is_validated_before_anything_runs() -> None:
    PlaybookConfig("firewall", inventory=["x"]).validate()
    bad = [
        PlaybookConfig("firewall"),
        PlaybookConfig("firewall", inventory=["x"], extra_vars={"not a name": 1}),
        PlaybookConfig("firewall", inventory=["x"], tags=("a,b",)),
        PlaybookConfig("firewall", inventory=["x"], timeout=0),
        PlaybookConfig("firewall", inventory=["x"], tuning=Tuning(forks=0)),
        PlaybookConfig("firewall", inventory=["x"], tuning=Tuning(strategy="a b")),
        PlaybookConfig("firewall", inventory=["x"], tuning=Tuning(env={"PATH": "/"})),
    ]
    for config in bad:
        with pytest.raises(ConfigError):
            config.validate()


def test_extra_vars_like_ansible(tmp_path: Path) -> None:
    file = tmp_path / "vars.yml"
    file.write_text("ports: [80, 443]\n")
    assert parse_extra_vars(["a=1 b='two words'", '{"c": [1]}', f"@{file}"]) == {
        "a": "1", "b": "two words", "c": [1], "ports": [80, 443]}
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        parse_extra_vars(["oops"])


@pytest.mark.parametrize(("items", "named"), [
    (["db_password='s3cr3t-value"], "-e db_password=...: No closing quotation"),
    (['{"db_password": "s3cr3t-value", bad'], "-e #1: not valid JSON/YAML: line 1, column"),
    (["a=1", "1x=s3cr3t-value"], "-e #2: expected NAME=VALUE"),
    (["@FILE"], "-e @FILE: line 3, column 1: expected ',' or ']', but got '<stream end>' "
                "(while parsing a flow sequence at line 2, column 14)"),
])
def test_extra_vars_errors_name_the_item_never_the_value(
    tmp_path: Path, items: list[str], named: str
) -> None:
    file = tmp_path / "vars.yml"
    file.write_text("ok: 1\ndb_password: [s3cr3t-value\n")
    items = [i.replace("FILE", str(file)) for i in items]
    with pytest.raises(ConfigError) as caught:
        parse_extra_vars(items)
    message = str(caught.value)
    assert message.startswith(named.replace("FILE", str(file))), message
    assert "s3cr3t" not in message and "\n" not in message


def test_events_reduce_to_host_results_and_stats() -> None:
    reducer = EventReducer()
    raw = [
        {"event": "playbook_on_task_start", "event_data": {"play": "P", "task": "T"}},
        {"event": "runner_on_ok", "event_data": {"host": "a", "task": "T",
                                                 "res": {"changed": True, "invocation": {}}}},
        {"event": "runner_on_failed", "event_data": {"host": "b", "task": "T",
                                                     "res": {"msg": "boom\nmore"}}},
        {"event": "runner_on_unreachable", "event_data": {"host": "c", "task": "T",
                                                          "res": {"msg": "timed out"}}},
        {"event": "verbose", "stdout": "[WARNING]: odd\n[ERROR]: bad thing"},
        {"event": "playbook_on_stats", "event_data": {"ok": {"a": 1}, "changed": {"a": 1},
                                                      "failures": {"b": 1}, "dark": {"c": 1}}},
    ]
    events = [e for r in raw for e in reducer.reduce(r)]
    results = [(e.host, e.status, e.message) for e in events if e.kind == "host_result"]
    assert results == [("a", "changed", None), ("b", "failed", "boom"),
                       ("c", "unreachable", "timed out")]
    assert "invocation" not in events[1].result
    assert reducer.warnings == ["odd"] and reducer.errors == ["bad thing"]
    assert reducer.stats["c"].unreachable == 1 and reducer.stats["a"].changed == 1
    assert failure_message({"msg": "Task failed: Finalization of task args for 'debug' "
                                   "failed: 'x' is undefined"}) == "'x' is undefined"


def test_mitogen_default_with_clean_fallback(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    status = tuning_mod.mitogen_status()
    assert status.available, status.reason  # the dependency is installed and compatible
    chosen = tuning_mod.plan(Tuning(), hosts=7, free_safe=True, max_forks=50,
                             accept_new_unknown=[], control_path_dir=tmp_path)
    assert chosen.strategy == "mitogen_free" and chosen.forks == 7 and not chosen.warnings
    assert chosen.env["ANSIBLE_PIPELINING"] == "True"
    assert "ControlPersist=120s" in chosen.env["ANSIBLE_SSH_ARGS"]
    assert "-C" not in chosen.env["ANSIBLE_SSH_ARGS"].split()  # no ssh compression
    assert chosen.env["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    assert tuning_mod.HOST_BYTECODE_ENV not in chosen.env  # modules go to hosts compiled
    kept = tuning_mod.host_bytecode_dir(tmp_path)
    chosen = tuning_mod.plan(Tuning(), hosts=7, free_safe=True, max_forks=50,
                             accept_new_unknown=[], control_path_dir=tmp_path,
                             host_bytecode_dir=kept)
    assert chosen.env[tuning_mod.HOST_BYTECODE_ENV] == str(tmp_path / "host-code")
    assert kept.stat().st_mode & 0o777 == 0o700
    chosen = tuning_mod.plan(Tuning(ssh_compression=True, host_bytecode=False), hosts=7,
                             free_safe=True, max_forks=50, accept_new_unknown=[],
                             control_path_dir=tmp_path, host_bytecode_dir=kept)
    assert chosen.env["ANSIBLE_SSH_ARGS"].split()[0] == "-C"
    assert chosen.env[tuning_mod.HOST_BYTECODE_ENV] == "0"
    assert host_defaults(Tuning(ssh_compression=True)) == {"mitogen_ssh_compression": True}

    broken = tuning_mod.MitogenStatus(False, None, "mitogen cannot run with this ansible-core")
    monkeypatch.setattr(tuning_mod, "mitogen_status", lambda: broken)
    chosen = tuning_mod.plan(Tuning(), hosts=3, free_safe=False, max_forks=50,
                             accept_new_unknown=[], control_path_dir=tmp_path)
    assert chosen.strategy == "linear"
    assert chosen.warnings == ("mitogen cannot run with this ansible-core; using the plain "
                               "linear strategy",)
    monkeypatch.undo()
    chosen = tuning_mod.plan(Tuning(), hosts=3, free_safe=True, max_forks=2,
                             accept_new_unknown=["web1"], control_path_dir=tmp_path)
    assert chosen.strategy == "free" and chosen.forks == 2 and "accept-new" in chosen.warnings[0]
    chosen = tuning_mod.plan(Tuning(strategy="linear", forks=9, pipelining=False,
                                    env={"ANSIBLE_GATHERING": "explicit"}),
                             hosts=3, free_safe=True, max_forks=50, accept_new_unknown=[],
                             control_path_dir=tmp_path)
    assert (chosen.strategy, chosen.forks) == ("linear", 9)
    assert chosen.env["ANSIBLE_PIPELINING"] == "False"
    assert chosen.env["ANSIBLE_GATHERING"] == "explicit"


def test_mitogen_strategies_run_without_cpu_pinning(tmp_path: Path) -> None:
    chosen = tuning_mod.plan(Tuning(), hosts=3, free_safe=True, max_forks=50,
                             accept_new_unknown=[], control_path_dir=tmp_path)
    first, mitogens = chosen.env["ANSIBLE_STRATEGY_PLUGINS"].split(os.pathsep)
    assert first == str(tuning_mod.UNPINNED_STRATEGIES)
    assert mitogens == str(tuning_mod.mitogen_status().strategy_dir)
    # loaded as Ansible loads them (in a child: they change mitogen's module state)
    code = (
        "import sys\n"
        "from ansible.plugins.loader import strategy_loader\n"
        "import ansible_mitogen.affinity as affinity, ansible_mitogen.strategy as strategy\n"
        "strategy_loader.add_directory(sys.argv[1])\n"
        "for name in sys.argv[2:]:\n"
        "    cls = strategy_loader.get(name, class_only=True)\n"
        "    base = name.removeprefix('mitogen_')\n"
        "    assert issubclass(cls, strategy.StrategyMixin), name\n"
        "    after = cls.__mro__[cls.__mro__.index(strategy.StrategyMixin) + 1]\n"
        "    assert after.__module__.endswith('.' + base), cls.__mro__\n"
        "print(type(affinity.policy).__name__)\n")
    proc = subprocess.run([sys.executable, "-c", code, first, *tuning_mod.MITOGEN_STRATEGIES],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["Policy"]  # mitogen's own: LinuxPolicy, pins CPUs


def test_exit_codes_follow_ansible_playbook() -> None:
    plan = tuning_mod.Plan("linear", 1, {}, ())
    run = PlaybookRun(id="x", dir=Path("/tmp"), config=PlaybookConfig("p", inventory=["i"]),
                      playbook=Path("p.yml"), hosts=[], plan=plan, inventory_path=Path("i"))
    assert run.exit_code is None
    for status, rc, code in [(RunStatus.SUCCESSFUL, 0, 0), (RunStatus.FAILED, 2, 2),
                             (RunStatus.FAILED, 4, 4), (RunStatus.FAILED, None, 1),
                             (RunStatus.CANCELED, 254, EXIT_CANCELED),
                             (RunStatus.TIMEOUT, 254, EXIT_TIMEOUT)]:
        run.status, run.rc = status, rc
        assert run.exit_code == code


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    inv = tmp_path / "inv.yml"
    inv.write_text("all:\n  hosts:\n    h1:\n      ansible_host: 127.0.0.1\n")
    broken = tmp_path / "broken.yml"
    broken.write_text("- hosts: all\n  tasks: [\n")
    cli = str(Path(sys.executable).parent / "serverguard")
    env = {"SERVERGUARD_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "60",
           "PATH": str(Path(sys.executable).parent)}
    for name, rc, text in [("nope", 1, "playbook 'nope' not found"),
                           (str(broken), 4, f"{broken}:3:1: YAML error")]:
        proc = subprocess.run([cli, "playbook", "-i", str(inv), name], capture_output=True,
                              text=True, env=env, timeout=60)
        assert proc.returncode == rc, proc.stderr
        assert proc.stderr.count("\n") == 1 and text in proc.stderr, proc.stderr


# -- the process guard: nothing of a run outlives it ---------------------------------------------


def _marked(marker: str) -> list[int]:
    """Live processes with ``marker`` in their environment."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in environ and state != b"Z":
            found.append(int(entry.name))
    return found


def _gone(marker: str, within: float) -> list[int]:
    deadline = time.monotonic() + within
    while (left := _marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


# A tree like ansible-playbook's: a child in the group, one in a session of its own (as
# Ansible's workers and mitogen's ssh), one that ignores SIGTERM, one daemonized (as an ssh
# ControlPersist master: its parent exits at once).
TREE = ("sleep 300 & setsid sleep 300 & sh -c 'trap \"\" TERM; sleep 300' & "
        "sh -c 'setsid sleep 300 &' ; wait")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl and /proc: Linux")
def test_guard_takes_the_whole_tree_down_on_sigterm(tmp_path: Path) -> None:
    marker = f"SG_GUARD_TEST={tmp_path.name}"
    pidfile = tmp_path / "guard.pid"
    guard = subprocess.Popen([*guard_command(pidfile), "sh", "-c", TREE],
                             env={"PATH": "/usr/bin:/bin", marker.split("=")[0]: tmp_path.name})
    try:
        deadline = time.monotonic() + 10
        while len(_marked(marker)) < 7:  # guard, sh, 4 sleeps, the TERM-proof sh
            assert time.monotonic() < deadline, _marked(marker)
            time.sleep(0.05)
        assert int(pidfile.read_text()) == guard.pid
    finally:
        started = time.monotonic()
        guard.send_signal(signal.SIGTERM)
        code = guard.wait(10)
    assert code == 128 + signal.SIGTERM
    assert time.monotonic() - started < 5
    assert _gone(marker, 1) == []
    assert not pidfile.exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl and /proc: Linux")
def test_guard_follows_its_parent_and_passes_the_exit_code(tmp_path: Path) -> None:
    marker = f"SG_GUARD_TEST={tmp_path.name}"
    env = {"PATH": "/usr/bin:/bin", marker.split("=")[0]: tmp_path.name}
    ok = subprocess.run([*guard_command(tmp_path / "a.pid"), "sh", "-c", "exit 4"], env=env,
                        timeout=30, check=False)
    assert ok.returncode == 4
    # the parent (ServerGuard's stand-in) is SIGKILLed: the guard hears of it from the kernel
    code = ("import os, subprocess, sys\n"
            f"subprocess.Popen([sys.executable, '-I', '-S', {str(GUARD)!r}, str(os.getpid()), "
            f"{str(tmp_path / 'b.pid')!r}, 'sh', '-c', {TREE!r}])\n"
            "sys.stdin.read()\n")
    parent = subprocess.Popen([sys.executable, "-c", code], env=env, stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while len(_marked(marker)) < 8:  # the parent, and the tree as above
            assert time.monotonic() < deadline, _marked(marker)
            time.sleep(0.05)
    finally:
        parent.kill()
        parent.wait()
        assert parent.stdin is not None
        parent.stdin.close()
    assert _gone(marker, 5) == []


def test_a_host_without_ansible_host_is_reached_by_its_name(tmp_path: Path) -> None:
    """The inventory name is then the address (an ansible-core tagged string: must be dumped)."""
    source = tmp_path / "inv.yml"
    source.write_text("all:\n  hosts:\n    web1.example.internal:\n      ansible_user: ops\n")
    inv = load_inventory([str(source)])
    path = generate_inventory(inv, ["web1.example.internal"], KNOWN).write(tmp_path / "gen.yml")
    hv = yaml.safe_load(path.read_text())
    found = json_dumps_hostvars(hv)
    assert '"ansible_host": "web1.example.internal"' in found and '"ansible_user": "ops"' in found


def json_dumps_hostvars(data: Any) -> str:
    import json

    return json.dumps(data, sort_keys=True)


def test_a_run_whose_process_is_gone_reads_as_interrupted(tmp_path: Path) -> None:
    from orchestrator.playbooks.run import _owner

    settings = Settings(state_dir=tmp_path)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    me = _owner()
    assert me is not None and me["pid"] == os.getpid()
    cases = {
        "mine": ("running", me, "running"),
        "dead": ("running", {**me, "pid": int(gone.stdout)}, "interrupted"),
        "reused-pid": ("pending", {**me, "start": me["start"] - 1}, "interrupted"),
        "old-file": ("running", None, "running"),  # no owner recorded: cannot tell
        "done": ("successful", {**me, "pid": int(gone.stdout)}, "successful"),
    }
    for run_id, (status, owner, _) in cases.items():
        (tmp_path / "runs" / run_id).mkdir(parents=True)
        (tmp_path / "runs" / run_id / "run.json").write_text(
            json.dumps({"id": run_id, "status": status, "owner": owner, "errors": []}))
    for run_id, (_, _, expected) in cases.items():
        summary = load_run(settings, run_id)
        assert summary["status"] == expected, run_id
        assert bool(summary["errors"]) == (expected == "interrupted"), run_id


def test_an_error_keeps_where_it_comes_from() -> None:
    """ansible-core 2.19 prints "Origin: file:line:col" as an event of its own below the
    error; the run's error line carries it."""
    reducer = EventReducer()
    for stdout in ("[ERROR]: couldn't resolve module/action 'x.nosuch'.",
                   "Origin: /plays/bad.yml:4:7", "", "4     - x.nosuch: {}",
                   "[WARNING]: a later warning", "Origin: /plays/other.yml:1:1"):
        reducer.reduce({"event": "verbose", "stdout": stdout})
    assert reducer.errors == ["couldn't resolve module/action 'x.nosuch'. "
                              "(at /plays/bad.yml:4:7)"]


def test_unreachable_through_mitogen_names_the_cause() -> None:
    result = {"unreachable": True, "msg": "EOF on stream; last 100 lines received:\n"
              "ssh: connect to host 127.0.0.1 port 1: Connection refused\r\n"}
    assert failure_message(result) == ("EOF on stream; last 100 lines received: ssh: connect "
                                       "to host 127.0.0.1 port 1: Connection refused")
    assert failure_message({"msg": "Failed to connect: refused\nmore"}) == (
        "Failed to connect: refused")


def test_json_output_of_a_run_that_cannot_start(tmp_path: Path) -> None:
    """--json: a script reading stdout gets one JSON answer even when nothing ran."""
    inventory = tmp_path / "inv.yml"
    inventory.write_text("all:\n  hosts:\n    web1: {ansible_host: 127.0.0.1, ansible_port: 1}\n")
    env = {**os.environ, "SERVERGUARD_STATE_DIR": str(tmp_path / "state")}
    cli = str(Path(sys.executable).parent / "serverguard")
    for args, code, says in (
        (["nosuchplaybook"], 1, "playbook 'nosuchplaybook' not found"),
        (["sysctl_baseline", "-e", "token='s3cr3t"], 5, "-e token=...: No closing quotation"),
    ):
        proc = subprocess.run([cli, "playbook", "-i", str(inventory), *args, "--json"],
                              capture_output=True, text=True, env=env, timeout=120, check=False)
        assert proc.returncode == code, proc.stderr
        answer = json.loads(proc.stdout)
        assert answer["status"] == "error" and answer["exit_code"] == code
        assert answer["error"].startswith(says) and "s3cr3t" not in proc.stdout + proc.stderr


def test_a_limit_that_partly_matches_warns_once_with_a_prefix(tmp_path: Path) -> None:
    inventory = tmp_path / "inv.yml"
    inventory.write_text("all:\n  hosts:\n    local1:\n      ansible_connection: local\n"
                         f"      ansible_python_interpreter: {sys.executable}\n")
    playbook = tmp_path / "hello.yml"
    playbook.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n"
                        "    - ansible.builtin.debug: {msg: hello}\n")
    env = {**os.environ, "SERVERGUARD_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "200"}
    cli = str(Path(sys.executable).parent / "serverguard")
    proc = subprocess.run([cli, "playbook", "-i", str(inventory), str(playbook),
                           "--limit", "local1,nosuch"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if "nosuch" in ln]
    assert lines == ["warning: Could not match supplied host pattern, ignoring: nosuch"]


def test_extra_vars_as_data_reach_the_play_exactly(tmp_path: Path) -> None:
    """What Ansible makes of extra_vars_document(as_data=True): every value as sent, with
    its type (text that looks like a number stays text), and no template rendered."""
    from orchestrator.playbooks.config import extra_vars_document

    marker = tmp_path / "rendered"
    values = {
        "a": "299.126970", "b": "0123", "c": "true", "d": "{{ 7 * 7 }}", "n": 12, "f": 1.5,
        "e": ["1.50", {"{{ k }}": "{% if true %}x{% endif %}", "plain": "null"}],
        "cmd": f"{{{{ lookup('pipe', 'touch {marker}') }}}}",
    }
    extra = tmp_path / "extra.yml"
    extra.write_text(extra_vars_document(values, as_data=True))
    playbook = tmp_path / "show.yml"
    playbook.write_text(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
        "    - ansible.builtin.copy:\n"
        f"        dest: {tmp_path / 'out.json'}\n"
        "        content: \"{{ {'a': a, 'b': b, 'c': c, 'd': d, 'n': n, 'f': f, 'e': e,"
        " 'cmd': cmd} | to_json }}\"\n")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c",
         "local", str(playbook), "-e", f"@{extra}"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "ANSIBLE_NOCOLOR": "1",
             "ANSIBLE_PYTHON_INTERPRETER": sys.executable})
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert json.loads((tmp_path / "out.json").read_text()) == values
    assert not marker.exists()
