"""time: the host's clock, as node_exporter's time collector.

``date '+%s.%N %z %Z'`` (one process; busybox built without nanoseconds prints no fraction,
then the value is whole seconds) gives ``node_time_seconds`` and
``node_time_zone_offset_seconds{time_zone}``; the clock sources come from sysfs with
builtins.

Example result::

    node_time_seconds 1795420412.123456789
    node_time_zone_offset_seconds{time_zone="UTC"} 0
    node_time_clocksource_current_info{clocksource="kvm-clock",device="0"} 1
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from collectors.base import Collector, Options, Samples

_COMMAND = "LC_ALL=C date '+T %s.%N %z %Z'"
_CLOCKSOURCES = "/sys/devices/system/clocksource/clocksource[0-9]*/"
_DATE = re.compile(r"^T (\d+)(?:\.(\S*))? ([+-])(\d\d)(\d\d) ?(.*)$", re.ASCII)  # (\d: 0-9)


class TimeCollector(Collector):
    name = "time"
    default_enabled = True
    processes = "0 with the sweep reader; sh script: 1 (date)"

    def files(self, options: Options) -> tuple[str, ...]:
        return (_CLOCKSOURCES + "available_clocksource", _CLOCKSOURCES + "current_clocksource")

    def command(self, options: Options) -> str:
        return _COMMAND

    def host_op(self, options: Options) -> dict[str, Any]:
        return {"op": "date"}  # the reader reads the clock itself: no date process

    def render(self, files: Sequence[tuple[str, str]], stdout: str) -> str:
        """``date``'s line, then ``A|C <n> <sources>`` per clocksource device."""
        out = [stdout if not stdout or stdout.endswith("\n") else stdout + "\n"]
        for path, content in files:
            device, _, name = path.rpartition("/")
            kind = "A" if name.startswith("available") else "C"
            value = content.partition("\n")[0].strip()
            if value:
                out.append(f"{kind} {device.rpartition('clocksource')[2]} {value}\n")
        return "".join(out)

    def parse(self, stdout: str, options: Options) -> Samples:
        out = Samples()
        seen_date = False
        for line in stdout.splitlines():
            if line.startswith("T "):
                m = _DATE.match(line.strip())
                # (inf: too large for a float)
                if m is None or not math.isfinite(seconds := float(m.group(1))):
                    out.problems.append(f"unreadable date output: {line[:80]!r}")
                    continue
                seen_date = True
                frac = m.group(2) or ""
                if frac.isascii() and frac.isdigit() and len(frac) < 640:  # int() limit
                    seconds += int(frac) / 10 ** len(frac)
                out.add("node_time_seconds", seconds)
                offset = (int(m.group(4)) * 3600 + int(m.group(5)) * 60) * (
                    -1 if m.group(3) == "-" else 1
                )
                out.add("node_time_zone_offset_seconds", offset, time_zone=m.group(6).strip())
            elif line[:2] in ("A ", "C "):
                parts = line.split()
                if len(parts) < 3:
                    continue
                if parts[0] == "A":
                    for source in parts[2:]:
                        out.add(
                            "node_time_clocksource_available_info",
                            1,
                            device=parts[1],
                            clocksource=source,
                        )
                else:
                    out.add(
                        "node_time_clocksource_current_info",
                        1,
                        device=parts[1],
                        clocksource=parts[2],
                    )
        if not seen_date:
            out.problems.append("no output from date")
        return out
