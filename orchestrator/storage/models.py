"""SQLModel tables and the API's shapes of them: one model family per entity.

Like the FastAPI full-stack template: ``XBase`` (shared fields), ``XCreate`` (what a client
sends), ``XUpdate`` (all optional), ``X(table=True)``, ``XPublic`` (what a client sees) and
``XsPublic{data, count}`` for lists. An entity only has the members it needs: runs are
never updated by clients (cancel is an action), grants and tokens are immutable (revoke and
create anew), audit entries only ever get appended.

Secrets never reach a ``Public`` model: users carry an argon2 hash, tokens a sha256 of the
token; both stay in the table class.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import StringConstraints, field_validator, model_validator
from sqlalchemy import JSON, BigInteger, Integer, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from orchestrator.storage.types import UTCDateTime, utcnow

# ---------------------------------------------------------------------------- input


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


class Input(SQLModel):
    """What clients send: text may not contain NUL (PostgreSQL cannot store it)."""

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, value in data.items():
                if _has_nul(value):
                    raise ValueError(f"{key}: NUL characters are not allowed")
        return data


# ---------------------------------------------------------------------------- roles


class Role(StrEnum):
    """Roles in increasing order of power: each can do what the ones before it can."""

    VIEWER = "viewer"  # sees hosts, groups and runs in their scope
    OPERATOR = "operator"  # ... and starts and cancels runs on them
    ADMIN = "admin"  # ... on every host; manages users, grants and the audit log

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= Role(needed).rank


ROLE_DESCRIPTIONS = {
    Role.VIEWER: "reads hosts, groups and runs within granted groups",
    Role.OPERATOR: "viewer, plus starts and cancels command and playbook runs within "
    "granted groups",
    Role.ADMIN: "every host; manages users, grants, tokens of others; reads the audit log; "
    "may override the command policy",
}


class RolePublic(SQLModel):
    name: Role
    rank: int
    description: str


class RolesPublic(SQLModel):
    data: list[RolePublic]
    count: int


# ---------------------------------------------------------------------------- users

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$"
PASSWORD_MIN = 12


class UserBase(SQLModel):
    username: str = Field(
        unique=True, index=True, min_length=1, max_length=64,
        schema_extra={"pattern": USERNAME_PATTERN},
    )
    full_name: str | None = Field(default=None, max_length=255)
    role: Role = Field(default=Role.VIEWER, sa_type=String(16))
    is_active: bool = True


class UserCreate(UserBase, Input):
    password: str = Field(min_length=PASSWORD_MIN, max_length=256)


class UserUpdate(Input):
    full_name: str | None = Field(default=None, max_length=255)
    role: Role | None = None
    is_active: bool | None = None
    password: str | None = Field(default=None, min_length=PASSWORD_MIN, max_length=256)


class PasswordChange(Input):
    current_password: str = Field(max_length=256)
    new_password: str = Field(min_length=PASSWORD_MIN, max_length=256)


class User(UserBase, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    password_hash: str = Field(max_length=255)
    failed_logins: int = 0
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class UserPublic(UserBase):
    id: int
    created_at: datetime
    locked_until: datetime | None = None
    groups: list[str] = Field(default_factory=list)  # inventory groups granted


class UsersPublic(SQLModel):
    data: list[UserPublic]
    count: int


# ---------------------------------------------------------------------------- grants


MAX_ID = 2**31 - 1  # ids are 32-bit integer columns on PostgreSQL


class GrantBase(SQLModel):
    user_id: int = Field(foreign_key="users.id", ondelete="CASCADE", index=True, ge=1,
                         le=MAX_ID)
    group: str = Field(min_length=1, max_length=255)


class GrantCreate(GrantBase, Input):
    pass


class Grant(GrantBase, table=True):
    __tablename__ = "grants"
    __table_args__ = (UniqueConstraint("user_id", "group", name="uq_grants_user_group"),)

    id: int | None = Field(default=None, primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class GrantPublic(GrantBase):
    id: int
    created_at: datetime


class GrantsPublic(SQLModel):
    data: list[GrantPublic]
    count: int


# ---------------------------------------------------------------------------- tokens


class TokenKind(StrEnum):
    ACCESS = "access"  # short-lived bearer token from a login
    REFRESH = "refresh"  # trades for a new access token, once
    PERSONAL = "personal"  # long-lived API token a user makes for scripts


class ApiTokenBase(SQLModel):
    name: str = Field(min_length=1, max_length=100)


class ApiTokenCreate(ApiTokenBase, Input):
    expires_in_days: int | None = Field(default=90, ge=1, le=3650)  # None: never expires


class ApiToken(ApiTokenBase, table=True):
    __tablename__ = "api_tokens"

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="users.id", ondelete="CASCADE", index=True)
    kind: TokenKind = Field(sa_type=String(16))
    token_hash: str = Field(unique=True, index=True, max_length=64)  # sha256 hex
    prefix: str = Field(max_length=16)  # the first characters, to tell tokens apart
    family: str = Field(index=True, max_length=32)  # one login's access + refresh tokens
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ApiTokenPublic(ApiTokenBase):
    id: int
    user_id: int
    kind: TokenKind
    prefix: str
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class ApiTokenCreated(ApiTokenPublic):
    """A new personal token: ``token`` is shown this once and never stored in clear."""

    token: str


class ApiTokensPublic(SQLModel):
    data: list[ApiTokenPublic]
    count: int


class LoginRequest(Input):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class RefreshRequest(Input):
    refresh_token: str = Field(min_length=1, max_length=256)


class TokenPair(SQLModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int  # seconds
    refresh_expires_in: int


# ---------------------------------------------------------------------------- runs


class RunKind(StrEnum):
    COMMAND = "command"  # ad-hoc command fanned out over SSH
    PLAYBOOK = "playbook"  # an Ansible playbook through ansible-runner (``playbook_runs``)


class RunStatus(StrEnum):
    """ansible-runner's lifecycle: pending → running → successful | failed | timeout |
    canceled (``timeout``: playbook runs stopped at their deadline; a command run's hosts
    time out one by one and the run ends ``failed``)."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCESSFUL = "successful"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELED = "canceled"

    @property
    def finished(self) -> bool:
        return self not in (RunStatus.PENDING, RunStatus.RUNNING)


class HostStatus(StrEnum):
    PENDING = "pending"
    OK = "ok"
    FAILED = "failed"  # ran: non-zero exit or killed by a signal
    TIMEOUT = "timeout"  # ran past its timeout (remote process killed)
    UNREACHABLE = "unreachable"  # never ran: connect, auth, host key or channel failure
    CANCELED = "canceled"  # the run was canceled before this host finished
    SKIPPED = "skipped"  # playbook runs: no play of the playbook targeted this host


class RunBase(SQLModel):
    pattern: str = Field(min_length=1, max_length=1000)
    command: str = Field(min_length=1, max_length=65536, sa_type=Text)
    forks: int = Field(default=50, ge=1, le=1000)
    timeout: float = Field(default=60.0, gt=0, le=86400)


class RunCreate(RunBase, Input):
    override_policy: bool = False  # admins only: run although a deny rule matches


class Run(RunBase, table=True):
    __tablename__ = "runs"

    id: int | None = Field(default=None, primary_key=True)
    kind: RunKind = Field(default=RunKind.COMMAND, sa_type=String(16))
    status: RunStatus = Field(default=RunStatus.PENDING, sa_type=String(16), index=True)
    created_by: int | None = Field(
        default=None, foreign_key="users.id", ondelete="SET NULL", index=True
    )
    hosts: list[str] = Field(default_factory=list, sa_type=JSON)
    policy_override: str | None = Field(default=None, max_length=64)  # the rule overridden
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ok: int = 0
    failed: int = 0
    unreachable: int = 0
    error: str | None = Field(default=None, sa_type=Text)  # why the run itself broke


class RunPublic(RunBase):
    id: int
    kind: RunKind
    status: RunStatus
    created_by: int | None = None
    hosts: list[str]
    policy_override: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    ok: int = 0
    failed: int = 0
    unreachable: int = 0
    error: str | None = None


class RunsPublic(SQLModel):
    data: list[RunPublic]
    count: int


class HostResultBase(SQLModel):
    host: str = Field(max_length=255)
    status: HostStatus = Field(default=HostStatus.PENDING, sa_type=String(16))
    rc: int | None = None
    stdout: str = Field(default="", sa_type=Text)
    stderr: str = Field(default="", sa_type=Text)
    duration_s: float | None = None
    truncated: bool = False
    error: str | None = Field(default=None, sa_type=Text)
    signal: str | None = Field(default=None, max_length=32)


class HostResult(HostResultBase, table=True):
    __tablename__ = "run_host_results"
    __table_args__ = (UniqueConstraint("run_id", "host", name="uq_run_host_results_run_host"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="runs.id", ondelete="CASCADE", index=True)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Playbook runs: the host's recap line (ok, changed, unreachable, failed, skipped,
    # rescued, ignored), as ansible-playbook prints it.
    recap: dict[str, int] | None = Field(default=None, sa_type=JSON)


class HostResultPublic(HostResultBase):
    finished_at: datetime | None = None


class RunDetail(RunPublic):
    """A run with its per-host results (in the run's host order)."""

    results: list[HostResultPublic]


# 64-bit on PostgreSQL; SQLite only auto-increments a column declared INTEGER PRIMARY KEY.
EVENT_ID = BigInteger().with_variant(Integer(), "sqlite")


class RunEventKind(StrEnum):
    OUTPUT = "output"  # a chunk of a host's stdout or stderr (``data`` is the text)
    HOST = "host"  # a host finished (``data`` is its result as JSON, without output)
    STATUS = "status"  # the run changed status (``data`` is the status)
    # Playbook runs (``data`` is the event as JSON, secrets masked): see
    # orchestrator.playbooks.events. ``host`` events close each host with its recap.
    PLAY_START = "play_start"
    TASK_START = "task_start"
    HOST_RESULT = "host_result"  # one task's result on one host
    WARNING = "warning"
    ERROR = "error"
    STATS = "stats"  # the recap of every host, when ansible-playbook printed one


class RunEventBase(SQLModel):
    kind: RunEventKind = Field(sa_type=String(16))
    host: str | None = Field(default=None, max_length=255)
    stream: str | None = Field(default=None, max_length=8)  # stdout | stderr
    data: str = Field(default="", sa_type=Text)


class RunEvent(RunEventBase, table=True):
    __tablename__ = "run_events"

    # The id orders a run's events and is the SSE event id (for Last-Event-ID).
    id: int | None = Field(default=None, primary_key=True, sa_type=EVENT_ID)
    run_id: int = Field(foreign_key="runs.id", ondelete="CASCADE", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class RunEventPublic(RunEventBase):
    id: int
    run_id: int
    created_at: datetime


# ---------------------------------------------------------------------------- playbook runs
#
# A playbook run is a ``runs`` row of kind ``playbook`` (lifecycle, hosts, counts, events,
# per-host results with their recap) plus one ``playbook_runs`` row: what was asked for and
# what ansible-playbook said about the run as a whole.

VAR_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
TagName = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^,\s]+$")]


class PlaybookSource(StrEnum):
    SHIPPED = "shipped"  # one of the playbooks shipped with ServerGuard (``playbooks/``)
    DIRECTORY = "directory"  # a file under the configured ``SERVERGUARD_PLAYBOOK_DIR``


class PlaybookRunCreate(Input):
    """What a client sends to start a playbook run."""

    # A shipped playbook's name (``sysctl_baseline``) or a path relative to the playbook
    # directory (``site.yml``, ``web/deploy.yml``).
    playbook: str = Field(min_length=1, max_length=255)
    limit: str = Field(default="all", min_length=1, max_length=1000)  # a host pattern
    extra_vars: dict[str, Any] = Field(default_factory=dict)
    check: bool = False
    diff: bool = False
    tags: list[TagName] = Field(default_factory=list, max_length=100)
    skip_tags: list[TagName] = Field(default_factory=list, max_length=100)
    timeout: float = Field(default=3600.0, gt=0, le=86400)  # seconds for the whole run
    forks: int | None = Field(default=None, ge=1, le=1000)  # None: chosen for the hosts

    @field_validator("extra_vars")
    @classmethod
    def _var_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > 1000:
            raise ValueError("at most 1000 variables")
        for name in value:
            if not re.fullmatch(VAR_NAME_PATTERN, name):
                raise ValueError(f"{name[:100]!r} is not a variable name")
        return value


class PlaybookRunRecord(SQLModel, table=True):
    """The playbook side of a ``runs`` row (same id)."""

    __tablename__ = "playbook_runs"

    run_id: int | None = Field(default=None, foreign_key="runs.id", ondelete="CASCADE",
                               primary_key=True)  # set by create_playbook_run
    playbook: str = Field(max_length=255)  # as asked for
    source: PlaybookSource = Field(sa_type=String(16))
    path: str = Field(sa_type=Text)  # the file that ran (never shown to clients)
    limit: str = Field(max_length=1000)
    check: bool = False
    diff: bool = False
    tags: list[str] = Field(default_factory=list, sa_type=JSON)
    skip_tags: list[str] = Field(default_factory=list, sa_type=JSON)
    extra_vars: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)  # secrets masked
    runner_id: str | None = Field(default=None, max_length=64)  # state_dir/runs/<runner_id>
    strategy: str | None = Field(default=None, max_length=64)
    exit_code: int | None = None  # ansible-playbook's (0, 2, 4...); 99 canceled, 124 timeout
    warnings: list[str] = Field(default_factory=list, sa_type=JSON)
    errors: list[str] = Field(default_factory=list, sa_type=JSON)


class PlaybookRunPublic(SQLModel):
    id: int
    status: RunStatus
    playbook: str
    source: PlaybookSource
    limit: str
    check: bool
    diff: bool
    tags: list[str]
    skip_tags: list[str]
    extra_vars: dict[str, Any]  # secret values masked
    timeout: float
    forks: int
    strategy: str | None = None
    hosts: list[str]
    created_by: int | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    ok: int = 0  # hosts that ran without failure
    failed: int = 0  # hosts with a failed task, or still running at the timeout
    unreachable: int = 0
    exit_code: int | None = None
    error: str | None = None  # why the run itself failed
    warnings: list[str]
    errors: list[str]  # what Ansible reported as ERROR, one line each


class PlaybookRunsPublic(SQLModel):
    data: list[PlaybookRunPublic]
    count: int


class PlaybookHostRecap(SQLModel):
    """One host's line of the play recap, and how the host ended."""

    host: str
    status: HostStatus
    ok: int = 0
    changed: int = 0
    unreachable: int = 0
    failed: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0
    error: str | None = None  # the first failure's message
    finished_at: datetime | None = None


class PlaybookRunDetail(PlaybookRunPublic):
    recap: list[PlaybookHostRecap]  # in the run's host order


class PlaybookEventPublic(SQLModel):
    """One stored event of a playbook run (``kind`` as in ``RunEventKind``)."""

    id: int
    kind: RunEventKind
    created_at: datetime
    host: str | None = None
    play: str | None = None
    task: str | None = None
    action: str | None = None
    status: str | None = None  # a host result's (ok, changed, failed...) or the run's
    message: str | None = None
    result: dict[str, Any] = Field(default_factory=dict)  # module result; secrets masked


class PlaybookEventsPublic(SQLModel):
    data: list[PlaybookEventPublic]
    count: int


# ---------------------------------------------------------------------------- audit


class AuditEntryBase(SQLModel):
    actor: str | None = Field(default=None, max_length=64, index=True)  # username
    actor_id: int | None = None
    source: str | None = Field(default=None, max_length=64)  # client address
    action: str = Field(max_length=64, index=True)  # e.g. login, run.create, user.update
    target: str | None = Field(default=None, max_length=255)  # e.g. run:12, user:alice
    hosts: list[str] = Field(default_factory=list, sa_type=JSON)
    result: str = Field(max_length=32)  # ok, denied, failed, error, http status...
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class AuditEntryCreate(AuditEntryBase):
    pass


class AuditEntry(AuditEntryBase, table=True):
    """One link of the audit chain: ``hash`` covers the entry and ``prev_hash``.

    Ids are assigned by the appender (last id + 1, under the write lock), never by a
    sequence, so they have no gaps and a deleted entry always shows.
    """

    __tablename__ = "audit_log"

    id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_kwargs={
        "autoincrement": False})
    ts: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64, unique=True)


class AuditHead(SQLModel, table=True):
    """The chain's last link, updated with every append: a deleted tail shows too."""

    __tablename__ = "audit_head"

    id: int = Field(default=1, primary_key=True)
    last_id: int = Field(sa_type=BigInteger)
    last_hash: str = Field(max_length=64)


class AuditEntryPublic(AuditEntryBase):
    id: int
    ts: datetime
    prev_hash: str
    hash: str


class AuditEntriesPublic(SQLModel):
    data: list[AuditEntryPublic]
    count: int


# ---------------------------------------------------------------------------- host facts


class HostFactsRecord(SQLModel, table=True):
    """The last facts gathered from a host (``orchestrator.facts``), one row per host."""

    __tablename__ = "host_facts"

    host: str = Field(primary_key=True, max_length=255)
    gathered_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    facts: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
