"""What the real Ansible CLIs say about an inventory, for parity tests.

A call of ``ansible`` or ``ansible-inventory`` costs about a second, nearly all of it Python
start-up and imports. To ask many questions at once this file, run as a script, imports the
CLIs once and then forks one child per question; each child runs the CLI's own ``main()``
from scratch with its own argv (what ``bin/ansible`` and ``bin/ansible-inventory`` do), its
output captured from file descriptors 1 and 2. Children run two or more at a time.
``test_oracle_matches_real_ansible_cli`` checks the batch against plain subprocesses.

Script input (stdin): ``[["ansible" | "ansible-inventory", arg, ...], ...]``;
output (stdout): ``[{"rc": int, "stdout": str, "stderr": str}, ...]`` in the same order.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

VENV_BIN = Path(sys.executable).parent
_NO_MATCH = re.compile(r"Could not match supplied host pattern, ignoring: (\S+)")


@dataclass(frozen=True)
class CliResult:
    rc: int
    stdout: str
    stderr: str

    @property
    def hosts(self) -> list[str]:
        """Host names from ``  hosts (N):`` output."""
        lines = self.stdout.splitlines()
        for i, line in enumerate(lines):
            if re.fullmatch(r"\s*hosts \(\d+\):", line):
                return [h.strip() for h in lines[i + 1:] if h.strip()]
        return []

    @property
    def unmatched(self) -> set[str]:
        """Patterns Ansible warned it could not match."""
        return set(_NO_MATCH.findall(self.stderr))


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_NOCOLOR="1", LC_ALL="C.UTF-8")
    return env


def inventory_args(sources: list[str]) -> list[str]:
    return [arg for s in sources for arg in ("-i", s)]


def list_argv(sources: list[str]) -> list[str]:
    return ["ansible-inventory", *inventory_args(sources), "--list"]


def list_hosts_argv(sources: list[str], pattern: str, limit: str | None = None) -> list[str]:
    extra = ["--limit", limit] if limit is not None else []
    return ["ansible", *inventory_args(sources), pattern, "--list-hosts", *extra]


def run_cli(argv: list[str]) -> CliResult:
    """One plain subprocess of the venv's ``ansible``/``ansible-inventory``."""
    proc = subprocess.run([str(VENV_BIN / argv[0]), *argv[1:]], capture_output=True,
                          text=True, env=_env(), timeout=120, check=False)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def run_batch(argvs: list[list[str]]) -> list[CliResult]:
    """Many CLI runs in one Python start-up (forked children, see the module docstring)."""
    proc = subprocess.run([sys.executable, __file__], input=json.dumps(argvs),
                          capture_output=True, text=True, env=_env(), timeout=600,
                          check=True)
    return [CliResult(**r) for r in json.loads(proc.stdout)]


def _child(argv: list[str], out: IO[bytes], err: IO[bytes]) -> None:
    from ansible.cli import adhoc, inventory

    code = 1
    try:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        (adhoc if argv[0] == "ansible" else inventory).main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _main() -> None:
    argvs: list[list[str]] = json.load(sys.stdin)
    import warnings

    import ansible.cli.adhoc
    import ansible.cli.inventory  # noqa: F401  (imported once, before forking)
    from ansible import constants as C
    from ansible.plugins.loader import init_plugin_loader, inventory_loader

    # Warm what every run loads the same way (the collection finder, the inventory plugins
    # and their option definitions); each child's CLI then finds them configured.
    init_plugin_loader([])
    for name in C.INVENTORY_ENABLED:
        inventory_loader.get(name)
    warnings.filterwarnings("ignore", "AnsibleCollectionFinder has already been configured")

    width = max(2, os.cpu_count() or 2)
    running: dict[int, int] = {}
    results: list[dict[str, object]] = [{} for _ in argvs]
    pending = list(range(len(argvs)))
    with contextlib.ExitStack() as stack:
        files = [(stack.enter_context(tempfile.TemporaryFile()),
                  stack.enter_context(tempfile.TemporaryFile())) for _ in argvs]
        while pending or running:
            while pending and len(running) < width:
                index = pending.pop(0)
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _child(argvs[index], *files[index])
                running[pid] = index
            pid, status = os.waitpid(-1, 0)
            index = running.pop(pid)
            out, err = files[index]
            out.seek(0)
            err.seek(0)
            results[index] = {"rc": os.waitstatus_to_exitcode(status),
                              "stdout": out.read().decode("utf-8", "replace"),
                              "stderr": err.read().decode("utf-8", "replace")}
    sys.stdout.write(json.dumps(results))


if __name__ == "__main__":
    _main()
