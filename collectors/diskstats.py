"""diskstats: block device I/O counters from /proc/diskstats, as node_exporter.

Sectors are the kernel's fixed 512-byte units; times are milliseconds and become seconds.
Only as many counters as the kernel prints (11, 15, 17 or more columns) are emitted.
``node_disk_info{device,major,minor,rotational}`` comes from /sys/block/*/queue/rotational
(read with builtins); the udev-only labels (path, wwn, model, serial, revision) are absent,
as node_exporter leaves them on a host without /run/udev/data.

Example result for ``254 0 vda 38620 7847 2506642 7412 ...``::

    node_disk_read_bytes_total{device="vda"} 1283400704
    node_disk_read_time_seconds_total{device="vda"} 7.412
    node_disk_reads_completed_total{device="vda"} 38620
"""

from __future__ import annotations

from collections.abc import Sequence

from collectors.base import Collector, DeviceFilter, Option, Options, Samples, kernel_text
from collectors.sample import Sample

DEVICE_EXCLUDE = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$"
SECTOR = 512.0
MS = 1 / 1000.0
# (metric, factor) per column after major/minor/name, in the kernel's order.
COLUMNS = (
    ("node_disk_reads_completed_total", 1.0),
    ("node_disk_reads_merged_total", 1.0),
    ("node_disk_read_bytes_total", SECTOR),
    ("node_disk_read_time_seconds_total", MS),
    ("node_disk_writes_completed_total", 1.0),
    ("node_disk_writes_merged_total", 1.0),
    ("node_disk_written_bytes_total", SECTOR),
    ("node_disk_write_time_seconds_total", MS),
    ("node_disk_io_now", 1.0),
    ("node_disk_io_time_seconds_total", MS),
    ("node_disk_io_time_weighted_seconds_total", MS),
    ("node_disk_discards_completed_total", 1.0),
    ("node_disk_discards_merged_total", 1.0),
    ("node_disk_discarded_sectors_total", 1.0),
    ("node_disk_discard_time_seconds_total", MS),
    ("node_disk_flush_requests_total", 1.0),
    ("node_disk_flush_requests_time_seconds_total", MS),
)

_ROTATIONAL = "/sys/block/*/queue/rotational"


class DiskstatsCollector(Collector):
    name = "diskstats"
    default_enabled = True
    options = (
        Option("device_exclude", DEVICE_EXCLUDE, "regex of devices to skip", "regex"),
        Option("device_include", "", "regex devices must match (empty: all)", "regex"),
    )

    def files(self, options: Options) -> tuple[str, ...]:
        return ("/proc/diskstats", _ROTATIONAL)

    def command(self, options: Options) -> str:
        return ""

    def render(self, files: Sequence[tuple[str, str]], stdout: str) -> str:
        """/proc/diskstats, then ``R <device> <rotational>`` per block device."""
        out = [content for path, content in files if path == "/proc/diskstats"]
        for path, content in files:
            if path.endswith("/queue/rotational") and content.strip():
                device = path.split("/")[3]
                out.append(f"R {device} {content.split()[0]}\n")
        return "".join(out)

    @kernel_text
    def parse(self, stdout: str, options: Options) -> Samples:
        out = Samples()
        devices = DeviceFilter.of(options["device_exclude"], options["device_include"])
        rotational: dict[str, str] = {}
        rows: list[list[str]] = []
        for line in stdout.splitlines():
            fields = line.split()
            if len(fields) == 3 and fields[0] == "R":
                rotational[fields[1]] = fields[2]
            elif len(fields) >= 14:
                rows.append(fields)
            elif fields:
                out.problems.append(f"invalid line in diskstats: {line[:80]!r}")
        new = tuple.__new__  # Sample without its Python-level __new__ (labels built sorted)
        for fields in rows:
            major, minor, dev = fields[0], fields[1], fields[2]
            if devices.ignored(dev):
                continue
            try:
                values = list(map(float, map(int, fields[3:])))
            except (ValueError, OverflowError):  # OverflowError: too large for a float
                out.problems.append(f"invalid counters for {dev} in diskstats")
                continue
            rot = "1" if rotational.get(dev.replace("/", "!"), "0") == "1" else "0"
            info = (("device", dev), ("major", major), ("minor", minor), ("rotational", rot))
            out.append(new(Sample, ("node_disk_info", 1.0, info)))
            labels = (("device", dev),)
            out += [
                new(Sample, (metric, value * factor, labels))
                for (metric, factor), value in zip(COLUMNS, values, strict=False)
            ]
        if not rows and not out.problems:
            out.problems.append("no devices in /proc/diskstats")
        return out
