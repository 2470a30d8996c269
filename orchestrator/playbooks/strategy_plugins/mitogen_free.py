"""mitogen's ``mitogen_free`` strategy without mitogen's CPU pinning (see ../tuning.py)."""

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
