"""The compiled-template cache ServerGuard's strategies install in Ansible
(``orchestrator/playbooks/strategy_plugins/sg_template_cache.py``).

Each case runs in a fresh Python process, as Ansible's main process and workers do: the
cache patches Ansible's environment class, which must not leak into this test process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from orchestrator.playbooks.tuning import (
    TEMPLATE_CACHE_ENV,
    UNPINNED_STRATEGIES,
    template_cache_dir,
)

PRELUDE = textwrap.dedent(f"""
    import importlib.util, json, sys
    spec = importlib.util.spec_from_file_location(
        "sg_template_cache", {str(UNPINNED_STRATEGIES / "sg_template_cache.py")!r})
    cache = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cache)
    from ansible._internal._templating import _jinja_bits
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template
    compiled = []  # the compiles that really ran (the cache missed)
    real = _jinja_bits.AnsibleEnvironment.compile
    def counting(self, source, *args, **kwargs):
        compiled.append(str(source)[:40])
        return real(self, source, *args, **kwargs)
    _jinja_bits.AnsibleEnvironment.compile = counting
    if sys.argv[1] != "off":
        cache.install(sys.argv[1] or None)
    def render(template, **variables):
        templar = Templar(loader=DataLoader(), variables=variables)
        return templar.template(trust_as_template(template))
    def check(expression, **variables):
        templar = Templar(loader=DataLoader(), variables=variables)
        return templar.evaluate_conditional(trust_as_template(expression))
""")

WORK = textwrap.dedent("""
    out = []
    for _ in range(3):  # the same templates again, as the next workers and hosts would
        out.append(render("{{ x | upper }}-{{ n | sort | join(',') }}", x="ab", n=[3, 1, 2]))
        out.append(render("{% for k, v in m.items() %}{{ k }}={{ v }};{% endfor %}",
                          m={"a": 1, "b": 2}))
        out.append(check("n | length == 3 and x is string", x="y", n=[1, 2, 3]))
        out.append(render("{{ '\\\\n' }}|{{ x }}", x="raw"))  # escape_backslashes
    try:
        render("{{ x | upper }")
    except Exception as exc:
        out.append(type(exc).__name__)
    try:
        render("{{ x | upper }")  # a syntax error is raised again, never cached
    except Exception as exc:
        out.append(type(exc).__name__)
    print(json.dumps({"out": out, "compiled": len(compiled)}))
""")


def run(cache: str, script: str = WORK) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", PRELUDE + script, cache],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_templates_render_the_same_and_compile_once_then_not_at_all(tmp_path: Path) -> None:
    plain = run("off")
    memory = run("")
    assert memory["out"] == plain["out"]
    assert plain["out"][:4] == ["AB-1,2,3", "a=1;b=2;", True, "\\n|raw"]
    assert plain["out"][-2:] == ["AnsibleTemplateSyntaxError"] * 2
    # uncached: every render compiles; cached in memory: each template once (and the
    # syntax error both times)
    assert memory["compiled"] < plain["compiled"]
    first = run(str(tmp_path / "c"))
    again = run(str(tmp_path / "c"))  # a later run: the files are there
    assert first["out"] == again["out"] == plain["out"]
    assert again["compiled"] == 2  # only the two syntax errors
    assert len(list((tmp_path / "c").glob("*/*.jinja-code"))) >= 4


def test_a_changed_filter_is_compiled_again(tmp_path: Path) -> None:
    """The code calls a filter with the context or without: recorded, and checked on use."""
    script = textwrap.dedent("""
        from jinja2 import pass_context
        from ansible.plugins.loader import filter_loader
        if sys.argv[2:] == ["context"]:
            @pass_context
            def shout(ctx, v):
                return "ctx:" + v.upper()
        else:
            def shout(v):
                return "plain:" + v.upper()
        from ansible._internal._templating import _jinja_plugins
        real_get = _jinja_plugins.JinjaPluginIntercept.__getitem__
        def getitem(self, key):
            if key == "shout":
                return shout
            return real_get(self, key)
        _jinja_plugins.JinjaPluginIntercept.__getitem__ = getitem
        print(json.dumps({"out": render("{{ x | shout }}", x="a"), "compiled": len(compiled)}))
    """)
    folder = str(tmp_path / "c")

    def go(kind: str) -> dict[str, object]:
        proc = subprocess.run([sys.executable, "-c", PRELUDE + script, folder, kind],
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    assert go("plain") == {"out": "plain:A", "compiled": 1}
    assert go("plain") == {"out": "plain:A", "compiled": 0}
    assert go("context") == {"out": "ctx:A", "compiled": 1}  # not the cached call


def test_a_corrupt_cache_file_is_compiled_again(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    first = run(str(folder))
    for f in folder.glob("*/*.jinja-code"):
        f.write_bytes(b"not marshal data")
    again = run(str(folder))
    assert again["out"] == first["out"] and again["compiled"] == first["compiled"]


def test_the_cache_folder_is_private_and_bounded(tmp_path: Path, monkeypatch) -> None:
    import orchestrator.playbooks.tuning as tuning

    monkeypatch.setattr(tuning, "TEMPLATE_CACHE_FILES", 10)
    folder = template_cache_dir(tmp_path)
    assert folder.stat().st_mode & 0o777 == 0o700
    for i in range(15):
        (folder / f"{i:02x}").mkdir(exist_ok=True)
        (folder / f"{i:02x}" / f"{i}.jinja-code").write_bytes(b"x")
    template_cache_dir(tmp_path)
    assert len(list(folder.glob("*/*.jinja-code"))) == 8  # cut to 4/5 of the bound


def test_installed_as_the_strategy_plugins_do(tmp_path: Path) -> None:
    """The strategy plugins run the file with runpy (they cannot import it by name)."""
    script = textwrap.dedent(f"""
        import json, os, runpy
        os.environ[{TEMPLATE_CACHE_ENV!r}] = {str(tmp_path / "c")!r}  # as the runner sets it
        runpy.run_path({str(UNPINNED_STRATEGIES / "sg_template_cache.py")!r}, run_name="install")
        import gc; gc.collect()
        from ansible.parsing.dataloader import DataLoader
        from ansible.template import Templar, trust_as_template
        templar = Templar(loader=DataLoader(), variables={{"x": "ab"}})
        print(json.dumps(templar.template(trust_as_template("{{{{ x | upper }}}}!"))))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == "AB!"
    assert len(list((tmp_path / "c").glob("*/*.jinja-code"))) == 1
