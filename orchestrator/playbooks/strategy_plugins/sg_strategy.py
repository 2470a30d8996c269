"""What ServerGuard's three strategy plugins share (mitogen_free.py, mitogen_linear.py,
mitogen_host_pinned.py): mitogen's strategy over one of Ansible's, as mitogen's own plugin
files make it, without mitogen's CPU pinning (see ../tuning.py), with the cache of compiled
templates (sg_template_cache.py), the plugin warm-up (sg_warm.py) and modules sent to the
hosts compiled (sg_bytecode.py)."""

import runpy
import subprocess
from pathlib import Path
from typing import Any

import ansible_mitogen.affinity  # type: ignore[import-untyped]
import ansible_mitogen.loaders  # type: ignore[import-untyped]
import ansible_mitogen.strategy  # type: ignore[import-untyped]
import mitogen.parent  # type: ignore[import-untyped]

HERE = Path(__file__).parent
_popen = mitogen.parent.popen


def popen(**kwargs: Any) -> subprocess.Popen[bytes]:
    """mitogen's ``popen`` (each ssh it starts), which always gives ``subprocess`` a
    ``preexec_fn`` of its own, to run a hook only mitogen's CPU pinning sets; with one,
    Python forks the whole multiplexer (about 10 ms of CPU here) instead of using vfork
    (under 1 ms). Without a hook or a ``preexec_fn`` to run, start it without one."""
    if mitogen.parent._preexec_hook is None and kwargs.get("preexec_fn") is None:
        kwargs.pop("preexec_fn", None)
        return subprocess.Popen(**kwargs)
    return _popen(**kwargs)


def strategy_module(name: str, module: str) -> Any:
    """The ``StrategyModule`` of a plugin file (``module``: its ``__name__``) over Ansible's
    ``name`` strategy; run in Ansible's main process, before any worker forks."""
    # mitogen pins its multiplexer to CPU 0 and, below 4 CPUs, Ansible's top-level process,
    # every worker and every ssh client to CPU 1 (affinity.FixedPolicy); the base Policy
    # pins nothing.
    ansible_mitogen.affinity.policy = ansible_mitogen.affinity.Policy()
    mitogen.parent.popen = popen
    strategy = type("StrategyModule", (
        ansible_mitogen.strategy.StrategyMixin,
        ansible_mitogen.loaders.strategy_loader.get(name, class_only=True),
    ), {"__module__": module})
    # the workers inherit both: the template cache now, the plugins at the play's first task
    runpy.run_path(str(HERE / "sg_template_cache.py"), run_name="install")
    # the multiplexer, forked when the play starts, serves modules compiled; hosts load them
    runpy.run_path(str(HERE / "sg_bytecode.py"), run_name="install")
    return runpy.run_path(str(HERE / "sg_warm.py"))["strategy"](strategy)
