"""VMWriter and its spool against a real VictoriaMetrics (``victoria-metrics`` child process).

Scenarios: plain writes read back exactly; VictoriaMetrics down from the start (spool, then
replay oldest first with original timestamps); an outage mid-stream; a writer process
killed with SIGKILL (plus a torn record) and replayed by a new one; a full spool; and how
HTTP answers are handled (a small fake server for 400/413/429/503).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import http.server
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from vm import ThrowawayVM, require_victoria_metrics, samples_of

import orchestrator.metrics.writer as writer_module
from collectors.sample import Sample
from orchestrator.errors import ConfigError, MetricsError
from orchestrator.metrics import EmbeddedVictoriaMetrics, Spool, VMWriter
from orchestrator.metrics.spool import encode_record
from orchestrator.metrics.transport import PostResult
from orchestrator.metrics.vm_process import MISSING_BINARY, _alive, free_port

# Fast knobs for tests; production defaults are seconds, not tens of milliseconds.
FAST: dict[str, Any] = {
    "flush_interval": 0.05,
    "timeout": 2.0,
    "retries": 1,
    "backoff_base": 0.05,
    "backoff_max": 0.3,
}
HOSTS, PER_HOST = 3, 20
BASE_TS = (int(time.time()) - 3600) * 1000  # an hour ago, whole seconds
Triple = tuple[tuple[tuple[str, str], ...], float, int]


def sweep(i: int, name: str = "sg_test_value") -> list[tuple[Sample, int]]:
    """Sweep ``i``: every host's samples share one timestamp, values unique per sample."""
    ts = BASE_TS + i * 1000
    return [
        (Sample.of(name, i * 1000 + h * 100 + k, job="node", instance=f"h{h}", k=str(k)), ts)
        for h in range(HOSTS)
        for k in range(PER_HOST)
    ]


def triples(batch: list[tuple[Sample, int]]) -> list[Triple]:
    return sorted(
        (tuple(sorted((*s.labels, ("__name__", s.name)))), s.value, ts) for s, ts in batch
    )


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def wait_until(pred: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def spool_empty(spool: Spool) -> bool:
    return await asyncio.to_thread(spool.is_empty)


def timestamps_in(body: bytes) -> list[int]:
    return [int(line.rsplit(b" ", 1)[1]) for line in gzip.decompress(body).splitlines() if line]


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[ThrowawayVM]:
    v = ThrowawayVM(tmp_path / "vm").start()
    yield v
    v.close()


@pytest.fixture
def delivered(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """Timestamps of every body VictoriaMetrics accepted, in order of arrival."""
    seen: list[list[int]] = []
    real = writer_module.post_import

    def spy(session: object, url: str, body: bytes, timeout: float) -> PostResult:
        result = real(session, url, body, timeout)  # type: ignore[arg-type]
        if result.status is not None and 200 <= result.status < 300:
            seen.append(timestamps_in(body))
        return result

    monkeypatch.setattr(writer_module, "post_import", spy)
    return seen


# -- (a) plain writes --------------------------------------------------------------------------


async def test_written_samples_come_back_exactly(vm: ThrowawayVM, tmp_path: Path) -> None:
    registry = CollectorRegistry()
    expected: list[tuple[Sample, int]] = []
    odd = [
        Sample.of("sg_test_odd", 0.25, job="node", instance='we"ird\\host', path="/a\nb"),
        Sample.of("sg_test_odd", -1e-9, job="node", instance="h0", path="/"),
        Sample.of("sg_test_odd", 1.5e300, job="node", instance="h1", path="/"),
    ]
    with Spool(tmp_path / "spool") as spool:
        async with VMWriter(
            vm.url, spool=spool, registry=registry, batch_max_samples=50, **FAST
        ) as writer:
            for i in range(10):
                expected += sweep(i)
                await writer.write(sweep(i))
            await writer.write_at(odd, BASE_TS + 500)
            expected += [(s, BASE_TS + 500) for s in odd]
        assert spool.segment_files() == []
    got = await asyncio.to_thread(vm.wait_for_samples, '{__name__=~"sg_test_.*"}', len(expected))
    assert samples_of(got) == triples(expected)  # same names, labels, values, timestamps; once
    assert metric(registry, "serverguard_vm_samples_written_total") == len(expected)
    assert metric(registry, "serverguard_vm_samples_spooled_total") == 0
    assert metric(registry, "serverguard_vm_write_duration_seconds_count") >= len(expected) / 50


async def test_host_labels_added_at_write_time_make_the_same_series(
    vm: ThrowawayVM, tmp_path: Path
) -> None:
    """A sweep's samples carry no job/instance; ``write_at`` appends them after the sample's
    own labels (``mode`` sorts after both). VictoriaMetrics must file that under the same
    series as the same sample written with sorted labels: one series, both points."""
    own = [Sample.of("sg_test_cpu", 1.5, cpu="0", mode="user"), Sample.of("sg_test_up", 1)]
    host = (("instance", 'web "1"'), ("job", "node"))
    with Spool(tmp_path / "spool") as spool:
        async with VMWriter(vm.url, spool=spool, **FAST) as writer:
            await writer.write_at(own, BASE_TS, host)
            await writer.write([(s.with_sorted_extra(host), BASE_TS + 1000) for s in own])
    got = await asyncio.to_thread(vm.wait_for_samples, '{__name__=~"sg_test_.*"}', 4)
    by_series = {tuple(sorted(s.labels.items())): sorted(s.timestamps) for s in got}
    assert len(got) == 2  # one series per metric, holding both points
    assert by_series == {
        (("__name__", "sg_test_cpu"), ("cpu", "0"), ("instance", 'web "1"'), ("job", "node"),
         ("mode", "user")): [BASE_TS, BASE_TS + 1000],
        (("__name__", "sg_test_up"), ("instance", 'web "1"'), ("job", "node")):
            [BASE_TS, BASE_TS + 1000],
    }


# -- (b) VictoriaMetrics down from the start ---------------------------------------------------


@pytest.mark.parametrize("sweeps", [40])
async def test_down_from_start_spools_then_replays_oldest_first(
    tmp_path: Path, delivered: list[list[int]], sweeps: int
) -> None:
    require_victoria_metrics()
    port = free_port()
    registry = CollectorRegistry()
    expected: list[tuple[Sample, int]] = []
    with Spool(tmp_path / "spool", segment_bytes=8192) as spool:
        writer = VMWriter(
            f"http://127.0.0.1:{port}",
            spool=spool,
            registry=registry,
            replay_batch_bytes=2048,
            **FAST,
        )
        for i in range(sweeps):
            await writer.write(sweep(i))
            expected += sweep(i)
            await writer.flush()  # one spool record per sweep
        assert not writer.vm_up
        files = spool.segment_files()
        assert len(files) >= 2
        assert (
            metric(registry, "serverguard_vm_spool_bytes")
            == sum(f.stat().st_size for f in files)
            > 0
        )
        assert metric(registry, "serverguard_vm_samples_spooled_total") == len(expected)
        assert metric(registry, "serverguard_vm_samples_written_total") == 0
        assert metric(registry, "serverguard_vm_write_errors_total", reason="connect") >= 1

        vm = await asyncio.to_thread(ThrowawayVM(tmp_path / "vm", port=port).start)
        try:
            await wait_until(lambda: spool_empty(spool), 15, "the spool to drain")
            await writer.close()
            assert spool.segment_files() == []
            assert metric(registry, "serverguard_vm_spool_bytes") == 0
            got = await asyncio.to_thread(vm.wait_for_samples, "sg_test_value", len(expected))
        finally:
            await asyncio.to_thread(vm.close)
    assert samples_of(got) == triples(expected)  # every sample, original timestamps, once
    assert metric(registry, "serverguard_vm_samples_replayed_total") == len(expected)
    arrival = [ts for body in delivered for ts in body]
    assert arrival == sorted(arrival)  # replayed oldest first
    assert len(delivered) > 1  # ... in several POSTs


# -- (c) an outage mid-stream ------------------------------------------------------------------


@pytest.mark.parametrize(("before_s", "outage_s", "after_s"), [(1.0, 3.0, 1.0)])
async def test_outage_mid_stream_loses_nothing(
    tmp_path: Path, before_s: float, outage_s: float, after_s: float
) -> None:
    vm = await asyncio.to_thread(ThrowawayVM(tmp_path / "vm", dedup=True).start)
    registry = CollectorRegistry()
    produced: list[tuple[Sample, int]] = []
    stop = asyncio.Event()

    async def produce(writer: VMWriter) -> None:
        i = 0
        while not stop.is_set():
            await writer.write(sweep(i))
            produced.extend(sweep(i))
            i += 1
            await asyncio.sleep(0.05)

    try:
        with Spool(tmp_path / "spool") as spool:
            async with VMWriter(vm.url, spool=spool, registry=registry, **FAST) as writer:
                producer = asyncio.create_task(produce(writer))
                await asyncio.sleep(before_s)
                await asyncio.to_thread(vm.stop)
                await asyncio.sleep(outage_s)
                assert not writer.vm_up
                spooled_during_outage = metric(registry, "serverguard_vm_samples_spooled_total")
                assert spooled_during_outage > 0
                await asyncio.to_thread(vm.start)
                await asyncio.sleep(after_s)
                stop.set()
                await producer
                await writer.flush()
                await wait_until(lambda: spool_empty(spool), 15, "the spool to drain")
                assert writer.vm_up
        got = await asyncio.to_thread(vm.wait_for_samples, "sg_test_value", len(produced))
    finally:
        await asyncio.to_thread(vm.close)
    assert samples_of(got) == triples(produced)
    written = metric(registry, "serverguard_vm_samples_written_total")
    replayed = metric(registry, "serverguard_vm_samples_replayed_total")
    assert replayed == metric(registry, "serverguard_vm_samples_spooled_total") > 0
    assert written + replayed >= len(produced)
    assert metric(registry, "serverguard_vm_samples_dropped_total", reason="spool_full") == 0


# -- (d) a writer process killed mid-stream ----------------------------------------------------

PRODUCER = textwrap.dedent(
    """
    import asyncio, sys
    from collectors.sample import Sample
    from orchestrator.metrics import Spool, VMWriter

    async def main(spool_dir: str, url: str, base: int) -> None:
        spool = Spool(spool_dir, segment_bytes=64 * 1024)
        writer = VMWriter(url, spool=spool, flush_interval=0.01, retries=0, timeout=1.0)
        i = 0
        while True:
            samples = [Sample.of("sg_crash", i * 100 + k, job="node", instance="h", k=str(k))
                       for k in range(20)]
            await writer.write_at(samples, base + i * 1000)
            if i % 5 == 4:
                await writer.flush()
                print(i, flush=True)  # sweeps 0..i are in the spool, fsync'd
            i += 1

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


def run_and_kill_producer(tmp_path: Path, spool_dir: Path, port: int, sweeps: int) -> int:
    """Run PRODUCER until ``sweeps`` sweeps are durable, SIGKILL it; the last durable sweep."""
    script = tmp_path / "producer.py"
    script.write_text(PRODUCER)
    with open(tmp_path / "producer.err", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(spool_dir), f"http://127.0.0.1:{port}", str(BASE_TS)],
            stdout=subprocess.PIPE,
            stderr=err,
        )
    assert proc.stdout is not None
    durable = -1
    try:
        while durable < sweeps:
            line = proc.stdout.readline()
            assert line, (tmp_path / "producer.err").read_text()
            durable = int(line)
        proc.send_signal(signal.SIGKILL)  # mid-stream: it keeps writing until it dies
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    return durable


def tear_last_record(spool_dir: Path) -> None:
    """What a power loss may leave: the start of a record at the end of the last segment."""
    last_segment = sorted(spool_dir.glob("*.seg"))[-1]
    torn = gzip.compress(f'sg_torn{{job="node"}} 1 {BASE_TS}\n'.encode())
    with open(last_segment, "ab") as f:
        f.write(encode_record(torn, 1)[:20])


@pytest.mark.parametrize("durable_sweeps", [300])
async def test_killed_writer_process_is_replayed_by_the_next_one(
    tmp_path: Path, durable_sweeps: int
) -> None:
    require_victoria_metrics()
    port = free_port()
    spool_dir = tmp_path / "spool"
    durable = await asyncio.wait_for(
        asyncio.to_thread(run_and_kill_producer, tmp_path, spool_dir, port, durable_sweeps), 60
    )
    await asyncio.to_thread(tear_last_record, spool_dir)

    registry = CollectorRegistry()
    vm = await asyncio.to_thread(ThrowawayVM(tmp_path / "vm", port=port, dedup=True).start)
    try:
        with Spool(spool_dir) as spool:
            assert not spool.is_empty()
            async with VMWriter(vm.url, spool=spool, registry=registry, **FAST):
                await wait_until(lambda: spool_empty(spool), 20, "the spool to drain")
            assert spool.segment_files() == []
        want = (durable + 1) * 20
        got = await asyncio.to_thread(vm.wait_for_samples, "sg_crash", want)
        assert vm.export("sg_torn") == []
    finally:
        await asyncio.to_thread(vm.close)
    by_sweep: dict[int, set[str]] = {}
    for s in got:
        for ts in s.timestamps:
            by_sweep.setdefault((ts - BASE_TS) // 1000, set()).add(s.labels["k"])
    assert all(len(by_sweep.get(i, ())) == 20 for i in range(durable + 1)), "lost samples"
    assert max(by_sweep) < durable + 1000  # nothing invented
    assert metric(registry, "serverguard_vm_spool_torn_records_total") == 1
    assert metric(registry, "serverguard_vm_samples_replayed_total") >= want


# -- (e) a full spool --------------------------------------------------------------------------


async def test_full_spool_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    require_victoria_metrics()
    port = free_port()
    registry = CollectorRegistry()
    sweeps = 200
    with Spool(tmp_path / "spool", max_bytes=32 * 1024, segment_bytes=4096) as spool:
        writer = VMWriter(f"http://127.0.0.1:{port}", spool=spool, registry=registry, **FAST)
        for i in range(sweeps):
            await writer.write(sweep(i))
            await writer.flush()
        assert spool.size_bytes <= 32 * 1024
        dropped = metric(registry, "serverguard_vm_samples_dropped_total", reason="spool_full")
        assert dropped == spool.stats().dropped_samples > 0
        assert dropped % (HOSTS * PER_HOST) == 0  # whole sweeps (records), oldest first
        kept_from = int(dropped) // (HOSTS * PER_HOST)
        vm = await asyncio.to_thread(ThrowawayVM(tmp_path / "vm", port=port).start)
        try:
            await wait_until(lambda: spool_empty(spool), 15, "the spool to drain")
            await writer.close()
            expected = [s for i in range(kept_from, sweeps) for s in sweep(i)]
            got = await asyncio.to_thread(vm.wait_for_samples, "sg_test_value", len(expected))
        finally:
            await asyncio.to_thread(vm.close)
    assert samples_of(got) == triples(expected)  # exactly the newest ones
    total = sweeps * HOSTS * PER_HOST
    assert metric(registry, "serverguard_vm_samples_spooled_total") == total
    assert metric(registry, "serverguard_vm_samples_replayed_total") == total - dropped


# -- HTTP answers (fake server) ----------------------------------------------------------------


class FakeVM(http.server.ThreadingHTTPServer):
    """Answers imports with ``status`` after ``delay`` seconds; with 413, only bodies of more
    than ``max_lines``."""

    daemon_threads = True

    def __init__(self, status: int, max_lines: int = 0, delay: float = 0.0) -> None:
        self.status = status
        self.max_lines = max_lines
        self.delay = delay
        self.accepted: list[int] = []  # line counts of accepted bodies
        self.paths: list[str] = []  # the request paths (with their query) POSTed to
        super().__init__(("127.0.0.1", 0), FakeHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that timed out and left: expected here


@contextlib.contextmanager
def fake_vm(status: int, max_lines: int = 0, delay: float = 0.0) -> Iterator[FakeVM]:
    server = FakeVM(status, max_lines, delay)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class FakeHandler(http.server.BaseHTTPRequestHandler):
    server: FakeVM

    def do_POST(self) -> None:
        body = gzip.decompress(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.paths.append(self.path)
        time.sleep(self.server.delay)
        lines = len(body.splitlines())
        status = self.server.status
        if status == 413 and lines <= self.server.max_lines:
            status = 204
        if status == 204:
            self.server.accepted.append(lines)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # /health
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (400, "rejected"),
        (422, "rejected"),
        (413, "split"),
        (429, "spooled"),
        (503, "spooled"),
        (401, "spooled"),
        (404, "spooled"),
    ],
)
async def test_http_answers(tmp_path: Path, status: int, outcome: str) -> None:
    registry = CollectorRegistry()
    n = HOSTS * PER_HOST
    with fake_vm(status, max_lines=10) as server, Spool(tmp_path / "spool") as spool:
        writer = VMWriter(server.url, spool=spool, registry=registry, **FAST)
        await writer.write(sweep(0))
        await writer.flush()
        await writer.close()
        spooled = metric(registry, "serverguard_vm_samples_spooled_total")
        if outcome == "rejected":
            assert metric(registry, "serverguard_vm_samples_dropped_total", reason="rejected") == n
            assert spooled == 0 and spool.is_empty()
        elif outcome == "split":
            assert sum(server.accepted) == n and max(server.accepted) <= 10
            assert metric(registry, "serverguard_vm_samples_written_total") == n
        else:
            assert spooled == n and not spool.is_empty()
            # the direct attempts, then maybe replays after /health said yes
            assert (
                metric(registry, "serverguard_vm_write_errors_total", reason=f"http_{status}")
                >= 1 + FAST["retries"]
            )


async def test_url_with_a_path_a_token_and_a_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The API path goes under the URL's own path, before its query; logs never show the
    password or the token, even when the server is down."""
    with fake_vm(204) as server, Spool(tmp_path / "spool") as spool:
        base = server.url.replace("http://", "http://sg:pa55word@") + "/vm/?authKey=t0ken"
        async with VMWriter(base, spool=spool, **FAST) as writer:
            await writer.write(sweep(0))
            await writer.flush()
        assert server.paths == ["/vm/api/v1/import/prometheus?authKey=t0ken"]
    dead = f"http://sg:pa55word@127.0.0.1:{free_port()}/?authKey=t0ken"
    with Spool(tmp_path / "spool2") as spool, caplog.at_level("INFO"):
        writer = VMWriter(dead, spool=spool, **FAST)
        await writer.write(sweep(0))
        await writer.flush()
        await writer.close()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "spooling to" in logged and "sg:***@127.0.0.1" in logged, logged
    assert "pa55word" not in logged and "t0ken" not in logged


@pytest.mark.parametrize("url", ["notaurl", "ftp://127.0.0.1/", "http://", "http://h:99999"])
def test_urls_that_cannot_work_are_one_line_naming_the_option(tmp_path: Path, url: str) -> None:
    with Spool(tmp_path / "spool") as spool, pytest.raises(ConfigError) as caught:
        VMWriter(url.replace("127.0.0.1", "u:pa55word@127.0.0.1"), spool=spool)
    assert str(caught.value).startswith("--vm-url (SERVERGUARD_VM_URL): ")
    assert "pa55word" not in str(caught.value) and "\n" not in str(caught.value)


async def test_slow_vm_slows_the_caller_down_instead_of_spooling(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    sweeps = 12
    with fake_vm(204, delay=0.1) as server, Spool(tmp_path / "spool") as spool:
        async with VMWriter(
            server.url,
            spool=spool,
            registry=registry,
            batch_max_samples=60,
            max_pending_samples=120,
            **FAST,
        ) as writer:
            for i in range(sweeps):
                await writer.write(sweep(i))
                assert writer.pending_samples <= 120
        assert sum(server.accepted) == sweeps * HOSTS * PER_HOST
    assert metric(registry, "serverguard_vm_samples_spooled_total") == 0


async def test_hanging_vm_does_not_stall_the_caller(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    sweeps, timeout = 12, 0.3
    knobs: dict[str, Any] = {**FAST, "timeout": timeout, "retries": 0}
    with fake_vm(204, delay=5.0) as server, Spool(tmp_path / "spool") as spool:
        writer = VMWriter(
            server.url,
            spool=spool,
            registry=registry,
            batch_max_samples=60,
            max_pending_samples=120,
            **knobs,
        )
        start = time.monotonic()
        for i in range(sweeps):
            await writer.write(sweep(i))
        assert time.monotonic() - start < 4 * timeout + 1
        await writer.flush()
        await writer.close()
        stats = spool.stats()
    assert stats.appended_samples == sweeps * HOSTS * PER_HOST - sum(server.accepted)
    assert metric(registry, "serverguard_vm_write_errors_total", reason="timeout") >= 1


# -- the embedded VictoriaMetrics itself -------------------------------------------------------


def test_missing_binary_is_one_clear_line(tmp_path: Path) -> None:
    vm = EmbeddedVictoriaMetrics(tmp_path, binary="/nonexistent/victoria-metrics")
    with pytest.raises(MetricsError) as info:
        vm.start()
    assert str(info.value) == MISSING_BINARY


def test_embedded_start_stop_and_startup_failure(tmp_path: Path) -> None:
    require_victoria_metrics()
    with EmbeddedVictoriaMetrics(tmp_path / "vm") as vm:
        assert vm.running and vm.url.startswith("http://127.0.0.1:")
        with pytest.raises(MetricsError, match=r"in use by victoria-metrics \(pid \d+\)"):
            EmbeddedVictoriaMetrics(tmp_path / "vm").start()
        pid = vm.pid
    assert not vm.running and pid is not None
    # A child that exits at once: the error carries the tail of its log.
    bad = EmbeddedVictoriaMetrics(tmp_path / "bad", extra_args=["-retentionPeriod=bogus"])
    with pytest.raises(MetricsError, match="did not start") as info:
        bad.start()
    assert "victoria-metrics.log" in str(info.value)
    assert "bogus" in str(info.value)


def test_embedded_refuses_a_port_another_server_holds(tmp_path: Path) -> None:
    """Another HTTP server on the configured port (the Debian victoria-metrics service on
    8428, say) answers /health 200 too: ServerGuard must not take it for its own child."""
    require_victoria_metrics()
    with fake_vm(204) as other:
        port = other.server_address[1]
        vm = EmbeddedVictoriaMetrics(tmp_path / "vm", port=port)
        with pytest.raises(MetricsError) as info:
            vm.start()
        assert not vm.running and other.paths == []
    assert f"127.0.0.1:{port} is in use by another program" in str(info.value)
    assert "SERVERGUARD_VM_PORT" in str(info.value) and "--vm-url" in str(info.value)


ORPHANER = textwrap.dedent(
    """
    import sys, time
    from orchestrator.metrics import EmbeddedVictoriaMetrics
    vm = EmbeddedVictoriaMetrics(sys.argv[1])
    vm.start()
    print(vm.pid, flush=True)
    time.sleep(60)
    """
)


def test_embedded_stops_a_child_orphaned_by_a_killed_serverguard(tmp_path: Path) -> None:
    require_victoria_metrics()
    proc = subprocess.Popen(
        [sys.executable, "-c", ORPHANER, str(tmp_path / "vm")], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        orphan = int(proc.stdout.readline())
    finally:
        proc.kill()  # ServerGuard dies; its VictoriaMetrics (own session) lives on
        proc.wait()
        proc.stdout.close()
    assert Path(f"/proc/{orphan}").exists()
    with EmbeddedVictoriaMetrics(tmp_path / "vm") as vm:
        assert vm.running and vm.pid != orphan
    deadline = time.monotonic() + 5
    while _alive(orphan) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(orphan)
