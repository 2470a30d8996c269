"""TLS over any :class:`~orchestrator.probes.transport.Stream`, and certificate metrics.

The handshake runs in memory (``ssl.MemoryBIO``), so the same code works over a TCP socket
and over an SSH ``direct-tcpip`` channel. The chain is verified by OpenSSL against the
system CAs or ``tls_config.ca_file``, with the host name checked, as a client would.

When verification fails the probe fails, but the certificates are still worth reporting
(an expired certificate is exactly what one wants to see): :func:`secure` then makes one
more handshake without verification only to read them.

Metrics (blackbox_exporter names): ``probe_ssl_earliest_cert_expiry`` (earliest notAfter of
the certificates the server sent), ``probe_ssl_last_chain_expiry_timestamp_seconds``
(earliest notAfter of the *verified* chain, up to the trust anchor; only when verified),
``probe_ssl_last_chain_info{fingerprint_sha256,subject,issuer,subjectalternative}``,
``probe_tls_version_info{version}``, ``probe_tls_cipher_info{cipher}``, plus ServerGuard's
``serverguard_probe_ssl_chain_valid`` (0/1, when verification was attempted).

Example::

    dialed = await dialer.dial("127.0.0.1", 8443, metrics)
    tls = await secure(dialed.stream, TLSConfig(), "localhost", metrics, redial=reopen)
    tls.write(b"...")
"""

from __future__ import annotations

import _ssl
import contextlib
import functools
import hashlib
import os
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from orchestrator.probes.result import ProbeFailed, ProbeMetrics
from orchestrator.probes.spec import TLSConfig
from orchestrator.probes.transport import READ_SIZE, Stream

_VERSIONS = {"TLSv1": "TLS 1.0", "TLSv1.1": "TLS 1.1", "TLSv1.2": "TLS 1.2", "TLSv1.3": "TLS 1.3"}


class TLSVerifyFailed(ProbeFailed):
    """The server's certificate chain or name did not verify."""


def client_context(config: TLSConfig, *, verify: bool = True) -> ssl.SSLContext:
    """An ``SSLContext`` for ``config``, cached until one of its files changes.

    ``verify=False`` (or ``insecure_skip_verify``) checks neither chain nor name.
    """
    stamps = tuple(_mtime(p) for p in (config.ca_file, config.cert_file, config.key_file))
    return _context(config, verify, stamps)


def _mtime(path: str | None) -> float | None:
    if not path:
        return None
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


@functools.lru_cache(maxsize=64)
def _context(
    config: TLSConfig, verify: bool, stamps: tuple[float | None, ...]
) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(cafile=config.ca_file)
        if config.cert_file:
            ctx.load_cert_chain(config.cert_file, config.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ProbeFailed(f"cannot load TLS files: {exc}") from exc
    if not verify or config.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class TLSStream(Stream):
    """A TLS client session over another stream, driven through memory BIOs."""

    def __init__(self, raw: Stream, obj: ssl.SSLObject, incoming: ssl.MemoryBIO,
                 outgoing: ssl.MemoryBIO) -> None:
        self.raw = raw
        self.obj = obj
        self._in = incoming
        self._out = outgoing
        self.peer = raw.peer
        self.closed = False

    @classmethod
    async def handshake(
        cls, raw: Stream, context: ssl.SSLContext, server_hostname: str | None
    ) -> TLSStream:
        """Run the client handshake; ``TLSVerifyFailed`` / ``ProbeFailed`` when it fails."""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = context.wrap_bio(incoming, outgoing, server_side=False,
                               server_hostname=server_hostname)
        stream = cls(raw, obj, incoming, outgoing)
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                await stream._flush()
                if not await stream._fill():
                    raise ProbeFailed(
                        f"TLS handshake with {raw.peer} failed: connection closed by the peer"
                    ) from None
            except ssl.SSLCertVerificationError as exc:
                await stream._flush_quietly()  # the alert tells the server why
                raise TLSVerifyFailed(
                    f"TLS certificate of {raw.peer} is not valid: "
                    f"{exc.verify_message or exc.reason}"
                ) from exc
            except ssl.SSLError as exc:
                raise ProbeFailed(
                    f"TLS handshake with {raw.peer} failed: {exc.reason or exc}"
                ) from exc
        await stream._flush()
        return stream

    async def _flush(self) -> None:
        data = self._out.read()
        if data:
            self.raw.write(data)
            await self.raw.drain()

    async def _flush_quietly(self) -> None:
        with contextlib.suppress(ProbeFailed, OSError):
            await self._flush()

    async def _fill(self) -> bool:
        data = await self.raw.read(READ_SIZE)
        if not data:
            self._in.write_eof()
            return False
        self._in.write(data)
        return True

    async def read(self, n: int = READ_SIZE) -> bytes:
        while True:
            try:
                return self.obj.read(n)
            except ssl.SSLWantReadError:
                await self._flush()  # TLS 1.3 key updates, session tickets
                if not await self._fill():
                    return b""  # closed without close_notify: treated as the end
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""
            except ssl.SSLError as exc:
                raise ProbeFailed(f"TLS error from {self.peer}: {exc.reason or exc}") from exc

    def write(self, data: bytes) -> None:
        self.obj.write(data)
        pending = self._out.read()
        if pending:
            self.raw.write(pending)

    async def drain(self) -> None:
        await self._flush()
        await self.raw.drain()

    async def aclose(self) -> None:
        await self.raw.aclose()
        self.closed = True


@dataclass(slots=True)
class TLSState:
    """What a finished handshake tells: protocol, cipher, and the certificates."""

    version: str
    cipher: str
    peer_chain: list[x509.Certificate] = field(default_factory=list)  # as the server sent it
    verified_chain: list[x509.Certificate] = field(default_factory=list)  # leaf .. anchor


def _chain(obj: ssl.SSLObject, which: str) -> list[bytes] | None:
    """DER certificates of the connection: public API from Python 3.13, the ``_ssl`` method
    (present since 3.10) before it; ``None`` when neither exists."""
    method = getattr(obj, which, None)
    if method is None:
        method = getattr(getattr(obj, "_sslobj", None), which, None)
    if method is None:
        return None
    found = method() or []
    der = getattr(_ssl, "ENCODING_DER", 2)
    return [c if isinstance(c, bytes) else c.public_bytes(der) for c in found]


def tls_state(stream: TLSStream, *, verified: bool) -> TLSState:
    obj = stream.obj
    peer = _chain(obj, "get_unverified_chain")
    if peer is None:
        leaf = obj.getpeercert(binary_form=True)
        peer = [leaf] if leaf else []
    chain = (_chain(obj, "get_verified_chain") or []) if verified else []
    cipher = obj.cipher()
    raw_version = obj.version() or ""
    return TLSState(
        version=_VERSIONS.get(raw_version, "unknown"),
        cipher=cipher[0] if cipher else "unknown",
        peer_chain=[x509.load_der_x509_certificate(c) for c in peer],
        verified_chain=[x509.load_der_x509_certificate(c) for c in chain],
    )


def _not_after(cert: x509.Certificate) -> float:
    return cert.not_valid_after_utc.timestamp()


def _dns_names(cert: x509.Certificate) -> str:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ""
    return ",".join(san.value.get_values_for_type(x509.DNSName))


def record_tls(m: ProbeMetrics, state: TLSState, *, verify_attempted: bool) -> None:
    """Write the certificate and protocol metrics of one handshake."""
    for name in ("probe_tls_version_info", "probe_tls_cipher_info", "probe_ssl_last_chain_info"):
        m.discard(name)  # a later handshake (redirect, STARTTLS) replaces the earlier one
    m.set("probe_tls_version_info", 1, version=state.version)
    m.set("probe_tls_cipher_info", 1, cipher=state.cipher)
    if state.peer_chain:
        m.set("probe_ssl_earliest_cert_expiry", min(_not_after(c) for c in state.peer_chain))
        leaf = state.peer_chain[0]
        m.set(
            "probe_ssl_last_chain_info", 1,
            fingerprint_sha256=hashlib.sha256(leaf.public_bytes(Encoding.DER)).hexdigest(),
            subject=leaf.subject.rfc4514_string(),
            issuer=leaf.issuer.rfc4514_string(),
            subjectalternative=_dns_names(leaf),
        )
    if state.verified_chain:
        m.set("probe_ssl_last_chain_expiry_timestamp_seconds",
              min(_not_after(c) for c in state.verified_chain))
    else:
        m.discard("probe_ssl_last_chain_expiry_timestamp_seconds")
    if verify_attempted:
        m.set("serverguard_probe_ssl_chain_valid", 1 if state.verified_chain else 0)


async def secure(
    raw: Stream,
    config: TLSConfig,
    server_hostname: str | None,
    m: ProbeMetrics,
    redial: Callable[[], Awaitable[Stream]] | None = None,
) -> TLSStream:
    """The verifying client handshake over ``raw``, its metrics recorded.

    When the certificate does not verify, ``TLSVerifyFailed`` is raised, but first (given
    ``redial``, which opens a fresh raw stream to the same place) one more handshake without
    verification records the certificates, so an expired certificate still shows its
    ``probe_ssl_earliest_cert_expiry`` next to ``serverguard_probe_ssl_chain_valid 0``.
    """
    verify = not config.insecure_skip_verify
    try:
        tls = await TLSStream.handshake(raw, client_context(config), server_hostname)
    except TLSVerifyFailed:
        await raw.aclose()  # the peer waits for our Finished: end this one first
        if redial is not None:
            with contextlib.suppress(ProbeFailed):
                await _inspect_unverified(await redial(), config, server_hostname, m)
        raise
    record_tls(m, tls_state(tls, verified=verify), verify_attempted=verify)
    return tls


async def _inspect_unverified(
    raw: Stream, config: TLSConfig, server_hostname: str | None, m: ProbeMetrics
) -> None:
    try:
        tls = await TLSStream.handshake(raw, client_context(config, verify=False),
                                        server_hostname)
    finally:
        await raw.aclose()
    record_tls(m, tls_state(tls, verified=False), verify_attempted=True)


def discard_tls(m: ProbeMetrics) -> None:
    """Forget TLS metrics of earlier hops (the final HTTP hop was plain HTTP)."""
    for name in TLS_METRICS:
        m.discard(name)


TLS_METRICS = (
    "probe_ssl_earliest_cert_expiry",
    "probe_ssl_last_chain_expiry_timestamp_seconds",
    "probe_ssl_last_chain_info",
    "probe_tls_version_info",
    "probe_tls_cipher_info",
    "serverguard_probe_ssl_chain_valid",
)
