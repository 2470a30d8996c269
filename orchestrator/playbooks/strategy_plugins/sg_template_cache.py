"""Compiled Jinja templates, kept: Ansible compiles each template anew in every worker.

Ansible forks a worker process per task and host, and every worker compiles the templates
it meets (task arguments, conditionals, variables, template files) from scratch: on the
lab's 20 hosts, 360 compiles and 1.5 s of the controller's CPU for ``sysctl_baseline.yml``,
870 and 4.2 s for ``firewall.yml``, the same few dozen templates each time. ServerGuard's
strategies (this directory) install this cache in Ansible's main process before any worker
forks; each compiled template (Python code, as Jinja makes it) goes to memory and to
``$SERVERGUARD_TEMPLATE_CACHE`` (under the state directory, like Python's own
``__pycache__``), so later workers and later runs load it instead.

What Jinja generates depends on the template's text and on the environment's compile-time
settings, all of which are in the key: the delimiters and whitespace settings, the
environment class, async and finalize, Ansible's ``escape_backslashes`` and embedded
template settings, the template's name, and the Python, Jinja and Ansible versions. It also
depends on how each filter and test the template uses passes its arguments (context,
environment or neither): those are recorded with the code and checked against what the
names resolve to now, and a template is compiled again when one differs or is gone. A
syntax error is never cached (it is raised by the compile, every time). An unreadable or
corrupt cache file is ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import sys
import threading
from collections.abc import Callable
from types import CodeType
from typing import Any

import ansible
import jinja2
from ansible._internal._templating import _jinja_bits
from jinja2 import nodes
from jinja2.utils import _PassArg

ENV_VAR = "SERVERGUARD_TEMPLATE_CACHE"
MAX_MEMORY = 4096  # compiled templates kept in a process's memory
MAX_WRITES = 1000  # new files one process writes at most (a runaway of unique templates)
_VERSIONS = (sys.version, jinja2.__version__, ansible.__version__, 1)

Uses = tuple[tuple[str, str, str], ...]  # (filter or test, name, how it takes arguments)


class _Pending(threading.local):
    expression: str | None = None  # compile_expression's source, for the compile it makes


_PENDING = _Pending()
_MEMORY: dict[str, tuple[CodeType, Uses]] = {}
_writes = [0]


def _settings(env: Any) -> tuple[Any, ...]:
    ctx = _jinja_bits._TemplateCompileContext.current(optional=True)
    finalize = env.finalize
    return (
        f"{type(env).__module__}.{type(env).__qualname__}",
        tuple(repr(getattr(env, n)) for n in _jinja_bits._TEMPLATE_OVERRIDE_FIELD_NAMES),
        env.optimized, env.is_async, repr(env.autoescape), tuple(sorted(env.extensions)),
        getattr(finalize, "__qualname__", repr(finalize)),
        _jinja_bits._TemplateConfig.allow_embedded_templates,
        None if ctx is None else ctx.escape_backslashes,
    )


def _how(env: Any, kind: str, name: str) -> str:
    try:
        found = (env.filters if kind == "filter" else env.tests)[name]
    except Exception:  # not found, or a plugin that does not load: the compile decides
        return "-"
    return str(_PassArg.from_obj(found))


def _uses(env: Any, tree: nodes.Node) -> Uses:
    names = {("filter", n.name) for n in tree.find_all(nodes.Filter)}
    names |= {("test", n.name) for n in tree.find_all(nodes.Test)}
    return tuple(sorted((kind, name, _how(env, kind, name)) for kind, name in names))


def _still(env: Any, uses: Uses) -> bool:
    return all(_how(env, kind, name) == how for kind, name, how in uses)


def _path(folder: str, key: str) -> str:
    return os.path.join(folder, key[:2], key + ".jinja-code")


def _read(folder: str | None, key: str) -> tuple[CodeType, Uses] | None:
    if not folder:
        return None
    try:
        with open(_path(folder, key), "rb") as f:
            code, uses = marshal.loads(f.read())
    except Exception:  # missing, corrupt or from elsewhere: compile (and write it) again
        return None
    return (code, uses) if isinstance(code, CodeType) else None


def _write(folder: str | None, key: str, entry: tuple[CodeType, Uses]) -> None:
    if not folder or _writes[0] >= MAX_WRITES:
        return
    _writes[0] += 1
    path = _path(folder, key)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(marshal.dumps(entry))
        os.replace(tmp, path)
    except OSError:  # a full disk or a read-only state directory: no cache, no failure
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def install(folder: str | None) -> None:
    """Cache compiled templates of Ansible's environment class in this process (and the
    workers it forks); ``folder``: also on disk there."""
    env_class: Any = _jinja_bits.AnsibleEnvironment
    if getattr(env_class, "_serverguard_cache", False):
        return
    compile_template: Callable[..., Any] = env_class.compile
    compile_expression: Callable[..., Any] = env_class.compile_expression

    def expression(self: Any, source: str, *args: Any, **kwargs: Any) -> Any:
        _PENDING.expression = f"{source}\0{args!r}\0{sorted(kwargs.items())!r}"
        try:
            return compile_expression(self, source, *args, **kwargs)
        finally:
            _PENDING.expression = None

    def compile(self: Any, source: Any, name: str | None = None, filename: str | None = None,
                raw: bool = False, defer_init: bool = False) -> Any:
        pending, _PENDING.expression = _PENDING.expression, None
        if isinstance(source, str):
            text = "template\0" + source
        elif pending is not None and isinstance(source, nodes.Template):
            text = "expression\0" + pending
        else:
            text = ""
        if not text or raw or self._debuggable_template_source:
            return compile_template(self, source, name, filename, raw, defer_init)
        key = hashlib.sha256(repr(
            (_VERSIONS, _settings(self), name, filename, defer_init, text)).encode()).hexdigest()
        entry = _MEMORY.get(key)
        if entry is None:
            entry = _read(folder, key)
        if entry is not None and _still(self, entry[1]):
            if key not in _MEMORY and len(_MEMORY) < MAX_MEMORY:
                _MEMORY[key] = entry
            return entry[0]
        code = compile_template(self, source, name, filename, raw, defer_init)
        tree = self._parse(source, name, filename) if isinstance(source, str) else source
        entry = (code, _uses(self, tree))
        if len(_MEMORY) < MAX_MEMORY:
            _MEMORY[key] = entry
        _write(folder, key, entry)
        return code

    env_class.compile = compile
    env_class.compile_expression = expression
    env_class._serverguard_cache = True


if __name__ == "install":  # run by ServerGuard's strategy plugins (runpy, run_name="install")
    install(os.environ.get(ENV_VAR))
