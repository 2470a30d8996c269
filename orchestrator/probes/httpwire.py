"""HTTP/1.1 on the wire, without the network: request bytes and an incremental response parser.

The HTTP probe speaks HTTP/1.1 itself because its streams may be SSH channels, which no HTTP
library takes. One request per connection (``Connection: close``), framing per RFC 9112
(``Content-Length``, ``chunked``, or until the connection closes), body kept up to a cap.

    >>> req = build_request("GET", "http://example.test:8080/health?x=1", [], None)
    >>> req.splitlines()[:2]
    [b'GET /health?x=1 HTTP/1.1', b'Host: example.test:8080']
    >>> p = ResponseParser(method="GET")
    >>> p.feed(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
    >>> p.done, p.status, p.body, p.content_length
    (True, 200, b'ok', 2)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from orchestrator.probes.result import ProbeFailed

USER_AGENT = "ServerGuard-Probe/0.1"
MAX_HEADER_BYTES = 64 * 1024
DEFAULT_KEEP = 1024 * 1024  # body bytes kept for regexps when no body_size_limit is set
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})

_STATUS = re.compile(rb"HTTP/(\d)\.(\d) (\d{3})(?: ([^\r\n]*))?")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True, slots=True)
class URL:
    """A parsed ``http``/``https`` URL: what to connect to and what to ask for."""

    scheme: str
    host: str  # without brackets
    port: int
    target: str  # path and query, the request target
    authority: str  # for the Host header (default port omitted)
    text: str

    @property
    def tls(self) -> bool:
        return self.scheme == "https"


def parse_url(text: str) -> URL:
    """``ValueError`` with a short reason when ``text`` is not an absolute http(s) URL.

    A target without a scheme gets ``http://`` (as blackbox_exporter does).
    """
    if "://" not in text:
        text = "http://" + text
    parts: SplitResult = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"scheme {parts.scheme!r} is not http or https")
    host = parts.hostname
    if not host:
        raise ValueError("the URL has no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port: {exc}") from None
    default = 443 if scheme == "https" else 80
    shown = f"[{host}]" if ":" in host else host
    authority = shown if port in (None, default) else f"{shown}:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return URL(scheme, host, port or default, target, authority, text)


def valid_header(name: str, value: str) -> str | None:
    """Why ``name: value`` cannot be sent, or ``None``."""
    if not _TOKEN.fullmatch(name):
        return f"header name {name!r} is not a valid token"
    if any(c in value for c in "\r\n\0"):
        return f"header {name!r} contains a line break or NUL"
    return None


def build_request(
    method: str, url: str | URL, headers: Iterable[tuple[str, str]], body: bytes | None
) -> bytes:
    """The request bytes. Configured headers win over the defaults (``Host`` included)."""
    parsed = url if isinstance(url, URL) else parse_url(url)
    given = list(headers)
    names = {n.lower() for n, _ in given}
    lines = [f"{method} {parsed.target} HTTP/1.1"]
    if "host" not in names:
        lines.append(f"Host: {parsed.authority}")
    defaults = [("User-Agent", USER_AGENT), ("Accept", "*/*")]
    lines += [f"{n}: {v}" for n, v in defaults if n.lower() not in names]
    lines += [f"{n}: {v}" for n, v in given if n.lower() not in ("connection", "content-length")]
    lines.append("Connection: close")
    if body is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body or b'')}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + (body or b"")


class Headers:
    """Response headers: order kept, names case-insensitive.

    >>> h = Headers([("Set-Cookie", "a=1"), ("set-cookie", "b=2")])
    >>> h.get_all("SET-COOKIE"), h.get("x-missing")
    (['a=1', 'b=2'], None)
    """

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self.items = items or []

    def get_all(self, name: str) -> list[str]:
        key = name.lower()
        return [v for n, v in self.items if n.lower() == key]

    def get(self, name: str) -> str | None:
        found = self.get_all(name)
        return found[-1] if found else None


class ResponseParser:
    """Feed it bytes as they arrive; it knows when the response is complete.

    ``body`` keeps at most ``keep`` bytes; ``body_length`` counts them all. With ``limit``
    (``body_size_limit``), a longer body fails the probe. Malformed input raises
    ``ProbeFailed`` with a one-line reason.
    """

    def __init__(self, *, method: str, keep: int = DEFAULT_KEEP, limit: int = 0) -> None:
        self.method = method
        self.keep = keep
        self.limit = limit
        self.version = ""  # "HTTP/1.1"
        self.status = 0
        self.reason = ""
        self.headers = Headers()
        self.content_length = -1  # the header's value; -1 when absent (chunked, until EOF)
        self.body_length = 0
        self.done = False
        self.headers_done = False
        self._buf = bytearray()
        self._body = bytearray()
        self._mode = "head"  # head, length, chunk-size, chunk-data, chunk-crlf, trailer, eof
        self._left = 0

    @property
    def body(self) -> bytes:
        return bytes(self._body)

    def feed(self, data: bytes) -> None:
        self._buf += data
        while not self.done and self._step():
            pass

    def eof(self) -> None:
        """The peer closed the connection: complete the response or explain what's missing."""
        if self.done:
            return
        if self._mode == "eof":
            self.done = True
        elif self._mode == "head":
            raise ProbeFailed("connection closed before a complete response header"
                              if self._buf or self.status else "empty reply from server")
        elif self._mode == "length":
            raise ProbeFailed(
                f"connection closed after {self.body_length} of "
                f"{self.content_length} body bytes")
        else:
            raise ProbeFailed("connection closed in the middle of a chunked body")

    # -- internals ----------------------------------------------------------------------------

    def _line(self, limit: int) -> bytes | None:
        end = self._buf.find(b"\n")
        if end < 0:
            if len(self._buf) > limit:
                raise ProbeFailed(f"response line longer than {limit} bytes")
            return None
        line = bytes(self._buf[:end]).rstrip(b"\r")
        del self._buf[: end + 1]
        return line

    def _step(self) -> bool:
        if self._mode == "head":
            return self._head()
        if self._mode in ("length", "eof", "chunk-data"):
            return self._data()
        if self._mode == "chunk-size":
            line = self._line(4096)
            if line is None:
                return False
            size_text = line.split(b";", 1)[0].strip()
            try:
                self._left = int(size_text, 16)
            except ValueError:
                raise ProbeFailed(f"bad chunk size {size_text[:20]!r}") from None
            self._mode = "chunk-data" if self._left else "trailer"
            return True
        if self._mode == "chunk-crlf":
            line = self._line(16)
            if line is None:
                return False
            if line:
                raise ProbeFailed("chunk not followed by CRLF")
            self._mode = "chunk-size"
            return True
        # trailer: header lines until an empty one
        line = self._line(MAX_HEADER_BYTES)
        if line is None:
            return False
        if not line:
            self.done = True
        return True

    def _head(self) -> bool:
        end = self._buf.find(b"\r\n\r\n")
        sep = 4
        if end < 0:
            end, sep = self._buf.find(b"\n\n"), 2
        if end < 0:
            if len(self._buf) > MAX_HEADER_BYTES:
                raise ProbeFailed(f"response header larger than {MAX_HEADER_BYTES} bytes")
            return False
        head = bytes(self._buf[:end]).decode("latin-1")
        del self._buf[: end + sep]
        lines = head.replace("\r\n", "\n").split("\n")
        match = _STATUS.fullmatch(lines[0].encode("latin-1"))
        if not match:
            raise ProbeFailed(f"not an HTTP response: {lines[0][:60]!r}")
        self.version = f"HTTP/{match[1].decode()}.{match[2].decode()}"
        self.status = int(match[3])
        self.reason = (match[4] or b"").decode("latin-1")
        items: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and items:  # obsolete line folding
                name, value = items[-1]
                items[-1] = (name, f"{value} {line.strip()}")
                continue
            name, colon, value = line.partition(":")
            if not colon or not _TOKEN.fullmatch(name):
                raise ProbeFailed(f"malformed response header line {line[:60]!r}")
            items.append((name, value.strip()))
        self.headers = Headers(items)
        if 100 <= self.status < 200 and self.status != 101:
            return True  # interim response (100 Continue, 103 Early Hints): the real one follows
        self.headers_done = True
        self._choose_framing()
        return True

    def _choose_framing(self) -> None:
        length = self.headers.get("content-length")
        if length is not None:
            values = {v.strip() for v in length.split(",")}
            if len(values) != 1 or not next(iter(values)).isdigit():
                raise ProbeFailed(f"bad Content-Length {length!r}")
            self.content_length = int(values.pop())
        if self.method == "HEAD" or self.status in (204, 304) or self.status < 200:
            self.done = True
            return
        codings = ",".join(self.headers.get_all("transfer-encoding")).lower()
        if codings.strip():
            if codings.rsplit(",", 1)[-1].strip() != "chunked":
                self._mode = "eof"
                return
            self.content_length = -1
            self._mode = "chunk-size"
        elif self.content_length >= 0:
            self._left = self.content_length
            self._mode = "length"
            if not self._left:
                self.done = True
        else:
            self._mode = "eof"

    def _data(self) -> bool:
        if not self._buf:
            return False
        take = len(self._buf) if self._mode == "eof" else min(self._left, len(self._buf))
        self._take(bytes(self._buf[:take]))
        del self._buf[:take]
        if self._mode != "eof":
            self._left -= take
            if not self._left:
                if self._mode == "length":
                    self.done = True
                else:
                    self._mode = "chunk-crlf"
        return True

    def _take(self, data: bytes) -> None:
        self.body_length += len(data)
        if self.limit and self.body_length > self.limit:
            raise ProbeFailed(f"response body larger than body_size_limit ({self.limit} bytes)")
        room = self.keep - len(self._body)
        if room > 0:
            self._body += data[:room]
