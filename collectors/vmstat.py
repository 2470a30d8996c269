"""vmstat: selected /proc/vmstat fields as ``node_vmstat_<field>``, as node_exporter.

node_exporter's default field filter ``^(oom_kill|pgpg|pswp|pg.*fault).*`` (option ``fields``).

Example result::

    node_vmstat_oom_kill 0
    node_vmstat_pgfault 4431961
    node_vmstat_pgmajfault 3065
"""

from __future__ import annotations

import re

from collectors.base import Collector, Option, Options, Samples

FIELDS = r"^(oom_kill|pgpg|pswp|pg.*fault).*"


class VmstatCollector(Collector):
    name = "vmstat"
    default_enabled = True
    options = (Option("fields", FIELDS, "regex of /proc/vmstat fields to keep", "regex"),)

    def command(self, options: Options) -> str:
        return "__sg_cat /proc/vmstat"

    def parse(self, stdout: str, options: Options) -> Samples:
        out = Samples()
        keep = re.compile(options["fields"])
        for line in stdout.splitlines():
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not re.fullmatch(r"[a-z0-9_]+", parts[0]):
                out.problems.append(f"invalid line in vmstat: {line[:80]!r}")
                continue
            if not keep.search(parts[0]):
                continue
            try:
                out.add(f"node_vmstat_{parts[0]}", float(int(parts[1])))
            except ValueError:
                out.problems.append(f"invalid value in vmstat: {line[:80]!r}")
        return out
