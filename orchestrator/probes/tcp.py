"""TCP probe (and the ``tls`` probe: TCP with a TLS handshake), blackbox_exporter style.

Connects to ``host:port`` from the vantage point; with ``tls`` the handshake is verified and
the certificate metrics recorded; ``query_response`` steps then hold a line dialogue::

    query_response:
      - expect: "^SSH-2\\\\.0-"          # wait for a matching line (regexp search)
      - send: "EHLO prober"              # then send a line (``${1}`` expands a group)
      - expect: "^250-STARTTLS"
      - send: "STARTTLS"
      - expect: "^220"
      - starttls: true                   # upgrade the connection to TLS here

Metrics: ``probe_failed_due_to_regex``, ``probe_ip_protocol``, ``probe_ip_addr_hash``,
``probe_dns_lookup_time_seconds``, and with TLS the certificate metrics (see ``tls.py``).

    >>> import re
    >>> go_expand(re.search(r"^(\\w+) (?P<v>\\d+)", "hello 42"), "got ${1}/$v/$$")
    'got hello/42/$'
"""

from __future__ import annotations

import re

from orchestrator.probes.addresses import split_host_port
from orchestrator.probes.result import ProbeFailed, ProbeMetrics
from orchestrator.probes.spec import ProbeSpec
from orchestrator.probes.tls import secure
from orchestrator.probes.transport import Dialer, Stream

MAX_LINE = 64 * 1024  # like Go's bufio.Scanner
_GO_REF = re.compile(r"\$(?:(\$)|\{(\w+)\}|(\w+))")


def go_expand(match: re.Match[str], template: str) -> str:
    """Expand ``$1``, ``${1}``, ``$name``, ``${name}`` and ``$$`` as Go's ``Regexp.Expand``
    does (unknown groups expand to nothing), so blackbox_exporter configs work unchanged."""

    def one(ref: re.Match[str]) -> str:
        if ref[1]:
            return "$"
        key = ref[2] or ref[3]
        group: int | str = int(key) if key.isdigit() else key
        try:
            return match.group(group) or ""
        except IndexError:  # no such group
            return ""

    return _GO_REF.sub(one, template)


class LineReader:
    """Lines (without the line end) from a stream; ``None`` at the end of the stream."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self._buf = bytearray()
        self._eof = False

    async def readline(self) -> str | None:
        while True:
            end = self._buf.find(b"\n")
            if end >= 0:
                line = bytes(self._buf[:end])
                del self._buf[: end + 1]
                return line.rstrip(b"\r").decode("utf-8", "replace")
            if self._eof:
                if not self._buf:
                    return None
                line = bytes(self._buf)
                self._buf.clear()
                return line.decode("utf-8", "replace")
            if len(self._buf) > MAX_LINE:
                raise ProbeFailed(f"line from {self.stream.peer} longer than {MAX_LINE} bytes")
            data = await self.stream.read()
            if data:
                self._buf += data
            else:
                self._eof = True


async def probe_tcp(spec: ProbeSpec, dialer: Dialer, m: ProbeMetrics) -> None:
    options = spec.tcp
    config = spec.tls_config
    m.set("probe_failed_due_to_regex", 0)
    host, port = split_host_port(spec.target)
    server_name = config.server_name or host

    async def redial() -> Stream:
        again = await dialer.dial(host, port, ProbeMetrics(), ip_protocol=options.ip_protocol,
                                  fallback=options.ip_protocol_fallback)
        return again.stream

    m.stage = f"connecting to {spec.target}"
    dialed = await dialer.dial(host, port, m, ip_protocol=options.ip_protocol,
                               fallback=options.ip_protocol_fallback)
    stream = dialed.stream
    try:
        if options.tls:
            m.stage = "in the TLS handshake"
            stream = await secure(stream, config, server_name, m, redial)
        lines = LineReader(stream)
        for number, step in enumerate(options.query_response, 1):
            send = step.send
            if step.expect is not None:
                m.stage = f"waiting for a line matching {step.expect.pattern!r}"
                match = None
                while match is None:
                    line = await lines.readline()
                    if line is None:
                        m.set("probe_failed_due_to_regex", 1)
                        raise ProbeFailed(
                            f"query_response step {number}: connection closed before a line "
                            f"matched {step.expect.pattern!r}")
                    match = step.expect.search(line)
                if send is not None:
                    send = go_expand(match, send)
            if send is not None:
                stream.write(send.encode() + b"\n")
                await stream.drain()
            if step.starttls:
                m.stage = "in the STARTTLS handshake"
                stream = await secure(stream, config, server_name, m)
                lines = LineReader(stream)
    finally:
        await stream.aclose()
