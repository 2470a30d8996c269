"""How ServerGuard's mitogen strategies start each ssh (``strategy_plugins/sg_strategy.py``):
without a ``preexec_fn`` when there is nothing to run in the child, so that Python can use
vfork instead of forking the whole multiplexer; with mitogen's own when there is."""

from __future__ import annotations

import runpy
import subprocess
from pathlib import Path
from typing import Any

import mitogen.parent  # type: ignore[import-untyped]
import pytest

from orchestrator.playbooks.tuning import UNPINNED_STRATEGIES


@pytest.fixture
def popen(monkeypatch: pytest.MonkeyPatch) -> Any:
    spawned: list[dict[str, Any]] = []
    real = subprocess.Popen

    def recording(**kwargs: Any) -> Any:
        spawned.append(kwargs)
        return real(**kwargs)

    plugin = runpy.run_path(str(UNPINNED_STRATEGIES / "sg_strategy.py"))
    monkeypatch.setattr(subprocess, "Popen", recording)
    plugin["popen"].spawned = spawned
    return plugin["popen"]


def _run(popen: Any, tmp_path: Path, **kwargs: Any) -> str:
    out = tmp_path / "out"
    with out.open("wb") as f:
        popen(args=["/bin/sh", "-c", "echo started; cat marker 2>/dev/null"], stdout=f,
              close_fds=True, cwd=tmp_path, **kwargs).wait()
    return out.read_text()


def test_nothing_to_run_in_the_child_means_no_preexec_fn(popen: Any, tmp_path: Path) -> None:
    assert mitogen.parent._preexec_hook is None
    assert _run(popen, tmp_path) == "started\n"
    assert "preexec_fn" not in popen.spawned[-1]  # Python may vfork
    assert _run(popen, tmp_path, preexec_fn=None) == "started\n"
    assert "preexec_fn" not in popen.spawned[-1]


def test_a_preexec_fn_or_mitogen_hook_still_runs(popen: Any, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def mark(text: str) -> Any:
        return lambda: (tmp_path / "marker").open("a").write(text)

    assert _run(popen, tmp_path, preexec_fn=mark("own\n")) == "started\nown\n"
    monkeypatch.setattr(mitogen.parent, "_preexec_hook", mark("hook\n"))
    assert _run(popen, tmp_path) == "started\nown\nhook\n"  # the child ran mitogen's hook
    assert popen.spawned[-1]["preexec_fn"] is not None
