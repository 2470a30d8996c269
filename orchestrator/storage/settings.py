"""Settings of the long-running service: database, sign-in and the HTTP listener.

They extend the engine's :class:`~orchestrator.settings.Settings` (every SSH knob still
applies) and are built by the caller like it; each has an environment variable
``SERVERGUARD_<NAME>``, e.g. ``SERVERGUARD_DATABASE_URL=postgresql+psycopg://sg@/sg``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from orchestrator.settings import Settings


class ServiceSettings(Settings):
    """What ``serverguard serve`` and ``create_app`` need on top of the engine settings."""

    # Empty: a SQLite file (WAL) under the state directory.
    database_url: str = ""
    # Connections kept by SQLAlchemy's pool (PostgreSQL); SQLite uses one per thread.
    database_pool_size: int = 10

    access_token_ttl: float = 15 * 60.0  # seconds a login's bearer token lives
    refresh_token_ttl: float = 7 * 24 * 3600.0  # seconds a login's refresh token lives
    login_max_failures: int = 5  # failed logins in a row before the account locks
    login_lockout: float = 30 * 60.0  # seconds the account then stays locked
    # Seconds an authenticated token's principal is reused without asking the database
    # (0: never). Revocations in this process take effect at once; in other processes
    # (several uvicorn workers) within this many seconds. See orchestrator.auth.cache.
    auth_cache_ttl: float = 5.0
    # argon2id cost (RFC 9106's second recommendation: 64 MiB, 3 passes, 4 lanes).
    password_hash_memory_kib: int = 64 * 1024
    password_hash_time_cost: int = 3
    password_hash_parallelism: int = 4

    # Seconds the fleet summary's snapshot is reused before VictoriaMetrics is asked again.
    # A refresh is five queries over every host (~100 ms of VictoriaMetrics CPU per 1,000
    # hosts on 2 CPUs) for data that changes once per sweep (collect_interval, 15 s).
    summary_ttl: float = Field(default=5.0, ge=0)

    api_host: str = "127.0.0.1"
    api_port: int = 8080
    # Extra deny rules (regular expressions) added to the command policy's defaults.
    policy_deny: list[str] = Field(default_factory=list)
    # Playbooks the API may run besides the shipped ones: files (.yml, .yaml) under this
    # directory, named by their path relative to it. None: shipped playbooks only.
    playbook_dir: Path | None = None

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.state_dir / 'serverguard.db'}"


def service_settings(settings: Settings) -> ServiceSettings:
    """``settings`` as :class:`ServiceSettings` (plain engine settings gain the defaults)."""
    if isinstance(settings, ServiceSettings):
        return settings
    return ServiceSettings(**settings.model_dump(exclude_unset=True))
