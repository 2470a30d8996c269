"""Playbook runs of the service: checked, recorded, then run and followed like command runs.

:func:`start_playbook_run` is the one entry point. It checks, in this order, each failure
one problem naming the field:

1. the role: starting a run needs ``operator`` (viewers read);
2. ``playbook``: the name of a shipped playbook, or a ``.yml``/``.yaml`` file under the
   playbook directory (``SERVERGUARD_PLAYBOOK_DIR``), named by its path relative to it; a
   path that leaves the directory (``..``, an absolute path, a symlink) is refused;
3. ``limit``: its hosts within the caller's scope, as for command runs (none: 404);
4. ``extra_vars``: ``ansible_*`` variables only from admins, since they override how hosts
   are reached (``ansible_connection: local`` would run the play on the orchestrator). For
   everyone else the values are data (``!unsafe``: Ansible renders no ``{{ ... }}`` in them,
   which would run on the orchestrator), and a shipped playbook takes only the variables it
   documents (``catalog.user_variables``), not its roles' internal ones;
5. the runner's own setup (:func:`orchestrator.playbooks.prepare`): the playbook's outline
   (a YAML error comes back as ``file:line:column``), the inventory, the strategy. The
   hosts it selected are checked against the scope once more before anything starts.

The run is then recorded (``runs`` row of kind ``playbook`` plus its ``playbook_runs`` row,
``pending``) and handed to the :class:`~orchestrator.storage.recorder.RunRecorder` as a
:class:`PlaybookJob`: runner events become run events (module results with secrets masked),
each host ends with its recap line, and followers, cancel and shutdown work as for command
runs. Example of a stored ``host_result`` event's data::

    {"seq": 7, "time": "...", "play": "all", "task": "ping", "action": "ansible.builtin.ping",
     "host": "web1", "status": "ok", "result": {"ping": "pong", "changed": false}}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlmodel import Session

from inventory import Inventory
from orchestrator.auth.masking import MASK, is_secret, mask_vars
from orchestrator.auth.principal import HostScope, Principal
from orchestrator.errors import (
    ConfigError,
    InventoryError,
    NotFound,
    PatternError,
    PermissionDenied,
    PlaybookError,
    PlaybookSyntaxError,
    ValidationFailed,
)
from orchestrator.playbooks import PlaybookConfig, PlaybookEvent, PlaybookRun, Tuning, prepare
from orchestrator.playbooks.catalog import SHIPPED_DIR, shipped_playbooks, user_variables
from orchestrator.playbooks.run import execute
from orchestrator.storage import runs as run_store
from orchestrator.storage.db import Database
from orchestrator.storage.models import (
    HostResult,
    HostStatus,
    PlaybookEventPublic,
    PlaybookHostRecap,
    PlaybookRunCreate,
    PlaybookRunPublic,
    PlaybookRunRecord,
    PlaybookSource,
    Role,
    Run,
    RunEvent,
    RunEventKind,
    RunStatus,
)
from orchestrator.storage.recorder import RunRecorder, RunSink
from orchestrator.storage.settings import ServiceSettings
from orchestrator.storage.types import utcnow

EXTENSIONS = (".yml", ".yaml")
MAX_EVENT_BYTES = 64 * 1024  # a bigger module result keeps only its short scalar keys
MAX_LISTED = 1000  # playbooks listed from the playbook directory
RECAP_COLUMNS = ("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored")
MIN_SECRET_LENGTH = 4  # shorter secret values are not searched for in output


# ---------------------------------------------------------------------------- which playbook


@dataclass(frozen=True)
class ResolvedPlaybook:
    name: str  # as recorded and shown: a shipped stem, or the path relative to the directory
    source: PlaybookSource
    path: Path


def _refuse(message: str) -> ValidationFailed:
    return ValidationFailed(f"playbook: {message}", [("playbook", message)])


def _shipped(name: str) -> Path | None:
    if "/" in name or "\\" in name or name.startswith("."):
        return None
    stem = name[: -len(Path(name).suffix)] if Path(name).suffix in EXTENSIONS else name
    for ext in EXTENSIONS:
        candidate = SHIPPED_DIR / f"{stem}{ext}"
        if candidate.is_file():
            return candidate
    return None


def resolve_playbook_name(name: str, playbook_dir: Path | None) -> ResolvedPlaybook:
    """The playbook ``name`` means: a file under ``playbook_dir`` first, then a shipped one.

    >>> resolve_playbook_name("sysctl_baseline", None).source  # doctest: +SKIP
    <PlaybookSource.SHIPPED: 'shipped'>

    Raises :class:`ValidationFailed` on field ``playbook``: outside the directory, not a
    playbook file, or not found (naming what is available).
    """
    text = name.strip()
    if not text:
        raise _refuse("empty name")
    if playbook_dir is not None:
        root = playbook_dir.expanduser().resolve()
        candidate = (root / text).resolve()  # an absolute ``text`` replaces ``root``
        if candidate != root and not candidate.is_relative_to(root):
            raise _refuse(f"{text!r} is outside the playbook directory")
        found = _with_extension(candidate) if candidate != root else None
        if found is not None:
            found = found.resolve()  # ``site`` may find ``site.yml``, a symlink pointing out
            if not found.is_relative_to(root):
                raise _refuse(f"{text!r} is outside the playbook directory")
            if found.suffix not in EXTENSIONS:
                raise _refuse(f"{text!r} is not a playbook file ({', '.join(EXTENSIONS)})")
            return ResolvedPlaybook(found.relative_to(root).as_posix(), PlaybookSource.DIRECTORY,
                                    found)
    elif "/" in text or "\\" in text:
        raise _refuse(f"{text!r}: paths are only accepted under the playbook directory "
                      "(SERVERGUARD_PLAYBOOK_DIR), and none is configured")
    shipped = _shipped(text)
    if shipped is not None:
        return ResolvedPlaybook(shipped.stem, PlaybookSource.SHIPPED, shipped)
    where = "a shipped playbook (" + ", ".join(shipped_playbooks()) + ")"
    if playbook_dir is not None:
        where += " or a file under the playbook directory"
    raise _refuse(f"{text!r} not found: not {where}")


def _with_extension(candidate: Path) -> Path | None:
    if candidate.is_file():
        return candidate
    if candidate.suffix not in EXTENSIONS:
        for ext in EXTENSIONS:
            with_ext = candidate.with_name(candidate.name + ext)
            if with_ext.is_file():
                return with_ext
    return None


def list_playbooks(playbook_dir: Path | None) -> list[ResolvedPlaybook]:
    """The shipped playbooks, then the directory's (``*.yml``/``*.yaml`` at its top level)."""
    out = [ResolvedPlaybook(name, PlaybookSource.SHIPPED, SHIPPED_DIR / f"{name}.yml")
           for name in shipped_playbooks()]
    if playbook_dir is not None and playbook_dir.is_dir():
        root = playbook_dir.expanduser().resolve()
        files = sorted(p for p in root.iterdir()
                       if p.suffix in EXTENSIONS and p.is_file() and not p.name.startswith("."))
        for path in files[:MAX_LISTED]:
            resolved = path.resolve()
            if resolved.is_relative_to(root):
                out.append(ResolvedPlaybook(path.name, PlaybookSource.DIRECTORY, resolved))
    return out


# ---------------------------------------------------------------------------- secrets


class SecretMasker:
    """Masks what a run reports: secret variables by name (as the API masks inventory
    variables), and the values of secret variables (the run's extra vars, its hosts'
    inventory variables) wherever they appear, e.g. in a ``debug`` message.

    Ansible itself replaces the result of a ``no_log`` task by ``{"censored": ...}`` before
    any callback sees it.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        unique = {v for v in values if len(v) >= MIN_SECRET_LENGTH and v != MASK}
        self._values = sorted(unique, key=len, reverse=True)  # longest first: no leftovers
        self._pattern = re.compile("|".join(map(re.escape, self._values))) if unique else None

    @classmethod
    def for_run(cls, extra_vars: dict[str, Any], inventory: Inventory | None,
                hosts: Iterable[str]) -> SecretMasker:
        values: list[str] = []
        _secret_values(extra_vars, values)
        if inventory is not None:
            for host in hosts:
                with contextlib.suppress(InventoryError):
                    _secret_values(inventory.host_vars(host), values)
        return cls(values)

    def text(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern is not None else text

    def data(self, value: Any) -> Any:
        """``value`` with secret variables masked by name and secret values anywhere."""
        return self.values(mask_vars(value))

    def values(self, value: Any) -> Any:
        """``value`` with secret values masked wherever they appear (keys are kept)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.values(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.values(v) for v in value]
        return value


def _secret_values(data: Any, out: list[str], secret: bool = False) -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            _secret_values(value, out, secret or (isinstance(key, str) and is_secret(key)))
    elif isinstance(data, list | tuple):
        for value in data:
            _secret_values(value, out, secret)
    elif secret and isinstance(data, str | int) and not isinstance(data, bool):
        out.append(str(data))


# ---------------------------------------------------------------------------- starting


def _scoped_hosts(inventory: Inventory | None, principal: Principal, limit: str) -> list[str]:
    """The hosts of ``limit`` in the caller's scope; :class:`NotFound` for none."""
    if inventory is None:
        raise NotFound("host", limit, f"no host matches limit {limit!r} (no inventory is "
                       "configured)")
    try:
        hosts = inventory.select("all", limit)
    except InventoryError as exc:
        raise ValidationFailed(f"invalid limit: {exc}", [("limit", str(exc))]) from exc
    hosts = HostScope(inventory, principal).filter(hosts)
    if not hosts:
        raise NotFound("host", limit, f"no host matches limit {limit!r}")
    return hosts


def _config_field(message: str) -> str:
    head = message.split(":", 1)[0].strip()
    return head if re.fullmatch(r"[a-z_]+", head) else "body"


def _prepare(config: PlaybookConfig, settings: ServiceSettings,
             resolved: ResolvedPlaybook) -> PlaybookRun:
    """The runner's setup, its errors translated into problems naming the field."""
    try:
        return prepare(config, settings)
    except PlaybookSyntaxError as exc:
        where = resolved.name  # not the server's path to it
        if exc.line is not None:
            where += f":{exc.line}" + (f":{exc.column}" if exc.column is not None else "")
        message = f"{where}: {exc.message}"
        raise ValidationFailed(f"playbook: {message}", [("playbook", message)]) from exc
    except PatternError as exc:  # the inventory changed under us: the hosts are gone
        raise NotFound("host", config.limit, f"no host matches limit: {exc}") from exc
    except InventoryError:
        raise  # the service's inventory cannot be read: 503
    except PlaybookError as exc:
        raise _refuse(str(exc)) from exc
    except ConfigError as exc:
        raise ValidationFailed(str(exc), [(_config_field(str(exc)), str(exc))]) from exc


def start_playbook_run(
    session: Session,
    *,
    db: Database,
    recorder: RunRecorder,
    inventory: Inventory | None,
    inventory_sources: list[str],
    principal: Principal,
    data: PlaybookRunCreate,
) -> tuple[Run, PlaybookRunRecord]:
    """Check, record and start a playbook run for ``principal`` (see the module)."""
    principal.require(Role.OPERATOR, "starting a playbook run")
    settings = recorder.settings
    resolved = resolve_playbook_name(data.playbook, settings.playbook_dir)
    hosts = _scoped_hosts(inventory, principal, data.limit)
    connection = sorted(k for k in data.extra_vars if k.startswith("ansible_"))
    if connection and not principal.is_admin:
        raise PermissionDenied(f"extra_vars.{connection[0]}: ansible_* variables decide how "
                               "hosts are reached; only an admin may set them")
    documented = user_variables(resolved.path)
    if documented is not None and not principal.is_admin:
        internal = sorted(set(data.extra_vars) - documented)
        if internal:
            raise PermissionDenied(
                f"extra_vars.{internal[0]}: not a variable of playbook {resolved.name} (its "
                "variables are in docs/playbooks.md); only an admin may set other variables")
    if not inventory_sources:
        raise InventoryError("playbook runs need the service's inventory files "
                             "(serverguard serve -i INVENTORY)")
    config = PlaybookConfig(
        resolved.path, inventory=list(inventory_sources), limit=",".join(hosts),
        extra_vars=dict(data.extra_vars), tags=tuple(data.tags), skip_tags=tuple(data.skip_tags),
        check=data.check, diff=data.diff, timeout=data.timeout, tuning=Tuning(forks=data.forks),
        extra_vars_as_data=not principal.is_admin,
    )
    prepared = _prepare(config, settings, resolved)
    outside = sorted(set(prepared.hosts) - set(hosts))
    if outside:  # a host name the runner read as a pattern: never run beyond the scope
        raise ValidationFailed(
            f"limit: the runner would also target {', '.join(outside[:5])}, outside the hosts "
            "asked for", [("limit", "resolves to hosts outside the caller's scope")])
    masker = SecretMasker.for_run(data.extra_vars, inventory, prepared.hosts)
    prepared.redact = masker.data  # the run directory's events.jsonl, too
    record = PlaybookRunRecord(
        playbook=resolved.name, source=resolved.source, path=str(resolved.path),
        limit=data.limit, check=prepared.config.check, diff=data.diff, tags=list(data.tags),
        skip_tags=list(data.skip_tags), extra_vars=masker.data(data.extra_vars),
        runner_id=prepared.id, strategy=prepared.plan.strategy,
        warnings=[masker.text(w) for w in prepared.warnings],
    )
    run = run_store.create_playbook_run(session, record=record, hosts=prepared.hosts,
                                        created_by=principal.user_id, timeout=data.timeout,
                                        forks=prepared.plan.forks)
    session.commit()
    assert run.id is not None
    job = PlaybookJob(prepared, db=db, masker=masker, audit_detail={
        "playbook": resolved.name, "check": record.check, "runner_id": prepared.id})
    recorder.submit_job(run.id, prepared.hosts, job, actor=principal.username,
                        actor_id=principal.user_id)
    return run, record


# ---------------------------------------------------------------------------- running


@dataclass
class _Tally:
    """A host's counts from its results as they came (the recap when Ansible printed none:
    the run was canceled or timed out), and its first failure."""

    counts: dict[str, int]
    error: str | None = None


class PlaybookJob:
    """One prepared playbook run, executed by the run recorder (a ``RecordedJob``)."""

    def __init__(self, prepared: PlaybookRun, *, db: Database, masker: SecretMasker,
                 audit_detail: dict[str, Any]) -> None:
        self.prepared = prepared
        self.db = db
        self.masker = masker
        self.audit_detail = audit_detail
        self._sink: RunSink | None = None
        self._tally: dict[str, _Tally] = {}

    def abandon(self) -> None:
        """Nothing started: the run stays pending until the next start marks it failed."""

    async def execute(self, sink: RunSink) -> tuple[RunStatus, str | None]:
        self._sink = sink
        sink.audit_detail.update(self.audit_detail)
        self.prepared.subscribe(self._on_event)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def work() -> None:
            try:
                execute(self.prepared)  # any failure ends up in the run's status
            finally:  # after every event it emitted: call_soon_threadsafe keeps the order
                loop.call_soon_threadsafe(_resolve, done)

        # Its own thread, not the loop's default executor: a run holds it for its whole
        # length, and the recorder's database writes go through that executor.
        threading.Thread(target=work, name=f"playbook-run-{sink.run_id}", daemon=True).start()
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            self.prepared.cancel()  # ansible-playbook and its children are stopped
            await done
            await self._record_end(sink, canceled=True)
            raise
        return await self._record_end(sink, canceled=False)

    # -- the run's thread ------------------------------------------------------------------

    def _on_event(self, event: PlaybookEvent) -> None:
        """From the runner's thread: mask, bound, and pass into the loop in order."""
        assert self._sink is not None
        if event.kind == "host_result" and event.host:
            self._count(event)
        # Stats are keyed by host name: mask secret values there, not "secret-looking" keys.
        raw = event.to_dict()
        data = self.masker.values(raw) if event.kind == "stats" else self.masker.data(raw)
        text = json.dumps(data, default=str)
        if len(text) > MAX_EVENT_BYTES:
            data["result"] = _short(data.get("result") or {})
            text = json.dumps(data, default=str)
        stored = RunEvent(run_id=self._sink.run_id, kind=RunEventKind(event.kind),
                          host=event.host, data=text)
        self._sink.threadsafe(self._sink.event, stored, len(text))

    def _count(self, event: PlaybookEvent) -> None:
        assert event.host is not None
        tally = self._tally.setdefault(event.host, _Tally(dict.fromkeys(RECAP_COLUMNS, 0)))
        status = str(event.status)
        if status in ("ok", "changed", "ignored"):
            tally.counts["ok"] += 1
        if status in ("changed", "failed", "skipped", "unreachable", "ignored"):
            tally.counts[status] += 1
        if status in ("failed", "unreachable") and tally.error is None:
            tally.error = self.masker.text(event.message or status)

    # -- the end ---------------------------------------------------------------------------

    async def _record_end(self, sink: RunSink, *, canceled: bool) -> tuple[RunStatus, str | None]:
        run = self.prepared
        status = RunStatus.CANCELED if canceled else RunStatus(run.status.value)
        if status is RunStatus.PENDING or status is RunStatus.RUNNING:
            status = RunStatus.FAILED  # never reached an end: the runner thread broke
        errors = [self.masker.text(e) for e in run.errors]
        error: str | None = None
        if status is RunStatus.TIMEOUT:
            error = f"stopped after its timeout of {run.config.timeout:g} s"
        elif status is RunStatus.FAILED and errors:
            error = errors[0]
        stats = run.stats
        now = utcnow()
        for host in run.hosts:
            row, event = self._host_end(host, stats, status, error)
            sink.host_done(host, {**row, "finished_at": now})
            sink.event(RunEvent(run_id=sink.run_id, kind=RunEventKind.HOST, host=host,
                                data=json.dumps(event)))
        sink.audit_detail["exit_code"] = run.exit_code
        await asyncio.to_thread(
            run_store.update_playbook_record_tx, self.db, run_id=sink.run_id,
            exit_code=run.exit_code, strategy=run.plan.strategy, errors=errors,
            warnings=[self.masker.text(w) for w in [*run.warnings, *run.ansible_warnings]])
        return status, error

    def _host_end(self, host: str, stats: dict[str, Any], status: RunStatus,
                  run_error: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        tally = self._tally.get(host)
        if host in stats:
            recap = {k: int(v) for k, v in stats[host].to_dict().items()}
        else:
            recap = dict(tally.counts) if tally else dict.fromkeys(RECAP_COLUMNS, 0)
        error = tally.error if tally else None
        if recap["unreachable"]:
            host_status = HostStatus.UNREACHABLE
        elif recap["failed"]:
            host_status = HostStatus.FAILED
        elif host in stats:
            host_status = HostStatus.OK
        elif status is RunStatus.CANCELED:
            host_status, error = HostStatus.CANCELED, "run canceled before this host finished"
        elif status is RunStatus.TIMEOUT:
            host_status, error = HostStatus.TIMEOUT, run_error
        elif status is RunStatus.FAILED and (run_error or not stats):
            host_status, error = HostStatus.FAILED, run_error or "the run ended without a recap"
        else:  # the run ended normally and no play targeted this host
            host_status = HostStatus.SKIPPED
        row = {"status": host_status.value, "error": error, "recap": recap}
        return row, {"host": host, "status": host_status.value, "error": error, **recap}


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _short(result: dict[str, Any]) -> dict[str, Any]:
    """A module result too big to store as a whole: its short scalar keys only."""
    kept = {key: value for key, value in result.items()
            if value is None or isinstance(value, bool | int | float)
            or (isinstance(value, str) and len(value) <= 4096)}
    kept["truncated"] = True
    return kept


# ---------------------------------------------------------------------------- what clients see


_RUN_FIELDS = ("id", "status", "timeout", "forks", "hosts", "created_by", "created_at",
               "started_at", "finished_at", "ok", "failed", "unreachable", "error")
_RECORD_FIELDS = ("playbook", "source", "limit", "check", "diff", "tags", "skip_tags",
                  "extra_vars", "strategy", "exit_code", "warnings", "errors")


def public_run(run: Run, record: PlaybookRunRecord) -> PlaybookRunPublic:
    return PlaybookRunPublic.model_validate({
        **{name: getattr(run, name) for name in _RUN_FIELDS},
        **{name: getattr(record, name) for name in _RECORD_FIELDS},
    })


def host_recap(result: HostResult) -> PlaybookHostRecap:
    recap = result.recap or {}
    return PlaybookHostRecap(
        host=result.host, status=result.status, error=result.error,
        finished_at=result.finished_at,
        **{k: int(recap.get(k, 0)) for k in RECAP_COLUMNS},
    )


def public_event(event: RunEvent) -> PlaybookEventPublic:
    assert event.id is not None
    base: dict[str, Any] = {"id": event.id, "kind": event.kind, "created_at": event.created_at,
                            "host": event.host}
    if event.kind == RunEventKind.STATUS:
        return PlaybookEventPublic(**base, status=event.data)
    if event.kind == RunEventKind.OUTPUT:
        return PlaybookEventPublic(**base, message=event.data)
    data = json.loads(event.data)
    if event.kind == RunEventKind.HOST:  # a host's end: its recap is the result
        return PlaybookEventPublic(**base, status=data.get("status"), message=data.get("error"),
                                   result={k: data[k] for k in RECAP_COLUMNS if k in data})
    return PlaybookEventPublic(
        **base, play=data.get("play"), task=data.get("task"), action=data.get("action"),
        status=data.get("status"), message=data.get("message"),
        result=data.get("result") or {},
    )


__all__ = [
    "PlaybookJob",
    "ResolvedPlaybook",
    "SecretMasker",
    "host_recap",
    "list_playbooks",
    "public_event",
    "public_run",
    "resolve_playbook_name",
    "start_playbook_run",
]
