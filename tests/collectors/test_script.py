"""The one-script-per-sweep framing: building, splitting, and surviving bad output."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from collectors.base import Collector, Options, Samples
from collectors.registry import default_registry
from collectors.script import ParsedSweep, build_script, run_parsers, split_files, split_output

REG = default_registry()
COLS = [REG.get("loadavg"), REG.get("filefd")]


class Echo(Collector):
    """A command-only collector: one sample per output line."""

    def __init__(self, name: str, command: str = "echo 1") -> None:
        self.name = name  # type: ignore[misc]
        self._command = command

    def command(self, options: Options) -> str:
        return self._command

    def parse(self, stdout: str, options: Options) -> Samples:
        out = Samples()
        for line in stdout.splitlines():
            out.add(f"{self.name}_line", float(line))
        return out


A, B = Echo("a"), Echo("b", "echo 2")


def section(nonce: str, names: str, body: str, rc: str = "0") -> str:
    return f"\n@@SG {nonce} BEGIN {names}\n{body}\n@@SG {nonce} END {names} {rc} 10.00 10.25\n"


def files(nonce: str, contents: dict[str, str], rc: str = "1") -> str:
    body = "\n".join(f"==> {path} <==\n{text}" for path, text in contents.items())
    return section(nonce, "files", body, rc)


def values(sweep: ParsedSweep) -> dict[str, float]:
    return {s.name: s.value for s in sweep.samples}


def test_every_file_is_read_by_one_head_and_shared() -> None:
    script = build_script([REG.get("cpu"), REG.get("stat"), REG.get("loadavg"), A], nonce="aa")
    assert script.count("head -n 100000 -- /proc/stat /proc/loadavg\n") == 1
    assert script.count("/proc/stat") == 2  # and once for the fallback without head
    out = files("aa", {"/proc/stat": "cpu0 1 2 3 4 5 6 7 8 9 10\nbtime 99\nctxt 5\n",
                       "/proc/loadavg": "1 2 3 1/2 3\n"}) + section("aa", "a", "7")
    sweep = run_parsers(out, [REG.get("cpu"), REG.get("stat"), REG.get("loadavg"), A])
    names = {s.name for s in sweep.samples}
    wanted = {"node_cpu_seconds_total", "node_boot_time_seconds", "node_load1", "a_line"}
    assert wanted <= names
    # head exits 1 when any file is missing: that is no collector's failure
    assert all(r.success and r.duration_seconds == 0.25 for r in sweep.reports.values())


def test_identical_commands_share_one_section() -> None:
    script = build_script([Echo("a", "echo 5"), Echo("b", "echo 5")], nonce="aa")
    assert script.count("echo 5") == 1 and "BEGIN %s\\n' aa a,b" in script
    sweep = run_parsers(section("aa", "a,b", "5"), [Echo("a", "echo 5"), Echo("b", "echo 5")])
    assert values(sweep) == {"a_line": 5, "b_line": 5}


def test_a_file_the_kernel_refused_is_empty_and_the_next_one_is_whole() -> None:
    out = files("ab", {"/proc/loadavg": "", "/proc/sys/fs/file-nr": "242\t0\t24\n"})
    sweep = run_parsers(out, COLS)
    assert values(sweep) == {"node_filefd_allocated": 242, "node_filefd_maximum": 24}
    assert "unreadable /proc/loadavg" in sweep.reports["loadavg"].problems[0]
    assert sweep.reports["filefd"].success


def test_a_header_for_a_file_nobody_asked_for_is_content() -> None:
    text = "1 2 3 1/2 3\n==> /etc/shadow <==\nroot:x\n"  # not a file of the sweep
    out = files("ab", {"/proc/loadavg": text, "/proc/sys/fs/file-nr": "242\t0\t24\n"})
    per = split_files(split_output(out, COLS)["loadavg"].stdout, build_script(COLS).plan)
    assert per["loadavg"] == [("/proc/loadavg", text)]
    assert per["filefd"] == [("/proc/sys/fs/file-nr", "242\t0\t24\n")]


def test_output_without_trailing_newline_is_kept_whole() -> None:
    out = "\n@@SG ab BEGIN a\n1\n@@SG ab END a 0 1 1\n"
    assert split_output(out, [A])["a"].stdout == "1"


def test_missing_section_fails_only_that_collector() -> None:
    out = section("ab", "a", "1")
    sweep = run_parsers(out, [A, B, *COLS])
    assert sweep.reports["a"].success
    assert "no output section" in sweep.reports["b"].problems[0]
    assert not sweep.reports["loadavg"].success  # no files section at all
    assert 'serverguard_collector_success{collector="b"} 0' in [
        s.exposition() for s in sweep.collector_samples
    ]


def test_truncated_files_section_fails_the_file_collectors() -> None:
    # output cut by the session's cap in the middle of "2466174"
    out = section("ab", "a", "1") + "\n@@SG ab BEGIN files\n==> /proc/loadavg <==\n1 2 3 1/2 3\n"
    out += "\n==> /proc/sys/fs/file-nr <==\n242\t0\t24"
    sec = split_output(out, COLS)["filefd"]
    assert not sec.complete and sec.rc is None
    sweep = run_parsers(out, [A, *COLS])
    assert not [s for s in sweep.samples if s.name.startswith("node_filefd")]
    assert "output cut short (no end marker)" in sweep.reports["filefd"].problems
    assert sweep.reports["a"].success


def test_garbage_between_sections_and_foreign_markers_are_ignored() -> None:
    out = (
        "motd garbage\n"
        + section("ab", "a", "1\n@@SG ffff END a 0 1 2")
        + "stray text\n@@SG ffff BEGIN b\n9\n"
        + section("ab", "b", "2")
    )
    sweep = run_parsers(out, [A, B], nonce="ab")
    assert sweep.reports["a"].problems  # the foreign marker line is output: unparsable
    assert values(sweep)["b_line"] == 2 and sweep.reports["b"].success


def test_nonzero_exit_status_fails_the_collector_but_keeps_samples() -> None:
    out = section("ab", "a", "1", rc="2")
    sweep = run_parsers(out, [A])
    assert [s.name for s in sweep.samples] == ["a_line"]
    assert sweep.reports["a"].problems == ["remote command exited with status 2"]


def test_a_collector_with_files_and_a_command_gets_both() -> None:
    time_c = REG.get("time")
    src = "/sys/devices/system/clocksource/clocksource0/"
    out = files("ab", {src + "available_clocksource": "tsc hpet\n",
                       src + "current_clocksource": "tsc\n"})
    out += section("ab", "time", "T 1700000000.5 +0100 CET")
    sweep = run_parsers(out, [time_c])
    got = {s.exposition() for s in sweep.samples}
    assert 'node_time_clocksource_current_info{clocksource="tsc",device="0"} 1' in got
    assert "node_time_seconds 1700000000.5" in got and sweep.reports["time"].success


def test_a_crashing_parser_is_contained() -> None:
    class Broken(Collector):
        name = "broken"

        def command(self, options: Options) -> str:
            return ":"

        def parse(self, stdout: str, options: Options) -> Samples:
            raise IndexError("boom")

    cols = [Broken(), REG.get("loadavg")]
    out = section("ab", "broken", "x") + files("ab", {"/proc/loadavg": "1 2 3 1/2 3"})
    sweep = run_parsers(out, cols)
    assert sweep.reports["broken"].problems == ["parser failed: IndexError: boom"]
    assert sweep.reports["loadavg"].success


def test_empty_output_reports_every_collector_missing() -> None:
    sweep = run_parsers("", [*COLS, A])
    assert sweep.samples == []
    assert [r.success for r in sweep.reports.values()] == [False, False, False]


def test_nonce_must_be_hex() -> None:
    with pytest.raises(ValueError):
        build_script(COLS, nonce="x; rm -rf /")


def test_script_carries_its_nonce() -> None:
    script = build_script([*COLS, A])
    assert len(script.nonce) == 16 and f"' {script.nonce} a" in script
    assert f"' {script.nonce} files" in script


def test_output_is_buffered_on_the_host_only_when_every_collector_bounds_its_size() -> None:
    # the host's shell holds a buffered sweep's whole output: not for users' textfiles
    assert build_script(REG.defaults()).bounded
    assert not build_script([*REG.defaults(), REG.get("textfile")]).bounded


class Files(Collector):
    """A file-only collector: renders ``path=first line`` per file it got."""

    def __init__(self, name: str, patterns: tuple[str, ...]) -> None:
        self.name = name  # type: ignore[misc]
        self._patterns = patterns

    def files(self, options: Options) -> tuple[str, ...]:
        return self._patterns

    def command(self, options: Options) -> str:
        return ""

    def render(self, files: Sequence[tuple[str, str]], stdout: str) -> str:
        return "".join(f"{path}={content.partition(chr(10))[0]}\n" for path, content in files)

    def parse(self, stdout: str, options: Options) -> Samples:
        out = Samples()
        for line in stdout.splitlines():
            path, _, value = line.partition("=")
            out.add("file_value", float(value), path=path)
        return out


def read_files_for_real(tmp_path: Path, *, with_head: bool) -> dict[str, float]:
    """A tree like /sys/class/net, with names a glob or a space would trip over, swept by sh."""
    names = ["eth0", "a b", "c*d", "[x]", "x"]
    for i, name in enumerate(names):
        (tmp_path / "net" / name).mkdir(parents=True)
        (tmp_path / "net" / name / "mtu").write_text(f"{1500 + i}\n")
        if name != "x":  # an attribute that some entries do not have
            (tmp_path / "net" / name / "speed").write_text(f"{i}\n")
    (tmp_path / "loadavg").write_text("7\n")
    col = Files("f", (f"{tmp_path}/loadavg", f"{tmp_path}/net/*/mtu", f"{tmp_path}/net/*/speed"))
    script = build_script([col])
    assert script.count(f"{tmp_path}/net/*") == 1  # one directory loop, not a glob per file
    bindir = tmp_path / "bin"
    bindir.mkdir()
    if with_head:
        (bindir / "head").symlink_to(shutil.which("head"))  # type: ignore[arg-type]
    proc = subprocess.run(
        ["/bin/sh", "-c", '( eval "$1" ) </dev/null', "sh", script],
        capture_output=True, text=True, timeout=30, check=True, env={"PATH": str(bindir)},
    )
    sweep = run_parsers(proc.stdout, [col], nonce=script.nonce)
    assert sweep.reports["f"].success, sweep.reports["f"].problems
    return {dict(s.labels)["path"].removeprefix(f"{tmp_path}/"): s.value for s in sweep.samples}


@pytest.mark.parametrize("with_head", [True, False], ids=["head", "builtins"])
def test_attributes_of_every_directory_entry_are_read_once(
    tmp_path: Path, with_head: bool
) -> None:
    got = read_files_for_real(tmp_path, with_head=with_head)
    names = ["eth0", "a b", "c*d", "[x]", "x"]
    expected = {"loadavg": 7.0}
    for i, name in enumerate(names):
        expected[f"net/{name}/mtu"] = 1500.0 + i
        if name != "x":
            expected[f"net/{name}/speed"] = float(i)
    assert got == expected
