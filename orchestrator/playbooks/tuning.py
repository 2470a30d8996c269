"""Speed settings for ansible-playbook: strategy (mitogen when it works), forks, pipelining.

Defaults, each overridable through :class:`Tuning`:

=================  ==========================================================================
strategy           ``auto``: mitogen (``mitogen_free`` when the playbook allows the free
                   strategy, else ``mitogen_linear``) when the ``mitogen`` package imports and
                   supports this ansible-core; else ``free``/``linear`` with a warning in the
                   run. Or name one: ``mitogen_linear``, ``mitogen_free``, ``linear``,
                   ``free``, ``host_pinned``...
forks              the number of hosts, capped by ``Settings.forks``
pipelining         on (one ssh round trip per task instead of three)
control_persist    ``120s``: an ssh master per host, reused across tasks (and runs)
connect_timeout    30 s (Ansible's 10 s is short behind two jump hosts on a busy machine)
template cache     on: with mitogen's strategies (ours, below), templates compiled by one
                   worker are kept for the next ones and the next runs, in memory and under
                   ``state_dir/jinja-cache`` (``strategy_plugins/sg_template_cache.py``);
                   ``Tuning(template_cache=False)`` compiles every time, as Ansible does
host bytecode      on: with mitogen's strategies, the Python modules mitogen sends to a host
                   (its own, ``ansible_mitogen``'s, ``ansible.module_utils``) go compiled
                   next to their source, and a host whose Python has the controller's
                   bytecode magic number loads the code instead of compiling the source
                   (``strategy_plugins/sg_bytecode.py``; kept under ``state_dir/host-code``
                   across runs): about 0.08 s of CPU less per host and run;
                   ``Tuning(host_bytecode=False)`` sends source only, as mitogen does
ssh compression    off: mitogen compresses the modules it sends itself, and what else goes
                   through ssh is small; compressing it again costs the ssh clients' CPU
                   (``mitogen_ssh_compression: false`` as a default host variable, which an
                   inventory variable overrides; the plain ssh arguments have no ``-C``).
                   ``Tuning(ssh_compression=True)`` turns it on for both
CPU pinning        none: mitogen's strategies run from ``strategy_plugins/`` here, the same
                   classes without mitogen's CPU affinity policy (it pins its multiplexer to
                   CPU 0 and, below 4 CPUs, Ansible's main process, every worker and every ssh
                   client to CPU 1: on 2 CPUs the whole run but the multiplexer shares one
                   core, 20-25 % slower in the lab). Mitogen's own: ``Tuning.env=
                   {"ANSIBLE_STRATEGY_PLUGINS": str(mitogen_status().strategy_dir)}``
=================  ==========================================================================

Plain ``ansible-playbook`` already uses ``ControlPersist=60s``; it does not pipeline, runs 5
forks and the linear strategy. Measured on the lab (benchmarks/playbook/README.md), mitogen is
what makes the difference.
"""

from __future__ import annotations

import functools
import importlib
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from inventory import ConnectionTarget, HostKeyPolicy

AUTO = "auto"
MITOGEN_STRATEGIES = ("mitogen_linear", "mitogen_free", "mitogen_host_pinned")
UNPINNED_STRATEGIES = Path(__file__).resolve().with_name("strategy_plugins")
TEMPLATE_CACHE_ENV = "SERVERGUARD_TEMPLATE_CACHE"  # read by strategy_plugins/sg_template_cache
HOST_BYTECODE_ENV = "SERVERGUARD_HOST_BYTECODE"  # read by strategy_plugins/sg_bytecode
TEMPLATE_CACHE_FILES = 5000  # more files than this: the oldest are removed before a run
HOST_BYTECODE_FILES = 2000  # about 60 a version of Python, Ansible and mitogen


def _cache_dir(folder: Path, pattern: str, limit: int) -> Path:
    """``folder``, created (0700) and kept below ``limit`` files matching ``pattern`` (the
    least recently written go first)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    files = list(folder.glob(pattern))
    if len(files) > limit:
        def written(p: Path) -> float:
            try:
                return p.stat().st_mtime
            except OSError:
                return 0.0

        for old in sorted(files, key=written)[: len(files) - limit * 4 // 5]:
            old.unlink(missing_ok=True)
    return folder


def template_cache_dir(state_dir: Path) -> Path:
    """``state_dir/jinja-cache``, created (0700) and kept below ``TEMPLATE_CACHE_FILES``
    files (the least recently written go first)."""
    return _cache_dir(state_dir / "jinja-cache", "*/*.jinja-code", TEMPLATE_CACHE_FILES)


def host_bytecode_dir(state_dir: Path) -> Path:
    """``state_dir/host-code``: compiled modules for the hosts, kept across runs, below
    ``HOST_BYTECODE_FILES`` files."""
    return _cache_dir(state_dir / "host-code", "*/*.host-code", HOST_BYTECODE_FILES)


@dataclass(frozen=True)
class Tuning:
    """How ansible-playbook is run; ``None`` means ServerGuard's default (see the module)."""

    strategy: str = AUTO
    forks: int | None = None
    pipelining: bool = True
    control_persist: str = "120s"
    # Seconds to set up a connection (ssh and, with mitogen, its bootstrap). Ansible's 10 s
    # is short for a host behind two jump hosts on a busy machine.
    connect_timeout: int = 30
    # Keep compiled templates across workers and runs (mitogen's strategies only).
    template_cache: bool = True
    # Send the hosts mitogen's modules compiled as well (mitogen's strategies only).
    host_bytecode: bool = True
    # ssh's own compression (-C, mitogen_ssh_compression): off, see the module docstring.
    ssh_compression: bool = False
    # Any further ansible.cfg setting as an environment variable (ANSIBLE_*), applied last.
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MitogenStatus:
    available: bool
    strategy_dir: Path | None
    reason: str  # why not, when not available


@functools.lru_cache(maxsize=1)
def mitogen_status() -> MitogenStatus:
    """Whether the mitogen strategies can run with the installed ansible-core.

    ``ansible_mitogen.loaders`` refuses unsupported ansible-core versions on import; any error
    there (or a missing package) means the plain strategies are used.
    """
    try:
        package = importlib.import_module("ansible_mitogen")
        importlib.import_module("ansible_mitogen.loaders")
    except ImportError as exc:
        return MitogenStatus(False, None, f"mitogen is not installed ({exc})")
    except Exception as exc:  # its version check raises AnsibleError, among others
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return MitogenStatus(False, None, f"mitogen cannot run with this ansible-core: {first}")
    base = Path(package.__file__ or "").parent / "plugins" / "strategy"
    if not (base / "mitogen_linear.py").is_file():
        return MitogenStatus(False, None, f"mitogen's strategy plugins are missing in {base}")
    return MitogenStatus(True, base, "")


def key_is_known(target: ConnectionTarget, files: list[str]) -> bool:
    """Whether any of ``files`` holds a key for the target's address (``ssh-keygen -F``)."""
    name = target.address if target.port == 22 else f"[{target.address}]:{target.port}"
    for path in files:
        if not Path(path).is_file():
            continue
        try:
            found = subprocess.run(["ssh-keygen", "-F", name, "-f", path], capture_output=True,
                                   timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
        if found.returncode == 0 and found.stdout.strip():
            return True
    return False


@dataclass(frozen=True)
class Plan:
    """The strategy chosen for one run, the forks, and the warnings to show."""

    strategy: str
    forks: int
    env: dict[str, str]
    warnings: tuple[str, ...]

    @property
    def uses_mitogen(self) -> bool:
        return self.strategy.startswith("mitogen")


def plan(tuning: Tuning, *, hosts: int, free_safe: bool, max_forks: int,
         accept_new_unknown: list[str], control_path_dir: Path,
         template_cache_dir: Path | None = None, host_bytecode_dir: Path | None = None,
         ) -> Plan:
    """Choose strategy and settings; ``accept_new_unknown`` are targets that would record a
    new host key on this run (mitogen always checks keys strictly: see ``_mitogen_blockers``).
    ``template_cache_dir``: where compiled templates are kept (``Tuning.template_cache``);
    ``host_bytecode_dir``: where modules compiled for the hosts are (``Tuning.host_bytecode``).
    """
    warnings: list[str] = []
    strategy = tuning.strategy
    plain = "free" if free_safe else "linear"
    if strategy == AUTO:
        status = mitogen_status()
        if not status.available:
            warnings.append(f"{status.reason}; using the plain {plain} strategy")
            strategy = plain
        elif accept_new_unknown:
            shown = ", ".join(accept_new_unknown[:5]) + (" ..." if len(accept_new_unknown) > 5
                                                          else "")
            warnings.append(
                "mitogen checks host keys strictly and cannot record new ones (accept-new), "
                f"and no key is known yet for {shown}; using the plain {plain} strategy for "
                "this run")
            strategy = plain
        else:
            strategy = "mitogen_free" if free_safe else "mitogen_linear"
    env: dict[str, str] = {
        "ANSIBLE_STRATEGY": strategy,
        "ANSIBLE_PIPELINING": "True" if tuning.pipelining else "False",
        "ANSIBLE_SSH_ARGS": " ".join(
            (["-C"] if tuning.ssh_compression else [])
            + ([f"-o ControlMaster=auto -o ControlPersist={tuning.control_persist}"]
               if tuning.control_persist else [])),
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_path_dir),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_TIMEOUT": str(tuning.connect_timeout),
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_FORCE_COLOR": "False",
    }
    if strategy.startswith("mitogen"):
        status = mitogen_status()
        if not status.available:
            from orchestrator.errors import ConfigError

            raise ConfigError(f"strategy {strategy}: {status.reason}")
        # ours first: the same strategies without mitogen's CPU pinning (module docstring)
        env["ANSIBLE_STRATEGY_PLUGINS"] = os.pathsep.join([str(UNPINNED_STRATEGIES),
                                                           str(status.strategy_dir)])
        if tuning.template_cache and template_cache_dir is not None:
            env[TEMPLATE_CACHE_ENV] = str(template_cache_dir)
        if not tuning.host_bytecode:
            env[HOST_BYTECODE_ENV] = "0"
        elif host_bytecode_dir is not None:
            env[HOST_BYTECODE_ENV] = str(host_bytecode_dir)
    forks = tuning.forks or max(1, min(hosts, max_forks))
    env.update(tuning.env)
    return Plan(strategy, forks, env, tuple(warnings))


def host_defaults(tuning: Tuning) -> dict[str, object]:
    """Variables every host of the generated inventory gets unless the user's inventory sets
    them (a host's or a group's own value wins; extra vars win over both)."""
    return {"mitogen_ssh_compression": tuning.ssh_compression}


def accept_new_unknown(targets: list[ConnectionTarget], known_files: dict[str, list[str]],
                       ) -> list[str]:
    """Targets with the accept-new policy whose key is not recorded yet."""
    return [t.name for t in targets
            if t.host_key_policy is HostKeyPolicy.ACCEPT_NEW
            and not key_is_known(t, known_files[t.name])]
