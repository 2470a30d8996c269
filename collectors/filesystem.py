"""filesystem: size, free space and inodes per mount, as node_exporter's filesystem collector.

The shell reads /proc/self/mountinfo with builtins (every line is echoed for the parser),
decodes the kernel's octal escapes in mount points (``\\040`` space, ``\\011`` tab, ``\\012``
newline, ``\\134`` backslash) and hands all mount points to ONE ``stat -f`` (coreutils and
busybox print the same ``-c`` fields; ``%s`` is ``f_bsize``, what node_exporter multiplies
by), under ``timeout`` when a network or FUSE filesystem is mounted (``NETWORK_FS_TYPES``)
and the host has ``timeout``, so a hung NFS mount cannot stall the sweep; local filesystems
do not hang a statfs, and ``timeout`` is a process more per sweep (~1.1 ms here). Mounts
whose fstype the default exclude names are not even stat'ed (a statfs on autofs would mount
it); the exact node_exporter filters are applied again here. The sweep reader
(``host_op``, ``collectors.host_reader``) prints the same lines from its own statfs calls,
a network or FUSE mount in a thread given up after the timeout.

Example result for ``/`` on ext4 ``/dev/vda``::

    node_filesystem_avail_bytes{device="/dev/vda",fstype="ext4",mountpoint="/"} 51835416576
    node_filesystem_device_error{device="/dev/vda",fstype="ext4",mountpoint="/"} 0
    node_filesystem_files{device="/dev/vda",fstype="ext4",mountpoint="/"} 6553600
    node_filesystem_mount_info{device="/dev/vda",major="254",minor="0",mountpoint="/"} 1
    node_filesystem_readonly{device="/dev/vda",fstype="ext4",mountpoint="/"} 0

A mount whose statfs failed gets only ``device_error`` 1 and ``readonly``, with node_exporter
1.9's ``device_error`` label holding the reason (an empty label is the same as none).
"""

from __future__ import annotations

import re
from typing import Any

from collectors.base import Collector, DeviceFilter, Option, Options, Samples, shell_quote
from collectors.sample import Sample

MOUNT_POINTS_EXCLUDE = (
    r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)"
)
FS_TYPES_EXCLUDE = (
    r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs"
    r"|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs"
    r"|erofs|sysfs|tracefs)$"
)
# Filesystems whose statfs can hang on a server or a FUSE daemon: their presence puts the
# statfs under ``timeout``.
NETWORK_FS_TYPES = (
    "nfs|nfs4|cifs|smb3|smbfs|ncpfs|afs|coda|ceph|glusterfs|lustre|gpfs|beegfs|orangefs"
    "|ocfs2|gfs2|9p|virtiofs|vboxsf|davfs|fuse|fuseblk|fuse.*"
)
_ESCAPE = re.compile(r"\\([0-7]{3})")
_STAT_ERROR = re.compile(r"^stat: (?:cannot|can't) read file system information for (.*): (.*)$")

# Builtins only. Splits a mountinfo line into mount point and fstype, and decodes escapes.
_COMMAND = r"""__sg_fs_f() {
  __sg_fs_m=; __sg_fs_t=; [ $# -ge 7 ] || return 0
  __sg_fs_m=$5; shift 6
  while [ $# -gt 0 ] && [ "$1" != - ]; do shift; done
  __sg_fs_t=$2
}
__sg_fs_unesc() {
  __sg_r=$__sg_fs_m; __sg_fs_m=
  while :; do
    case $__sg_r in *\\[0-7][0-7][0-7]*) ;; *) break ;; esac
    __sg_p=${__sg_r%%\\[0-7][0-7][0-7]*}
    __sg_r=${__sg_r#"$__sg_p"}; __sg_c=${__sg_r#?}; __sg_r=${__sg_c#???}; __sg_c=${__sg_c%"$__sg_r"}
    case $__sg_c in
      040) __sg_p="$__sg_p " ;;
      011) __sg_p="$__sg_p	" ;;
      012) __sg_p="$__sg_p
" ;;
      134) __sg_p="$__sg_p\\" ;;
      *) __sg_p="$__sg_p\\$__sg_c" ;;
    esac
    __sg_fs_m=$__sg_fs_m$__sg_p
  done
  __sg_fs_m=$__sg_fs_m$__sg_r
}
set -f; set --; __sg_fs_net=
while IFS= read -r __sg_l || [ -n "$__sg_l" ]; do
  printf 'M %s\n' "$__sg_l"
  __sg_fs_f $__sg_l
  [ -n "$__sg_fs_m" ] || continue
  @SKIP@@NET@case $__sg_fs_m in *\\*) __sg_fs_unesc ;; esac
  set -- "$@" "$__sg_fs_m"
done < /proc/self/mountinfo
set +f
if [ $# -gt 0 ]; then
  __sg_t=; @TIMEOUT@
  LC_ALL=C $__sg_t stat -f -c 'S %s %b %f %a %c %d %n' "$@" 2>&1
  printf 'R %s\n' "$?"
fi
:"""


def case_patterns(regex: str) -> str | None:
    """``^(a|b2?)$`` as the sh case pattern ``a|b|b2``; ``None`` when not that simple form."""
    m = re.fullmatch(r"\^\((.*)\)\$", regex)
    if not m:
        return None
    out: list[str] = []
    for alt in m.group(1).split("|"):
        if not re.fullmatch(r"[A-Za-z0-9_.+-]+\??", alt):
            return None
        out += [alt[:-2], alt[:-1]] if alt.endswith("?") else [alt]
    return "|".join(p for p in out if p) or None


def unescape(path: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), path)


class FilesystemCollector(Collector):
    name = "filesystem"
    default_enabled = True
    processes = (
        "0 with the sweep reader; sh script: 1 (stat -f for all mounts) + 1 (timeout, with a "
        "network or FUSE mount)"
    )
    options = (
        Option(
            "mount_points_exclude", MOUNT_POINTS_EXCLUDE, "regex of mount points to skip", "regex"
        ),
        Option("mount_points_include", "", "regex mount points must match (empty: all)", "regex"),
        Option("fs_types_exclude", FS_TYPES_EXCLUDE, "regex of filesystem types to skip", "regex"),
        Option("fs_types_include", "", "regex filesystem types must match (empty: all)", "regex"),
        Option(
            "statfs_timeout_seconds",
            5,
            "with a network or FUSE filesystem mounted, stop statfs after this long (0: never)",
            "int",
        ),
    )

    def command(self, options: Options) -> str:
        skip = ""
        pattern = case_patterns(options["fs_types_exclude"])
        if pattern and not options["fs_types_include"]:
            skip = f"case $__sg_fs_t in {pattern}) continue ;; esac\n  "
        timeout = net = ""
        if options["statfs_timeout_seconds"]:
            t = shell_quote(f"timeout {int(options['statfs_timeout_seconds'])}")
            timeout = f'[ -z "$__sg_fs_net" ] || ! command -v timeout >/dev/null 2>&1 || __sg_t={t}'
            net = f"case $__sg_fs_t in {NETWORK_FS_TYPES}) __sg_fs_net=1 ;; esac\n  "
        return (_COMMAND.replace("@SKIP@", skip).replace("@NET@", net)
                .replace("@TIMEOUT@", timeout or ":"))

    def host_op(self, options: Options) -> dict[str, Any]:
        """statfs in the reader itself: no ``stat``, no ``timeout`` process."""
        pattern = case_patterns(options["fs_types_exclude"])
        skip = pattern.split("|") if pattern and not options["fs_types_include"] else []
        timeout = int(options["statfs_timeout_seconds"])
        net = NETWORK_FS_TYPES.split("|") if timeout else []
        return {"op": "statfs", "skip": skip, "net": net, "timeout": timeout}

    def parse(self, stdout: str, options: Options) -> Samples:
        out = Samples()
        points = DeviceFilter.of(options["mount_points_exclude"], options["mount_points_include"])
        types = DeviceFilter.of(options["fs_types_exclude"], options["fs_types_include"])
        # (mount point, device, fstype, major, minor, mount options, super options)
        mounts: list[tuple[str, str, str, str, str, str, str]] = []
        stats: dict[str, list[float]] = {}
        errors: dict[str, str] = {}
        stat_rc: str | None = None
        last: str | None = None
        for line in stdout.split("\n"):
            if line.startswith("M "):
                last = None
                fields = line[2:].split(" ")
                try:
                    sep = fields.index("-", 6)
                    major, minor = fields[2].split(":")
                    fstype, device = fields[sep + 1], fields[sep + 2]
                    super_opts = fields[sep + 3] if len(fields) > sep + 3 else ""
                except (ValueError, IndexError):
                    out.problems.append(f"malformed mountinfo line: {line[2:82]!r}")
                    continue
                point = fields[4]
                if "\\" in point:
                    point = unescape(point)
                mounts.append((point, device, fstype, major, minor, fields[5], super_opts))
            elif line.startswith("S "):
                parts = line[2:].split(" ", 6)
                try:
                    if not all(map(str.isascii, parts[:6])):  # int() reads "٣" as 3
                        raise ValueError(line)
                    values = [float(int(v)) for v in parts[:6]]
                except (ValueError, OverflowError):  # OverflowError: too large for a float
                    last = None
                    continue
                if len(parts) == 7:
                    last = parts[6]
                    stats[last] = values
            elif line.startswith("R "):
                stat_rc, last = line[2:].strip(), None
            elif (m := _STAT_ERROR.match(line)) is not None:
                name = m.group(1)
                if len(name) >= 2 and name[0] in "'\u2018\"" and name[-1] in "'\u2019\"":
                    name = name[1:-1]
                errors[name] = m.group(2).strip().lower()
                last = None
            elif last is not None and line:
                # a mount point holding a newline: stat printed it over two lines
                values = stats.pop(last)
                last = f"{last}\n{line}"
                stats[last] = values
        seen: set[tuple[str, str, str]] = set()
        new = tuple.__new__  # Sample without its Python-level __new__ (labels built sorted)
        append = out.append
        for mountpoint, device, fstype, major, minor, mount_opts, super_opts in mounts:
            if points.ignored(mountpoint) or types.ignored(fstype):
                continue
            key = (device, mountpoint, fstype)
            if key in seen:
                continue
            seen.add(key)
            ro = float("ro" in mount_opts.split(",") or "ro" in super_opts.split(","))
            got = stats.get(mountpoint)
            if got is None:
                reason = errors.get(mountpoint) or (
                    "mountpoint timeout" if stat_rc == "124" else "no statfs result"
                )
                out.notes.append(f"statfs {mountpoint}: {reason}")
                failed = (
                    ("device", device),
                    ("device_error", reason),
                    ("fstype", fstype),
                    ("mountpoint", mountpoint),
                )
                append(new(Sample, ("node_filesystem_device_error", 1.0, failed)))
                append(new(Sample, ("node_filesystem_readonly", ro, failed)))
                continue
            bsize, blocks, bfree, bavail, files, ffree = got
            labels = (("device", device), ("fstype", fstype), ("mountpoint", mountpoint))
            append(new(Sample, ("node_filesystem_device_error", 0.0, labels)))
            append(new(Sample, ("node_filesystem_readonly", ro, labels)))
            append(new(Sample, ("node_filesystem_size_bytes", blocks * bsize, labels)))
            append(new(Sample, ("node_filesystem_free_bytes", bfree * bsize, labels)))
            append(new(Sample, ("node_filesystem_avail_bytes", bavail * bsize, labels)))
            append(new(Sample, ("node_filesystem_files", files, labels)))
            append(new(Sample, ("node_filesystem_files_free", ffree, labels)))
            info = (
                ("device", device),
                ("major", major),
                ("minor", minor),
                ("mountpoint", mountpoint),
            )
            append(new(Sample, ("node_filesystem_mount_info", 1.0, info)))
        if not mounts:
            out.problems.append("no mounts read from /proc/self/mountinfo")
        return out
