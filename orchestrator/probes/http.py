"""HTTP(S) probe: one request (plus redirects) over a vantage point's stream, judged like
blackbox_exporter's ``http`` prober.

Success needs, in this order: a valid status (``valid_status_codes``, default any 2xx); no
header regexp failing; no body regexp failing (``fail_if_body_matches_regexp`` /
``fail_if_body_not_matches_regexp``, Python ``re.search`` on the body decoded as UTF-8); a
valid HTTP version; ``fail_if_ssl`` / ``fail_if_not_ssl``. Redirects (301 302 303 307 308)
are followed up to 10 (``follow_redirects: false`` stops at the first and counts it, as
blackbox does); 301/302/303 turn the method into GET without body, 307/308 keep both.

Metrics: ``probe_http_status_code``, ``probe_http_content_length`` (the header, -1 when
absent), ``probe_http_uncompressed_body_length`` (bytes received), ``probe_http_redirects``,
``probe_http_ssl`` (final hop over TLS), ``probe_http_version``,
``probe_failed_due_to_regex``, ``probe_http_last_modified_timestamp_seconds`` (when the
header parses), ``probe_http_duration_seconds{phase}`` for ``resolve`` ``connect`` ``tls``
``processing`` ``transfer`` summed over redirects, the address metrics of the first hop, and
the certificate metrics of the final hop when it used TLS.

Example (what :func:`orchestrator.probes.run_probe` does)::

    m = ProbeMetrics()
    await probe_http(spec, LocalDialer(), m)   # raises ProbeFailed with a reason
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

from orchestrator.probes.httpwire import (
    DEFAULT_KEEP,
    REDIRECT_CODES,
    URL,
    ResponseParser,
    build_request,
    parse_url,
)
from orchestrator.probes.result import ProbeFailed, ProbeMetrics
from orchestrator.probes.spec import HTTPOptions, ProbeSpec
from orchestrator.probes.tls import discard_tls, secure
from orchestrator.probes.transport import Dialer, Stream

MAX_REDIRECTS = 10
PHASES = ("resolve", "connect", "tls", "processing", "transfer")
_SENSITIVE = {"authorization", "proxy-authorization", "cookie", "cookie2", "www-authenticate"}


@dataclass(slots=True)
class Request:
    url: URL
    method: str
    headers: list[tuple[str, str]]
    body: bytes | None


def redirect(req: Request, status: int, location: str) -> Request:
    """The next request after a redirect, following Go's net/http rules.

    >>> r = Request(parse_url("http://a.test/x"), "POST", [("Host", "v"), ("X", "1")], b"d")
    >>> n = redirect(r, 302, "https://b.test/y")
    >>> n.url.text, n.method, n.headers, n.body
    ('https://b.test/y', 'GET', [('X', '1')], None)
    """
    try:
        url = parse_url(urljoin(req.url.text, location))
    except ValueError as exc:
        raise ProbeFailed(f"cannot follow redirect to {location!r}: {exc}") from None
    method, body = req.method, req.body
    headers = list(req.headers)
    if status in (301, 302, 303) and method != "HEAD":
        method, body = "GET", None
        headers = [(n, v) for n, v in headers if n.lower() != "content-type"]
    if urlsplit(location).netloc:
        # A configured Host header only survives relative redirects.
        headers = [(n, v) for n, v in headers if n.lower() != "host"]
    if url.host != req.url.host:
        headers = [(n, v) for n, v in headers if n.lower() not in _SENSITIVE]
    return Request(url, method, headers, body)


def _host_header(headers: list[tuple[str, str]]) -> str | None:
    found = [v for n, v in headers if n.lower() == "host"]
    return found[-1].rsplit(":", 1)[0].strip("[]") if found else None


async def probe_http(spec: ProbeSpec, dialer: Dialer, m: ProbeMetrics) -> None:
    options = spec.http
    for phase in PHASES:
        m.set("probe_http_duration_seconds", 0, phase=phase)
    for name in ("probe_http_content_length", "probe_http_uncompressed_body_length",
                 "probe_http_redirects", "probe_http_ssl", "probe_http_status_code",
                 "probe_http_version", "probe_failed_due_to_regex"):
        m.set(name, 0)
    try:
        first_url = parse_url(spec.target)
    except ValueError as exc:
        raise ProbeFailed(f"bad target URL: {exc}") from None
    body = options.body.encode() if options.body is not None else None
    req = Request(first_url, options.method, list(options.headers), body)
    redirects = 0
    stopped = None
    hop = 0
    while True:
        resp = await _exchange(spec, dialer, m, req, first_hop=hop == 0, first_url=first_url)
        hop += 1
        location = resp.headers.get("location")
        if resp.status in REDIRECT_CODES and location:
            redirects += 1
            if not options.follow_redirects:
                break
            if redirects > MAX_REDIRECTS:
                stopped = f"stopped after {MAX_REDIRECTS} redirects"
                break
            req = redirect(req, resp.status, location)
            continue
        break
    m.set("probe_http_redirects", redirects)
    m.set("probe_http_status_code", resp.status)
    m.set("probe_http_content_length", resp.content_length)
    m.set("probe_http_uncompressed_body_length", resp.body_length)
    m.set("probe_http_version", float(resp.version.removeprefix("HTTP/") or 0))
    m.set("probe_http_ssl", 1 if req.url.tls else 0)
    if not req.url.tls:
        discard_tls(m)
    modified = resp.headers.get("last-modified")
    if modified:
        with contextlib.suppress(TypeError, ValueError):  # not a date: no metric, as blackbox
            m.set("probe_http_last_modified_timestamp_seconds",
                  parsedate_to_datetime(modified).timestamp())
    judge(options, resp, m, stopped, tls=req.url.tls)


def judge(
    options: HTTPOptions, resp: ResponseParser, m: ProbeMetrics, stopped: str | None,
    *, tls: bool,
) -> None:
    """Raise ``ProbeFailed`` for the first check the final response fails."""
    valid = options.valid_status_codes
    if resp.status not in valid if valid else not 200 <= resp.status < 300:
        wanted = ", ".join(map(str, valid)) if valid else "2xx"
        extra = f" ({stopped})" if stopped else ""
        raise ProbeFailed(f"status {resp.status}, wanted {wanted}{extra}")
    for match in options.fail_if_header_matches_regexp:
        values = resp.headers.get_all(match.header)
        if not values and not match.allow_missing:
            m.set("probe_failed_due_to_regex", 1)
            raise ProbeFailed(f"header {match.header} is missing")
        if any(match.regexp.search(v) for v in values):
            m.set("probe_failed_due_to_regex", 1)
            raise ProbeFailed(f"header {match.header} matched {match.regexp.pattern!r}")
    for match in options.fail_if_header_not_matches_regexp:
        values = resp.headers.get_all(match.header)
        if not values and not match.allow_missing:
            m.set("probe_failed_due_to_regex", 1)
            raise ProbeFailed(f"header {match.header} is missing")
        if values and not any(match.regexp.search(v) for v in values):
            m.set("probe_failed_due_to_regex", 1)
            raise ProbeFailed(f"header {match.header} did not match {match.regexp.pattern!r}")
    text = resp.body.decode("utf-8", "replace")
    for pattern in options.fail_if_body_matches_regexp:
        if pattern.search(text):
            m.set("probe_failed_due_to_regex", 1)
            raise ProbeFailed(f"body matched {pattern.pattern!r}")
    for pattern in options.fail_if_body_not_matches_regexp:
        if not pattern.search(text):
            m.set("probe_failed_due_to_regex", 1)
            raise ProbeFailed(f"body did not match {pattern.pattern!r}")
    if options.valid_http_versions and resp.version not in options.valid_http_versions:
        raise ProbeFailed(f"{resp.version} is not among valid_http_versions")
    if options.fail_if_ssl and tls:
        raise ProbeFailed("the final request was over TLS (fail_if_ssl)")
    if options.fail_if_not_ssl and not tls:
        raise ProbeFailed("the final request was not over TLS (fail_if_not_ssl)")


async def _exchange(
    spec: ProbeSpec, dialer: Dialer, m: ProbeMetrics, req: Request, *,
    first_hop: bool, first_url: URL,
) -> ResponseParser:
    """One request/response on a fresh connection; phases added to ``m``."""
    options = spec.http
    url = req.url

    async def dial(into: ProbeMetrics, *, timed: bool = True) -> Stream:
        dialed = await dialer.dial(url.host, url.port, into, ip_protocol=options.ip_protocol,
                                   fallback=options.ip_protocol_fallback)
        if timed:
            m.add("probe_http_duration_seconds", dialed.resolve_s, phase="resolve")
            m.add("probe_http_duration_seconds", dialed.connect_s, phase="connect")
        return dialed.stream

    m.stage = f"connecting to {url.authority}"
    # Address metrics describe the first hop only, as blackbox_exporter's do.
    stream = await dial(m if first_hop else ProbeMetrics())
    try:
        if url.tls:
            m.stage = f"in the TLS handshake with {url.authority}"
            if url.host == first_url.host:
                name = spec.tls_config.server_name or _host_header(req.headers) or url.host
            else:
                name = url.host  # blackbox: no configured server name for other hosts
            started = time.perf_counter()
            try:
                stream = await secure(stream, spec.tls_config, name, m,
                                      redial=lambda: dial(ProbeMetrics(), timed=False))
            finally:
                m.add("probe_http_duration_seconds", time.perf_counter() - started, phase="tls")
        m.stage = f"waiting for the response of {url.text}"
        sent = time.perf_counter()
        stream.write(build_request(req.method, url, req.headers, req.body))
        await stream.drain()
        resp = ResponseParser(method=req.method, keep=DEFAULT_KEEP,
                              limit=options.body_size_limit)
        first_byte: float | None = None
        while not resp.done:
            data = await stream.read()
            if first_byte is None:
                first_byte = time.perf_counter()
                m.add("probe_http_duration_seconds", first_byte - sent, phase="processing")
                m.stage = f"reading the response of {url.text}"
            if not data:
                resp.eof()
                break
            resp.feed(data)
        if first_byte is not None:
            m.add("probe_http_duration_seconds", time.perf_counter() - first_byte,
                  phase="transfer")
        return resp
    finally:
        await stream.aclose()
