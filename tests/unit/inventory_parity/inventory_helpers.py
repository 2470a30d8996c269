"""Plain helpers for the inventory tests (fixtures live in conftest.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from inventory import Inventory, load_inventory
from orchestrator.errors import InventoryError

WriteFile = Callable[[str, str], str]  # write(name, text) -> name
LoadYaml = Callable[[str], Inventory]  # load_yaml(text) -> Inventory


def load_error(*sources: str) -> str:
    """The one line a user sees for an inventory that cannot be loaded."""
    with pytest.raises(InventoryError) as caught:
        load_inventory(list(sources))
    return str(caught.value)
