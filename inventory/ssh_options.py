"""The parts of OpenSSH command-line arguments and jump specs that ServerGuard understands.

``ansible_ssh_common_args`` / ``ansible_ssh_extra_args`` are split like a shell would
(``shlex``) and read like ``ssh`` reads them: ``-o Key=Value``, ``-o "Key Value"``,
``-oKey=Value``, ``-J a,b``; option names are case-insensitive and, as in ``ssh``, the
first value given for an option wins (``ProxyJump`` and ``ProxyCommand`` compete: whichever
comes first). Other options are ignored.

>>> opts = parse_ssh_args("-o ProxyJump=ops@bastion:2222 -o StrictHostKeyChecking=accept-new")
>>> opts.proxy_jump, opts.strict_host_key_checking
(('ops@bastion:2222',), 'accept-new')
>>> parse_hop("ops@[fe80::1]:2222")
HopSpec(text='ops@[fe80::1]:2222', user='ops', host='fe80::1', port=2222)
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass

# ssh(1) options that take an argument (the next word when not attached).
_WITH_ARGUMENT = set("BbcDEeFIiJLlmOoPpQRSWw")
_KEY_VALUE = re.compile(r"\s*([A-Za-z]+)\s*(?:=\s*|\s+)(.*)", re.S)


class SshArgsError(ValueError):
    """Arguments that cannot be understood; the caller names the host and variable."""


@dataclass(frozen=True, slots=True)
class SshOptions:
    proxy_jump: tuple[str, ...] | None = None  # () for "ProxyJump none"
    proxy_command: str | None = None
    strict_host_key_checking: str | None = None  # lower-cased value
    user_known_hosts_files: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class HopSpec:
    """``[user@]host[:port]`` (``[v6]:port`` for IPv6; an ``ssh://`` prefix is accepted)."""

    text: str
    user: str | None
    host: str
    port: int | None

    @property
    def is_bare_name(self) -> bool:
        """Only a name: may refer to an inventory host."""
        return self.user is None and self.port is None


def parse_ssh_args(text: str) -> SshOptions:
    """The jump, proxy and host key options in an ssh argument string."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise SshArgsError(f"cannot split arguments: {exc}") from None
    options: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if not word.startswith("-") or len(word) < 2 or word == "--":
            continue
        for pos in range(1, len(word)):
            flag = word[pos]
            if flag not in _WITH_ARGUMENT:
                continue
            value = word[pos + 1:]
            if not value:
                if i >= len(words):
                    raise SshArgsError(f"option -{flag} needs a value")
                value = words[i]
                i += 1
            if flag == "o":
                m = _KEY_VALUE.fullmatch(value)
                if not m:
                    raise SshArgsError(f"bad -o option {value!r} (expected Key=Value)")
                options.setdefault(m.group(1).lower(), m.group(2).strip())
            elif flag == "J":
                options.setdefault("proxyjump", value)
            break
    return _options(options)


def _options(options: dict[str, str]) -> SshOptions:
    jump: tuple[str, ...] | None = None
    command: str | None = None
    # ProxyJump and ProxyCommand compete: the first one given wins (ssh_config(5)); "none"
    # means a direct connection.
    for key, value in options.items():
        if key == "proxyjump":
            jump = () if value.lower() == "none" else tuple(
                h.strip() for h in value.split(",") if h.strip())
            break
        if key == "proxycommand":
            command = None if value.lower() == "none" else value
            break
    checking = options.get("stricthostkeychecking")
    files = options.get("userknownhostsfile")
    return SshOptions(
        proxy_jump=jump,
        proxy_command=command,
        strict_host_key_checking=checking.lower() if checking else None,
        user_known_hosts_files=tuple(os.path.expanduser(p) for p in files.split())
        if files and files.lower() != "none" else (),
    )


def parse_hop(text: str) -> HopSpec:
    """Parse one jump host; raises :class:`SshArgsError` for an empty host or bad port."""
    spec = text.strip()
    rest = spec[len("ssh://"):] if spec.startswith("ssh://") else spec
    user: str | None = None
    if "@" in rest:
        user, _, rest = rest.rpartition("@")
        if not user:
            raise SshArgsError(f"jump host {text!r} has an empty user name")
    port_text: str | None = None
    if rest.startswith("["):
        host, sep, tail = rest[1:].partition("]")
        if not sep or (tail and not tail.startswith(":")):
            raise SshArgsError(f"jump host {text!r}: bad bracketed address")
        port_text = tail[1:] if tail else None
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
    else:
        host = rest  # a plain name, or a bare IPv6 address (no port possible)
    if not host:
        raise SshArgsError(f"jump host {text!r} has no host name")
    return HopSpec(text=spec, user=user, host=host, port=_port(port_text, text))


def _port(text: str | None, hop: str) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise SshArgsError(f"jump host {hop!r}: port {text!r} is not a number from 1 to 65535")
    return int(text)
