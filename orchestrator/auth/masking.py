"""Secret inventory variables never leave the service: their values are masked.

A variable is secret when its name (any case) is ``ansible_password``, matches ``*_pass*``
(``ansible_become_pass``, ``ansible_ssh_pass``, ``db_password``), starts with ``password``,
``passwd`` or ``passphrase``, contains ``secret`` or ``token``, or ends in ``private_key``
(a key itself; ``ansible_ssh_private_key_file`` is only a path). Masking too much is the
safe side: ``x_passenger`` is masked too. Nested
mappings are masked the same way at every depth, so ``{"db": {"password": ...}}`` is too.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "********"
_SECRET = re.compile(r"_pass|^pass(?:word|wd|phrase)|secret|token|^ansible_password$"
                     r"|private_key$", re.IGNORECASE)


def is_secret(name: str) -> bool:
    return _SECRET.search(name) is not None


def mask_vars(value: Any) -> Any:
    """A copy of ``value`` with every secret variable's value replaced by ``MASK``."""
    if isinstance(value, dict):
        return {k: MASK if isinstance(k, str) and is_secret(k) else mask_vars(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [mask_vars(v) for v in value]
    return value
