"""One playbook run: set up once, then ``run`` (blocking) or ``run_async`` (a thread).

Lifecycle (as ansible-runner's)::

    pending ──► running ──► successful | failed | timeout | canceled

Everything is checked and prepared before ansible-playbook starts (config, playbook outline,
inventory, targets, strategy); a problem there raises at once and nothing runs. The run then
lives in ``<state_dir>/runs/<run id>/``::

    run.json        status, exit code, stats, warnings (rewritten at start and at the end)
    events.jsonl    one PlaybookEvent a line, as they happen
    inventory.yml   the generated inventory (targets rendered as ssh options)
    artifacts/<id>/ ansible-runner's own artifacts (stdout, status, rc)
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from inventory import load_inventory
from orchestrator.errors import ConfigError, PatternError, PlaybookError
from orchestrator.playbooks.ansible_inventory import KnownHostsFiles, generate_inventory
from orchestrator.playbooks.catalog import (
    check_only,
    check_playbook,
    free_strategy_safe,
    resolve_playbook,
)
from orchestrator.playbooks.config import PlaybookConfig, extra_vars_document
from orchestrator.playbooks.events import EventReducer, HostStats, PlaybookEvent
from orchestrator.playbooks.tuning import (
    AUTO,
    Plan,
    accept_new_unknown,
    host_bytecode_dir,
    host_defaults,
    plan,
    template_cache_dir,
)
from orchestrator.procinfo import start_time
from orchestrator.settings import Settings

EventCallback = Callable[[PlaybookEvent], None]

# ansible-playbook's exit codes, plus ours for the two ways ServerGuard stops a run.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_HOST_FAILED = 2
EXIT_HOST_UNREACHABLE = 4
EXIT_CANCELED = 99  # ansible-playbook's "user interrupted"
EXIT_TIMEOUT = 124  # as timeout(1)

# Every process of a run carries its id in this environment variable (ssh and mitogen
# children included), to find them: ``grep -l SERVERGUARD_RUN_ID=<id> /proc/*/environ``.
RUN_ID_ENV = "SERVERGUARD_RUN_ID"
# Ansible's own scratch space on the controller (ANSIBLE_LOCAL_TEMP), in the run's directory
# (0700): Ansible removes its ``ansible-local-*`` folder at exit, but not when it is killed (a
# cancel, a timeout, ServerGuard's death); what is left then stays with the run instead of
# piling up in ~/.ansible/tmp. ``Tuning.env`` can still point it elsewhere.
LOCAL_TEMP = "tmp"
GUARD = Path(__file__).resolve().with_name("guard.py")
# After asking the guard to stop a run, how long before ansible-runner's own SIGKILL of the
# process group is used instead (the guard SIGKILLs after guard.GRACE, 1 s).
GUARD_STOP_WAIT = 8.0
RUNNER_SETTINGS = {"pexpect_timeout": 0.2, "suppress_ansible_output": True}


class RunStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCESSFUL = "successful"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELED = "canceled"

    @property
    def finished(self) -> bool:
        return self not in (RunStatus.PENDING, RunStatus.RUNNING)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def _control_path_dir(settings: Settings) -> Path:
    """Where ssh's ControlPersist sockets live: short paths only (sun_path is 108 bytes)."""
    candidate = settings.state_dir / "cp"
    if len(str(candidate)) > 60:
        candidate = Path.home() / ".ansible" / "cp"
    candidate.mkdir(parents=True, exist_ok=True, mode=0o700)
    return candidate


@dataclass
class PlaybookRun:
    """A run's state; the same object while it runs and after (see the module docstring)."""

    id: str
    dir: Path
    config: PlaybookConfig
    playbook: Path
    hosts: list[str]
    plan: Plan
    inventory_path: Path
    status: RunStatus = RunStatus.PENDING
    rc: int | None = None
    warnings: list[str] = field(default_factory=list)
    events: list[PlaybookEvent] = field(default_factory=list)
    started_at: str | None = None
    finished_at: str | None = None
    exception: str | None = None
    _reducer: EventReducer = field(default_factory=EventReducer, repr=False)
    _callbacks: list[EventCallback] = field(default_factory=list, repr=False)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _timed_out: bool = False
    _thread: threading.Thread | None = field(default=None, repr=False)
    # Applied to each event before it is written to events.jsonl (the API masks secrets);
    # subscribers still get the event itself.
    redact: Callable[[dict[str, Any]], dict[str, Any]] | None = field(default=None, repr=False)

    # -- what callers read ---------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, HostStats]:
        return dict(self._reducer.stats)

    @property
    def custom_stats(self) -> dict[str, Any]:
        """What the playbook recorded with ``set_stats``."""
        return dict(self._reducer.custom_stats)

    @property
    def errors(self) -> list[str]:
        """Playbook-level errors Ansible printed (``[ERROR]: ...``), one line each."""
        out = list(self._reducer.errors)
        if self.exception:
            out.append(self.exception)
        return out

    @property
    def ansible_warnings(self) -> list[str]:
        """Warnings Ansible printed (``[WARNING]: ...``), one line each."""
        return list(self._reducer.warnings)

    @property
    def events_path(self) -> Path:
        return self.dir / "events.jsonl"

    @property
    def exit_code(self) -> int | None:
        """ansible-playbook's exit code (0 ok, 2 failed hosts, 4 unreachable...);
        99 canceled, 124 timed out; ``None`` while running."""
        if not self.status.finished:
            return None
        if self.status is RunStatus.CANCELED:
            return EXIT_CANCELED
        if self.status is RunStatus.TIMEOUT:
            return EXIT_TIMEOUT
        if self.status is RunStatus.SUCCESSFUL:
            return EXIT_OK
        return self.rc if self.rc not in (None, 0) else EXIT_ERROR

    def host_results(self, host: str | None = None) -> list[PlaybookEvent]:
        return [e for e in self.events
                if e.kind == "host_result" and (host is None or e.host == host)]

    def subscribe(self, callback: EventCallback) -> None:
        """Call ``callback`` for every new event (from the run's thread)."""
        self._callbacks.append(callback)

    # -- control -------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop the run (ansible-playbook and its children are killed); status ``canceled``."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> RunStatus:
        self._done.wait(timeout)
        return self.status

    # -- the record ----------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "playbook": str(self.playbook),
            "status": str(self.status),
            "exit_code": self.exit_code,
            "rc": self.rc,
            "hosts": self.hosts,
            "limit": self.config.limit,
            "check": self.config.check,
            "diff": self.config.diff,
            "tags": list(self.config.tags),
            "skip_tags": list(self.config.skip_tags),
            "extra_vars": sorted(self.config.extra_vars),  # names only: values may be secret
            "strategy": self.plan.strategy,
            "forks": self.plan.forks,
            "stats": {h: s.to_dict() for h, s in self.stats.items()},
            "custom_stats": self.custom_stats,
            "warnings": [*self.warnings, *self.ansible_warnings],
            "errors": self.errors,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "dir": str(self.dir),
            "owner": _owner(),  # the process running it: see load_run
        }

    def _write_summary(self) -> None:
        tmp = self.dir / "run.json.tmp"
        tmp.write_text(json.dumps(self.summary(), indent=2, default=str) + "\n")
        tmp.replace(self.dir / "run.json")

    def _emit(self, event: PlaybookEvent) -> None:
        with self._lock:
            self.events.append(event)
            with self.events_path.open("a", encoding="utf-8") as fh:
                record = event.to_dict()
                if self.redact is not None:
                    record = self.redact(record)
                fh.write(json.dumps(record, default=str) + "\n")
        for callback in list(self._callbacks):
            callback(event)


def guard_command(pidfile: Path) -> list[str]:
    """What goes in front of ansible-playbook's command line: the run's process guard."""
    return [sys.executable, "-I", "-S", str(GUARD), str(os.getpid()), str(pidfile)]


def _our_child(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    fields = stat[stat.rfind(b")") + 2:].split()
    return len(fields) > 1 and fields[0] != b"Z" and int(fields[1]) == os.getpid()


class _Stopper:
    """ansible-runner's cancel callback (polled every 0.2 s): on cancel or timeout, SIGTERM
    the run's guard, which takes down the whole process tree; ansible-runner's SIGKILL of
    the process group only if there is no guard (yet) or it does not finish in time."""

    def __init__(self, run: PlaybookRun, deadline: float | None) -> None:
        self.run = run
        self.deadline = deadline
        self.pidfile = run.dir / "guard.pid"
        self.requested_at: float | None = None

    def __call__(self) -> bool:
        now = time.monotonic()
        if self.requested_at is None:
            if self.deadline is not None and now > self.deadline:
                self.run._timed_out = True
            elif not self.run._cancel.is_set():
                return False
            self.requested_at = now
            if not self._signal_guard():
                return True
        return now - self.requested_at > GUARD_STOP_WAIT

    def _signal_guard(self) -> bool:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return False
        if not _our_child(pid):  # stale file: never signal a stranger
            return False
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        return True


# -- setup, shared by run() and run_async() -----------------------------------------------------


def prepare(config: PlaybookConfig, settings: Settings) -> PlaybookRun:
    """Validate everything and lay out the run directory; nothing runs yet (``pending``)."""
    config.validate()
    playbook = resolve_playbook(config.playbook)
    check_playbook(playbook)
    notes: list[str] = []
    if check_only(playbook) and not config.check:
        config = replace(config, check=True)
        notes.append(f"{playbook.name} only runs in check mode: --check added")
    inv = load_inventory(config.inventory)
    found = inv.match("all", config.limit)
    hosts = found.hosts
    if not hosts:
        what = f"--limit {config.limit!r}" if config.limit else "the inventory"
        raise PatternError(f"{what} matches no host")
    notes += found.warnings  # part of --limit matched nothing: said with the run's warnings
    policy = config.host_key_policy or settings.host_key_policy
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    known = KnownHostsFiles(settings.known_hosts_file, settings.user_known_hosts)
    tuning = config.tuning
    generated = generate_inventory(inv, hosts, known, default_policy=policy,
                                   host_defaults=host_defaults(tuning))
    unknown = (accept_new_unknown(list(generated.targets.values()),
                                  {n: known.for_target(t) for n, t in generated.targets.items()})
               if tuning.strategy == AUTO else [])
    chosen = plan(tuning, hosts=len(hosts), free_safe=free_strategy_safe(playbook),
                  max_forks=settings.forks, accept_new_unknown=unknown,
                  control_path_dir=_control_path_dir(settings),
                  template_cache_dir=template_cache_dir(settings.state_dir)
                  if tuning.template_cache else None,
                  host_bytecode_dir=host_bytecode_dir(settings.state_dir)
                  if tuning.host_bytecode else None)
    run_id = new_run_id()
    run_dir = settings.state_dir / "runs" / run_id
    run_dir.mkdir(parents=True, mode=0o700)
    inventory_path = generated.write(run_dir / "inventory.yml")
    run = PlaybookRun(id=run_id, dir=run_dir, config=config, playbook=playbook, hosts=hosts,
                      plan=chosen, inventory_path=inventory_path,
                      warnings=[*notes, *inv.warnings, *chosen.warnings])
    run.events_path.touch()
    run._write_summary()
    return run


def _path_with_ansible() -> str:
    """PATH with this interpreter's bin dir first: ansible-playbook from the same install."""
    here = str(Path(sys.executable).parent)
    rest = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != here]
    return os.pathsep.join([here, *rest])


def _execute(run: PlaybookRun) -> None:
    """Run ansible-playbook through ansible-runner; fills in status, rc, events, stats."""
    import ansible_runner

    config = run.config
    deadline = time.monotonic() + config.timeout if config.timeout else None
    run.started_at = _now()
    run.status = RunStatus.RUNNING
    run._write_summary()
    extravars_path = run.dir / "extravars.yml"  # JSON is YAML too
    # ansible-runner drops a ``settings=`` argument when env files are suppressed (its
    # prepare_env only merges it with env/settings, and replaces it with {} when that file
    # is missing): its own input directory is the way that works. 0.2 s: how often the cancel
    # callback runs (ansible-runner's default is 5 s).
    (run.dir / "env").mkdir(exist_ok=True)
    (run.dir / "env" / "settings").write_text(json.dumps(RUNNER_SETTINGS) + "\n")
    cmdline: list[str] = []
    if config.extra_vars:
        fd = os.open(extravars_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(extra_vars_document(config.extra_vars, as_data=config.extra_vars_as_data))
        cmdline += ["-e", f"@{extravars_path}"]
    if config.check:
        cmdline.append("--check")
    if config.diff:
        cmdline.append("--diff")

    def on_event(raw: dict[str, Any]) -> bool:
        for event in run._reducer.reduce(raw):
            run._emit(event)
        return False  # our events.jsonl is the record; don't keep ansible-runner's copy

    stopper = _Stopper(run, deadline)
    try:
        attempts = 0
        while True:
            attempts += 1
            runner = ansible_runner.interface.init_runner(
                private_data_dir=str(run.dir),
                ident=run.id if attempts == 1 else f"{run.id}-retry",
                artifact_dir=str(run.dir / "artifacts"),
                playbook=str(run.playbook),
                inventory=str(run.inventory_path),
                limit=config.limit,
                tags=",".join(config.tags) or None,
                skip_tags=",".join(config.skip_tags) or None,
                forks=run.plan.forks,
                verbosity=config.verbosity or None,
                cmdline=" ".join(_quote(a) for a in cmdline) or None,
                envvars={"PATH": _path_with_ansible(), RUN_ID_ENV: run.id,
                         "ANSIBLE_LOCAL_TEMP": str(run.dir / LOCAL_TEMP), **run.plan.env},
                quiet=True,
                suppress_env_files=True,
                event_handler=on_event,
                cancel_callback=stopper,
            )
            # ansible-playbook runs under the guard (guard.py): cancel, timeout and our own
            # death take down every process of the run, not only its process group.
            runner.config.command = [*guard_command(stopper.pidfile), *runner.config.command]
            runner.run()
            if attempts == 1 and _mitogen_broke(run, runner.status):
                run.warnings.append(
                    "the mitogen strategy failed to start ("
                    + (run._reducer.errors[-1] if run._reducer.errors else "no detail")
                    + f"); ran again with the plain {_plain(run.plan.strategy)} strategy")
                run._reducer.errors.clear()
                run.plan = Plan(_plain(run.plan.strategy), run.plan.forks,
                                {**run.plan.env, "ANSIBLE_STRATEGY": _plain(run.plan.strategy)},
                                run.plan.warnings)
                continue
            break
        run.rc = runner.rc
        status = str(runner.status)
        if status == "canceled" or stopper.requested_at is not None:
            run.status = RunStatus.TIMEOUT if run._timed_out else RunStatus.CANCELED
        elif status in ("successful", "failed", "timeout"):
            run.status = RunStatus(status)
        else:
            run.status = RunStatus.FAILED
    except Exception as exc:  # translate at the boundary: a run ends with a status, always
        run.exception = f"{type(exc).__name__}: {exc}"
        run.status = RunStatus.FAILED
    finally:
        extravars_path.unlink(missing_ok=True)
        if run.status is RunStatus.TIMEOUT:
            run.warnings.append(f"the run was stopped after its timeout of {config.timeout:g} s")
        run.finished_at = _now()
        run._write_summary()
        run._done.set()


def _plain(strategy: str) -> str:
    return "free" if strategy == "mitogen_free" else "linear"


def _mitogen_broke(run: PlaybookRun, status: str) -> bool:
    """A mitogen run that died before its first task because of mitogen itself."""
    if not run.plan.uses_mitogen or run.config.tuning.strategy != AUTO:
        return False
    if status != "failed" or run._reducer.task_count or run._cancel.is_set() or run._timed_out:
        return False
    return any("mitogen" in e.lower() for e in run._reducer.errors)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


# -- the two entry points ------------------------------------------------------------------------


def run(config: PlaybookConfig, settings: Settings, *,
        on_event: EventCallback | None = None) -> PlaybookRun:
    """Run a playbook and return when it has finished (any status).

    Raises before starting when the config, playbook or inventory is wrong
    (:class:`~orchestrator.errors.ConfigError`, ``PlaybookError``, ``InventoryError``).
    """
    prepared = prepare(config, settings)
    if on_event:
        prepared.subscribe(on_event)
    _execute(prepared)
    return prepared


def run_async(config: PlaybookConfig, settings: Settings, *,
              on_event: EventCallback | None = None) -> PlaybookRun:
    """Start a playbook in a thread; returns the ``PlaybookRun`` at once (``.wait()``,
    ``.cancel()``, ``.status``). Setup errors raise here, as with :func:`run`."""
    prepared = prepare(config, settings)
    if on_event:
        prepared.subscribe(on_event)
    thread = threading.Thread(target=_execute, args=(prepared,), name=f"playbook-{prepared.id}",
                              daemon=True)
    prepared._thread = thread
    thread.start()
    return prepared


def execute(prepared: PlaybookRun) -> PlaybookRun:
    """Run what :func:`prepare` laid out, in the calling thread, until it ends (any status).

    For callers that look at the prepared run (its hosts) before anything starts and own
    the thread, as the API's playbook runs do; ``prepared.cancel()`` works as usual.
    """
    _execute(prepared)
    return prepared


def load_run(settings: Settings, run_id: str) -> dict[str, Any]:
    """The recorded summary of a past run (``run.json``).

    A run still marked pending or running whose process is gone (ServerGuard was killed
    or the machine restarted) is reported as ``interrupted``: nothing will finish it.
    """
    path = settings.state_dir / "runs" / run_id / "run.json"
    try:
        data = dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise PlaybookError(f"no run {run_id!r} in {settings.state_dir / 'runs'}") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    if data.get("status") in (RunStatus.PENDING, RunStatus.RUNNING) and not _alive(
        data.get("owner")
    ):
        data["status"] = "interrupted"
        data.setdefault("errors", []).append(
            "the process running this playbook ended before it finished")
    return data


def _process_identity(pid: int) -> dict[str, Any] | None:
    """A process as (pid, boot id, start time): unlike a pid alone, never reused."""
    start = start_time(pid)
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    return None if start is None else {"pid": pid, "boot": boot, "start": start}


def _alive(owner: Any) -> bool:
    if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int):
        return True  # recorded before owners were: cannot tell, keep what it says
    return _process_identity(owner["pid"]) == owner


_OWNERS: dict[int, dict[str, Any] | None] = {}


def _owner() -> dict[str, Any] | None:
    pid = os.getpid()  # per call: a forked child is another owner
    if pid not in _OWNERS:
        _OWNERS[pid] = _process_identity(pid)
    return _OWNERS[pid]


def read_events(settings: Settings, run_id: str) -> list[dict[str, Any]]:
    """The recorded events of a past run (``events.jsonl``), oldest first."""
    path = settings.state_dir / "runs" / run_id / "events.jsonl"
    if not path.exists():
        raise PlaybookError(f"no run {run_id!r} in {settings.state_dir / 'runs'}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
