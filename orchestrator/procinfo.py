"""What /proc says about a process, for telling whether a recorded process still runs."""

from __future__ import annotations

from pathlib import Path


def start_time(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (with its pid, a unique identity
    until the machine restarts); None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[-1].split()[19])
