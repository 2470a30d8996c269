"""Every fixture case: the collector sends exactly the recorded command, and its parser turns
the recorded output into exactly the recorded samples, problems and notes."""

from __future__ import annotations

from pathlib import Path

import pytest
from collector_fixtures import fixture_paths, load, outcome, run_case, write

CASES = fixture_paths()


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_fixture(path: Path, update_fixtures: bool) -> None:
    data = load(path)
    command, samples = run_case(path, data)
    got = outcome(samples)
    if update_fixtures:
        if not data.get("captured"):
            data["command"] = command  # rebuilt outputs follow the command; captures do not
        data.update(got)
        write(path, data)
    assert command == data["command"], (
        "the collector's command changed: recapture this case "
        "(python tests/collectors/capture.py) so its stdout is what the new command prints"
    )
    assert got["expected"] == data["expected"]
    assert got["problems"] == data.get("problems", [])
    assert got["notes"] == data.get("notes", [])


def test_every_collector_has_fixtures() -> None:
    from collectors.registry import default_registry

    covered = {p.parent.name for p in CASES}
    assert set(default_registry().names()) <= covered
