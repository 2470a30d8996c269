"""Service settings, built by the caller (CLI, API factory, tests), never at import time."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from inventory.targets import HostKeyPolicy


def default_state_dir() -> Path:
    return Path.home() / ".local" / "state" / "serverguard"


class Settings(BaseSettings):
    """Every knob has an environment variable ``SERVERGUARD_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="SERVERGUARD_", extra="ignore")

    state_dir: Path = Field(default_factory=default_state_dir)
    inventory: list[str] = Field(default_factory=list)

    # SSH engine
    connect_timeout: float = 10.0
    command_timeout: float = 60.0
    max_output_bytes: int = 4 * 1024 * 1024  # per stream, per command
    channels_per_host: int = 8  # stays under sshd's MaxSessions default of 10
    connects_in_flight: int = 64  # handshakes at once across the fleet
    handshakes_per_sshd: int = 10  # unauthenticated connections to one sshd (MaxStartups 10)
    keepalive_interval: float = 15.0
    keepalive_count_max: int = 3
    idle_timeout: float = 300.0  # close pooled connections unused this long
    reconnect_backoff_base: float = 0.5
    reconnect_backoff_max: float = 30.0
    auth_failure_backoff: float = 60.0  # after a refused login, don't retry that endpoint sooner
    host_key_policy: HostKeyPolicy = HostKeyPolicy.STRICT
    user_known_hosts: Path = Field(default_factory=lambda: Path.home() / ".ssh" / "known_hosts")
    use_ssh_agent: bool = True
    # Ciphers offered, most preferred first. AES-GCM before chacha20-poly1305 (OpenSSH's
    # first choice): both are AEAD, but with AES in hardware (every x86-64 server, ARMv8)
    # asyncssh spends 3-10 us per packet on AES-GCM against 18-31 us on chacha20, the
    # largest part of the orchestrator's CPU per sweep after parsing. Empty: asyncssh's order.
    ssh_ciphers: list[str] = Field(
        default_factory=lambda: [
            "aes128-gcm@openssh.com",
            "aes256-gcm@openssh.com",
            "chacha20-poly1305@openssh.com",
            "aes256-ctr",
            "aes192-ctr",
            "aes128-ctr",
        ]
    )

    # fan-out
    forks: int = 50

    # metrics
    vm_url: str | None = None  # None: an embedded victoria-metrics under state_dir
    vm_port: int = Field(default=8428, ge=0, le=65535)  # of the embedded child (0: any free)
    spool_bytes: int = Field(default=1 << 30, ge=0)  # on-disk spool while VM is unreachable
    collect: bool = False  # serve: sweep the inventory's hosts (the CLI turns it on)
    collect_pattern: str = "all"  # which of them
    collect_interval: float = Field(default=15.0, gt=0, allow_inf_nan=False)  # seconds
    collect_timeout: float = Field(default=10.0, gt=0, allow_inf_nan=False)  # per host, sweep
    collect_batch: int = Field(default=20, ge=1)  # hosts starting together (1: each alone)

    @property
    def known_hosts_file(self) -> Path:
        """The service's own known_hosts (accept-new records land here)."""
        return self.state_dir / "known_hosts"

    @property
    def lab_dir(self) -> Path:
        return self.state_dir / "lab"
