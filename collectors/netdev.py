"""netdev: every /proc/net/dev column per interface, as node_exporter (/proc/net/dev mode).

Names follow node_exporter's legacy naming: ``node_network_receive_{bytes,packets,errs,drop,
fifo,frame,compressed,multicast}_total`` and ``node_network_transmit_{bytes,packets,errs,drop,
fifo,colls,carrier,compressed}_total``, label ``device``.

Example result for ``lo: 3193 29 0 0 0 0 0 0 3193 29 0 0 0 0 0 0``::

    node_network_receive_bytes_total{device="lo"} 3193
    node_network_transmit_colls_total{device="lo"} 0
"""

from __future__ import annotations

import functools
from itertools import repeat

from collectors.base import Collector, DeviceFilter, Option, Options, Samples
from collectors.sample import Sample


@functools.lru_cache(maxsize=64)
def _metrics(header: str) -> tuple[str, ...]:
    """The metric of each column, from the header line ``face |bytes ...|bytes ...``."""
    _, rx, tx = header.split("|")
    return tuple(
        [f"node_network_receive_{c}_total" for c in rx.split()]
        + [f"node_network_transmit_{c}_total" for c in tx.split()]
    )


class NetdevCollector(Collector):
    name = "netdev"
    default_enabled = True
    options = (
        Option("device_exclude", "", "regex of interfaces to skip", "regex"),
        Option("device_include", "", "regex interfaces must match (empty: all)", "regex"),
    )

    def files(self, options: Options) -> tuple[str, ...]:
        return ("/proc/net/dev",)

    def command(self, options: Options) -> str:
        return ""

    def parse(self, stdout: str, options: Options) -> Samples:
        out = Samples()
        devices = DeviceFilter.of(options["device_exclude"], options["device_include"])
        lines = stdout.splitlines()
        header = next((ln for ln in lines if ln.count("|") == 2 and "bytes" in ln), None)
        if header is None:
            if stdout.strip():
                out.problems.append("no header line in /proc/net/dev")
            return out
        names = _metrics(header)
        for line in lines:
            if ":" not in line or "|" in line:
                continue
            dev, _, rest = line.rpartition(":")  # old alias names hold a colon: "ibr10:30"
            dev = dev.strip()
            values = rest.split()
            if len(values) != len(names) or not dev:
                out.problems.append(f"invalid line in /proc/net/dev: {line[:80]!r}")
                continue
            if devices.ignored(dev):
                continue
            try:
                if not rest.isascii():  # int() reads "٣" as 3; the kernel writes ASCII digits
                    raise ValueError(rest)
                numbers = list(map(float, map(int, values)))
            except (ValueError, OverflowError):  # OverflowError: too large for a float
                out.problems.append(f"invalid counters for {dev} in /proc/net/dev")
                continue
            labels = repeat((("device", dev),))
            # Sample(name, number, labels) per column, built by map/zip without a bytecode
            # loop and without Sample's Python-level __new__
            out += map(tuple.__new__, repeat(Sample), zip(names, numbers, labels, strict=False))
        return out
