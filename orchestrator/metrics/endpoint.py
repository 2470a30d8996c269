"""The VictoriaMetrics URL a user gives (``--vm-url``, ``SERVERGUARD_VM_URL``): checked,
joined with API paths, and shown without its secrets.

A URL may carry credentials (``http://user:password@vm:8428``) or a token in its query
(``?authKey=...``, VictoriaMetrics' own): requests get them, logs and messages never do.

    >>> e = VMEndpoint.parse("https://sg:s3cret@vm.example:8428/prefix/?authKey=t0ken")
    >>> e.join("/api/v1/import/prometheus")
    'https://sg:s3cret@vm.example:8428/prefix/api/v1/import/prometheus?authKey=t0ken'
    >>> e.shown
    'https://sg:***@vm.example:8428/prefix?authKey=***'
    >>> e.redact("GET /prefix/health?authKey=t0ken failed")
    'GET /prefix/health?authKey=*** failed'
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, quote_plus, urlencode, urlsplit, urlunsplit

from orchestrator.errors import ConfigError

MASK = "***"


@dataclass(frozen=True)
class VMEndpoint:
    url: str  # as given, without a trailing slash on the path: what requests get
    shown: str  # for logs and messages: password and query values masked
    secrets: tuple[str, ...]  # the parts masked in ``shown`` (for ``redact``)

    @classmethod
    def parse(cls, url: str, *, source: str = "--vm-url (SERVERGUARD_VM_URL)") -> VMEndpoint:
        """Raise :class:`ConfigError` naming ``source`` (never the URL: it may hold a
        password) unless ``url`` is an http(s) URL with a host."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port  # raises ValueError for a port out of range or not a number
        except ValueError as exc:
            raise ConfigError(f"{source}: not a valid URL ({exc})") from None
        if parts.scheme not in ("http", "https"):
            raise ConfigError(f"{source}: expected an http:// or https:// URL, such as "
                              "http://127.0.0.1:8428")
        if not parts.hostname:
            raise ConfigError(f"{source}: the URL names no host")
        if parts.fragment:
            raise ConfigError(f"{source}: the URL has a #fragment, which means nothing here")
        secrets: list[str] = []
        netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        if port is not None:
            netloc = f"{netloc}:{port}"
        if parts.username is not None:
            user = parts.username
            if parts.password is not None:
                secrets.append(parts.password)
                user = f"{user}:{MASK}"
            netloc = f"{user}@{netloc}"
        query = parse_qsl(parts.query, keep_blank_values=True)
        for _, value in query:
            if value:
                secrets += [value, quote(value, safe=""), quote_plus(value)]
        shown_query = urlencode([(k, MASK if v else v) for k, v in query], safe="*")
        path = parts.path.rstrip("/")
        clean = urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
        shown = urlunsplit((parts.scheme, netloc, path, shown_query, ""))
        return cls(clean, shown, tuple(sorted(set(secrets), key=len, reverse=True)))

    def join(self, path: str) -> str:
        """``path`` (``/api/v1/...``) under the URL's own path, its query kept."""
        return join_path(self.url, path)

    def redact(self, text: str) -> str:
        """``text`` with every secret of the URL masked (error details quote URLs)."""
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text


def join_path(url: str, path: str) -> str:
    """``url`` with ``path`` appended to its path, its query kept (``url + path`` would put
    the path after a ``?query``)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + path,
                       parts.query, ""))
