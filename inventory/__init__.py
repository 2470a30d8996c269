"""The inventory: Ansible's files read by ansible-core, then ServerGuard's model on top.

Public surface::

    load_inventory(sources) -> Inventory        # raises InventoryError (file:line:column)
    check_inventory(sources) -> InventoryReport  # every problem, for `inventory check`
    Inventory.hosts / .groups / .host_vars(name) / .group_names(name)
    Inventory.select(pattern, limit=None) -> list[str]      # Ansible patterns and order
    Inventory.match(pattern, limit=None) -> PatternMatch    # ... plus Ansible's warnings
    Inventory.to_ansible_list(limit=None) -> dict           # == ansible-inventory --list
    Inventory.target(name, *, default_policy=...) -> ConnectionTarget
    Inventory.targets(names, *, default_policy=...) -> list[ConnectionTarget]
"""

from inventory.loader import InventoryReport, check_inventory, load_inventory
from inventory.model import Group, Inventory
from inventory.patterns import PatternMatch, split_pattern
from inventory.problems import Problem
from inventory.targets import ConnectionTarget, HostKeyPolicy

__all__ = [
    "ConnectionTarget",
    "Group",
    "HostKeyPolicy",
    "Inventory",
    "InventoryReport",
    "PatternMatch",
    "Problem",
    "check_inventory",
    "load_inventory",
    "split_pattern",
]
