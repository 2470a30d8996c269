"""The sweep reader: a python3 program the orchestrator sends to a host over SSH and keeps
running there for the collection session, so that a sweep starts no process on the host.

Nothing is installed: the orchestrator starts ``python3 -I -S`` over the host's SSH
connection and writes this file's source to its stdin (``orchestrator.ssh.reader``); it lives
as long as the channel. It does what the sh sweep script (``collectors.script``) does, with
the same output, byte for byte in format, so ``run_parsers`` cannot tell them apart:

- ``files``: every collector's files, each behind a ``==> path <==`` header (as ``head``);
- ``statfs``: the filesystem collector's mountinfo and ``statfs`` of every mount (as its
  ``stat -f``), a network or FUSE mount in a thread of its own, given up after a timeout and
  not tried again while that statfs still hangs (node_exporter's "stuck mounts");
- ``date``: the clock (as ``date '+T %s.%N %z %Z'``); ``uname``: the uname collector's
  lines from ``uname(2)``;
- ``attributes``: netclass's attribute files, printed as its ``render`` prints them, and
  its ifalias as its ``read`` loop does;
- ``run``: programs without a shell (systemd's two ``systemctl``, where systemd runs);
- ``sh``: any other command, run by ``/bin/sh``.

Everything it starts stays in its process group: a sweep that times out kills the group
(SIGKILL), so nothing it started outlives it.

With a ``render`` entry in the plan (``collectors.host_render``), and a python3 recent
enough, it runs the collectors' parsers on that output itself and answers with rendered
text (``collectors.rendered``) instead.

Protocol (stdin): one line ``<mark> <plan id> <length>``, then ``length`` bytes of the plan
(JSON, sent once per plan and channel; 0 afterwards). Reply (stdout): the sweep's output,
then ``\\n<mark> <status>\\n``. At start it prints ``\\nSG-READER <version>\\n`` on stdout
and ``\\nSG-READER\\n`` on stderr.

It runs on the host's python3, so it keeps to what Python 3.6 has (RHEL 8), standard
library only, and never raises out of a section: a failing section gets status 1.
"""

import fnmatch
import json
import os
import re
import subprocess
import sys
import threading
import time
from typing import Any  # noqa: F401 (type comments)

VERSION = "1"
MAX_PLANS = 8
MAX_LINES = 100000  # head -n 100000
_ESCAPES = {b"040": b" ", b"011": b"\t", b"012": b"\n", b"134": b"\\"}
_ESCAPE = re.compile(rb"\\([0-7]{3})")
MAX_OPEN = 512  # files kept open (there are ~120 in a default sweep)
KEPT_PREFIXES = ("/proc/", "/sys/")  # the kernel's files: kept open (a user's file is not)
KEEP_UNREAD = 2 * MAX_PLANS  # sweeps a kept file may go unread before it is closed
_OPEN = {}  # type: dict  # path -> (its descriptor, kept open; the sweep that last read it)
_ENTRIES = {}  # type: dict  # dir -> {entry: its inode} at the last sweep
_SWEEP = [0]  # sweeps run
_READ = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
_MATCHERS = {}  # type: dict
_STUCK = {}  # type: dict  # mount point -> thread still in statfs


def _clock():
    return b"%.2f" % time.monotonic()


def _pread_all(fd):
    chunks = []
    at = 0
    while True:
        chunk = os.pread(fd, 262144, at)
        if not chunk:
            break
        chunks.append(chunk)
        at += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def forget_unused():
    """Close the kept descriptors no sweep read in the last ``KEEP_UNREAD`` (a device or a
    process gone; several plans may take turns); looked at every ``KEEP_UNREAD`` sweeps."""
    if _SWEEP[0] % KEEP_UNREAD:
        return
    for path in [p for p, (_, used) in _OPEN.items() if used < _SWEEP[0] - KEEP_UNREAD]:
        os.close(_OPEN.pop(path)[0])


def forget_under(folder):
    """Close the kept descriptors of the files in ``folder`` (it is another one now)."""
    for path in [p for p in _OPEN if p.startswith(folder + "/")]:
        os.close(_OPEN.pop(path)[0])


def read_file(path):
    """The file's bytes (at most MAX_LINES lines), or None when it cannot be read.

    The kernel's files (/proc, /sys) stay open from one sweep to the next (``MAX_OPEN`` of
    them) and are read again from offset 0, which makes the kernel format them afresh
    (seq_file, sysfs and sysctl files alike; procps reads /proc/stat that way): no open and
    close per file and sweep. A descriptor that fails (its device went away) is opened again
    once; one that no sweep read is closed (``forget_unused``); an interface's, when its
    name comes to mean another interface (``op_attributes``).
    """
    kept = _OPEN.get(path)
    if kept is not None:
        fd = kept[0]
        try:
            data = _pread_all(fd)
        except OSError:
            del _OPEN[path]
            os.close(fd)
            return read_file(path)
        _OPEN[path] = (fd, _SWEEP[0])
    else:
        try:
            fd = os.open(path, _READ)
        except (OSError, ValueError):
            return None
        try:
            data = _pread_all(fd)
        except OSError:
            os.close(fd)
            return None
        if len(_OPEN) < MAX_OPEN and path.startswith(KEPT_PREFIXES):
            _OPEN[path] = (fd, _SWEEP[0])
        else:
            os.close(fd)
    if len(data) > MAX_LINES and data.count(b"\n") > MAX_LINES:
        at = -1
        for _ in range(MAX_LINES):
            at = data.index(b"\n", at + 1)
        data = data[: at + 1]
    return data


def _glob(pattern):
    """sh's expansion of an absolute ``pattern``: the entries matching each component that
    has a wildcard (sorted, no hidden ones); components without one are taken as they are
    (a path that does not exist is then simply not read). Faster than ``glob.glob``."""
    paths = [""]
    for part in pattern.strip("/").split("/"):
        if not any(c in part for c in "*?["):
            paths = [p + "/" + part for p in paths]
            continue
        match = _MATCHERS.get(part)
        if match is None:
            match = _MATCHERS[part] = re.compile(fnmatch.translate(part)).match
        found = []  # type: list
        for p in paths:
            try:
                names = sorted(os.listdir(p or "/"))
            except OSError:
                continue
            found.extend(p + "/" + n for n in names if n[:1] != "." and match(n))
        paths = found
    return paths


def expand(items):
    """The paths of the plan's ``files`` patterns, in their order, each as sh expands it
    (sorted glob matches; a glob without match is left out)."""
    for item in items:
        if any(c in item for c in "*?["):
            yield from _glob(item)
        else:
            yield item


def op_files(spec, out):
    status = 0
    first = True
    for path in expand(spec["items"]):
        data = read_file(path)
        if data is None:
            status = 1
            continue
        out.append((b"==> " if first else b"\n==> ") + os.fsencode(path) + b" <==\n")
        out.append(data)
        first = False
    return status


def _unescape(point):
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(0)), point)


def _statfs(point, box):
    try:
        box.append(os.statvfs(point))
    except OSError as exc:
        box.append(exc)


def _types(patterns):
    """A test of a filesystem type against sh case ``patterns``, compiled once."""
    key = tuple(patterns or ())
    test = _MATCHERS.get(key)
    if test is None:
        rx = re.compile("|".join(fnmatch.translate(p) for p in key) or "(?!)")
        seen = {}  # type: dict

        def test(fstype):
            got = seen.get(fstype)
            if got is None:
                got = seen[fstype] = rx.match(fstype) is not None
            return got

        _MATCHERS[key] = test
    return test


def op_statfs(spec, out):
    info = read_file("/proc/self/mountinfo")
    if info is None:
        return 1
    skip = _types(spec.get("skip"))
    net = _types(spec.get("net"))
    timeout = spec.get("timeout") or 0
    points = []
    for line in info.split(b"\n"):
        if not line:
            continue
        out.append(b"M " + line + b"\n")
        fields = line.split(b" ")  # only spaces: the kernel escapes those, not \r or \v
        if len(fields) < 7:
            continue
        at = 6
        while at < len(fields) and fields[at] != b"-":
            at += 1
        fstype = fields[at + 1].decode("latin-1") if at + 1 < len(fields) else ""
        if skip(fstype):
            continue
        point = fields[4]
        if b"\\" in point:
            point = _unescape(point)
        hangs = bool(timeout) and net(fstype)
        points.append((point, hangs))
    if not points:
        return 0
    status = 0
    deadline = time.monotonic() + timeout
    for point, hangs in points:
        box = []  # type: list
        if hangs:
            thread = _STUCK.get(point)
            if thread is not None and thread.is_alive():
                status = 124  # still hanging since an earlier sweep: not tried again
                continue
            thread = threading.Thread(target=_statfs, args=(point, box), daemon=True)
            thread.start()
            thread.join(max(deadline - time.monotonic(), 0.0))
            if thread.is_alive():
                _STUCK[point] = thread
                status = 124
                continue
            _STUCK.pop(point, None)
        else:
            _statfs(point, box)
        got = box[0]
        if isinstance(got, OSError):
            status = status or 1
            reason = os.strerror(got.errno) if got.errno else str(got)
            out.append(
                b"stat: cannot read file system information for '" + point + b"': "
                + reason.encode() + b"\n"
            )
            continue
        out.append(
            b"S %d %d %d %d %d %d " % (
                got.f_bsize, got.f_blocks, got.f_bfree, got.f_bavail, got.f_files, got.f_ffree
            ) + point + b"\n"
        )
    out.append(b"R %d\n" % status)
    return 0


def op_date(spec, out):
    now = time.time_ns() if hasattr(time, "time_ns") else int(time.time() * 1e9)
    seconds, nanos = divmod(now, 1000000000)
    time.tzset()  # /etc/localtime again, as date reads it: a new time zone shows at once
    local = time.localtime(seconds)
    zone = time.strftime("%z %Z", local).encode("utf-8", "replace")
    out.append(b"T %d.%09d " % (seconds, nanos) + zone + b"\n")
    return 0


def op_uname(spec, out):
    """The uname collector's files, but from one uname(2) (sysctl files cost ~25 us each);
    only the NIS domain name has no system call to read it."""
    u = os.uname()
    domain = read_file("/proc/sys/kernel/domainname")
    domain = domain.split(b"\n", 1)[0] if domain is not None else b"(none)"
    out.append(
        b"ostype=%s\nosrelease=%s\nversion=%s\nhostname=%s\ndomainname=%s\narch=%s\n" % (
            u.sysname.encode(), u.release.encode(), u.version.encode(), u.nodename.encode(),
            domain, u.machine.encode(),
        )
    )
    return 0


def op_attributes(spec, out):
    """netclass's input as its ``render`` makes it from the files: per entry of ``dir``,
    ``I <entry>`` and ``<leaf>=<first line>`` for each of ``leaves`` that can be read; then,
    for ``alias`` (ifalias), ``I <entry>`` and ``<alias>=<first line>`` for every entry whose
    file has text, as netclass's ``read -r`` loop prints it (blanks trimmed, an empty file
    left out). Saves the orchestrator a file header per attribute (21 per interface)."""
    top = spec["dir"]
    try:
        with os.scandir(top) as found:
            entries = sorted((e.name, e.inode()) for e in found if e.name[:1] != ".")
    except OSError:
        return 0
    # an interface renamed and another given its name: a new entry (inode) under the old
    # name, whose kept descriptors still read the renamed one; the entries' inodes come with
    # the directory listing (no system call per entry)
    before = _ENTRIES.get(top, {})
    for name, inode in entries:
        if before.get(name, inode) != inode:
            forget_under(top + "/" + name)
    _ENTRIES[top] = dict(entries)
    names = [name for name, _ in entries]
    for name in names:
        lines = []
        for leaf in spec["leaves"]:
            data = read_file(top + "/" + name + "/" + leaf)
            if data is not None:
                lines.append(leaf.encode() + b"=" + data.split(b"\n", 1)[0] + b"\n")
        if lines:
            out.append(b"I " + os.fsencode(name) + b"\n" + b"".join(lines))
    alias = spec.get("alias")
    for name in names if alias else ():
        data = read_file(top + "/" + name + "/" + alias)
        if not data:
            continue
        line = data.split(b"\n", 1)[0].strip(b" \t")
        if line or b"\n" in data:
            out.append(b"I " + os.fsencode(name) + b"\n" + alias.encode() + b"=" + line + b"\n")
    return 0


def _on_path(name):
    for folder in os.environ.get("PATH", "/usr/bin:/bin").split(":"):
        if folder and os.access(os.path.join(folder, name), os.X_OK):
            return True
    return False


def _wanted(spec):
    """The op's conditions for starting anything: ``if_dir`` exists, ``if_command`` is on
    PATH."""
    if spec.get("if_dir") and not os.path.isdir(spec["if_dir"]):
        return False
    return not spec.get("if_command") or _on_path(spec["if_command"])


def op_sh(spec, out):
    """``cmd`` run by /bin/sh, in the reader's process group: a sweep that times out kills
    the group (SIGKILL), the command and its children with the reader."""
    if not _wanted(spec):
        return 0
    return _run([b"/bin/sh", b"-c", spec["cmd"].encode("utf-8")], out)


def op_run(spec, out):
    """``steps`` without a shell: a list is a program and its arguments, run; a string is
    a line printed (the separators a parser looks for). Status 0, as the sh command's
    final ``:``."""
    if _wanted(spec):
        for step in spec["steps"]:
            if isinstance(step, list):
                _run([a.encode("utf-8") for a in step], out)
            else:
                out.append(step.encode("utf-8") + b"\n")
    return 0


def _run(argv, out):
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )
    except OSError:
        return 127
    pipe = proc.stdout
    assert pipe is not None
    try:
        while True:
            chunk = os.read(pipe.fileno(), 65536)
            if not chunk:
                break
            out.append(chunk)
    finally:
        pipe.close()
    return proc.wait()


OPS = {
    "files": op_files,
    "statfs": op_statfs,
    "date": op_date,
    "uname": op_uname,
    "attributes": op_attributes,
    "sh": op_sh,
    "run": op_run,
}


class Streamed:
    """``out.append`` that writes at once (output of unbounded size: textfile)."""

    def __init__(self, stream):
        self.stream = stream

    def append(self, data):
        self.stream.write(data)


class _Sources(object):
    """An import finder and loader for modules whose source came with a plan (the
    parsers: ``collectors.host_render``); in memory only, nothing written to the host."""

    def __init__(self, sources):
        self.sources = sources

    def find_spec(self, name, path=None, target=None):
        if name not in self.sources:
            return None
        import importlib.util

        return importlib.util.spec_from_loader(
            name, self, is_package="." not in name  # type: ignore[arg-type]
        )

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        name = module.__name__
        exec(compile(self.sources[name], "<serverguard " + name + ">", "exec"), module.__dict__)


_LOADED = []  # type: list  # the code id loaded in this process (one, at most)


RAW_NOTE = b"@@SGRAW "  # starts a raw reply, once per plan: why it is not parsed here


class CannotRender(Exception):
    """Why this reader cannot parse (the orchestrator shows it in the sweep's ``via``)."""


def load_renderer(spec, nonce):
    """A ``collectors.host_render.HostRenderer`` for the plan's ``render`` entry; raises
    ``CannotRender`` when this python3 is too old, or anything when the code does not
    load (the raw output goes back)."""
    if tuple(sys.version_info[:2]) < tuple(spec["python"]):
        raise CannotRender("python3 %d.%d is older than %s" % (
            sys.version_info[0], sys.version_info[1], ".".join(map(str, spec["python"]))))
    if _LOADED and _LOADED[0] != spec["id"]:
        raise CannotRender("other parser code is loaded in this reader")
    if not _LOADED:
        import base64
        import zlib

        sources = json.loads(zlib.decompress(base64.b64decode(spec["code"])).decode())
        sys.meta_path.insert(0, _Sources(sources))
        _LOADED.append(spec["id"])
    from collectors.host_render import HostRenderer

    return HostRenderer(spec["collectors"], spec["options"], nonce)


def rendered(plan, body):
    """The plan's rendered reply for the raw output ``body``; None: send ``body``. The
    first raw reply of a plan that cannot be parsed here says why, on a line of its own
    before the output (``RAW_NOTE``)."""
    renderer = plan.get("_renderer", False)  # made once per plan (a plan is kept)
    if renderer is False:
        try:
            renderer = load_renderer(plan["render"], plan["nonce"])
        except CannotRender as exc:
            renderer, why = None, str(exc)
        except Exception as exc:
            renderer = None
            why = "the parsers did not load here (%s: %s)" % (type(exc).__name__, exc)
        plan["_renderer"] = renderer
        if renderer is None:
            line = " ".join(why.split())[:200].encode("utf-8", "replace")
            return RAW_NOTE + line + b"\n" + body
    if renderer is None:
        return None
    try:
        text = renderer.reply(body.decode("utf-8", "surrogateescape"))
    except Exception:
        return None
    return None if text is None else text.encode("utf-8", "surrogateescape")


def run_plan(plan, stream):
    """Every section of ``plan``, framed as the sh script frames them; the output goes to
    ``stream`` at once at the end, or as it comes when the plan says ``stream``."""
    nonce = plan["nonce"].encode()
    _SWEEP[0] += 1
    out = Streamed(stream) if plan.get("stream") else []  # type: Any
    started = _clock()
    for section in plan["sections"]:
        label = section["label"].encode()
        out.append(b"\n@@SG " + nonce + b" BEGIN " + label + b"\n")
        try:
            status = OPS[section["op"]](section, out)
        except Exception:  # the reader must survive anything one section does
            status = 1
        ended = _clock()
        out.append(
            b"\n@@SG " + nonce + b" END " + label + b" %d " % status + started + b" " + ended
            + b"\n"
        )
        started = ended
    forget_unused()
    if not isinstance(out, list):
        return b""
    body = b"".join(out)
    if plan.get("render"):
        return rendered(plan, body) or body
    return body


def main():
    stdin = sys.stdin.buffer
    stdout = sys.stdout.buffer
    plans = {}  # type: dict
    stdout.write(b"\nSG-READER " + VERSION.encode() + b"\n")
    stdout.flush()
    sys.stderr.buffer.write(b"\nSG-READER\n")
    sys.stderr.buffer.flush()
    while True:
        line = stdin.readline()
        if not line:
            return
        words = line.split()
        if len(words) != 3 or not words[2].isdigit():
            return  # not the orchestrator talking: stop rather than guess
        mark, plan_id, size = words[0], words[1], int(words[2])
        if size:
            plans.pop(plan_id, None)
            plans[plan_id] = json.loads(stdin.read(size).decode())
            while len(plans) > MAX_PLANS:
                del plans[next(iter(plans))]
        plan = plans.get(plan_id)
        if plan is None:
            stdout.write(b"\n" + mark + b" 2\n")
        else:
            body = run_plan(plan, stdout)
            stdout.write(body + b"\n" + mark + b" 0\n")
        stdout.flush()


if __name__ == "__main__":
    main()
