"""Python modules sent to the hosts already compiled, for hosts whose Python can load them.

mitogen runs Ansible's modules in one Python interpreter per host, importing what they need
(mitogen's own modules, ``ansible_mitogen``, ``ansible.module_utils``: about 60 modules and
26,000 lines) from the controller. It sends each module's source, and every host compiles
all of it again on every run: 0.15 s of CPU here, about half of what the host's interpreter
spends on ``sysctl_baseline.yml``.

Installed by ServerGuard's strategies in Ansible's main process, before mitogen starts its
multiplexer (which inherits it):

- The multiplexer compiles each module it serves once per run, as the host would (the same
  source text, file name ``master:<path>``, no flags, no ``__future__`` inherited,
  optimization level 0), and sends the code (``marshal``, compressed) next to the source in
  the module's message, tagged with the controller's bytecode magic number.
- The copy of ``mitogen.core`` that mitogen sends a host when it connects is patched to load
  that code when the host's Python has the same magic number and runs unoptimized, and to
  compile the source as before otherwise (another Python version, ``python -O``, a module
  that came without code). The source is decompressed only then.
- The source is still sent and kept: tracebacks, ``linecache`` and ``inspect.getsource``
  (Ansible's ``respawn_module`` uses it) work as before. A host that forwards modules to a
  context of its own (``become``) forwards the code with them.
- Compiled modules are also kept on the controller, in ``$SERVERGUARD_HOST_BYTECODE``
  (``state_dir/host-code``), keyed by the exact Python version, the module's path and its
  source, each file checked against its digest when read: the next runs do not compile
  them again (about 0.3 s of the multiplexer's CPU per run). A missing, unreadable or
  corrupt file is compiled again; a full or read-only disk only means no cache.
- The patched importer counts what it loaded each way (``sg_code_counts``: [code, compiled]).
- ``mitogen.core`` itself goes compiled too. mitogen's first stage (the ``python -c`` that
  ssh runs on the host) reads the core's source and starts a Python on it as a program on
  stdin, which Python reads and compiles slowly (73 kB, about 50 ms of a host's CPU on
  every connection). The first stage is extended to read the core's code after the
  source (the magic number, then the compressed code, about 40 kB) and, when the host's
  Python matches and runs unoptimized, to start the interpreter on a short program that
  reads that code from file descriptor 101, ahead of the source, which mitogen keeps from
  there for ``inspect`` and for the host's own contexts. Python 2 or another version: the
  source, as before. The core's code is compiled once and kept with the modules'
  (``sg_core_code`` is set in the host's ``mitogen.core`` when it came compiled).
- mitogen minifies its own modules before it sends them, on every run (0.2-0.4 s of the
  controller's CPU), and compiles every module it sends from its original source to find
  what it imports (0.2-0.3 s); the minified text and that code are kept in the same
  folder, keyed by the source.

Measured on the lab (20 hosts, alternated runs): the hosts' CPU fell by 1.6-1.7 s for
``sysctl_baseline.yml`` and ``firewall.yml``, the runs' wall time by about 8 %. The code is
about twice the size of the source (compressed: 0.5 MB a host here), so ssh's own
compression, which would compress it again, is off by default (``tuning.py``).

If this mitogen's ``mitogen.core`` does not have the text the patch expects (another mitogen
version), nothing is patched and mitogen works as it does on its own.
"""

from __future__ import annotations

import binascii
import builtins
import contextlib
import functools
import hashlib
import inspect
import logging
import marshal
import os
import sys
import textwrap
import threading
import zlib
from collections.abc import Callable
from importlib.util import MAGIC_NUMBER
from types import CodeType
from typing import Any

import mitogen.core  # type: ignore[import-untyped]
import mitogen.master  # type: ignore[import-untyped]
import mitogen.minify  # type: ignore[import-untyped]
import mitogen.parent  # type: ignore[import-untyped]

LOG = logging.getLogger(__name__)
# a folder: keep compiled modules there across runs; "0": send source only, as mitogen does
ENV_VAR = "SERVERGUARD_HOST_BYTECODE"
TAG = (MAGIC_NUMBER, 0)  # what the host's Python must match: magic number, optimize level
LEVEL = 6  # zlib: level 9 takes twice as long for about 1% less
_KEY = repr((sys.version, TAG, 1)).encode()  # what a cached code is valid for, with its source

# (text in mitogen.core as mitogen minifies it, what replaces it); every one must be found
# exactly the expected number of times, or nothing is patched.
_CORE_EDITS: tuple[tuple[str, str, int], ...] = (
    # the module tuple gets a sixth item: (tag, compressed code) or None
    ("_, pkg_present, path, _, _ = self._cache[spec.name]",
     "pkg_present, path = self._cache[spec.name][1:3]", 1),
    ("_, pkg_present, path, _, _ = self._cache[fullname]",
     "pkg_present, path = self._cache[fullname][1:3]", 1),
    # the source is decompressed only when it is compiled
    ("source = self.get_source(name)", "source = None", 1),
    ("source = self.get_source(fullname)", "source = None", 1),
    ("code = compile(source, origin, 'exec', flags=0, dont_inherit=True)",
     "code = self._sg_code(name, origin)", 1),
    ("code = compile(source, mod.__file__, 'exec', 0, 1)",
     "code = self._sg_code(fullname, mod.__file__)", 1),
    ("\n def get_source(self, fullname):\n",
     "\n def _sg_code(self, fullname, origin):\n"
     "  counts = self.__dict__.setdefault('sg_code_counts', [0, 0])\n"
     "  tup = self._cache.get(fullname)\n"
     "  if tup is not None and len(tup) > 5 and tup[5] is not None:\n"
     "   try:\n"
     "    import marshal\n"
     "    from importlib.util import MAGIC_NUMBER\n"
     "    if tup[5][0] == (MAGIC_NUMBER, sys.flags.optimize):\n"
     "     code = marshal.loads(zlib.decompress(tup[5][1]))\n"
     "     counts[0] += 1\n"
     "     return code\n"
     "   except Exception:\n"
     "    pass\n"
     "  counts[1] += 1\n"
     "  return compile(self.get_source(fullname), origin, 'exec', 0, 1)\n"
     "\n def get_source(self, fullname):\n", 1),
)

_lock = threading.Lock()


def patched_core(source: str) -> str | None:
    """``mitogen.core``'s minified source with the edits, or None when one does not fit."""
    for old, new, count in _CORE_EDITS:
        if source.count(old) != count:
            LOG.debug("sg_bytecode: mitogen.core differs (%r), not patched", old)
            return None
        source = source.replace(old, new)
    return source


def _path(folder: str, key: str) -> str:
    return os.path.join(folder, key[:2], key + ".host-code")


def _read(folder: str | None, key: str) -> bytes | None:
    """A cached compressed code, checked against its digest; None when missing or bad."""
    if not folder:
        return None
    try:
        with open(_path(folder, key), "rb") as f:
            data = f.read()
    except OSError:
        return None
    digest, blob = data[:32], data[32:]
    return blob if hashlib.sha256(blob).digest() == digest else None


def _write(folder: str | None, key: str, blob: bytes) -> None:
    if not folder:
        return
    path = _path(folder, key)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(hashlib.sha256(blob).digest() + blob)
        os.replace(tmp, path)
    except OSError:  # a full disk or a read-only state directory: no cache, no failure
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _kept(folder: str | None, key: str, compiled: Callable[[], CodeType],
          level: int = LEVEL) -> bytes:
    """The compressed, marshalled code kept under ``key`` in ``folder``; else
    ``compiled()``'s, kept there for the next runs."""
    blob = _read(folder, key)
    if blob is None:
        blob = zlib.compress(marshal.dumps(compiled()), level)
        _write(folder, key, blob)
    return blob


def code_for(tup: tuple[Any, ...], folder: str | None = None) -> tuple[Any, ...]:
    """A module tuple of mitogen's responder, (name, package contents, path, compressed
    source, related), with a sixth item: (TAG, compressed marshalled code), or None when
    there is nothing to compile or it does not compile (the host then reports the error).
    ``folder``: where compiled modules are kept across runs (keyed by this Python's exact
    version, the path and the source)."""
    fullname, _, path, compressed, _ = tup
    if path is None or compressed is None:
        return (*tup, None)
    key = hashlib.sha256(_KEY + path.encode() + b"\0" + bytes(compressed)).hexdigest()
    try:
        blob = _kept(folder, key, lambda: compile(zlib.decompress(compressed).decode("utf-8"),
                                                  "master:" + path, "exec", 0, True,
                                                  optimize=0))
    except (SyntaxError, ValueError, UnicodeDecodeError, zlib.error):
        LOG.debug("sg_bytecode: %s sent as source only", fullname, exc_info=True)
        return (*tup, None)
    return (*tup, (TAG, mitogen.core.Blob(blob)))


# mitogen's first stage as mitogen sends it (Connection.get_boot_command: no line with "#",
# dedented, four spaces as one), edited to read the core's code after its source (its
# length in argv[4]). When the host's Python matches, the interpreter it starts gets a
# short program that reads the code from descriptor 101, ahead of the source mitogen reads
# from there; Python reads and compiles a program from stdin slowly (about 50 ms for the
# core's 73 kB here, against 1 ms to load the code).
_STAGE_EDIT = (
    "C=zlib.decompress(C)\nf=os.fdopen(W,'wb',0)\nf.write(C)\nf.close()\n"
    "f=os.fdopen(w,'wb',0)\nf.write(C)\n",
    "C=zlib.decompress(C)\nP=C\nD=''.encode()\nn=int(sys.argv[4])\nB=''.encode()\nV='V'\n"
    "while n-len(B) and V:select.select([0],[],[]);V=os.read(0,n-len(B));B+=V\n"
    "try:\n import _frozen_importlib_external as I\n"
    " if B[:4]==I.MAGIC_NUMBER and not sys.flags.optimize:D=B[4:];P=("
    "'import marshal,os,zlib\\nsg_core_code=[%r,%r]\\n"
    "while len(sg_core_code[0])<%d and sg_core_code[1]:"
    "sg_core_code[1]=os.read(101,%d-len(sg_core_code[0]));sg_core_code[0]+=sg_core_code[1]\\n"
    "exec(marshal.loads(zlib.decompress(sg_core_code[0])))\\nsg_core_code=1'"
    "%(''.encode(),'.'.encode(),len(D),len(D))).encode()+C[C.rindex('\\n'.encode(),0,len(C)-1):]\n"
    "except Exception:\n pass\n"
    "f=os.fdopen(W,'wb',0)\nf.write(P)\nf.close()\nf=os.fdopen(w,'wb',0)\nf.write(D+C)\n",
)
_LOADER = ("import sys;sys.path=[p for p in sys.path if p];"
           "import binascii,os,select,zlib;"
           "exec(zlib.decompress(binascii.a2b_base64(sys.argv[1]),-15))")


def first_stage(original: Any) -> str | None:
    """The edited first stage (its source), or None when mitogen's does not fit the edit.
    ``original``: ``mitogen.parent.Connection._first_stage``."""
    lines = inspect.getsourcelines(original)[0][2:]
    source = textwrap.dedent("".join(s for s in lines if "#" not in s))[:-1]
    source = source.replace("    ", " ")
    old, new = _STAGE_EDIT
    if source.count(old) != 1 or "#" in new:
        LOG.debug("sg_bytecode: mitogen's first stage differs, the core goes as source")
        return None
    return source.replace(old, new)


def core_code(source: str, folder: str | None = None) -> bytes:
    """What the edited first stage reads after the core's source: the magic number, then
    the compressed code of ``source`` (kept in ``folder`` across runs)."""
    key = hashlib.sha256(_KEY + b"core\0" + source.encode()).hexdigest()
    return TAG[0] + _kept(folder, key, lambda: compile(source, "<stdin>", "exec", 0, True,
                                                       optimize=0))


def _keep_minified(folder: str | None) -> None:
    """mitogen minifies its own modules before it sends them (the core on every run, in
    Ansible's main process, the others in the multiplexer: 0.2-0.4 s of CPU a run); keep
    the minified text in ``folder``, keyed by mitogen's version and the source."""
    if not folder:
        return
    original = mitogen.minify.minimize_source
    salt = _KEY + repr(mitogen.__version__).encode() + b"minified\0"

    def minimize_source(source: str | bytes) -> str:
        text = mitogen.core.to_text(source)
        key = hashlib.sha256(salt + text.encode("utf-8", "surrogatepass")).hexdigest()
        kept = _read(folder, key)
        if kept is not None:
            return kept.decode("utf-8", "surrogatepass")
        minified: str = original(text)
        _write(folder, key, minified.encode("utf-8", "surrogatepass"))
        return minified

    mitogen.minify.minimize_source = minimize_source


def _keep_scanned(folder: str | None) -> None:
    """mitogen compiles every module it sends a second time, from its original source, to
    find the modules it imports (``ModuleFinder.find_related_imports``: 60-70 compiles a
    run, 0.2-0.3 s of the multiplexer's CPU); keep that code in ``folder`` too, keyed by
    the file name and the source. It is only read for its imports, never run."""
    if not folder:
        return

    def compile(source: str | bytes, filename: str, mode: str, *args: Any, **kwargs: Any,
                ) -> Any:
        if args or kwargs or mode != "exec":
            return builtins.compile(source, filename, mode, *args, **kwargs)
        text = source if isinstance(source, bytes) else source.encode("utf-8", "surrogatepass")
        key = hashlib.sha256(_KEY + b"scan\0" + str(filename).encode("utf-8", "surrogatepass")
                             + b"\0" + text).hexdigest()
        return marshal.loads(zlib.decompress(
            _kept(folder, key, lambda: builtins.compile(source, filename, mode), level=1)))

    mitogen.master.compile = compile  # shadows the builtin in that module only


def _send_core_compiled(folder: str | None) -> None:
    """Connections start hosts on the core's code (see the module's docstring)."""
    connection = mitogen.parent.Connection
    stage = first_stage(connection._first_stage)
    if stage is None:
        return
    compressor = zlib.compressobj(zlib.Z_BEST_COMPRESSION, zlib.DEFLATED, -zlib.MAX_WBITS)
    encoded = binascii.b2a_base64(compressor.compress(stage.encode()) + compressor.flush(),
                                  newline=False).decode()
    original_preamble = connection.get_preamble

    @functools.cache
    def _code() -> bytes:  # in the multiplexer, at its first connection
        return core_code(mitogen.parent._get_core_source(), folder)

    def get_boot_command(self: Any) -> list[str]:
        return [*self.get_python_argv(), "-c", _LOADER, encoded, self.options.remote_name,
                str(len(original_preamble(self))), str(len(_code()))]

    def get_preamble(self: Any) -> bytes:
        return bytes(original_preamble(self)) + _code()

    connection.get_boot_command = get_boot_command
    connection.get_preamble = get_preamble


def install(folder: str | None = None) -> bool:
    """Patch mitogen in this process (once); True when the patch is in place. ``folder``:
    keep compiled modules there across runs too."""
    with _lock:
        if getattr(mitogen.master.ModuleResponder._build_tuple, "sg_bytecode", False):
            return True
        if mitogen.parent._core_source_partial is not None:
            return False  # a context was already made with the original core
        minimize_source = mitogen.minify.minimize_source
        _keep_minified(folder)
        patched = patched_core(mitogen.parent._get_core_source())
        if patched is None:
            mitogen.minify.minimize_source = minimize_source  # nothing patched
            return False
        _keep_scanned(folder)
        original_build = mitogen.master.ModuleResponder._build_tuple

        def _get_core_source() -> str:
            return patched

        def _build_tuple(self: Any, fullname: str) -> tuple[Any, ...]:
            tup = original_build(self, fullname)
            if len(tup) == 5:
                tup = code_for(tup, folder)
                self._cache[fullname] = tup
            return tup

        _build_tuple.sg_bytecode = True  # type: ignore[attr-defined]
        mitogen.parent._get_core_source = _get_core_source
        mitogen.master.ModuleResponder._build_tuple = _build_tuple
        _send_core_compiled(folder)
        return True


if __name__ == "install" and os.environ.get(ENV_VAR) != "0":  # run by sg_strategy.py
    install(os.environ.get(ENV_VAR) or None)
