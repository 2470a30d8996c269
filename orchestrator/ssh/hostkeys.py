"""Host key policy: strict by default, trust-on-first-use only when chosen.

Keys are looked up in the user's known_hosts, the service's own known_hosts and any file a
target names (``-o UserKnownHostsFile=``). A key that differs from a recorded one is always
refused, whatever the policy, and the error names both fingerprints.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from inventory.targets import ConnectionTarget, HostKeyPolicy


def known_hosts_name(address: str, port: int) -> str:
    """The host field OpenSSH writes: ``addr`` on port 22, else ``[addr]:port``."""
    return address if port == 22 else f"[{address}]:{port}"


def _unique(keys: list[asyncssh.SSHKey]) -> list[asyncssh.SSHKey]:
    seen: dict[str, asyncssh.SSHKey] = {}
    for key in keys:
        seen.setdefault(key.get_fingerprint(), key)
    return list(seen.values())


@dataclass
class HostKeyVerdict:
    """Why a key was refused, kept for the error message."""

    presented: str
    expected: tuple[str, ...]


class KnownHosts:
    """Reads known_hosts files (cached by mtime) and records accept-new keys."""

    def __init__(self, user_file: Path, service_file: Path) -> None:
        self.user_file = user_file
        self.service_file = service_file
        self._cache: dict[str, tuple[float, asyncssh.SSHKnownHosts]] = {}
        self._lock = threading.Lock()

    def _load(self, path: str) -> asyncssh.SSHKnownHosts | None:
        try:
            mtime = os.stat(path).st_mtime
        except OSError:
            return None
        cached = self._cache.get(path)
        if cached and cached[0] == mtime:
            return cached[1]
        try:
            parsed = asyncssh.read_known_hosts(path)
        except (OSError, ValueError):
            return None
        self._cache[path] = (mtime, parsed)
        return parsed

    def files_for(self, target: ConnectionTarget) -> list[str]:
        return [str(self.user_file), str(self.service_file), *target.known_hosts_files]

    def lookup(
        self, target: ConnectionTarget
    ) -> tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey], list[asyncssh.SSHKey]]:
        """Trusted host keys, CA keys and revoked keys for the target's address and port."""
        keys: list[asyncssh.SSHKey] = []
        cas: list[asyncssh.SSHKey] = []
        revoked: list[asyncssh.SSHKey] = []
        port = target.port if target.port != 22 else None
        for path in self.files_for(target):
            known = self._load(path)
            if known is None:
                continue
            match = known.match(target.address, target.address, port)
            keys.extend(match[0])
            cas.extend(match[1])
            revoked.extend(match[2])
        # The same entry matches once by host and once by address: list each key once.
        return _unique(keys), _unique(cas), _unique(revoked)

    def trusted_keys(self, target: ConnectionTarget) -> list[asyncssh.SSHKey]:
        return self.lookup(target)[0]

    def record(self, target: ConnectionTarget, key: asyncssh.SSHKey) -> None:
        """Append an accepted new key to the service's known_hosts."""
        line = f"{known_hosts_name(target.address, target.port)} "
        line += key.export_public_key("openssh").decode().strip() + "\n"
        with self._lock:
            self.service_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.service_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line.encode())
                os.fsync(fd)
            finally:
                os.close(fd)


class VerifyingClient(asyncssh.SSHClient):
    """An asyncssh client that applies the policy and notes why a key was refused."""

    def __init__(self, target: ConnectionTarget, known: KnownHosts) -> None:
        self.target = target
        self.known = known
        self.verdict: HostKeyVerdict | None = None
        self.lost = False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        # asyncssh calls this only for keys that are not in the trusted list.
        trusted = self.known.trusted_keys(self.target)
        presented = key.get_fingerprint()
        if trusted:
            self.verdict = HostKeyVerdict(
                presented=presented, expected=tuple(k.get_fingerprint() for k in trusted)
            )
            return False
        if self.target.host_key_policy is HostKeyPolicy.ACCEPT_NEW:
            self.known.record(self.target, key)
            return True
        self.verdict = HostKeyVerdict(presented=presented, expected=())
        return False

    def describe_refusal(self) -> str:
        v = self.verdict
        if v is None:
            return "host key could not be verified"
        if v.expected:
            return (
                f"host key CHANGED for {known_hosts_name(self.target.address, self.target.port)}: "
                f"server offered {v.presented}, known_hosts has {', '.join(v.expected)}; "
                "if the change is expected, remove the old entry"
            )
        files = ", ".join(self.known.files_for(self.target))
        return (
            f"unknown host key {v.presented} for "
            f"{known_hosts_name(self.target.address, self.target.port)} (not in {files}); "
            "add it to known_hosts or set serverguard_host_key_policy: accept-new"
        )
