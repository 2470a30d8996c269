"""Validation of one probe item: every field checked, every error naming source, probe, field.

    >>> spec = ProbeParser({"name": "web", "type": "http", "target": "10.0.0.5:8080",
    ...                     "timeout": "1m30s"}, "probes.yml", "'web'").spec()
    >>> spec.timeout, spec.http.method
    (90.0, 'GET')
    >>> try:
    ...     ProbeParser({"name": "web", "type": "http", "target": "h", "valid_status_codes": 200},
    ...                 "probes.yml", "'web'").spec()
    ... except ProbeConfigError as exc:
    ...     print(exc)
    probes.yml: probe 'web': field 'valid_status_codes': expected a list of integers
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from typing import Any, cast, get_args

from inventory import Inventory
from orchestrator.errors import ConfigError
from orchestrator.probes.addresses import is_ip, split_host_port
from orchestrator.probes.httpwire import parse_url, valid_header
from orchestrator.probes.spec import (
    ORCHESTRATOR,
    SELF,
    DNSOptions,
    HeaderMatch,
    HTTPOptions,
    IPProtocol,
    Options,
    ProbeSpec,
    ProbeType,
    QueryResponse,
    TCPOptions,
    TLSConfig,
)

RESERVED_LABELS = frozenset({
    "job", "instance", "probe", "vantage", "phase", "version", "cipher",
    "fingerprint_sha256", "subject", "issuer", "subjectalternative",
})
MAX_TIMEOUT = 300.0

_COMMON = {"name", "type", "target", "vantage", "timeout", "job", "labels"}
_ADDRESSING = {"preferred_ip_protocol", "ip_protocol_fallback"}
_FIELDS: dict[str, set[str]] = {
    "http": _COMMON | _ADDRESSING | {
        "method", "headers", "body", "valid_status_codes", "valid_http_versions",
        "follow_redirects", "fail_if_ssl", "fail_if_not_ssl", "fail_if_body_matches_regexp",
        "fail_if_body_not_matches_regexp", "fail_if_header_matches_regexp",
        "fail_if_header_not_matches_regexp", "body_size_limit", "tls_config",
    },
    "tcp": _COMMON | _ADDRESSING | {"tls", "query_response", "tls_config"},
    "tls": _COMMON | _ADDRESSING | {"query_response", "tls_config"},
    "dns": _COMMON | _ADDRESSING | {"expect_addresses"},
}
ALL_FIELDS = set().union(*_FIELDS.values())
FIELDS_BY_TYPE: dict[str, frozenset[str]] = {k: frozenset(v) for k, v in _FIELDS.items()}
_TLS_FIELDS = {"ca_file", "cert_file", "key_file", "server_name", "insecure_skip_verify"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@-]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_HOSTNAME = re.compile(r"(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62})"
                       r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,62}))*\.?")
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)(ms|s|m|h))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1024, "kib": 1024, "mb": 1024**2, "mib": 1024**2,
               "gb": 1024**3, "gib": 1024**3}
_METHOD = re.compile(r"[A-Z][A-Z0-9_-]*")


class ProbeConfigError(ConfigError):
    """A probe definition that cannot be used; one line naming source, probe and field."""

    def __init__(
        self, source: str, message: str, *, probe: str | None = None, field: str | None = None
    ) -> None:
        self.source = source
        self.probe = probe
        self.field = field
        self.message = message
        where = [source]
        if probe is not None:
            where.append(f"probe {probe}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(": ".join([*where, message]))


class ProbeParser:
    """Validates one probe item (defaults merged in); every error names the field.

    ``label`` names the probe in messages (``'api'`` or ``#3``); ``inventory`` checks vantage
    host names; ``host`` is the host whose variables hold the item (``vantage: self``).
    """

    def __init__(self, item: dict[str, Any], source: str, label: str,
                 inventory: Inventory | None = None, host: str | None = None) -> None:
        self.item = item
        self.source = source
        self.label = label
        self.inventory = inventory
        self.host = host

    def fail(self, field: str | None, message: str) -> ProbeConfigError:
        return ProbeConfigError(self.source, message, probe=self.label, field=field)

    # -- field readers ------------------------------------------------------------------------

    def string(self, field: str, default: str | None = None, *, required: bool = False) -> str:
        value = self.item.get(field)
        if value is None:
            if required:
                raise self.fail(field, "is required")
            return cast(str, default)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(field, "expected a non-empty string")
        return value

    def flag(self, field: str, default: bool = False) -> bool:
        value = self.item.get(field, default)
        if not isinstance(value, bool):
            raise self.fail(field, "expected true or false")
        return value

    def strings(self, field: str) -> tuple[str, ...]:
        value = self.item.get(field, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(field, "expected a list of strings")
        return tuple(value)

    def regexps(self, field: str) -> tuple[re.Pattern[str], ...]:
        value = self.item.get(field, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(field, "expected a list of regular expressions (strings)")
        return tuple(self.regexp(field, v) for v in value)

    def regexp(self, field: str, text: str) -> re.Pattern[str]:
        try:
            return re.compile(text)
        except re.error as exc:
            raise self.fail(field, f"regular expression {text!r} does not compile: {exc}") from None

    # -- the probe ----------------------------------------------------------------------------

    def spec(self) -> ProbeSpec:
        name = self.string("name", required=True)
        if not _NAME.fullmatch(name):
            raise self.fail("name", "expected letters, digits and . _ - : / @ (no spaces)")
        kind = self.item.get("type")
        if kind not in get_args(ProbeType):
            raise self.fail("type", f"expected one of {', '.join(get_args(ProbeType))}"
                                    + (f", not {kind!r}" if kind is not None else ""))
        probe_type = cast(ProbeType, kind)
        for field in self.item:
            if field not in _FIELDS[probe_type]:
                raise self.fail(str(field),
                                unknown_field(str(field), _FIELDS[probe_type], probe_type))
        target = self.target(probe_type)
        options: Options
        if probe_type == "http":
            options = self.http_options()
        elif probe_type == "dns":
            options = DNSOptions(*self.addressing(), expect_addresses=self.addresses())
        else:
            tls = True if probe_type == "tls" else self.flag("tls")
            options = TCPOptions(tls, self.query_response(), *self.addressing())
        return ProbeSpec(
            name=name,
            type=probe_type,
            target=target,
            vantage=self.vantage(),
            timeout=self.timeout(),
            job=self.string("job", "probe"),
            labels=self.labels(),
            tls_config=self.tls_config(),
            options=options,
            source=self.source,
        )

    def target(self, kind: ProbeType) -> str:
        target = self.string("target", required=True).strip()
        try:
            if kind == "http":
                parse_url(target)
            elif kind in ("tcp", "tls"):
                split_host_port(target)
            elif not (is_ip(target) or _HOSTNAME.fullmatch(target)):
                raise ValueError("expected a host name or an address")
        except ValueError as exc:
            example = {"http": "http://host:port/path", "dns": "host.example",
                       }.get(kind, "host:port")
            raise self.fail("target", f"{exc} (e.g. {example})") from None
        return target

    def vantage(self) -> str:
        vantage = self.string("vantage", ORCHESTRATOR).strip()
        if vantage == ORCHESTRATOR:
            return vantage
        if vantage == SELF:
            if self.host is None:
                raise self.fail("vantage", "'self' only means something in inventory variables;"
                                           " name an inventory host")
            return self.host
        if self.inventory is not None and vantage not in self.inventory:
            raise self.fail("vantage", f"no inventory host named {vantage!r}")
        return vantage

    def timeout(self) -> float:
        value = self.item.get("timeout", 5.0)
        seconds: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str) and _DURATION.fullmatch(value.strip()):
            seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(value))
        elif isinstance(value, str) and re.fullmatch(r"\d+(?:\.\d+)?", value.strip()):
            seconds = float(value)  # "3": seconds, as 3 (Jinja renders "{{ 3 }}" to text)
        if seconds is None or not 0 < seconds <= MAX_TIMEOUT:
            shown = repr(value) if isinstance(value, str | int | float) else type(value).__name__
            raise self.fail("timeout", f"{shown}: expected seconds greater than 0 and at most "
                                       f"{MAX_TIMEOUT:g} (a number or a duration like '5s')")
        return seconds

    def labels(self) -> tuple[tuple[str, str], ...]:
        value = self.item.get("labels", {})
        if not isinstance(value, dict):
            raise self.fail("labels", "expected a mapping of label names to strings")
        out = []
        for key, text in value.items():
            if not isinstance(key, str) or not _LABEL.fullmatch(key) or key.startswith("__"):
                raise self.fail(f"labels.{key}", "not a valid Prometheus label name")
            if key in RESERVED_LABELS:
                raise self.fail(f"labels.{key}", "reserved for the probe's own labels")
            if not isinstance(text, str | int | float) or isinstance(text, bool):
                raise self.fail(f"labels.{key}", "expected a string value")
            out.append((key, str(text)))
        return tuple(sorted(out))

    def addressing(self) -> tuple[IPProtocol, bool]:
        protocol = self.item.get("preferred_ip_protocol", "ip4")
        if protocol not in ("ip4", "ip6"):
            raise self.fail("preferred_ip_protocol", "expected ip4 or ip6")
        return cast(IPProtocol, protocol), self.flag("ip_protocol_fallback", True)

    def addresses(self) -> tuple[str, ...]:
        out = []
        for text in self.strings("expect_addresses"):
            if not is_ip(text):
                raise self.fail("expect_addresses", f"{text!r} is not an IP address")
            out.append(str(ipaddress.ip_address(text)))
        return tuple(out)

    def tls_config(self) -> TLSConfig:
        value = self.item.get("tls_config", {})
        if not isinstance(value, dict):
            raise self.fail("tls_config", "expected a mapping")
        for key in value:
            if key not in _TLS_FIELDS:
                raise self.fail(f"tls_config.{key}", unknown_field(str(key), _TLS_FIELDS))
        paths: dict[str, str | None] = {}
        for key in ("ca_file", "cert_file", "key_file", "server_name"):
            text = value.get(key)
            if text is not None and (not isinstance(text, str) or not text):
                raise self.fail(f"tls_config.{key}", "expected a non-empty string")
            paths[key] = text
        if paths["key_file"] and not paths["cert_file"]:
            raise self.fail("tls_config.key_file", "needs tls_config.cert_file too")
        skip = value.get("insecure_skip_verify", False)
        if not isinstance(skip, bool):
            raise self.fail("tls_config.insecure_skip_verify", "expected true or false")
        return TLSConfig(paths["ca_file"], paths["cert_file"], paths["key_file"],
                         paths["server_name"], skip)

    def query_response(self) -> tuple[QueryResponse, ...]:
        value = self.item.get("query_response", [])
        if not isinstance(value, list):
            raise self.fail("query_response", "expected a list of {expect, send, starttls}")
        steps = []
        for number, step in enumerate(value, 1):
            field = f"query_response[{number}]"
            if not isinstance(step, dict) or not step or set(step) - {"expect", "send",
                                                                        "starttls"}:
                raise self.fail(field, "expected a mapping with expect, send and/or starttls")
            expect, send, starttls = step.get("expect"), step.get("send"), step.get("starttls")
            if expect is not None and not isinstance(expect, str):
                raise self.fail(f"{field}.expect", "expected a regular expression (string)")
            if send is not None and not isinstance(send, str):
                raise self.fail(f"{field}.send", "expected a string")
            if starttls is not None and not isinstance(starttls, bool):
                raise self.fail(f"{field}.starttls", "expected true or false")
            steps.append(QueryResponse(
                self.regexp(f"{field}.expect", expect) if expect is not None else None,
                send, bool(starttls)))
        return tuple(steps)

    def http_options(self) -> HTTPOptions:
        method = self.string("method", "GET").upper()
        if not _METHOD.fullmatch(method):
            raise self.fail("method", f"{method!r} is not an HTTP method")
        codes = self.item.get("valid_status_codes", [])
        if not isinstance(codes, list) or not all(
            isinstance(c, int) and not isinstance(c, bool) for c in codes
        ):
            raise self.fail("valid_status_codes", "expected a list of integers")
        for code in codes:
            if not 100 <= code <= 599:
                raise self.fail("valid_status_codes", f"{code} is not an HTTP status (100-599)")
        versions = self.strings("valid_http_versions")
        for version in versions:
            if not re.fullmatch(r"HTTP/\d(\.\d)?", version):
                raise self.fail("valid_http_versions", f"{version!r} is not like 'HTTP/1.1'")
        body = self.item.get("body")
        if body is not None and not isinstance(body, str):
            raise self.fail("body", "expected a string")
        ip_protocol, fallback = self.addressing()
        ssl_flags = self.flag("fail_if_ssl"), self.flag("fail_if_not_ssl")
        if all(ssl_flags):
            raise self.fail("fail_if_not_ssl", "cannot be set together with fail_if_ssl")
        return HTTPOptions(
            method=method,
            headers=self.headers(),
            body=body,
            valid_status_codes=tuple(codes),
            valid_http_versions=versions,
            follow_redirects=self.flag("follow_redirects", True),
            fail_if_ssl=ssl_flags[0],
            fail_if_not_ssl=ssl_flags[1],
            fail_if_body_matches_regexp=self.regexps("fail_if_body_matches_regexp"),
            fail_if_body_not_matches_regexp=self.regexps("fail_if_body_not_matches_regexp"),
            fail_if_header_matches_regexp=self.header_matches("fail_if_header_matches_regexp"),
            fail_if_header_not_matches_regexp=self.header_matches(
                "fail_if_header_not_matches_regexp"),
            body_size_limit=self.size("body_size_limit"),
            ip_protocol=ip_protocol,
            ip_protocol_fallback=fallback,
        )

    def headers(self) -> tuple[tuple[str, str], ...]:
        value = self.item.get("headers", {})
        if not isinstance(value, dict):
            raise self.fail("headers", "expected a mapping of header names to values")
        out = []
        for key, text in value.items():
            if not isinstance(text, str | int | float) or isinstance(text, bool):
                raise self.fail(f"headers.{key}", "expected a string value")
            problem = valid_header(str(key), str(text))
            if problem:
                raise self.fail(f"headers.{key}", problem)
            out.append((str(key), str(text)))
        return tuple(out)

    def header_matches(self, field: str) -> tuple[HeaderMatch, ...]:
        value = self.item.get(field, [])
        if not isinstance(value, list):
            raise self.fail(field, "expected a list of {header, regexp, allow_missing}")
        out = []
        for number, entry in enumerate(value, 1):
            where = f"{field}[{number}]"
            if (not isinstance(entry, dict) or set(entry) - {"header", "regexp", "allow_missing"}
                    or not isinstance(entry.get("header"), str)
                    or not isinstance(entry.get("regexp"), str)):
                raise self.fail(where, "expected a mapping with header and regexp (strings) "
                                       "and optionally allow_missing")
            allow = entry.get("allow_missing", False)
            if not isinstance(allow, bool):
                raise self.fail(f"{where}.allow_missing", "expected true or false")
            out.append(HeaderMatch(entry["header"], self.regexp(where, entry["regexp"]), allow))
        return tuple(out)

    def size(self, field: str) -> int:
        value = self.item.get(field, 0)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        match = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
        if not match:
            raise self.fail(field, "expected a size in bytes (e.g. 1048576 or '1MiB')")
        return int(match[1]) * _SIZE_UNITS[(match[2] or "b").lower()]


def unknown_field(field: str, known: set[str], kind: str | None = None) -> str:
    close = (difflib.get_close_matches(field, sorted(known), n=1)
             or [k for k in sorted(known) if len(field) > 1 and k.startswith(field)][:1])
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    where = f" for {kind} probes" if kind else ""
    return f"unknown field{where}{hint}"
