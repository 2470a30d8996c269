"""The service's inventory is looked at in the background: requests keep the loaded one
while its files are checked or reloaded, and see the error when a reload fails."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from api_support import INVENTORY

from api import inventory_source
from api.inventory_source import InventorySource
from orchestrator.errors import InventoryError


def test_the_kept_inventory_serves_until_a_reload_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text(INVENTORY)
    source = InventorySource([str(path)])
    assert source.cached() == (None, True)  # nothing yet: callers must get() it
    first = source.get()
    assert first is not None and "web1" in first
    assert source.cached() == (first, False)
    monkeypatch.setattr(inventory_source, "RECHECK", 0.0)
    assert source.cached() == (first, True)  # due for a look, still served meanwhile
    path.write_text(INVENTORY.replace("web1:", "web9:"))
    os.utime(path, (time.time() + 5, time.time() + 5))
    second = source.get()
    assert second is not None and "web9" in second and source.cached()[0] is second
    path.write_text("all: [not, a, mapping")
    os.utime(path, (time.time() + 10, time.time() + 10))
    with pytest.raises(InventoryError):
        source.get()
    assert source.cached()[0] is None  # the next request waits for get() and its error


def test_no_sources_means_no_inventory() -> None:
    assert InventorySource([]).get() is None
