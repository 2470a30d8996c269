"""The plugin warm-up ServerGuard's strategies do in Ansible's main process
(``orchestrator/playbooks/strategy_plugins/sg_warm.py``).

What a user gets from it: a worker forked after the warm-up loads no plugin file and parses
no plugin documentation for the filters, tests, connection and lookups the play uses, and a
plugin directory added later (a role included at run time) is still seen. Each case that
loads plugins runs in a fresh Python process, as Ansible's main process does: Ansible's
plugin loaders are process-wide and must not leak into this test process.
"""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from orchestrator.playbooks.tuning import UNPINNED_STRATEGIES

WARM = UNPINNED_STRATEGIES / "sg_warm.py"


def _block(*tasks: Any) -> SimpleNamespace:
    return SimpleNamespace(block=list(tasks), rescue=[], always=None)


def _task(args: Any = None, when: Any = None, connection: Any = None) -> SimpleNamespace:
    return SimpleNamespace(args=args or {}, vars={}, when=when or [], connection=connection)


def _role(tmp_path: Path) -> Path:
    role = tmp_path / "roles" / "r1"
    (role / "tasks").mkdir(parents=True, exist_ok=True)
    (role / "tasks" / "main.yml").write_text(
        "- ansible.builtin.include_tasks: more.yml\n")
    (role / "tasks" / "more.yml").write_text(textwrap.dedent("""\
        - ansible.builtin.debug:
            msg: "{{ lookup('ansible.builtin.env', 'HOME') }} {{ query(\\"fileglob\\", '*') }}"
        """))
    (role / "filter_plugins").mkdir(exist_ok=True)
    (role / "filter_plugins" / "r1_filters.py").write_text(textwrap.dedent("""\
        class FilterModule:
            def filters(self):
                return {"r1_twice": lambda value: value * 2}
        """))
    return role


def test_names_come_from_tasks_role_files_and_hosts(tmp_path: Path) -> None:
    warm = runpy.run_path(str(WARM))
    role = _role(tmp_path)
    play = SimpleNamespace(roles=[SimpleNamespace(_role_path=str(role))])
    blocks = [_block(
        _task({"msg": "{{ lookup('pipe', 'date') }}"}),
        _block(_task(when=["q('ansible.builtin.vars', 'x') | length"], connection="local")),
        _task(connection="{{ templated }}"),
    )]
    assert warm["lookup_names"](play, blocks) == {
        "pipe", "ansible.builtin.vars", "ansible.builtin.env", "fileglob"}
    hosts = [SimpleNamespace(vars={"ansible_connection": "ansible.builtin.paramiko_ssh"}),
             SimpleNamespace(vars={"ansible_connection": "{{ per_host }}"}),
             SimpleNamespace(vars={})]
    assert warm["connection_names"](hosts, blocks) == {
        "ssh", "ansible.builtin.ssh", "mitogen_ssh", "local", "ansible.builtin.paramiko_ssh"}


SCRIPT = textwrap.dedent("""
    import json, os, runpy, sys
    from types import SimpleNamespace
    from ansible import constants as C
    from ansible.plugins import loader as L
    L.init_plugin_loader()
    role, late, warm_it = sys.argv[1], sys.argv[2], sys.argv[3] == "warm"
    L.add_all_plugin_dirs(role)
    play = SimpleNamespace(roles=[SimpleNamespace(_role_path=role)])
    task = SimpleNamespace(args={}, vars={}, when=[], connection=None)
    blocks = [SimpleNamespace(block=[task], rescue=[], always=[])]
    if warm_it:
        runpy.run_path(sys.argv[4])["warm"](play, blocks, [])
    loaded, parsed = [], []
    real_load, real_defs = L.PluginLoader._load_module_source, L.PluginLoader._load_config_defs
    def load(self, *args, **kwargs):
        loaded.append(kwargs.get("path") or str(args))
        return real_load(self, *args, **kwargs)
    def defs(self, name, module, path):
        kind = L.get_plugin_class(self.class_name)
        if kind in C.CONFIGURABLE_PLUGINS and not C.config.has_configuration_definition(kind, name):
            parsed.append(f"{kind}:{name}")
        return real_defs(self, name, module, path)
    L.PluginLoader._load_module_source, L.PluginLoader._load_config_defs = load, defs
    read, write = os.pipe()
    if os.fork() == 0:  # a worker, as Ansible forks one per task and host
        found = [L.filter_loader.get("r1_twice") is not None,
                 L.filter_loader.get("ansible.builtin.to_json") is not None,
                 L.test_loader.get("ansible.builtin.match") is not None,
                 L.connection_loader.get("ansible.builtin.ssh", class_only=True) is not None,
                 L.lookup_loader.get("ansible.builtin.env") is not None]
        os.write(write, json.dumps({"found": found, "loaded": len(loaded),
                                    "parsed": parsed}).encode())
        os._exit(0)
    os.close(write)
    worker = json.loads(os.read(read, 1 << 20))
    os.wait()
    L.filter_loader.add_directory(late)  # a role included later brings a filter of its own
    worker["late"] = L.filter_loader.get("late_filter") is not None
    print(json.dumps(worker))
""")


def _worker(tmp_path: Path, mode: str) -> dict[str, Any]:
    role = _role(tmp_path)
    late = tmp_path / "late"
    late.mkdir(exist_ok=True)
    (late / "late_filters.py").write_text(
        "class FilterModule:\n    def filters(self):\n        return {'late_filter': str}\n")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(role), str(late), mode, str(WARM)],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_worker_forked_after_the_warm_up_loads_nothing_again(tmp_path: Path) -> None:
    cold = _worker(tmp_path, "cold")
    warm = _worker(tmp_path, "warm")
    # The same plugins are found either way; a plugin directory added later is seen.
    assert cold["found"] == warm["found"] == [True] * 5
    assert cold["late"] and warm["late"]
    # Without the warm-up the worker loads every filter and test plugin file, and parses the
    # documentation of the connection and lookup it uses; after it, nothing.
    assert cold["loaded"] > 10, cold
    assert len(cold["parsed"]) >= 2, cold
    assert warm["loaded"] == 0, warm
    assert warm["parsed"] == [], warm


def test_a_failing_warm_up_does_not_stop_the_play() -> None:
    strategy = runpy.run_path(str(WARM))["strategy"]
    queued: list[str] = []

    class Base:
        def run(self, iterator: Any, play_context: Any) -> str:
            self._queue_task("h1", "t1", {}, play_context)
            self._queue_task("h1", "t2", {}, play_context)
            return "ran"

        def _queue_task(self, host: Any, task: Any, task_vars: Any, play_context: Any) -> None:
            queued.append(task)

    cls = strategy(Base)
    instance = cls()
    instance._inventory = SimpleNamespace(get_host=lambda name: None)
    broken = SimpleNamespace(_play=SimpleNamespace(roles=None), _host_states={"h1": None},
                             _blocks=[object()])  # not a block: the warm-up fails on it
    assert instance.run(broken, None) == "ran"
    assert queued == ["t1", "t2"]
    assert cls.__module__ == Base.__module__
