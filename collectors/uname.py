"""uname: ``node_uname_info{sysname,release,version,machine,nodename,domainname} 1``.

Read from /proc/sys/kernel/{ostype,osrelease,version,hostname,domainname,arch} with builtins;
kernels before 6.1 have no ``arch`` file and run ``uname -m`` instead (one process).

Example result::

    node_uname_info{domainname="(none)",machine="x86_64",nodename="web1",\
release="6.1.0-18-amd64",sysname="Linux",version="#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1"} 1
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from collectors.base import Collector, Options, Samples

FILES = {
    "ostype": "sysname",
    "osrelease": "release",
    "version": "version",
    "hostname": "nodename",
    "domainname": "domainname",
    "arch": "machine",
}

_COMMAND = "[ -r /proc/sys/kernel/arch ] || { printf 'arch='; LC_ALL=C uname -m; }"


class UnameCollector(Collector):
    name = "uname"
    default_enabled = True
    processes = "0 (sh script: 1 for uname -m on kernels before 6.1)"

    def files(self, options: Options) -> tuple[str, ...]:
        return tuple(f"/proc/sys/kernel/{name}" for name in FILES)

    def command(self, options: Options) -> str:
        return _COMMAND

    def host_op(self, options: Options) -> dict[str, Any]:
        # os.uname() in the reader instead of five sysctl files and, before 6.1, uname -m
        return {"op": "uname", "own_files": True}

    def render(self, files: Sequence[tuple[str, str]], stdout: str) -> str:
        """``<file>=<first line>`` per file, then ``arch=`` from ``uname -m`` if needed."""
        lines = [f"{p.rsplit('/', 1)[-1]}={c.partition(chr(10))[0]}\n" for p, c in files]
        return "".join(lines) + stdout

    def parse(self, stdout: str, options: Options) -> Samples:
        out = Samples()
        labels = dict.fromkeys(FILES.values(), "")
        for line in stdout.splitlines():
            key, sep, value = line.partition("=")
            if sep and key in FILES:
                labels[FILES[key]] = value.strip()
        if not labels["sysname"] or not labels["release"]:
            out.problems.append("could not read the kernel's name and release")
            return out
        out.add("node_uname_info", 1, **labels)
        return out
