"""``<lab>/state.json``: what a lab built, so that later processes can inspect or remove it.

Written before anything is created (``phase: building``) and again when the lab is up, so a
crash half-way still leaves a record for ``down``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import LabError
from orchestrator.lab.model import LabHost, LabSpec

STATE_FILE = "state.json"
VERSION = 1


@dataclass
class LabState:
    lab_dir: str
    mode: str  # "netns" | "loopback"
    isolated: bool
    containers: bool
    user: str
    spec: dict[str, Any]
    hosts: list[LabHost] = field(default_factory=list)
    phase: str = "building"  # "building" | "up"
    supervisor_pid: int | None = None
    started_by: int = field(default_factory=os.getpid)
    seconds: float = 0.0

    def save(self) -> None:
        data = asdict(self)
        data["hosts"] = [h.to_dict() for h in self.hosts]
        data["version"] = VERSION
        path = Path(self.lab_dir) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, lab_dir: Path) -> LabState | None:
        path = lab_dir / STATE_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise LabError(f"{path}: unreadable lab state ({exc}); run 'lab down'") from exc
        data.pop("version", None)
        try:
            data["hosts"] = [LabHost.from_dict(h) for h in data.get("hosts", [])]
            return cls(**data)
        except (TypeError, KeyError) as exc:
            raise LabError(f"{path}: unexpected lab state ({exc}); run 'lab down'") from exc

    @property
    def lab_spec(self) -> LabSpec:
        return LabSpec(**self.spec)
