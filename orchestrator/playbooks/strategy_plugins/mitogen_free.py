"""mitogen's ``mitogen_free`` strategy without mitogen's CPU pinning (see ../tuning.py), with
ServerGuard's cache of compiled templates (sg_template_cache.py) and its plugin warm-up
(sg_warm.py)."""

import runpy
from pathlib import Path

import ansible_mitogen.affinity  # type: ignore[import-untyped]
import ansible_mitogen.loaders  # type: ignore[import-untyped]
import ansible_mitogen.strategy  # type: ignore[import-untyped]

# mitogen pins its multiplexer to CPU 0 and, below 4 CPUs, Ansible's top-level process, every
# worker and every ssh client to CPU 1 (affinity.FixedPolicy); the base Policy pins nothing.
ansible_mitogen.affinity.policy = ansible_mitogen.affinity.Policy()

# As mitogen's own plugin file: its mixin over Ansible's ``free`` strategy.
StrategyModule = type("StrategyModule", (
    ansible_mitogen.strategy.StrategyMixin,
    ansible_mitogen.loaders.strategy_loader.get("free", class_only=True),
), {})

# In Ansible's main process, before any worker forks (the workers inherit it).
runpy.run_path(str(Path(__file__).with_name("sg_template_cache.py")), run_name="install")
# Loads the play's plugins in the main process when it queues its first task.
_warm = runpy.run_path(str(Path(__file__).with_name("sg_warm.py")))
StrategyModule = _warm["strategy"](StrategyModule)
