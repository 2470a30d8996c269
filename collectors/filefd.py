"""filefd: ``node_filefd_allocated`` and ``node_filefd_maximum`` from /proc/sys/fs/file-nr.

Example result for ``242	0	2466174``::

    node_filefd_allocated 242
    node_filefd_maximum 2466174
"""

from __future__ import annotations

import math

from collectors.base import Collector, Options, Samples, kernel_text


class FilefdCollector(Collector):
    name = "filefd"
    default_enabled = True
    processes = "0 (read with the other collectors' files)"

    def files(self, options: Options) -> tuple[str, ...]:
        return ("/proc/sys/fs/file-nr",)

    def command(self, options: Options) -> str:
        return ""

    @kernel_text
    def parse(self, stdout: str, options: Options) -> Samples:
        out = Samples()
        fields = stdout.split()
        # ASCII digits only ("²".isdigit() is true), and below inf as floats
        if (
            len(fields) != 3
            or not stdout.isascii()
            or not all(f.isdigit() for f in fields)
            or not math.isfinite(allocated := float(fields[0]))
            or not math.isfinite(maximum := float(fields[2]))
        ):
            out.problems.append(f"unreadable /proc/sys/fs/file-nr: {stdout[:80]!r}")
            return out
        out.add("node_filefd_allocated", allocated)
        out.add("node_filefd_maximum", maximum)
        return out
