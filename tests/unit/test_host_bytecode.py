"""Modules sent to the hosts compiled (``strategy_plugins/sg_bytecode.py``).

The "host" is a real mitogen child: a new Python process started by mitogen with the
bootstrap it sends over ssh, here through a pipe (``router.local``), and a second one
reached through the first, as a ``become`` context is. Each case runs in a fresh controller
process: the patch changes mitogen's modules, which must not leak into this test process.
"""

from __future__ import annotations

import json
import marshal
import os
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path
from typing import Any

import mitogen.parent  # type: ignore[import-untyped]
import pytest

from orchestrator.playbooks.tuning import UNPINNED_STRATEGIES

PLUGIN = UNPINNED_STRATEGIES / "sg_bytecode.py"

CONTROLLER = textwrap.dedent(f"""
    import importlib.util, json, sys


    def probe():
        # runs on the "host": import what Ansible's modules import, and report how
        import inspect, linecache, sys, traceback
        import ansible.module_utils.basic as basic
        from ansible.module_utils.common.validation import check_type_int
        try:
            check_type_int("not a number")
        except TypeError:
            frames = traceback.format_exc()
        counts = None
        for finder in sys.meta_path:
            if hasattr(finder, "_cache") and hasattr(finder, "_request_module"):
                counts = finder.__dict__.get("sg_code_counts")
        return {{
            "counts": counts,
            "file": basic.__file__,
            "source": inspect.getsource(basic.AnsibleModule.exit_json).split("(")[0].strip(),
            "traceback_has_source": "raise TypeError(" in frames,
            "code_file": basic.AnsibleModule.exit_json.__code__.co_filename,
            # set when the interpreter started on mitogen.core's code, not its source
            "core_code": sys.modules["mitogen.core"].__dict__.get("sg_core_code"),
            "core_source": "class ExternalContext" in inspect.getsource(
                sys.modules["mitogen.core"]),
        }}


    if __name__ == "__main__":
        spec = importlib.util.spec_from_file_location("sg_bytecode", {str(PLUGIN)!r})
        bytecode = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bytecode)
        mode = sys.argv[1]
        if mode == "other-python":  # code tagged for a Python the host does not run
            bytecode.TAG = (b"\\x00\\x00\\r\\n", 0)
        if mode == "other-mitogen":  # a mitogen.core without the text the patch expects
            import mitogen.parent
            real = mitogen.parent._get_core_source
            mitogen.parent._get_core_source = lambda: real().replace(
                "code = compile(source, mod.__file__, 'exec', 0, 1)",
                "code = compile(source, mod.__file__, 'exec', 0, True)")
        folder = sys.argv[2] if len(sys.argv) > 2 else None
        import mitogen.minify
        minified = []  # what mitogen itself minified (not taken from the folder)
        minimize_source = mitogen.minify.minimize_source
        mitogen.minify.minimize_source = lambda s: minified.append(1) or minimize_source(s)
        installed = bytecode.install(folder) if mode != "off" else False
        import mitogen.master
        broker = mitogen.master.Broker()
        router = mitogen.master.Router(broker)
        for prefix in ("ansible", "ansible_mitogen", "__main__"):
            router.responder.whitelist_prefix(prefix)
        try:
            host = router.local(python_path=sys.executable)
            become = router.local(via=host, python_path=sys.executable)
            out = {{"installed": installed, "host": host.call(probe),
                    "become": become.call(probe), "minified": len(minified)}}
        finally:
            broker.shutdown()
            broker.join()
        print(json.dumps(out))
""")


def _run(tmp_path: Path, mode: str, *folder: str) -> dict[str, object]:
    script = tmp_path / "controller.py"
    script.write_text(CONTROLLER)
    proc = subprocess.run([sys.executable, str(script), mode, *folder], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def _same_behaviour(probe: object) -> None:
    """What a module on the host sees is the same with or without the patch."""
    assert isinstance(probe, dict)
    assert probe["file"].startswith("master:") and probe["file"].endswith("/basic.py")
    assert probe["code_file"] == probe["file"]
    assert probe["source"] == "def exit_json"  # inspect.getsource (respawn_module's need)
    assert probe["traceback_has_source"]  # the source line in a traceback (linecache)
    assert probe["core_source"]  # mitogen keeps its core's source on the host, for inspect


def test_hosts_load_the_code_and_never_compile(tmp_path: Path) -> None:
    kept = tmp_path / "host-code"
    for run in ("first", "next"):  # the next run takes the code from the folder
        out = _run(tmp_path, "on", str(kept))
        assert out["installed"] is True
        for where in ("host", "become"):  # the second through the first, as become is
            probe = out[where]
            _same_behaviour(probe)
            assert isinstance(probe, dict)
            loaded, compiled = probe["counts"]
            assert loaded > 30 and compiled == 0, (run, probe["counts"])
        # the host started on mitogen.core's code; become's context is started by the host's
        # own mitogen, which sends the source
        assert out["host"]["core_code"] == 1 and out["become"]["core_code"] is None  # type: ignore[index]
        files = sorted(kept.glob("*/*.host-code"))
        assert len(files) > 30
        # mitogen minifies its core and the modules of its own it sends; once
        assert out["minified"] > 1 if run == "first" else out["minified"] == 0
        if run == "first":
            written = {f: f.stat().st_mtime_ns for f in files}
    assert {f: f.stat().st_mtime_ns for f in files} == written  # read, not written again


def test_a_host_with_another_python_compiles_the_source(tmp_path: Path) -> None:
    out = _run(tmp_path, "other-python")
    assert out["installed"] is True
    for where in ("host", "become"):
        probe = out[where]
        _same_behaviour(probe)
        assert isinstance(probe, dict)
        loaded, compiled = probe["counts"]
        assert loaded == 0 and compiled > 30, probe["counts"]
        assert probe["core_code"] is None  # and the core from its source


@pytest.mark.parametrize("mode", ["off", "other-mitogen"])
def test_without_the_patch_mitogen_works_as_before(tmp_path: Path, mode: str) -> None:
    out = _run(tmp_path, mode)
    assert out["installed"] is False
    for where in ("host", "become"):
        _same_behaviour(out[where])
        assert out[where]["counts"] is None  # type: ignore[index]  # mitogen's own importer
        assert out[where]["core_code"] is None  # type: ignore[index]


def _load_plugin() -> dict[str, object]:
    import runpy

    return runpy.run_path(str(PLUGIN))  # not "install": patches nothing


def test_the_patch_fits_the_installed_mitogen() -> None:
    plugin = _load_plugin()
    patched_core = plugin["patched_core"]
    source = mitogen.parent._get_core_source()
    patched = patched_core(source)  # type: ignore[operator]
    assert patched is not None and "def _sg_code(" in patched
    compile(patched, "core", "exec")  # still valid Python
    assert patched_core("something else") is None  # type: ignore[operator]


def test_module_code_is_compiled_as_the_host_would(tmp_path: Path) -> None:
    plugin = _load_plugin()
    code_for = plugin["code_for"]
    good = ("pkg.mod", None, "/src/pkg/mod.py", zlib.compress(b"def f():\n    return 41 + 1\n"),
            [])
    tup = code_for(good)  # type: ignore[operator]
    assert tup[:5] == good
    tag, blob = tup[5]
    assert tag == plugin["TAG"]
    code = marshal.loads(zlib.decompress(blob))
    assert code.co_filename == "master:/src/pkg/mod.py"
    space: dict[str, object] = {}
    exec(code, space)
    assert space["f"]() == 42  # type: ignore[operator]
    # a syntax error, or a module mitogen could not find, goes as mitogen sends it
    broken = ("pkg.bad", None, "/src/pkg/bad.py", zlib.compress(b"def f(:\n"), [])
    assert code_for(broken)[5] is None  # type: ignore[operator,index]
    missing = ("pkg.none", None, None, None, ())
    assert code_for(missing) == (*missing, None)  # type: ignore[operator]


def _count_compiles(function: Any) -> list[str]:
    """The file names the plugin's ``function`` compiles from now on."""
    compiles: list[str] = []

    def counting(source: str, filename: str, *args: Any, **kwargs: Any) -> Any:
        compiles.append(filename)
        return compile(source, filename, *args, **kwargs)

    function.__globals__["compile"] = counting
    return compiles


def test_compiled_modules_are_kept_and_checked(tmp_path: Path) -> None:
    plugin = _load_plugin()
    code_for: Any = plugin["code_for"]
    compiles = _count_compiles(code_for)
    one = ("pkg.mod", None, "/src/pkg/mod.py", zlib.compress(b"X = 1\n"), [])
    first = code_for(one, str(tmp_path))
    assert code_for(one, str(tmp_path)) == first and len(compiles) == 1  # from the folder
    (kept,) = tmp_path.glob("*/*.host-code")
    assert kept.parent.stat().st_mode & 0o777 == 0o700
    # another source at the same path is another entry
    two = ("pkg.mod", None, "/src/pkg/mod.py", zlib.compress(b"X = 2\n"), [])
    space: dict[str, object] = {}
    exec(marshal.loads(zlib.decompress(code_for(two, str(tmp_path))[5][1])), space)
    assert space["X"] == 2 and len(compiles) == 2
    # a damaged file is compiled again and replaced; an unwritable folder is no cache
    kept.write_bytes(kept.read_bytes()[:-3] + b"xyz")
    assert code_for(one, str(tmp_path)) == first and len(compiles) == 3
    assert code_for(one, str(tmp_path)) == first and len(compiles) == 3
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert code_for(one, str(blocked)) == first and len(compiles) == 4


class _OtherMitogen:
    @staticmethod
    def _first_stage():  # type: ignore[no-untyped-def]  # a first stage the edit does not fit
        os.write(1, b"MITO000\n")


def test_the_first_stage_edit_fits_the_installed_mitogen() -> None:
    plugin = _load_plugin()
    first_stage: Any = plugin["first_stage"]
    stage = first_stage(mitogen.parent.Connection._first_stage)
    assert stage is not None and "#" not in stage  # mitogen drops every line with a "#"
    assert "sys.argv[4]" in stage and "os.read(101," in stage
    compile(stage, "first stage", "exec")
    assert first_stage(_OtherMitogen._first_stage) is None


def test_the_core_code_is_kept_and_checked(tmp_path: Path) -> None:
    plugin = _load_plugin()
    core_code: Any = plugin["core_code"]
    compiles = _count_compiles(core_code)
    first = core_code("X = 1\n", str(tmp_path))
    assert first[:4] == plugin["TAG"][0]  # type: ignore[index]  # the magic number, then the code
    space: dict[str, object] = {}
    exec(marshal.loads(zlib.decompress(first[4:])), space)
    assert space["X"] == 1 and compiles == ["<stdin>"]  # as mitogen's source is named
    assert core_code("X = 1\n", str(tmp_path)) == first and len(compiles) == 1
    (kept,) = tmp_path.glob("*/*.host-code")
    kept.write_bytes(kept.read_bytes()[:-2] + b"zz")  # damaged: compiled again
    assert core_code("X = 1\n", str(tmp_path)) == first and len(compiles) == 2


def test_the_import_scan_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mitogen.master  # type: ignore[import-untyped]

    monkeypatch.setattr(mitogen.master, "compile", compile, raising=False)  # undone after
    _load_plugin()["_keep_scanned"](str(tmp_path))  # type: ignore[operator]
    name = "ansible.module_utils.common.validation"
    __import__(name)
    related = mitogen.master.ModuleFinder().find_related_imports(name)
    assert "ansible.module_utils.common.text.converters" in related
    (kept,) = tmp_path.glob("*/*.host-code")
    written = kept.stat().st_mtime_ns
    # a new finder (the next run's multiplexer) finds the same from the kept code
    assert mitogen.master.ModuleFinder().find_related_imports(name) == related
    assert kept.stat().st_mtime_ns == written and len(list(tmp_path.glob("*/*"))) == 1
    kept.write_bytes(kept.read_bytes()[:-4] + b"junk")  # damaged: compiled again
    assert mitogen.master.ModuleFinder().find_related_imports(name) == related
    # any other use of compile in that module is the builtin's, and kept nowhere
    assert mitogen.master.compile("1 + 1", "<expr>", "eval").co_filename == "<expr>"
    assert len(list(tmp_path.glob("*/*"))) == 1
