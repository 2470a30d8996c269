"""Opaque bearer tokens: high-entropy random strings, stored only as their sha256.

A prefix tells the kind apart (and lets secret scanners find leaked ones): ``sga_`` access,
``sgr_`` refresh, ``sgp_`` personal. 256 random bits make a plain sha256 safe to store:
there is nothing to guess, so no slow hash is needed, and a lookup is one indexed query.
"""

from __future__ import annotations

import hashlib
import secrets

from orchestrator.storage.models import TokenKind

PREFIXES = {TokenKind.ACCESS: "sga_", TokenKind.REFRESH: "sgr_", TokenKind.PERSONAL: "sgp_"}
SHOWN_PREFIX = 10  # characters kept in clear to tell tokens apart in listings


def new_token(kind: TokenKind) -> str:
    return PREFIXES[kind] + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_family() -> str:
    return secrets.token_hex(16)
