"""Probes without the network: configuration, HTTP wire parsing, getent output, the runner's
failure paths with fake vantage hosts."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from inventory import Inventory, load_inventory
from inventory.targets import ConnectionTarget
from orchestrator.errors import ConnectError
from orchestrator.probes import (
    ProbeConfigError,
    ProbeSpec,
    load_probes,
    parse_probes,
    run_probe_result,
    run_probes,
)
from orchestrator.probes.addresses import choose_address, ip_addr_hash, split_host_port
from orchestrator.probes.config import probes_from_inventory
from orchestrator.probes.dns import parse_getent
from orchestrator.probes.http import Request, redirect
from orchestrator.probes.httpwire import ResponseParser, build_request, parse_url
from orchestrator.probes.result import ProbeFailed
from orchestrator.probes.tcp import go_expand
from orchestrator.ssh.exec import ExecResult

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "probes.yml"


def write(tmp_path: Path, text: str, name: str = "probes.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(items: list[Any], **kwargs: Any) -> str:
    with pytest.raises(ProbeConfigError) as info:
        parse_probes(items, "probes.yml", **kwargs)
    return str(info.value)


HTTP = {"name": "api-health", "type": "http", "target": "http://127.0.0.1:8080/health"}


# ---------------------------------------------------------------------------- files


def test_defaults_apply_to_the_types_that_have_the_field(tmp_path: Path) -> None:
    """defaults: {method: HEAD} beside a tcp probe: the http probe gets it, tcp ignores it;
    a field no type has is still an error naming defaults.<field>."""
    path = write(tmp_path, """
defaults: {timeout: 2s, method: HEAD, expect_addresses: ["127.0.0.1"]}
probes:
  - {name: web, type: http, target: "http://web.test/"}
  - {name: ssh, type: tcp, target: "web.test:22"}
  - {name: name, type: dns, target: localhost}
""")
    web, ssh, name = load_probes(path)
    assert getattr(web.options, "method", None) == "HEAD"
    assert not hasattr(ssh.options, "method")
    assert (web.timeout, ssh.timeout, name.timeout) == (2.0, 2.0, 2.0)
    assert getattr(name.options, "expect_addresses", None) == ("127.0.0.1",)
    bad = write(tmp_path, "defaults: {methd: HEAD}\n"
                          "probes: [{name: s, type: tcp, target: 'h:1'}]\n")
    with pytest.raises(ProbeConfigError, match=r"defaults\.methd"):
        load_probes(bad)


def test_file_with_defaults_and_every_type(tmp_path: Path) -> None:
    path = write(tmp_path, """
defaults:
  timeout: 1m30s
  job: blackbox
probes:
  - name: api-health
    type: http
    target: https://api.test:8443/health
    method: post
    headers: {X-Token: abc, X-Num: 5}
    body: '{"a": 1}'
    valid_status_codes: [200, 204]
    valid_http_versions: [HTTP/1.1]
    follow_redirects: false
    fail_if_body_not_matches_regexp: ['"status":\\s*"ok"']
    fail_if_header_matches_regexp: [{header: X-Err, regexp: ".+", allow_missing: true}]
    body_size_limit: 1MiB
    preferred_ip_protocol: ip6
    ip_protocol_fallback: false
    labels: {team: web}
    tls_config: {ca_file: /etc/ca.pem, server_name: api.test}
  - {name: ssh, type: tcp, target: "[::1]:22", timeout: 500ms,
     query_response: [{expect: "^SSH-2.0-"}, {send: "bye"}]}
  - {name: cert, type: tls, target: "api.test:443", timeout: 2}
  - {name: resolve, type: dns, target: localhost, expect_addresses: ["127.0.0.1"]}
""")
    http, ssh, cert, dns = load_probes(path)
    assert (http.timeout, http.job, http.vantage, http.source) == (90.0, "blackbox",
                                                                    "orchestrator", str(path))
    o = http.http
    assert o.method == "POST" and o.headers == (("X-Token", "abc"), ("X-Num", "5"))
    assert o.valid_status_codes == (200, 204) and not o.follow_redirects
    assert o.body_size_limit == 1024 * 1024 and o.ip_protocol == "ip6"
    assert o.fail_if_body_not_matches_regexp[0].search('{"status": "ok"}')
    assert o.fail_if_header_matches_regexp[0].allow_missing
    assert http.labels == (("team", "web"),)
    assert http.tls_config.server_name == "api.test"
    assert ssh.timeout == 0.5 and not ssh.tcp.tls
    assert ssh.tcp.query_response[1].send == "bye"
    assert cert.tcp.tls and cert.timeout == 2.0
    assert dns.dns.expect_addresses == ("127.0.0.1",)
    assert http.series_labels() == {"job": "blackbox", "instance": "https://api.test:8443/health",
                                    "probe": "api-health", "vantage": "orchestrator",
                                    "team": "web"}


def test_plain_list_file_and_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, "- {name: a, type: tcp, target: 'h:1'}\n")
    assert [s.name for s in load_probes(path)] == ["a"]
    assert load_probes(write(tmp_path, "", "empty.yml")) == []


def test_the_example_file_loads() -> None:
    specs = load_probes(EXAMPLES)
    assert {s.type for s in specs} == {"tcp", "http", "tls", "dns"}
    assert {s.vantage for s in specs} >= {"orchestrator", "bastion", "bastion2"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("probes: [1, 2]\nextra: 1\n", "unknown top-level key(s) ['extra']"),
        ("probes: {a: 1}\n", "expected a list of probes"),
        ("defaults: [1]\nprobes: []\n", "'defaults' must be a mapping"),
        ("defaults: {target: x}\nprobes: []\n", "'defaults' cannot set ['target']"),
        ("probes:\n  - name: [unclosed\n", "not valid YAML"),
    ],
)
def test_file_level_errors(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ProbeConfigError) as info:
        load_probes(write(tmp_path, text))
    assert str(info.value).startswith(str(tmp_path / "probes.yml"))
    assert expected in str(info.value)


def test_yaml_error_names_line(tmp_path: Path) -> None:
    with pytest.raises(ProbeConfigError, match=r"probes\.yml:3:\d+: not valid YAML"):
        load_probes(write(tmp_path, "probes:\n  - name: a\n  bad: [\n"))


def test_missing_file() -> None:
    with pytest.raises(ProbeConfigError, match=r"nope\.yml: cannot read"):
        load_probes("nope.yml")


# ---------------------------------------------------------------------------- field errors


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"valid_status_codes": "200"},
         "probes.yml: probe 'api-health': field 'valid_status_codes': expected a list of integers"),
        ({"valid_status_codes": [200, 700]},
         "field 'valid_status_codes': 700 is not an HTTP status (100-599)"),
        ({"valid_status_code": [200]},
         "field 'valid_status_code': unknown field for http probes "
         "(did you mean 'valid_status_codes'?)"),
        ({"type": "icmp"}, "field 'type': expected one of tcp, http, tls, dns, not 'icmp'"),
        ({"target": "ftp://x/"}, "field 'target': scheme 'ftp' is not http or https"),
        ({"timeout": 0}, "field 'timeout': 0: expected seconds greater than 0"),
        ({"timeout": "5 parsecs"}, "field 'timeout': '5 parsecs': expected seconds"),
        ({"timeout": "301"}, "field 'timeout': '301': expected seconds greater than 0 and at "
                             "most 300"),
        ({"fail_if_body_matches_regexp": ["(unclosed"]},
         "field 'fail_if_body_matches_regexp': regular expression '(unclosed' does not compile"),
        ({"fail_if_body_matches_regexp": "error"},
         "field 'fail_if_body_matches_regexp': expected a list of regular expressions"),
        ({"headers": {"X-A": "a\r\nInjected: 1"}},
         "field 'headers.X-A': header 'X-A' contains a line break"),
        ({"headers": {"Bad Name": "x"}}, "header name 'Bad Name' is not a valid token"),
        ({"labels": {"job": "x"}}, "field 'labels.job': reserved"),
        ({"labels": {"1x": "x"}}, "field 'labels.1x': not a valid Prometheus label name"),
        ({"tls_config": {"ca": "x"}},
         "field 'tls_config.ca': unknown field (did you mean 'ca_file'?)"),
        ({"tls_config": {"key_file": "k"}}, "field 'tls_config.key_file': needs"),
        ({"vantage": "self"}, "field 'vantage': 'self' only means something in inventory"),
        ({"follow_redirects": "yes"}, "field 'follow_redirects': expected true or false"),
        ({"fail_if_ssl": True, "fail_if_not_ssl": True}, "field 'fail_if_not_ssl': cannot"),
        ({"body_size_limit": "lots"}, "field 'body_size_limit': expected a size"),
        ({"method": "GE T"}, "field 'method': 'GE T' is not an HTTP method"),
        ({"preferred_ip_protocol": "ipx"}, "field 'preferred_ip_protocol': expected ip4 or ip6"),
        ({"fail_if_header_matches_regexp": [{"header": "X"}]},
         "field 'fail_if_header_matches_regexp[1]': expected a mapping with header and regexp"),
        ({"name": "has space"}, "field 'name': expected letters"),
        ({"target": None}, "field 'target': is required"),
    ],
)
def test_http_field_errors(change: dict[str, Any], message: str) -> None:
    item = {**HTTP, **change}
    item = {k: v for k, v in item.items() if v is not None}
    assert message in error_of([item])


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"name": "x", "type": "tcp", "target": "host"},
         "probe 'x': field 'target': expected host:port"),
        ({"name": "x", "type": "tcp", "target": "host:99999"},
         "field 'target': port '99999' is not a number from 1 to 65535"),
        ({"name": "x", "type": "tls", "target": "h:1", "tls": True},
         "field 'tls': unknown field for tls probes"),
        ({"name": "x", "type": "tcp", "target": "h:1", "query_response": [{"expec": "a"}]},
         "field 'query_response[1]': expected a mapping with expect, send and/or starttls"),
        ({"name": "x", "type": "tcp", "target": "h:1", "query_response": [{"send": 1}]},
         "field 'query_response[1].send': expected a string"),
        ({"name": "x", "type": "dns", "target": "bad name!"},
         "field 'target': expected a host name or an address"),
        ({"name": "x", "type": "dns", "target": "h", "expect_addresses": ["h2"]},
         "field 'expect_addresses': 'h2' is not an IP address"),
        ({"type": "tcp", "target": "h:1"}, "probe #1: field 'name': is required"),
    ],
)
def test_other_field_errors(item: dict[str, Any], message: str) -> None:
    assert message in error_of([item])


def test_not_a_mapping_and_duplicates() -> None:
    assert "probes.yml: probe #2: expected a mapping" in error_of([HTTP, "x"])
    assert "defined twice (probes #1 and #2)" in error_of([HTTP, dict(HTTP)])
    # The same name from another vantage is another probe.
    specs = parse_probes([HTTP, {**HTTP, "vantage": "bastion"}], "probes.yml")
    assert [s.vantage for s in specs] == ["orchestrator", "bastion"]


# ---------------------------------------------------------------------------- inventory


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Inventory:
    root = tmp_path_factory.mktemp("inv")
    (root / "inv.yml").write_text("""
all:
  children:
    web:
      hosts:
        web01: {ansible_host: 10.0.0.1}
        web02: {ansible_host: 10.0.0.2}
      vars:
        serverguard_probes:
          - {name: ssh, type: tcp, target: "{{ ansible_host }}:22"}
          - {name: db, type: tcp, target: "10.0.1.5:5432", vantage: self}
          - {name: site, type: http, target: "http://10.0.2.1/", vantage: bastion}
    bastions:
      hosts:
        bastion: {ansible_host: 10.0.0.254}
""")
    return load_inventory([str(root / "inv.yml")])


def test_inventory_probes_expand_per_host_and_collapse(inventory: Inventory) -> None:
    specs = load_probes(inventory)
    keys = sorted(s.key for s in specs)
    assert keys == [
        ("db", "web01", "10.0.1.5:5432"),
        ("db", "web02", "10.0.1.5:5432"),
        ("site", "bastion", "http://10.0.2.1/"),  # inherited twice, one probe
        ("ssh", "orchestrator", "10.0.0.1:22"),
        ("ssh", "orchestrator", "10.0.0.2:22"),
    ]
    assert specs[0].source == "inventory host 'web01': serverguard_probes"


def test_file_vantage_checked_against_the_inventory(inventory: Inventory,
                                                    tmp_path: Path) -> None:
    path = write(tmp_path, "- {name: a, type: tcp, target: 'h:1', vantage: bastoin}\n")
    with pytest.raises(ProbeConfigError, match="field 'vantage': no inventory host named"):
        load_probes(path, inventory=inventory)
    assert load_probes(path)[0].vantage == "bastoin"  # unchecked without an inventory


def test_inventory_errors_name_the_host(tmp_path: Path) -> None:
    (tmp_path / "inv.yml").write_text("""
all:
  hosts:
    a:
      serverguard_probes:
        - {name: x, type: http, target: "http://{{ nope }}/"}
    b:
      serverguard_probes: {name: x}
    c:
      serverguard_probes:
        - {name: y, type: tcp, target: "h:1", vantage: self}
    d:
      serverguard_probes:
        - {name: y, type: tcp, target: "h:1", vantage: c, timeout: 3}
""")
    inv = load_inventory([str(tmp_path / "inv.yml")])
    with pytest.raises(ProbeConfigError) as info:
        parse_probes(inv.host_vars("a")["serverguard_probes"], "inventory host 'a'",
                     render=_render_for(inv, "a"))
    assert str(info.value) == (
        "inventory host 'a': probe 'x': field 'target': template error: 'nope' is undefined")
    with pytest.raises(ProbeConfigError, match="inventory host 'a': serverguard_probes: probe 'x'"):
        load_probes(inv)
    (tmp_path / "inv.yml").write_text(
        (tmp_path / "inv.yml").read_text().replace("{{ nope }}", "x"))
    inv = load_inventory([str(tmp_path / "inv.yml")])
    with pytest.raises(ProbeConfigError,
                       match="inventory host 'b': serverguard_probes: expected a list"):
        load_probes(inv)


def _render_for(inv: Inventory, host: str) -> Any:
    from orchestrator.probes.config import _renderer

    return _renderer(f"inventory host '{host}'", {**inv.host_vars(host),
                                                  "inventory_hostname": host})


def test_conflicting_definitions_across_hosts(tmp_path: Path) -> None:
    (tmp_path / "inv.yml").write_text("""
all:
  hosts:
    c:
      serverguard_probes: [{name: y, type: tcp, target: "h:1", vantage: orchestrator}]
    d:
      serverguard_probes: [{name: y, type: tcp, target: "h:1", timeout: 3}]
""")
    inv = load_inventory([str(tmp_path / "inv.yml")])
    with pytest.raises(ProbeConfigError) as info:
        load_probes(inv)
    assert str(info.value) == (
        "inventory host 'd': serverguard_probes: probe 'y': defined differently in "
        "inventory host 'c': serverguard_probes for the same vantage 'orchestrator' and "
        "target 'h:1'")


# ---------------------------------------------------------------------------- HTTP wire


def parse(chunks: list[bytes], method: str = "GET", **kwargs: Any) -> ResponseParser:
    parser = ResponseParser(method=method, **kwargs)
    for chunk in chunks:
        parser.feed(chunk)
    return parser


def bytewise(data: bytes) -> list[bytes]:
    return [data[i:i + 1] for i in range(len(data))]


def test_content_length_response_fed_byte_by_byte() -> None:
    raw = b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello"
    p = parse(bytewise(raw))
    assert (p.done, p.status, p.reason, p.version) == (True, 201, "Created", "HTTP/1.1")
    assert (p.body, p.content_length, p.body_length) == (b"hello", 5, 5)
    assert p.headers.get_all("X-A") == ["1", "2"]


def test_chunked_with_extensions_and_trailers() -> None:
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
    for chunks in ([raw], bytewise(raw)):
        p = parse(chunks)
        assert p.done and p.body == b"hello world"
        assert (p.content_length, p.body_length) == (-1, 11)


def test_body_until_close_and_truncated_bodies() -> None:
    p = parse([b"HTTP/1.0 200 OK\r\n\r\nsome", b" text"])
    assert not p.done
    p.eof()
    assert p.done and p.body == b"some text" and p.version == "HTTP/1.0"
    p = parse([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"])
    with pytest.raises(ProbeFailed, match="connection closed after 5 of 10 body bytes"):
        p.eof()
    with pytest.raises(ProbeFailed, match="empty reply from server"):
        parse([]).eof()
    with pytest.raises(ProbeFailed, match="chunked"):
        parse([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"]).eof()


def test_no_body_cases_and_interim_responses() -> None:
    head = parse([b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"], method="HEAD")
    assert head.done and head.content_length == 99 and head.body_length == 0
    assert parse([b"HTTP/1.1 204 No Content\r\n\r\n"]).done
    assert parse([b"HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n"]).done
    p = parse([b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
               b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"])
    assert p.done and p.status == 200 and p.body == b"ok" and p.headers.get("link") is None


def test_body_cap_and_size_limit() -> None:
    p = parse([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"], keep=4)
    assert p.done and p.body == b"0123" and p.body_length == 10
    with pytest.raises(ProbeFailed, match=r"larger than body_size_limit \(8 bytes\)"):
        parse([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"], limit=8)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "not an HTTP response: 'SSH-2.0-OpenSSH_9.2'"),
        (b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n", "malformed response header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", "bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
        (b"HTTP/1.1 200 OK\r\n" + b"X: " + b"a" * 70000, "response header larger than"),
    ],
)
def test_malformed_responses(raw: bytes, message: str) -> None:
    with pytest.raises(ProbeFailed, match=re.escape(message)):
        parse([raw])


def test_folded_headers_and_identical_content_lengths() -> None:
    p = parse([b"HTTP/1.1 200 OK\r\nX-Long: a\r\n  b\r\nContent-Length: 2, 2\r\n\r\nok"])
    assert p.headers.get("x-long") == "a b" and p.body == b"ok"


def test_build_request() -> None:
    req = build_request("POST", "https://[::1]:8443/api?q=1",
                        [("Content-Type", "application/json"), ("Connection", "keep-alive")],
                        b'{"a":1}')
    head, body = req.split(b"\r\n\r\n")
    assert body == b'{"a":1}'
    assert head.split(b"\r\n") == [
        b"POST /api?q=1 HTTP/1.1", b"Host: [::1]:8443", b"User-Agent: ServerGuard-Probe/0.1",
        b"Accept: */*", b"Content-Type: application/json", b"Connection: close",
        b"Content-Length: 7"]
    custom = build_request("GET", "http://10.0.0.1/", [("Host", "site.test"),
                                                      ("User-Agent", "me")], None)
    assert custom.split(b"\r\n") == [
        b"GET / HTTP/1.1", b"Accept: */*", b"Host: site.test", b"User-Agent: me",
        b"Connection: close", b"", b""]


def test_parse_url() -> None:
    url = parse_url("127.0.0.1:8080")
    assert (url.scheme, url.host, url.port, url.target, url.authority) == (
        "http", "127.0.0.1", 8080, "/", "127.0.0.1:8080")
    assert parse_url("https://h.test/").authority == "h.test"
    assert parse_url("https://h.test:443/").port == 443
    for bad in ("http://", "http://h:99999/", "ftp://h/"):
        with pytest.raises(ValueError):
            parse_url(bad)


def test_redirect_rules() -> None:
    post = Request(parse_url("http://a.test/x"), "POST",
                   [("Host", "v.test"), ("Authorization", "t"), ("Content-Type", "j")], b"d")
    kept = redirect(post, 307, "/y")
    assert (kept.url.text, kept.method, kept.body) == ("http://a.test/y", "POST", b"d")
    assert ("Host", "v.test") in kept.headers  # relative: the Host header survives
    moved = redirect(post, 301, "http://b.test/z")
    assert (moved.method, moved.body, moved.headers) == ("GET", None, [])
    head = Request(parse_url("http://a.test/"), "HEAD", [], None)
    assert redirect(head, 303, "/other").method == "HEAD"
    with pytest.raises(ProbeFailed, match="cannot follow redirect"):
        redirect(post, 302, "ftp://elsewhere/")


# ---------------------------------------------------------------------------- small pieces


def test_getent_parsing() -> None:
    ahosts = ("169.254.20.11   STREAM private01.lab.test\n169.254.20.11   DGRAM\n"
              "169.254.20.11   RAW\nfe80::1%eth0    STREAM\n")
    assert parse_getent("n", "bastion", 0, ahosts, None) == ["169.254.20.11", "fe80::1"]
    assert parse_getent("n", "h", 0, "::1   localhost ip6-localhost\n", None) == ["::1"]
    for rc, message in ((2, "bastion cannot resolve n: not found"),
                        (127, "bastion has no getent command"),
                        (1, r"getent on bastion failed \(exit code 1\)")):
        with pytest.raises(ProbeFailed, match=message):
            parse_getent("n", "bastion", rc, "", None)
    with pytest.raises(ProbeFailed, match="did not finish: command timed out"):
        parse_getent("n", "bastion", None, "", "command timed out after 5s")
    with pytest.raises(ProbeFailed, match="resolved n to no address"):
        parse_getent("n", "bastion", 0, "garbage\n", None)


def test_addresses() -> None:
    assert split_host_port("[fe80::1]:22") == ("fe80::1", 22)
    for bad in ("h", "::1:22", "[::1]22", ":22", "h:0"):
        with pytest.raises(ValueError):
            split_host_port(bad)
    assert choose_address(["::1", "127.0.0.1"], "ip6", True, "n") == "::1"
    assert choose_address(["::1"], "ip4", True, "n") == "::1"
    with pytest.raises(ProbeFailed, match="n has no IPv4 address"):
        choose_address(["::1"], "ip4", False, "n")
    assert ip_addr_hash("127.0.0.1") != ip_addr_hash("127.0.0.2")


def test_go_style_expansion() -> None:
    match = re.search(r"^220 (?P<host>\S+) (\w+)", "220 mx.test ESMTP")
    assert match is not None
    assert go_expand(match, "EHLO ${host} $2 ${9} $$1") == "EHLO mx.test ESMTP  $1"


# ---------------------------------------------------------------------------- runner failures


class FakePool:
    """Just enough of ConnectionPool for the SSH dialer: scripted ``run`` and failures."""

    def __init__(self, *, connect_error: bool = False, stdout: str = "", rc: int = 0) -> None:
        self.connect_error = connect_error
        self.stdout = stdout
        self.rc = rc
        self.commands: list[str] = []

    async def run(self, target: ConnectionTarget, command: str, **_: Any) -> ExecResult:
        self.commands.append(command)
        if self.connect_error:
            raise ConnectError(target.name, "connection refused by 10.9.9.9:22")
        return ExecResult(host=target.name, rc=self.rc, stdout_bytes=self.stdout.encode())

    def channel_slot(self, target: ConnectionTarget) -> Any:
        raise ConnectError(target.name, "connection refused by 10.9.9.9:22")


class FakeInventory:
    def target(self, name: str) -> ConnectionTarget:
        return ConnectionTarget(name=name, address="10.9.9.9")


async def test_dns_from_a_vantage_host_runs_getent() -> None:
    pool = FakePool(stdout="10.1.2.3  STREAM svc\n10.1.2.4 STREAM\n")
    spec = ProbeSpec("svc", "dns", "svc.test'; rm -rf /", vantage="web01")
    result = await run_probe_result(spec, pool, FakeInventory())  # type: ignore[arg-type]
    assert result.success, result.reason
    assert pool.commands[0].startswith("getent ahosts 'svc.test'\"'\"'; rm -rf /'")
    values = {s.name: s.value for s in result.samples}
    assert values["serverguard_probe_dns_addresses"] == 2
    assert values["probe_ip_protocol"] == 4
    labels = dict(result.samples[0].labels)
    assert labels == {"job": "probe", "instance": "svc.test'; rm -rf /", "probe": "svc",
                      "vantage": "web01"}


async def test_unreachable_vantage_is_a_failed_probe_not_an_exception() -> None:
    specs = [ProbeSpec("a", "tcp", "10.0.0.1:80", vantage="web01"),
             ProbeSpec("b", "dns", "x.test", vantage="web01"),
             ProbeSpec("c", "http", "http://10.0.0.1/", vantage="web01")]
    results = await run_probes(specs, FakePool(connect_error=True),  # type: ignore[arg-type]
                               FakeInventory(), concurrency=2)  # type: ignore[arg-type]
    assert [r[0] for r in results] == specs
    for _spec, samples, failure in results:
        values = {s.name: s.value for s in samples}
        assert values["probe_success"] == 0 and values["serverguard_probe_vantage_up"] == 0
        assert failure is not None and failure.vantage_error
        assert "vantage unreachable: web01: cannot connect: connection refused" in failure.reason


async def test_vantage_needs_inventory_and_pool() -> None:
    result = await run_probe_result(ProbeSpec("a", "tcp", "h:1", vantage="web01"))
    assert not result.success and result.failure is not None
    assert result.failure.vantage_error
    assert "needs an inventory and an SSH pool" in str(result.failure)


async def test_timeout_names_the_stage() -> None:
    class SlowPool(FakePool):
        async def run(self, target: ConnectionTarget, command: str, **_: Any) -> ExecResult:
            await asyncio.sleep(5)
            raise AssertionError("not reached")

    spec = ProbeSpec("slow", "dns", "x.test", vantage="web01", timeout=0.2)
    result = await run_probe_result(spec, SlowPool(), FakeInventory())  # type: ignore[arg-type]
    assert result.reason == "timed out after 0.2s resolving x.test"
    assert result.duration_s < 1


def test_a_host_selection_selects_the_probes_defined_on_those_hosts(tmp_path: Path) -> None:
    path = tmp_path / "inv.yml"
    path.write_text("""
all:
  hosts:
    web1: {serverguard_probes: [{name: web, type: tcp, target: "web.test:80"}]}
    db1: {serverguard_probes: [{name: pg, type: tcp, target: "127.0.0.1:5432"}]}
""")
    inv = load_inventory([str(path)])
    assert sorted(s.name for s in probes_from_inventory(inv)) == ["pg", "web"]
    assert [s.name for s in probes_from_inventory(inv, hosts=["web1"])] == ["web"]


def test_a_timeout_in_plain_digits_is_seconds() -> None:
    """What Jinja gives for timeout: "{{ 3 }}" in inventory variables is the text "3"."""
    (spec,) = parse_probes([{**HTTP, "timeout": "3"}], "probes.yml")
    assert spec.timeout == 3.0
