"""mitogen's ``mitogen_free`` strategy without mitogen's CPU pinning (see ../tuning.py), with
ServerGuard's cache of compiled templates (sg_template_cache.py)."""

import importlib.util
import os
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
_cache = importlib.util.spec_from_file_location(
    "serverguard_template_cache", Path(__file__).with_name("sg_template_cache.py"))
assert _cache is not None and _cache.loader is not None
_module = importlib.util.module_from_spec(_cache)
_cache.loader.exec_module(_module)
_module.install(os.environ.get(_module.ENV_VAR))
