"""Probes against real servers: HTTP/TLS/TCP/DNS on loopback, and through the lab's bastion.

Loopback servers run in threads (``http.server``) or on the test's event loop (asyncio);
certificates are generated with ``cryptography`` with known expiry times. The lab part starts
tiny servers INSIDE ``private01`` and probes them from ``bastion``'s vantage point, which the
orchestrator itself cannot reach.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import http.server
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from inventory import Inventory, load_inventory
from orchestrator.probes import (
    DNSOptions,
    HTTPOptions,
    ProbeResult,
    ProbeSpec,
    QueryResponse,
    TCPOptions,
    TLSConfig,
    run_probe,
    run_probe_result,
    run_probes,
)
from orchestrator.settings import Settings
from orchestrator.ssh.pool import ConnectionPool

UTC = dt.UTC
NOT_AFTER = dt.datetime(2031, 5, 17, 12, 34, 56, tzinfo=UTC)


# ---------------------------------------------------------------------------- certificates


@dataclass
class Cert:
    cert_path: Path
    key_path: Path
    not_after: dt.datetime
    pem: bytes
    key_pem: bytes


def make_cert(directory: Path, name: str, *, not_after: dt.datetime,
              not_before: dt.datetime | None = None, dns: tuple[str, ...] = ("localhost",),
              ips: tuple[str, ...] = ("127.0.0.1",)) -> Cert:
    """A self-signed certificate that can be its own trust anchor (CA:TRUE)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[0])])
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or dt.datetime.now(UTC) - dt.timedelta(days=1))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(pem)
    key_path.write_bytes(key_pem)
    return Cert(cert_path, key_path, not_after, pem, key_pem)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Cert]:
    directory = tmp_path_factory.mktemp("certs")
    now = dt.datetime.now(UTC).replace(microsecond=0)
    return {
        "good": make_cert(directory, "good", not_after=NOT_AFTER),
        "expired": make_cert(directory, "expired", not_after=now - dt.timedelta(days=1),
                             not_before=now - dt.timedelta(days=30)),
        "lab": make_cert(directory, "lab", not_after=NOT_AFTER,
                         dns=("private01.lab.test",), ips=("169.254.20.11",)),
    }


# ---------------------------------------------------------------------------- loopback servers


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def route(self) -> None:
        path = self.path
        if path == "/ok":
            self.reply(200, b'{"status": "ok"}\n',
                       {"Content-Type": "application/json",
                        "Last-Modified": "Sun, 06 Nov 1994 08:49:37 GMT"})
        elif path == "/down":
            self.reply(503, b'{"status": "down"}\n')
        elif path.startswith("/hop/"):
            left = int(path.rsplit("/", 1)[1])
            self.reply(302, b"", {"Location": f"/hop/{left - 1}" if left > 1 else "/ok"})
        elif path == "/loop":
            self.reply(301, b"", {"Location": "/loop"})
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/echo":
            length = int(self.headers.get("Content-Length") or 0)
            seen = {"method": self.command, "host": self.headers.get("Host"),
                    "token": self.headers.get("X-Token"),
                    "body": self.rfile.read(length).decode()}
            self.reply(200, json.dumps(seen).encode())
        else:
            self.reply(404, b"not found")

    do_GET = do_POST = do_HEAD = do_PUT = route


class Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up early are part of the tests


@dataclass
class Running:
    server: Server
    port: int


def serve(tls: ssl.SSLContext | None = None) -> Iterator[Running]:
    server = Server(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield Running(server, server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def server_context(cert: Cert) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert.cert_path, cert.key_path)
    return ctx


@pytest.fixture(scope="module")
def web() -> Iterator[Running]:
    yield from serve()


@pytest.fixture(scope="module")
def https(certs: dict[str, Cert]) -> Iterator[Running]:
    yield from serve(server_context(certs["good"]))


@pytest.fixture(scope="module")
def expired_https(certs: dict[str, Cert]) -> Iterator[Running]:
    yield from serve(server_context(certs["expired"]))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def values(result: ProbeResult) -> dict[str, float]:
    """``name`` (or ``name{label=...}`` for the extra label) -> value."""
    out = {}
    for s in result.samples:
        extra = [(k, v) for k, v in s.labels if k not in ("job", "instance", "probe", "vantage")]
        key = s.name + ("{" + ",".join(f"{k}={v}" for k, v in extra) + "}" if extra else "")
        out[key] = s.value
    return out


def http_spec(url: str, **options: Any) -> ProbeSpec:
    tls = options.pop("tls_config", TLSConfig())
    return ProbeSpec("web", "http", url, timeout=options.pop("timeout", 5.0), tls_config=tls,
                     options=HTTPOptions(**options))


# ---------------------------------------------------------------------------- HTTP


async def test_http_ok_with_every_metric_and_label(web: Running) -> None:
    url = f"http://localhost:{web.port}/ok"
    samples = await run_probe(http_spec(url))
    labels = {tuple(sorted((k, v) for k, v in s.labels if k != "phase")) for s in samples}
    assert labels == {(("instance", url), ("job", "probe"), ("probe", "web"),
                       ("vantage", "orchestrator"))}
    got = {s.name for s in samples}
    assert {"probe_success", "probe_duration_seconds", "probe_http_status_code",
            "probe_http_content_length", "probe_http_uncompressed_body_length",
            "probe_http_redirects", "probe_http_ssl", "probe_http_version",
            "probe_failed_due_to_regex", "probe_http_duration_seconds",
            "probe_dns_lookup_time_seconds", "probe_ip_protocol", "probe_ip_addr_hash",
            "probe_http_last_modified_timestamp_seconds"} <= got
    result = await run_probe_result(http_spec(url))
    v = values(result)
    assert result.success and result.failure is None
    assert v["probe_success"] == 1 and v["probe_http_status_code"] == 200
    assert v["probe_http_content_length"] == v["probe_http_uncompressed_body_length"] == 17
    assert v["probe_http_version"] == 1.1 and v["probe_http_ssl"] == 0
    assert v["probe_http_redirects"] == 0 and v["probe_ip_protocol"] == 4
    assert v["probe_http_last_modified_timestamp_seconds"] == 784111777
    for phase in ("resolve", "connect", "tls", "processing", "transfer"):
        assert v[f"probe_http_duration_seconds{{phase={phase}}}"] >= 0
    assert v["probe_http_duration_seconds{phase=tls}"] == 0
    assert v["probe_http_duration_seconds{phase=processing}"] > 0
    assert 0 < v["probe_duration_seconds"] < 2


async def test_status_codes(web: Running) -> None:
    down = await run_probe_result(http_spec(f"http://127.0.0.1:{web.port}/down"))
    assert not down.success and down.reason == "status 503, wanted 2xx"
    assert values(down)["probe_http_status_code"] == 503
    accepted = await run_probe_result(http_spec(f"http://127.0.0.1:{web.port}/down",
                                                valid_status_codes=(503,)))
    assert accepted.success
    missing = await run_probe_result(http_spec(f"http://127.0.0.1:{web.port}/nope",
                                               valid_status_codes=(200, 204)))
    assert missing.reason == "status 404, wanted 200, 204"


async def test_keyword_match_and_mismatch(web: Running) -> None:
    ok_url, down_url = f"http://127.0.0.1:{web.port}/ok", f"http://127.0.0.1:{web.port}/down"
    wants_ok = {"fail_if_body_not_matches_regexp": (re.compile(r'"status":\s*"ok"'),)}
    hit = await run_probe_result(http_spec(ok_url, **wants_ok))
    assert hit.success and values(hit)["probe_failed_due_to_regex"] == 0
    miss = await run_probe_result(http_spec(down_url, valid_status_codes=(503,), **wants_ok))
    assert not miss.success and values(miss)["probe_failed_due_to_regex"] == 1
    assert miss.reason == "body did not match '\"status\":\\\\s*\"ok\"'"
    bad_word = await run_probe_result(http_spec(
        down_url, valid_status_codes=(503,), fail_if_body_matches_regexp=(re.compile("down"),)))
    assert bad_word.reason == "body matched 'down'"
    assert values(bad_word)["probe_failed_due_to_regex"] == 1
    chunked = await run_probe_result(http_spec(
        f"http://127.0.0.1:{web.port}/chunked",
        fail_if_body_not_matches_regexp=(re.compile("hello chunked world"),)))
    assert chunked.success, chunked.reason
    assert values(chunked)["probe_http_content_length"] == -1
    assert values(chunked)["probe_http_uncompressed_body_length"] == 19


async def test_redirects_followed_or_not(web: Running) -> None:
    followed = await run_probe_result(http_spec(f"http://127.0.0.1:{web.port}/hop/3"))
    v = values(followed)
    assert followed.success and v["probe_http_redirects"] == 3
    assert v["probe_http_status_code"] == 200
    not_followed = await run_probe_result(http_spec(f"http://127.0.0.1:{web.port}/hop/3",
                                                    follow_redirects=False))
    v = values(not_followed)
    assert not not_followed.success and not_followed.reason == "status 302, wanted 2xx"
    assert v["probe_http_redirects"] == 1 and v["probe_http_status_code"] == 302
    as_wanted = await run_probe_result(http_spec(f"http://127.0.0.1:{web.port}/hop/1",
                                                 follow_redirects=False,
                                                 valid_status_codes=(302,)))
    assert as_wanted.success
    loop = await run_probe_result(http_spec(f"http://127.0.0.1:{web.port}/loop"))
    assert loop.reason == "status 301, wanted 2xx (stopped after 10 redirects)"
    assert values(loop)["probe_http_redirects"] == 11


async def test_method_headers_and_body(web: Running) -> None:
    spec = http_spec(f"http://127.0.0.1:{web.port}/echo", method="POST",
                     headers=(("X-Token", "s3cret"), ("Host", "api.test")), body='{"q": 1}',
                     fail_if_body_not_matches_regexp=(re.compile(
                         r'"method": "POST", "host": "api.test", "token": "s3cret", '
                         r'"body": "\{\\"q\\": 1\}"'),))
    result = await run_probe_result(spec)
    assert result.success, result.reason


async def test_closed_port_fails_quickly() -> None:
    port = free_port()
    tcp = ProbeSpec("t", "tcp", f"127.0.0.1:{port}")
    for spec in (http_spec(f"http://127.0.0.1:{port}/"), tcp):
        started = time.monotonic()
        result = await run_probe_result(spec)
        assert time.monotonic() - started < 1
        assert not result.success
        assert result.reason == f"cannot connect to 127.0.0.1:{port}: Connection refused"
        assert values(result)["probe_success"] == 0
        assert values(result)["serverguard_probe_vantage_up"] == 1


async def test_silent_server_times_out_naming_the_stage() -> None:
    with socket.socket() as silent:  # the kernel accepts; nobody ever answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        result = await run_probe_result(http_spec(f"http://127.0.0.1:{port}/", timeout=0.3))
    assert result.reason == (f"timed out after 0.3s waiting for the response of "
                             f"http://127.0.0.1:{port}/")
    assert 0.3 <= result.duration_s < 1.5


# ---------------------------------------------------------------------------- TLS


async def test_tls_probe_reports_the_known_expiry(https: Running, certs: dict[str, Cert]) -> None:
    spec = ProbeSpec("cert", "tls", f"localhost:{https.port}",
                     tls_config=TLSConfig(ca_file=str(certs["good"].cert_path)))
    result = await run_probe_result(spec)
    v = values(result)
    assert result.success, result.reason
    assert v["probe_ssl_earliest_cert_expiry"] == NOT_AFTER.timestamp()
    assert v["probe_ssl_last_chain_expiry_timestamp_seconds"] == NOT_AFTER.timestamp()
    assert v["serverguard_probe_ssl_chain_valid"] == 1
    assert v["probe_tls_version_info{version=TLS 1.3}"] == 1
    info = next(s for s in result.samples if s.name == "probe_ssl_last_chain_info")
    assert dict(info.labels)["subject"] == "CN=localhost"
    assert dict(info.labels)["subjectalternative"] == "localhost"
    assert len(dict(info.labels)["fingerprint_sha256"]) == 64


async def test_https_probe(https: Running, certs: dict[str, Cert]) -> None:
    tls = TLSConfig(ca_file=str(certs["good"].cert_path))
    for host in ("localhost", "127.0.0.1"):  # name and IP SAN both verify
        result = await run_probe_result(http_spec(f"https://{host}:{https.port}/hop/1",
                                                  tls_config=tls))
        v = values(result)
        assert result.success, result.reason
        assert v["probe_http_ssl"] == 1 and v["probe_http_redirects"] == 1
        assert v["probe_ssl_earliest_cert_expiry"] == NOT_AFTER.timestamp()
        assert v["probe_http_duration_seconds{phase=tls}"] > 0
    plain = await run_probe_result(http_spec(f"https://localhost:{https.port}/ok",
                                             tls_config=tls, fail_if_ssl=True))
    assert plain.reason == "the final request was over TLS (fail_if_ssl)"


async def test_expired_certificate_fails_with_chain_invalid(
    expired_https: Running, certs: dict[str, Cert]
) -> None:
    expired = certs["expired"]
    tls = TLSConfig(ca_file=str(expired.cert_path))
    for spec in (ProbeSpec("cert", "tls", f"localhost:{expired_https.port}", tls_config=tls),
                 http_spec(f"https://localhost:{expired_https.port}/ok", tls_config=tls)):
        result = await run_probe_result(spec)
        v = values(result)
        assert not result.success
        assert result.reason == (f"TLS certificate of localhost:{expired_https.port} is not "
                                 "valid: certificate has expired")
        assert v["serverguard_probe_ssl_chain_valid"] == 0
        assert v["probe_ssl_earliest_cert_expiry"] == expired.not_after.timestamp()
        assert "probe_ssl_last_chain_expiry_timestamp_seconds" not in v
    skip = await run_probe_result(ProbeSpec(
        "cert", "tls", f"localhost:{expired_https.port}",
        tls_config=TLSConfig(insecure_skip_verify=True)))
    assert skip.success and "serverguard_probe_ssl_chain_valid" not in values(skip)
    assert values(skip)["probe_ssl_earliest_cert_expiry"] == expired.not_after.timestamp()


async def test_untrusted_and_wrong_name(https: Running, certs: dict[str, Cert]) -> None:
    untrusted = await run_probe_result(ProbeSpec("cert", "tls", f"localhost:{https.port}"))
    assert "not valid: self-signed certificate" in (untrusted.reason or "")
    wrong = await run_probe_result(ProbeSpec(
        "cert", "tls", f"localhost:{https.port}",
        tls_config=TLSConfig(ca_file=str(certs["good"].cert_path), server_name="other.test")))
    assert "not valid: Hostname mismatch" in (wrong.reason or "")
    assert values(wrong)["probe_ssl_earliest_cert_expiry"] == NOT_AFTER.timestamp()
    plain_to_tls = await run_probe_result(http_spec(f"http://127.0.0.1:{https.port}/ok"))
    assert not plain_to_tls.success


# ---------------------------------------------------------------------------- TCP dialogue


async def test_tcp_query_response_with_starttls(certs: dict[str, Cert]) -> None:
    ctx = server_context(certs["good"])

    async def smtp_like(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"220 mx.test ESMTP ready\r\n")
            hello = await reader.readline()
            writer.write(b"250-mx.test greets " + hello.split()[-1] + b"\r\n250 STARTTLS\r\n")
            if (await reader.readline()).strip() == b"STARTTLS":
                writer.write(b"220 go ahead\r\n")
                await writer.drain()
                await writer.start_tls(ctx)
                writer.write(b"250 secure hello\r\n")
                await writer.drain()
                await reader.readline()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(smtp_like, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        steps = (
            QueryResponse(re.compile(r"^220 (\S+) ESMTP"), "EHLO ${1}"),
            QueryResponse(re.compile(r"^250-mx.test greets mx.test$")),
            QueryResponse(re.compile(r"^250 STARTTLS"), "STARTTLS"),
            QueryResponse(re.compile(r"^220 go"), starttls=True),
            QueryResponse(re.compile(r"^250 secure"), "QUIT"),
        )
        spec = ProbeSpec("smtp", "tcp", f"localhost:{port}", options=TCPOptions(
            query_response=steps), tls_config=TLSConfig(ca_file=str(certs["good"].cert_path)))
        result = await run_probe_result(spec)
        assert result.success, result.reason
        assert values(result)["probe_ssl_earliest_cert_expiry"] == NOT_AFTER.timestamp()
        wrong = ProbeSpec("smtp", "tcp", f"localhost:{port}", timeout=0.5, options=TCPOptions(
            query_response=(QueryResponse(re.compile("^SSH-")),)))
        failed = await run_probe_result(wrong)  # the server waits for EHLO: nothing more comes
        assert failed.reason == "timed out after 0.5s waiting for a line matching '^SSH-'"
    finally:
        server.close()
        await server.wait_closed()


async def test_tcp_expect_fails_when_the_peer_closes() -> None:
    async def banner(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 not ssh\r\nbye")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(banner, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        wrong = ProbeSpec("ssh", "tcp", f"127.0.0.1:{port}", options=TCPOptions(
            query_response=(QueryResponse(re.compile("^SSH-")),)))
        failed = await run_probe_result(wrong)
        assert failed.reason == ("query_response step 1: connection closed before a line "
                                 "matched '^SSH-'")
        assert values(failed)["probe_failed_due_to_regex"] == 1
    finally:
        server.close()
        await server.wait_closed()


# ---------------------------------------------------------------------------- DNS and fan-out


async def test_dns_from_the_orchestrator() -> None:
    ok = await run_probe_result(ProbeSpec("lo", "dns", "localhost", options=None))
    v = values(ok)
    assert ok.success and v["probe_ip_protocol"] == 4
    assert v["serverguard_probe_dns_addresses"] >= 1 and v["probe_dns_lookup_time_seconds"] >= 0
    wrong = await run_probe_result(ProbeSpec("lo", "dns", "localhost",
                                             options=DNSOptions(expect_addresses=("127.0.0.2",))))
    assert not wrong.success and "expected also 127.0.0.2" in (wrong.reason or "")


async def test_run_probes_keeps_order_and_bounds_concurrency(web: Running) -> None:
    port = free_port()
    specs = [ProbeSpec(f"p{i}", "http", f"http://127.0.0.1:{web.port}/ok") for i in range(12)]
    specs.append(ProbeSpec("closed", "tcp", f"127.0.0.1:{port}"))
    results = await run_probes(specs, concurrency=4)
    assert [spec.name for spec, _, _ in results] == [s.name for s in specs]
    assert all(failure is None for _, _, failure in results[:-1])
    failure = results[-1][2]
    assert failure is not None and not failure.vantage_error
    assert str(failure) == (f"probe 'closed' (tcp 127.0.0.1:{port} from orchestrator): "
                            f"cannot connect to 127.0.0.1:{port}: Connection refused")


# ---------------------------------------------------------------------------- through the lab


@dataclass
class LabServers:
    inventory: Inventory
    lab: Any


def _wait_listening(lab: Any, host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = lab.lab.host_exec(host, ["ss", "-Hltn", f"sport = :{port}"]).stdout
        if f":{port}" in out:
            return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {host}:{port}")


TLS_SERVER = """
import http.server, ssl
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"private tls ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("169.254.20.11", 8443), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("/tmp/sg-probe.pem", "/tmp/sg-probe.key")
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


@pytest.fixture(scope="module")
def lab_servers(lab: Any, certs: dict[str, Cert]) -> Iterator[LabServers]:
    """Plain and TLS web servers inside private01, a name in bastion's /etc/hosts."""
    if not lab.info.isolated:
        pytest.skip("needs the namespace lab (private hosts isolated behind the bastion)")
    lab_cert = certs["lab"]
    lab.lab.host_exec("private01", ["sh", "-c", "cat > /tmp/sg-probe.pem"],
                      input=lab_cert.pem.decode(), check=True)
    lab.lab.host_exec("private01", ["sh", "-c", "umask 077; cat > /tmp/sg-probe.key"],
                      input=lab_cert.key_pem.decode(), check=True)
    pids = []
    for argv in (
        ["sh", "-c", "cd /tmp && python3 -m http.server 8080 --bind 169.254.20.11 "
                     ">/dev/null 2>&1 & echo $!"],
        ["sh", "-c", 'python3 -c "$0" >/dev/null 2>&1 & echo $!', TLS_SERVER],
    ):
        pids.append(lab.lab.host_exec("private01", argv, check=True).stdout.strip())
    lab.lab.host_exec("bastion", ["sh", "-c",
                                  "echo '169.254.20.11 private01.lab.test' >> /etc/hosts"],
                      check=True)
    try:
        _wait_listening(lab, "private01", 8080)
        _wait_listening(lab, "private01", 8443)
        yield LabServers(load_inventory([str(lab.inventory_path)]), lab)
    finally:
        for pid in pids:
            lab.lab.host_exec("private01", ["kill", pid])


@pytest.mark.lab
@pytest.mark.netns
async def test_private_web_server_through_the_bastion(
    lab_servers: LabServers, settings: Settings, certs: dict[str, Cert]
) -> None:
    inv = lab_servers.inventory
    listing = {"fail_if_body_not_matches_regexp": (re.compile(
        "Directory listing for /"),)}
    via_bastion = ProbeSpec("private-web", "http", "http://169.254.20.11:8080/",
                            vantage="bastion", options=HTTPOptions(**listing))
    by_name = ProbeSpec("private-web", "http", "http://private01.lab.test:8080/",
                        vantage="bastion", options=HTTPOptions(**listing))
    direct = ProbeSpec("private-web", "http", "http://169.254.20.11:8080/", timeout=3)
    tls = ProbeSpec("private-tls", "http", "https://169.254.20.11:8443/", vantage="bastion",
                    tls_config=TLSConfig(ca_file=str(certs["lab"].cert_path)))
    two_hops = ProbeSpec("deep-ssh", "tcp", "169.254.30.11:22", vantage="bastion2",
                         options=TCPOptions(query_response=(
                             QueryResponse(re.compile(r"^SSH-2\.0-")),)))
    dns = ProbeSpec("private-dns", "dns", "private01.lab.test", vantage="bastion",
                    options=DNSOptions(
                        expect_addresses=("169.254.20.11",)))
    async with ConnectionPool(settings) as pool:
        started = time.monotonic()
        results = await run_probes([via_bastion, by_name, direct, tls, two_hops, dns],
                                   pool, inv, concurrency=6)
        elapsed = time.monotonic() - started
    outcome = {(s.name, s.vantage, s.target): (f, {x.name: x.value for x in samples})
               for s, samples, f in results}
    failure, v = outcome[via_bastion.key]
    assert failure is None and v["probe_success"] == 1 and v["probe_http_status_code"] == 200
    assert dict(results[0][1][0].labels)["vantage"] == "bastion"
    failure, v = outcome[by_name.key]
    assert failure is None, failure  # the bastion's sshd resolved the name
    failure, v = outcome[direct.key]
    assert failure is not None and v["probe_success"] == 0
    assert failure.reason == "cannot connect to 169.254.20.11:8080: No route to host"
    failure, v = outcome[tls.key]
    assert failure is None, failure
    assert v["probe_http_ssl"] == 1
    assert v["probe_ssl_earliest_cert_expiry"] == NOT_AFTER.timestamp()
    failure, v = outcome[two_hops.key]
    assert failure is None, failure
    failure, v = outcome[dns.key]
    assert failure is None, failure
    assert v["probe_ip_addr_hash"] > 0 and v["serverguard_probe_dns_addresses"] == 1
    assert elapsed < 10


@pytest.mark.lab
@pytest.mark.netns
async def test_refused_port_behind_the_bastion_and_a_dead_vantage(
    lab_servers: LabServers, settings: Settings
) -> None:
    inv = lab_servers.inventory
    refused = ProbeSpec("closed", "tcp", "169.254.20.11:8081", vantage="bastion")
    from_host03 = ProbeSpec("from-host03", "tcp", "169.254.10.11:22", vantage="host03")
    lab_servers.lab.lab.stop_sshd("host03")
    try:
        async with ConnectionPool(settings) as pool:
            results = await run_probes([refused, from_host03], pool, inv)
    finally:
        lab_servers.lab.lab.start_sshd("host03")
    (_, _, failure), (_, dead_samples, dead) = results
    assert failure is not None and not failure.vantage_error
    assert failure.reason == "bastion cannot connect to 169.254.20.11:8081: Connection refused"
    assert dead is not None and dead.vantage_error
    assert dead.reason.startswith("vantage unreachable: host03: cannot connect:")
    assert {s.name: s.value for s in dead_samples}["serverguard_probe_vantage_up"] == 0
