"""The sweep reader (``collectors.host_reader``) for real on this machine: started the way
the orchestrator starts it on a host (``orchestrator.ssh.reader.boot_command`` run by a login
shell, the
program on its stdin), its output parsed as a sweep's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from test_live_sweep import check_real_values, collectors, sweep

import collectors.host_reader as hr
from collectors.cpu import CpuCounterGuard
from collectors.filesystem import FilesystemCollector
from collectors.registry import default_registry
from collectors.script import build_script, host_reader_source, run_parsers
from orchestrator.ssh.reader import BOOTSTRAP, VERSION, boot_command


class LocalReader:
    """The reader as a child process, spoken to as ``orchestrator.ssh.reader`` does."""

    def __init__(self, argv: list[str] | None = None) -> None:
        self.proc = subprocess.Popen(
            argv or ["/bin/sh", "-c", boot_command("python3")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        program = host_reader_source()
        self.write(b"%d\n" % len(program) + program)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline() == b"\n"
        assert self.proc.stdout.readline() == f"SG-READER {VERSION}\n".encode()
        self.n = 0

    def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def run(self, plan_id: str, plan: bytes | None) -> tuple[str, int]:
        """Send a request (the plan, unless ``None``); the output and the status."""
        self.n += 1
        mark = f"M{self.n}"
        self.write(f"{mark} {plan_id} {len(plan or b'')}\n".encode() + (plan or b""))
        assert self.proc.stdout is not None
        lines: list[bytes] = []
        while True:
            line = self.proc.stdout.readline()
            assert line, "the reader stopped"
            if line.startswith(mark.encode() + b" "):
                out = b"".join(lines)
                assert out.endswith(b"\n")
                return out[:-1].decode(), int(line.split()[1])
            lines.append(line)

    def close(self) -> int:
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        return self.proc.wait(10)


def test_reader_sweep_has_what_this_machine_has(reader: LocalReader) -> None:
    cols = collectors()
    script = build_script(cols)
    guard = CpuCounterGuard()
    for plan in (script.host_plan, None):  # the second request names the kept plan
        out, status = reader.run(script.host_plan_id, plan)
        assert status == 0
        check_real_values(
            run_parsers(out, cols, nonce=script.nonce, cpu_guard=guard, plan=script.plan)
        )


def old_pythons() -> list[str]:
    """Python 3.6 to 3.10 interpreters on this machine (RHEL 8 has 3.6, Ubuntu 22.04 3.10):
    on PATH, or installed by pyenv."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = {shutil.which(f"python3.{m}") for m in range(6, 11)}
    found |= {str(p) for m in range(6, 11) for p in root.glob(f"3.{m}.*/bin/python3.{m}")}
    return sorted(p for p in found if p and subprocess.run(
        [p, "-c", ""], capture_output=True, check=False).returncode == 0)


@pytest.mark.parametrize("python", old_pythons() or [
    pytest.param(None, marks=pytest.mark.skip(reason="no Python 3.6-3.10 on this machine"))
])
def test_reader_runs_on_the_oldest_pythons_hosts_have(python: str) -> None:
    cols = collectors()
    script = build_script(cols)
    reader = LocalReader(["/bin/sh", "-c", boot_command(python)])
    try:
        out, status = reader.run(script.host_plan_id, script.host_plan)
    finally:
        reader.close()
    assert status == 0
    check_real_values(run_parsers(out, cols, nonce=script.nonce, plan=script.plan))


def test_reader_and_sh_script_give_the_same_series() -> None:
    cols = default_registry().defaults()
    script = build_script(cols)
    reader = LocalReader()
    try:
        out, _ = reader.run(script.host_plan_id, script.host_plan)
    finally:
        reader.close()
    by_reader = run_parsers(out, cols, nonce=script.nonce, plan=script.plan)
    by_sh = sweep(["/bin/sh"])  # default set plus processes
    sh_series = {(s.name, s.labels) for s in by_sh.samples}
    reader_series = {(s.name, s.labels) for s in by_reader.samples}
    assert reader_series == {
        (n, lb) for n, lb in sh_series if not n.startswith(("node_processes", "serverguard_proc"))
    }
    assert {r.name for r in by_reader.reports.values() if r.success} == {c.name for c in cols}


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_reader_sweep_starts_no_process(tmp_path: Path) -> None:
    """0 processes per sweep for the default collectors, 2 on a systemd host (its two
    systemctl, without a shell); the sh script starts 4 (test_live_sweep)."""
    trace = tmp_path / "trace"
    script = build_script(default_registry().defaults())
    reader = LocalReader(["strace", "-f", "-qq", "-e", "trace=execve",
                          "-o", str(trace), "python3", "-I", "-S", "-c", BOOTSTRAP])
    try:
        before = trace.read_text().count("\n")
        for plan in (script.host_plan, None, None):
            assert reader.run(script.host_plan_id, plan)[1] == 0
        started = [ln for ln in trace.read_text().splitlines()[before:] if "execve(" in ln]
    finally:
        reader.close()
    systemd = Path("/run/systemd/system").is_dir() and shutil.which("systemctl") is not None
    assert len(started) == 3 * 2 * systemd, started  # 3 sweeps


def test_protocol_kept_plans_unknown_plans_and_garbage(reader: LocalReader) -> None:
    def plan(n: int) -> bytes:
        sections = [{"label": "x", "op": "sh", "cmd": f"echo plan{n}"}]
        return json.dumps({"nonce": "ab", "sections": sections}).encode()

    assert reader.run("p0", None) == ("", 2)  # never sent: status 2, no output
    out, status = reader.run("p0", plan(0))
    assert status == 0 and "\nplan0\n" in out
    assert "plan0" in reader.run("p0", None)[0]
    for n in range(1, hr.MAX_PLANS + 1):  # 8 more: p0 is the oldest, forgotten
        assert f"plan{n}" in reader.run(f"p{n}", plan(n))[0]
    assert reader.run("p0", None) == ("", 2)
    assert "plan1" in reader.run("p1", None)[0]
    reader.write(b"this is not a request\n")  # not the orchestrator: the reader stops
    assert reader.proc.wait(10) == 0
    assert reader.proc.stdout is not None and reader.proc.stdout.read() == b""


def test_textfile_output_of_any_size_streams_through_the_reader(
    reader: LocalReader, tmp_path: Path
) -> None:
    """The textfile collector's files and scripts can print any amount: the reader writes
    its sections as they come (``stream``) instead of holding them, and they parse the same."""
    (tmp_path / "big.prom").write_text(
        "".join(f'app_items{{shard="{i}"}} {i}\n' for i in range(20000))
    )
    options = {"textfile": {"directory": str(tmp_path),
                            "scripts": {"hello": "echo 'app_hello 1'"}}}
    cols = [default_registry().get("textfile"), default_registry().get("loadavg")]
    script = build_script(cols, options)
    assert json.loads(script.host_plan)["stream"] is True
    out, status = reader.run(script.host_plan_id, script.host_plan)
    assert status == 0 and len(out) > 400_000
    parsed = run_parsers(out, cols, options, nonce=script.nonce, plan=script.plan)
    names = [s.name for s in parsed.samples]
    assert names.count("app_items") == 20000 and "app_hello" in names and "node_load1" in names
    assert all(r.success for r in parsed.reports.values()), parsed.reports


def test_a_failing_section_gets_its_status_and_the_others_run(reader: LocalReader) -> None:
    sections = [
        {"label": "bad", "op": "sh", "cmd": "echo half; exit 3"},
        {"label": "nosuch", "op": "no-such-op"},
        {"label": "files", "op": "files", "items": ["/proc/loadavg", "/nonexistent/file"]},
    ]
    plan = json.dumps({"nonce": "cd", "sections": sections}).encode()
    out, status = reader.run("q", plan)
    assert status == 0
    assert "\n@@SG cd BEGIN bad\nhalf\n\n@@SG cd END bad 3 " in out
    assert "\n@@SG cd BEGIN nosuch\n\n@@SG cd END nosuch 1 " in out
    # the readable file is there, the missing one is left out (as head does), status 1
    assert "\n@@SG cd BEGIN files\n==> /proc/loadavg <==\n" in out
    assert "/nonexistent" not in out and "\n@@SG cd END files 1 " in out


def test_files_as_head_prints_them(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("one\ntwo\n")
    (tmp_path / "b").write_text("no newline")
    (tmp_path / "c").mkdir()
    out: list[bytes] = []
    items = [str(tmp_path / "a"), str(tmp_path / "c"), str(tmp_path / "b"), str(tmp_path / "b*")]
    assert hr.op_files({"items": items}, out) == 1  # the directory cannot be read
    text = b"".join(out).decode()
    # (GNU head prints a header for the directory before failing; the reader leaves it out)
    files = [items[0], items[2], str(tmp_path / "b")]
    head = subprocess.run(["head", "-n", "100000", "--", *files],
                          capture_output=True, text=True, check=False).stdout
    assert text == head


def test_kept_descriptors_read_fresh_and_follow_the_kernel(tmp_path: Path) -> None:
    child = subprocess.Popen(["sleep", "60"])
    path = f"/proc/{child.pid}/stat"
    first = hr.read_file(path)
    assert first is not None and path in hr._OPEN
    last_pid = hr.read_file("/proc/loadavg")
    subprocess.run(["true"], check=True)
    assert hr.read_file("/proc/loadavg") != last_pid  # read again, not a cached copy
    child.kill()
    child.wait()
    assert hr.read_file(path) is None and path not in hr._OPEN  # the process went away
    # a file of the user's is opened every time: a replaced file is read anew
    mine = tmp_path / "mine"
    mine.write_text("old\n")
    assert hr.read_file(str(mine)) == b"old\n"
    (tmp_path / "new").write_text("new\n")
    (tmp_path / "new").rename(mine)
    assert hr.read_file(str(mine)) == b"new\n" and str(mine) not in hr._OPEN


def test_attributes_as_netclass_renders_its_files(tmp_path: Path) -> None:
    from collectors.netclass import NetclassCollector

    for name, attrs in {"eth0": {"mtu": "1500\n", "carrier": "1\n"}, "lo": {"mtu": "65536\n"},
                        "dummy": {}}.items():
        (tmp_path / name).mkdir()
        for attr, value in attrs.items():
            (tmp_path / name / attr).write_text(value)
    (tmp_path / "lo" / "ifalias").write_text("loop\n")
    out: list[bytes] = []
    hr.op_attributes({"dir": str(tmp_path), "leaves": ["carrier", "mtu"], "alias": "ifalias"},
                     out)
    files = [(str(p), p.read_text()) for p in sorted(tmp_path.glob("*/*"))
             if p.name != "ifalias"]
    rendered = NetclassCollector().render(
        [(f"/sys/class/net/{p.split('/')[-2]}/{p.split('/')[-1]}", c) for p, c in files], ""
    )
    assert b"".join(out).decode() == rendered + "I lo\nifalias=loop\n"


@pytest.mark.skipif(shutil.which("tcsh") is None, reason="tcsh is not installed")
def test_a_csh_login_shell_starts_the_reader_too() -> None:
    """sshd hands the command to the user's login shell: tcsh takes no newline in quotes,
    and reads ``>&2`` as its own; the command is one line that hands over to /bin/sh."""
    reader = LocalReader(["tcsh", "-c", boot_command("python3")])
    try:
        assert reader.run("p", json.dumps({"nonce": "a", "sections": []}).encode()) == ("", 0)
    finally:
        reader.close()


def test_a_renamed_interface_is_not_read_under_its_old_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """eth0 renamed to old and a new eth0 made: its kept descriptor reads the renamed one
    unless the listing's new inode says eth0 is another interface now; files no sweep
    reads get closed."""
    monkeypatch.setattr(hr, "KEPT_PREFIXES", (str(tmp_path) + "/",))
    spec = {"dir": str(tmp_path), "leaves": ["mtu"]}

    def sweep() -> str:
        hr._SWEEP[0] += 1
        out: list[bytes] = []
        hr.op_attributes(spec, out)
        hr.forget_unused()  # as run_plan does after every sweep
        return b"".join(out).decode()

    (tmp_path / "eth0").mkdir()
    (tmp_path / "eth0" / "mtu").write_text("1500\n")
    assert sweep() == "I eth0\nmtu=1500\n"
    path = str(tmp_path / "eth0" / "mtu")
    assert path in hr._OPEN  # kept open
    (tmp_path / "eth0").rename(tmp_path / "old")
    (tmp_path / "eth0").mkdir()
    (tmp_path / "eth0" / "mtu").write_text("9000\n")
    assert sweep() == "I eth0\nmtu=9000\nI old\nmtu=1500\n"
    (tmp_path / "old" / "mtu").unlink()
    (tmp_path / "old").rmdir()
    for _ in range(hr.KEEP_UNREAD * 2):  # sweeps that do not read old/mtu any more
        sweep()
    assert str(tmp_path / "old" / "mtu") not in hr._OPEN and path in hr._OPEN


def test_the_time_zone_is_read_again_every_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    def zone() -> str:
        out: list[bytes] = []
        hr.op_date({}, out)
        return b"".join(out).decode().split(" ", 2)[2].strip()

    try:
        monkeypatch.setenv("TZ", "UTC0")
        assert zone() == "+0000 UTC"
        monkeypatch.setenv("TZ", "IST-5:30")  # as timedatectl set-timezone, without a restart
        assert zone() == "+0530 IST"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_run_steps_without_a_shell(tmp_path: Path) -> None:
    out: list[bytes] = []
    steps = [["echo", "units"], "@@types", ["printf", "%s\\n", "two words"],
             ["/nonexistent/program"]]
    assert hr.op_run({"steps": steps}, out) == 0
    assert b"".join(out) == b"units\n@@types\ntwo words\n"
    out.clear()
    assert hr.op_run({"steps": steps, "if_dir": str(tmp_path / "none")}, out) == 0
    assert out == []  # its condition not met: nothing started


def test_interface_names_that_are_not_utf8(tmp_path: Path) -> None:
    for name in (b"aaa", b"b\xe9", "café".encode()):
        os.mkdir(os.path.join(os.fsencode(tmp_path), name))
        with open(os.path.join(os.fsencode(tmp_path), name, b"mtu"), "wb") as f:
            f.write(b"1500\n")
    out: list[bytes] = []
    hr.op_attributes({"dir": str(tmp_path), "leaves": ["mtu"]}, out)
    text = b"".join(out)
    assert text.count(b"mtu=1500\n") == 3 and b"I b\xe9\n" in text and "I café".encode() in text


def test_ifalias_entries_as_the_read_loop(tmp_path: Path) -> None:
    for name, alias in {"eth0": "  uplink to core \n", "eth1": "", "lo": "\n", "wg0": "x"}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "ifalias").write_text(alias)
    (tmp_path / "bond0").mkdir()  # no ifalias file at all
    out: list[bytes] = []
    hr.op_attributes({"dir": str(tmp_path), "leaves": [], "alias": "ifalias"}, out)
    assert b"".join(out).decode() == (
        "I eth0\nifalias=uplink to core\nI lo\nifalias=\nI wg0\nifalias=x\n"
    )


def test_a_hanging_network_mount_is_given_up_and_not_tried_while_it_hangs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mountinfo = (
        b"21 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
        b"40 21 0:50 / /mnt/nfs rw - nfs4 srv:/export rw\n"
        b"41 21 254:0 / /mnt/a\\040b rw - ext4 /dev/vda rw\n"
        b"43 21 254:0 / /mnt/c\rd rw - ext4 /dev/vda rw\n"  # the kernel escapes no \r
        b"42 21 0:5 / /proc rw - proc proc rw\n"
    )
    real_read, real_statfs = hr.read_file, hr._statfs
    release = threading.Event()
    tried: list[bytes] = []

    def read(path: str) -> bytes | None:
        return mountinfo if path == "/proc/self/mountinfo" else real_read(path)

    def statfs(point: bytes, box: list[Any]) -> None:
        tried.append(point)
        if point == b"/mnt/nfs":
            release.wait(30)
            box.append(OSError(5, os.strerror(5)))
        else:
            real_statfs(b"/", box)

    monkeypatch.setattr(hr, "read_file", read)
    monkeypatch.setattr(hr, "_statfs", statfs)
    fs = FilesystemCollector()
    options = fs.resolve_options({"statfs_timeout_seconds": 1})
    spec = fs.host_op(options)

    def run() -> dict[str, Any]:
        out: list[bytes] = []
        assert hr.op_statfs(spec, out) == 0
        parsed = fs.parse(b"".join(out).decode(), options)
        return {dict(s.labels)["mountpoint"]: dict(s.labels).get("device_error")
                for s in parsed if s.name == "node_filesystem_device_error"}

    try:
        assert run() == {"/": None, "/mnt/a b": None, "/mnt/c\rd": None,
                         "/mnt/nfs": "mountpoint timeout"}
        assert tried == [b"/", b"/mnt/nfs", b"/mnt/a b", b"/mnt/c\rd"]  # /proc: type skipped
        assert run()["/mnt/nfs"] == "mountpoint timeout"
        assert tried.count(b"/mnt/nfs") == 1  # still hanging: not tried again
        release.set()
        hr._STUCK[b"/mnt/nfs"].join(5)
        assert run()["/mnt/nfs"] == "input/output error"  # answered: tried again
        assert tried.count(b"/mnt/nfs") == 2
    finally:
        release.set()
        hr._STUCK.clear()


def test_host_plan_reads_each_file_once_and_starts_no_shell_it_can_avoid() -> None:
    script = build_script(default_registry().defaults())
    plan = json.loads(script.host_plan)
    ops = {s["label"]: s for s in plan["sections"]}
    assert ops["filesystem"]["op"] == "statfs" and ops["time"]["op"] == "date"
    assert ops["uname"]["op"] == "uname" and ops["netclass"]["op"] == "attributes"
    assert ops["systemd"]["op"] == "run" and ops["systemd"]["if_dir"] == "/run/systemd/system"
    assert ops["systemd"]["steps"][1] == "@@types"
    processes = json.loads(build_script([default_registry().get("processes")]).host_plan)
    assert processes["sections"][0]["op"] == "sh"  # no operation of its own: sh runs it
    assert "__sg_cat()" in processes["sections"][0]["cmd"]  # with the shared sh functions
    # uname's and netclass's files are read by their own operations, not the files op
    items = ops["files"]["items"]
    assert "/proc/stat" in items and "/sys/block/*/queue/rotational" in items
    assert not any(i.startswith(("/proc/sys/kernel/", "/sys/class/net")) for i in items)
    assert "mtu" in ops["netclass"]["leaves"] and "ifalias" not in ops["netclass"]["leaves"]
    # the other files as their collectors list them: Collector.render's order
    assert items == [p for p in script.plan.patterns if p in items]
    assert plan["stream"] is False
    textfile = build_script([default_registry().get("textfile")],
                            {"textfile": {"directory": "/tmp/x"}})
    assert json.loads(textfile.host_plan)["stream"] is True  # output of any size: streamed


def test_the_reader_keeps_to_python_3_6_syntax() -> None:
    """It runs on the host's python3 (RHEL 8's is 3.6): no walrus, no positional-only
    parameters, no f-string '=' (what the parser of 3.6 would refuse)."""
    import ast

    ast.parse(Path(hr.__file__).read_text(), feature_version=(3, 6))
    with pytest.raises(SyntaxError):  # the check does check
        ast.parse("if (x := 1): pass", feature_version=(3, 6))
