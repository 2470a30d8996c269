"""What the orchestrator sends for parsing on the host (``collectors.host_render``): the
parsers' source and the plan's ``render`` entry. Runs on the orchestrator only (not shipped).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from collectors.base import Collector, CollectorConfigError
from collectors.registry import default_registry

MIN_PYTHON = (3, 11)
_NOT_SHIPPED = {"host_reader", "host_code"}  # the reader itself, and this


@functools.cache
def shipped_sources() -> tuple[str, str]:
    """``(code, id)``: every module the parsers need, as base64 of zlib'd JSON
    ``{module: source}``, and a hash naming that code."""
    # what the parsers import, besides the standard library: this package and one module
    # of the orchestrator's (the exception classes)
    package = Path(__file__).parent
    sources = {"collectors": (package / "__init__.py").read_text(), "orchestrator": "",
               "orchestrator.errors": (package.parent / "orchestrator" / "errors.py").read_text()}
    for path in sorted(package.glob("*.py")):
        if path.stem != "__init__" and path.stem not in _NOT_SHIPPED:
            sources[f"collectors.{path.stem}"] = path.read_text()
    raw = json.dumps(sources, sort_keys=True).encode()
    return base64.b64encode(zlib.compress(raw, 9)).decode(), hashlib.sha256(raw).hexdigest()[:16]


def render_spec(
    collectors: Sequence[Collector], options: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, Any] | None:
    """The plan's ``render`` entry for these collectors; ``None`` when the host cannot
    render them: a collector that is not a built-in one, output of unbounded size
    (textfile), options that cannot travel as JSON."""
    builtin = default_registry()
    for c in collectors:
        try:
            if type(builtin.get(c.name)) is not type(c) or not c.bounded_output:
                return None
        except CollectorConfigError:
            return None
    try:
        opts = json.loads(json.dumps(options or {}))
    except (TypeError, ValueError):
        return None
    if opts != (options or {}):  # tuples became lists, keys became strings: not the same
        return None
    code, code_id = shipped_sources()
    return {"collectors": [c.name for c in collectors], "options": opts, "python": list(MIN_PYTHON),
            "code": code, "id": code_id}
