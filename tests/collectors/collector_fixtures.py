"""Reading, checking and writing the JSON fixtures (shared by the test and capture.py).

A fixture ``fixtures/<collector>/<case>.json``::

    {
      "description": "what the case shows",
      "source": "where stdout came from (a capture on which machine, or which public file)",
      "captured": true,              # stdout is the real output of "command" (not rebuilt)
      "command": "files: /proc/stat\n",   # what the collector reads and sends (see below)
      "options": {},                 # optional, the collector's options
      "stdout": "...",               # or "stdout_file": "<raw file beside it>"
      "expected": ["node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 481.75", ...],  # sorted
      "problems": [],                # what the parser reports (success 0 when not empty)
      "notes": []
    }

``command`` is ``reads(collector, options)``: for a collector that reads files with the
sweep's one shared reader (``Collector.files``), ``files: <patterns>`` and then its remaining
command; ``stdout`` is then what ``parse`` receives, i.e. ``Collector.render`` of the files and
that command's output. Captures made before the shared reader existed recorded the output of
shell commands that printed the same text (the file verbatim, or the same derived lines), so
they are still the parser's input as the collector builds it today; ``test_render.py`` checks
each ``render`` against that format.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from collectors.base import Collector, Samples
from collectors.registry import default_registry

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_paths() -> list[Path]:
    return sorted(FIXTURES.glob("*/*.json"))


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def stdout_of(path: Path, data: dict[str, Any]) -> str:
    if "stdout_file" in data:
        return (path.parent / data["stdout_file"]).read_text()
    return str(data["stdout"])


def reads(collector: Collector, options: dict[str, Any]) -> str:
    """What the collector reads on the host: its files (if any) and its command."""
    files = collector.files(options)
    command = collector.command(options)
    return f"files: {' '.join(files)}\n{command}" if files else command


def run_case(path: Path, data: dict[str, Any]) -> tuple[str, Samples]:
    """What the collector reads for the case's options, and its parse of the stdout."""
    collector = default_registry().get(path.parent.name)
    options = collector.resolve_options(data.get("options"))
    return reads(collector, options), collector.parse(stdout_of(path, data), options)


def outcome(samples: Samples) -> dict[str, list[str]]:
    return {
        "expected": sorted(s.exposition() for s in samples),
        "problems": sorted(samples.problems),
        "notes": sorted(samples.notes),
    }


def write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
