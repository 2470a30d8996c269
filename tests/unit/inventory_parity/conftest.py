"""Helpers for inventory tests: small inventories written into a temporary directory."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from inventory_helpers import LoadYaml, WriteFile

from inventory import Inventory, load_inventory


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WriteFile:
    """``write("inv.yml", text)`` -> ``"inv.yml"``; the test runs inside ``tmp_path`` so
    messages show short relative paths, as a user typing ``-i inv.yml`` sees them."""
    monkeypatch.chdir(tmp_path)

    def _write(name: str, text: str) -> str:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return name

    return _write


@pytest.fixture
def load_yaml(write: WriteFile) -> LoadYaml:
    """Load one YAML inventory given as text."""

    def _load(text: str) -> Inventory:
        return load_inventory([write("inv.yml", text)])

    return _load
