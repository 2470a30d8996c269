"""Events of a run: ansible-runner's job events reduced to what the API and CLI need.

One :class:`PlaybookEvent` per play start, task start, host result and the final stats;
kept as JSON lines in ``<run dir>/events.jsonl``. Example of a host result::

    {"seq": 12, "time": "2025-01-01T10:00:02.1+00:00", "kind": "host_result",
     "play": "Firewall", "task": "Apply the ruleset", "action": "ansible.builtin.command",
     "host": "host01", "status": "changed", "result": {"rc": 0, "stdout": "", ...}}

Host statuses: ``ok``, ``changed``, ``failed``, ``skipped``, ``unreachable``, plus
``ignored`` (failed with ``ignore_errors``) and ``retry`` (an ``until`` loop going round).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

EventKind = Literal["play_start", "task_start", "host_result", "warning", "error", "stats"]
HostStatus = Literal["ok", "changed", "failed", "skipped", "unreachable", "ignored", "retry"]

_RESULT_EVENTS: dict[str, HostStatus] = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
    "runner_retry": "retry",
}
# Module result keys that only repeat what the event says, or are large and useless here.
_DROPPED_KEYS = {"_ansible_no_log", "_ansible_verbose_always", "_ansible_verbose_override",
                 "invocation", "_ansible_delegated_vars"}
_ERROR_LINE = re.compile(r"^\s*(?:\[ERROR\]:|ERROR!)\s*(.+)$")
_WARNING_LINE = re.compile(r"^\s*\[(?:WARNING|DEPRECATION WARNING)\]:\s*(.+)$")
# Said on every mitogen run by design (ServerGuard chose the third-party strategy), and
# Ansible's hint on silencing deprecations: not news to the user.
_NOISE = re.compile(
    r"Deprecation warnings can be disabled|Use of strategy plugins not included in "
    r"ansible\.builtin|Direct access to the `_loader` internal attribute")


@dataclass(frozen=True)
class PlaybookEvent:
    seq: int
    time: str
    kind: EventKind
    play: str | None = None
    task: str | None = None
    action: str | None = None
    host: str | None = None
    status: HostStatus | None = None
    result: dict[str, Any] = field(default_factory=dict)
    message: str | None = None  # warnings, errors; a failure's first line

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, {})}


@dataclass
class HostStats:
    """One host's recap line: the counts ``ansible-playbook`` prints at the end."""

    ok: int = 0
    changed: int = 0
    unreachable: int = 0
    failed: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def failure_message(result: dict[str, Any]) -> str:
    """One line from a failed or unreachable module result."""
    msg = result.get("msg") or result.get("message") or result.get("stderr") or ""
    if isinstance(msg, list):
        msg = " ".join(str(m) for m in msg)
    text = str(msg).strip()
    if not text and result.get("rc") not in (None, 0):
        text = f"exit code {result.get('rc')}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    first = lines[0] if lines else "failed"
    # ansible-core 2.19 wraps the cause: "Task failed: Finalization of task args for 'x'
    # failed: Error while resolving value for 'msg': 'v' is undefined" -> keep the cause.
    first = re.sub(r"^Task failed: (?:Finalization of task args for '[^']+' failed: )?", "",
                   first)
    # mitogen's "EOF on stream; last 100 lines received:" names its cause on the last line
    # ("ssh: connect to host ... Connection refused")
    if first.endswith(":") and len(lines) > 1:
        first = f"{first} {lines[-1]}"
    return first


_ORIGIN_LINE = re.compile(r"^\s*Origin:\s*(.+?)\s*$")


def _clean(result: Any) -> dict[str, Any]:
    if not isinstance(result, dict):
        return {}
    return {k: v for k, v in result.items() if k not in _DROPPED_KEYS}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class EventReducer:
    """Turns ansible-runner events into :class:`PlaybookEvent` and keeps the stats."""

    def __init__(self) -> None:
        self.seq = 0
        self.stats: dict[str, HostStats] = {}
        self.custom_stats: dict[str, Any] = {}
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self._open_error: int | None = None  # the error an "Origin:" line would belong to
        self.task_count = 0

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def reduce(self, raw: dict[str, Any]) -> list[PlaybookEvent]:
        name = raw.get("event", "")
        data = raw.get("event_data") or {}
        play = data.get("play") or None
        task = data.get("task") or data.get("name") or None
        action = data.get("task_action") or data.get("resolved_action") or None
        when = raw.get("created") or _now()
        out: list[PlaybookEvent] = []
        if name == "playbook_on_play_start":
            out.append(PlaybookEvent(self._next(), when, "play_start", play=play))
        elif name in ("playbook_on_task_start", "playbook_on_handler_task_start"):
            self.task_count += 1
            out.append(PlaybookEvent(self._next(), when, "task_start", play=play, task=task,
                                     action=action))
        elif name in _RESULT_EVENTS:
            status = _RESULT_EVENTS[name]
            result = _clean(data.get("res"))
            if status == "ok" and result.get("changed"):
                status = "changed"
            if status == "failed" and data.get("ignore_errors"):
                status = "ignored"
            message = failure_message(result) if status in ("failed", "unreachable") else None
            out.append(PlaybookEvent(self._next(), when, "host_result", play=play, task=task,
                                     action=action, host=data.get("host"), status=status,
                                     result=result, message=message))
        elif name == "playbook_on_stats":
            self._stats(data)
            out.append(PlaybookEvent(self._next(), when, "stats",
                                     result={h: s.to_dict() for h, s in self.stats.items()}))
        elif name in ("verbose", "warning", "error", "deprecated"):
            for line in str(raw.get("stdout") or "").splitlines():
                if m := _ERROR_LINE.match(line):
                    self.errors.append(m.group(1).strip())
                    self._open_error = len(self.errors) - 1
                    out.append(PlaybookEvent(self._next(), when, "error",
                                             message=m.group(1).strip()))
                elif (m := _WARNING_LINE.match(line)) and not _NOISE.search(line):
                    self._open_error = None
                    self.warnings.append(m.group(1).strip())
                    out.append(PlaybookEvent(self._next(), when, "warning",
                                             message=m.group(1).strip()))
                elif (m := _ORIGIN_LINE.match(line)) and self._open_error is not None:
                    # ansible-core 2.19 prints where an error comes from on a line (and an
                    # event) of its own below it: "Origin: play.yml:4:7"
                    self.errors[self._open_error] += f" (at {m.group(1)})"
                    self._open_error = None
            return out
        self._open_error = None
        return out

    def _stats(self, data: dict[str, Any]) -> None:
        columns = {"ok": "ok", "changed": "changed", "dark": "unreachable",
                   "failures": "failed", "skipped": "skipped", "rescued": "rescued",
                   "ignored": "ignored"}
        for key, attr in columns.items():
            for host, count in (data.get(key) or {}).items():
                stats = self.stats.setdefault(host, HostStats())
                setattr(stats, attr, int(count))
        self.custom_stats = dict(data.get("artifact_data") or {})
