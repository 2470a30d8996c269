"""Load, once in Ansible's main process, what every worker would otherwise load for itself.

Ansible forks a worker per task and host, and each worker starts from the main process's
memory. Plugins that the main process never touched are loaded again in every worker that
needs them: on the lab's 20 hosts, the worker profiles of a ``firewall.yml`` run showed

- the first filter or test a worker looks up loads *every* filter and test plugin file on
  the plugin path (``Jinja2Loader._ensure_non_collection_wrappers``): about 10 ms a worker;
- a connection or lookup plugin's first use parses its ``DOCUMENTATION`` YAML for its
  settings (``PluginLoader._load_config_defs``): 10-40 ms a plugin and worker, for the
  connection plugin in every worker that runs a task on a host.

:func:`warm` does that work once, when the play queues its first task, before its first
worker forks, so every worker inherits it. It loads only what the play can use: the filter and test
plugins (all of them, as the first lookup in a worker would), the connection plugins the
play's hosts and tasks name, and the lookup plugins named in the play's roles and tasks.
Adding a plugin directory later (a role included at run time) clears Ansible's caches as
before, so nothing loaded here can hide a plugin; and a plugin not loaded here is loaded by
the worker that needs it, as without this.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ansible.plugins.loader import connection_loader, filter_loader, lookup_loader, test_loader
from ansible.utils.display import Display

display = Display()

# ssh by its short and full name (a task naming ``ansible.builtin.ssh`` gets Ansible's own
# plugin under mitogen too: the dead-man confirmation does), and mitogen's.
CONNECTIONS = ("ssh", "ansible.builtin.ssh", "mitogen_ssh")
# lookup('name', ...), query("name"...), q(...); quotes may be escaped in a YAML "..." string
_LOOKUP = re.compile(r"""\b(?:lookup|query|q)\(\s*\\?['"]([A-Za-z_][\w.]*)\\?['"]""")
_MAX_FILE = 1 << 20  # task files larger than this are not scanned for lookup names


def _tasks(blocks: Iterable[Any]) -> Iterator[Any]:
    for block in blocks:
        for part in (block.block, block.rescue, block.always):
            for item in part or ():
                if hasattr(item, "block"):
                    yield from _tasks([item])
                else:
                    yield item


def _role_texts(play: Any) -> Iterator[str]:
    for role in getattr(play, "roles", None) or ():
        role_path = getattr(role, "_role_path", None)
        tasks = Path(role_path) / "tasks" if role_path else None
        if tasks is None or not tasks.is_dir():
            continue
        for path in sorted(tasks.rglob("*.y*ml")):
            try:
                if path.stat().st_size <= _MAX_FILE:
                    yield path.read_text(errors="replace")
            except OSError:
                continue


def lookup_names(play: Any, blocks: Iterable[Any]) -> set[str]:
    """Lookup plugins named in the play's tasks and in its roles' task files (text)."""
    texts = [repr((task.args, task.vars, task.when)) for task in _tasks(blocks)]
    texts.extend(_role_texts(play))
    return {name for text in texts for name in _LOOKUP.findall(text)}


def connection_names(hosts: Iterable[Any], blocks: Iterable[Any]) -> set[str]:
    names = set(CONNECTIONS)
    for host in hosts:
        value = host.vars.get("ansible_connection")
        if isinstance(value, str) and "{" not in value:
            names.add(value)
    for task in _tasks(blocks):
        value = task.connection
        if isinstance(value, str) and "{" not in value:
            names.add(value)
    return names


def warm(play: Any, blocks: Iterable[Any], hosts: Iterable[Any]) -> None:
    """Load the play's filter, test, connection and lookup plugins in this process."""
    blocks = list(blocks)
    for loader in (filter_loader, test_loader):
        try:
            loader._ensure_non_collection_wrappers()
        except Exception as exc:  # a worker would meet (and report) the same error
            display.vvvv(f"serverguard: not preloading {loader.type} plugins: {exc}")
    for loader, names in ((connection_loader, connection_names(hosts, blocks)),
                          (lookup_loader, lookup_names(play, blocks))):
        for name in sorted(names):
            try:
                loader.get(name, class_only=True)
            except Exception as exc:
                display.vvvv(f"serverguard: not preloading {loader.type} plugin {name}: {exc}")


def strategy(base: Any) -> Any:
    """``base`` (a strategy class) with :func:`warm` when a play queues its first task: after
    mitogen's strategy put its plugin paths and loader wrappers in place, before the first
    worker forks."""

    def run(self: Any, iterator: Any, play_context: Any) -> Any:
        self._serverguard_unwarmed = iterator
        return base.run(self, iterator, play_context)

    def _queue_task(self: Any, host: Any, task: Any, task_vars: Any, play_context: Any) -> Any:
        iterator = getattr(self, "_serverguard_unwarmed", None)
        if iterator is not None:
            self._serverguard_unwarmed = None
            try:
                hosts = [self._inventory.get_host(name) for name in iterator._host_states]
                warm(iterator._play, iterator._blocks, [h for h in hosts if h is not None])
            except Exception as exc:  # only a speed-up: the workers load what they need
                display.vvvv(f"serverguard: plugin warm-up skipped: {exc!r}")
        return base._queue_task(self, host, task, task_vars, play_context)

    return type("StrategyModule", (base,), {
        "run": run, "_queue_task": _queue_task, "__module__": base.__module__})
