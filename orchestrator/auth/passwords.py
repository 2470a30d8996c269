"""Password hashing with argon2id (argon2-cffi); the parameters travel inside each hash."""

from __future__ import annotations

import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from orchestrator.storage.settings import ServiceSettings


class Passwords:
    """Hashes and checks passwords; a wrong password and a broken hash both answer False."""

    def __init__(self, settings: ServiceSettings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.password_hash_time_cost,
            memory_cost=settings.password_hash_memory_kib,
            parallelism=settings.password_hash_parallelism,
        )
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    def burn(self, password: str) -> None:
        """Spend the time of one verification, so an unknown user answers as slowly."""
        if self._dummy is None:
            self._dummy = self._hasher.hash(secrets.token_hex(16))
        self.verify(self._dummy, password)


def random_password(length: int = 24) -> str:
    """A password for a generated account: letters and digits, about 140 bits."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))
