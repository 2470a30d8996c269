"""Sweeps of real lab hosts into a real VictoriaMetrics: values, dashboards, outages, crashes."""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from vm import ThrowawayVM, require_victoria_metrics

from collectors.registry import default_registry
from inventory import load_inventory
from orchestrator.metrics.backend import MetricsBackend
from orchestrator.metrics.spool import Spool
from orchestrator.metrics.vm_process import free_port
from orchestrator.settings import Settings
from orchestrator.ssh.pool import ConnectionPool
from orchestrator.sweep import CollectionLoop, HostSweep, Sweeper
from orchestrator.sweep_plan import plan_sweeps

pytestmark = pytest.mark.lab

HOSTS = "public:private:deep"


@pytest.fixture
def vm(tmp_path: Path):
    require_victoria_metrics()
    server = ThrowawayVM(tmp_path / "vm").start()
    try:
        yield server
    finally:
        server.close()


def jobs_for(lab, pool: ConnectionPool, pattern: str, timeout: float = 10.0):
    inv = load_inventory([str(lab.inventory_path)])
    groups = plan_sweeps(inv, inv.select(pattern))
    return [(Sweeper(pool, g.collectors, g.options, timeout=timeout), g.targets) for g in groups]


async def sweep_once(lab, pool: ConnectionPool, pattern: str) -> list[HostSweep]:
    out: list[HostSweep] = []
    for sweeper, targets in jobs_for(lab, pool, pattern):
        out += await sweeper.sweep_all(targets)
    return out


def query(vm: ThrowawayVM, expr: str) -> list[dict]:
    vm.force_flush()
    answer = requests.get(
        f"{vm.url}/api/v1/query",
        params={"query": expr, "nocache": "1", "latency_offset": "0s"},
        timeout=10,
    ).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


async def test_sweep_writes_what_the_hosts_really_have(lab, settings, vm) -> None:
    async with ConnectionPool(settings) as pool:
        sweeps = await sweep_once(lab, pool, HOSTS)
    assert {s.host for s in sweeps} == {"host01", "host02", "host03", "private01", "private02",
                                        "deep01"}
    assert all(s.up and not s.failed_collectors for s in sweeps), [
        (s.host, s.error, s.to_json()["failed_collectors"]) for s in sweeps if not s.up
    ]
    async with MetricsBackend(settings, vm_url=vm.url) as backend:
        for s in sweeps:
            await backend.sink(s)

    meminfo = lab.lab.host_exec("private01", ["cat", "/proc/meminfo"]).stdout
    mem_line = next(x for x in meminfo.splitlines() if x.startswith("MemTotal:"))
    mem_total_kb = int(mem_line.split()[1])
    vm.wait_for_samples('up{job="node"}', count=len(sweeps))
    series = vm.export('node_memory_MemTotal_bytes{instance="private01"}')
    assert series[0].labels["job"] == "node"
    assert series[0].values == [mem_total_kb * 1024]

    cpus = int(lab.lab.host_exec("deep01", ["nproc", "--all"]).stdout)
    idle = vm.export('node_cpu_seconds_total{instance="deep01",mode="idle"}')
    assert len({s.labels["cpu"] for s in idle}) == cpus

    # /tmp is the host's own tmpfs; its size is what statfs says inside the host.
    statfs = lab.lab.host_exec("host02", ["stat", "-f", "-c", "%b %S", "/tmp"])
    blocks, bsize = statfs.stdout.split()
    tmp = vm.export('node_filesystem_size_bytes{instance="host02",mountpoint="/tmp"}')
    assert tmp and tmp[0].labels["fstype"] == "tmpfs"
    assert tmp[0].values == [int(blocks) * int(bsize)]
    root = vm.export('node_filesystem_avail_bytes{instance="host02",mountpoint="/"}')
    assert root and root[0].labels["fstype"] == "overlay"

    # One timestamp per host per sweep; every series carries job and instance.
    for s in sweeps:
        assert all(dict(x.labels).get("instance") == s.host for x in s.samples)
    ups = vm.export('up{job="node"}')
    assert sorted(x.labels["instance"] for x in ups) == sorted(s.host for s in sweeps)
    by_host = {s.host: s.timestamp_ms for s in sweeps}
    assert all(x.timestamps == [by_host[x.labels["instance"]]] for x in ups)


async def test_node_exporter_full_dashboard_queries_return_data(lab, settings, vm) -> None:
    async with (
        ConnectionPool(settings) as pool,
        MetricsBackend(settings, vm_url=vm.url, flush_interval=0.2) as backend,
    ):
        for _ in range(4):
            for s in await sweep_once(lab, pool, "host01"):
                await backend.sink(s)
            await asyncio.sleep(1.1)
        await backend.writer.flush()  # type: ignore[union-attr]
    node = 'instance="host01",job="node"'
    # Queries of Grafana's "Node Exporter Full" (1860), with $node/$job filled in.
    panels = {
        "cpu busy": f'100 * (1 - avg(rate(node_cpu_seconds_total{{mode="idle",{node}}}[1m])))',
        "ram used": f"(1 - (node_memory_MemAvailable_bytes{{{node}}} / "
        f"node_memory_MemTotal_bytes{{{node}}})) * 100",
        "root fs used": f'100 - ((node_filesystem_avail_bytes{{{node},mountpoint="/",'
        f'fstype!="rootfs"}} * 100) / node_filesystem_size_bytes{{{node},mountpoint="/",'
        f'fstype!="rootfs"}})',
        "uptime": f"node_time_seconds{{{node}}} - node_boot_time_seconds{{{node}}}",
        "network rx": f"rate(node_network_receive_bytes_total{{{node}}}[1m])*8",
        "load": f"node_load1{{{node}}}",
        "cpu cores": f'count(count(node_cpu_seconds_total{{{node}}}) by (cpu))',
    }
    for panel, expr in panels.items():
        result = query(vm, expr)
        assert result, f"{panel}: no data for {expr}"
        value = float(result[0]["value"][1])
        assert value == value, f"{panel}: NaN"  # not NaN
    assert 0 <= float(query(vm, panels["ram used"])[0]["value"][1]) <= 100
    assert float(query(vm, panels["uptime"])[0]["value"][1]) > 0


async def test_victoria_metrics_down_for_a_minute_loses_nothing(lab, settings, vm) -> None:
    taken: list[HostSweep] = []
    async with (
        ConnectionPool(settings) as pool,
        MetricsBackend(settings, vm_url=vm.url, flush_interval=0.5) as backend,
    ):
        async def sink(sweep: HostSweep) -> None:
            taken.append(sweep)
            await backend.sink(sweep)

        loop = CollectionLoop(jobs_for(lab, pool, "public"), sink, interval=2.0)
        loop.start()
        await asyncio.sleep(5)
        vm.stop()
        outage_started = len(taken)
        await asyncio.sleep(62)
        during = len(taken) - outage_started
        vm.start()
        await asyncio.sleep(5)
        await loop.stop()
        assert backend.spool is not None
        for _ in range(60):  # replay drains the spool
            if backend.spool.is_empty() and backend.writer.pending_samples == 0:  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.5)
        assert backend.spool.is_empty()
    assert during >= 3 * 25  # three hosts swept all through the outage
    ups = {
        s.labels["instance"]: s
        for s in vm.wait_for_samples('up{job="node"}', count=len(taken), timeout=30)
    }
    for host in ("host01", "host02", "host03"):
        expected = sorted(s.timestamp_ms for s in taken if s.host == host)
        assert ups[host].timestamps == expected  # every sweep, in order, original timestamps
    expected_series = sum(len(s.samples) for s in taken)
    exported = vm.export('{job="node"}')
    assert sum(len(set(s.timestamps)) for s in exported) == expected_series


def spooled_up_timestamps(spool_dir: Path) -> set[tuple[str, int]]:
    """(instance, timestamp) of every ``up`` sample sitting in a spool directory."""
    found: set[tuple[str, int]] = set()
    with Spool(spool_dir) as spool:
        for record in spool.read(max_records=100_000, max_bytes=1 << 30):
            for line in gzip.decompress(record.payload).decode().splitlines():
                if line.startswith("up{"):
                    labels, _value, ts = line.rsplit(" ", 2)
                    instance = labels.split('instance="')[1].split('"')[0]
                    found.add((instance, int(ts)))
    return found


async def test_service_killed_while_spooling_loses_nothing(lab, tmp_path, vm) -> None:
    state = tmp_path / "state"
    dead_port = free_port()
    env = {**os.environ, "SERVERGUARD_STATE_DIR": str(state),
           "SERVERGUARD_USER_KNOWN_HOSTS": str(tmp_path / "none")}
    log = tmp_path / "collect.log"
    with open(log, "wb") as log_file:
        child = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli.main", "collect", "-i",
             str(lab.inventory_path), "public", "--interval", "1",
             "--vm-url", f"http://127.0.0.1:{dead_port}"],
            env=env, stdout=subprocess.DEVNULL, stderr=log_file,
        )
    try:
        spool_dir = state / "spool"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            segs = list(spool_dir.glob("*.seg")) if spool_dir.exists() else []
            if sum(p.stat().st_size for p in segs) > 50_000:
                break
            await asyncio.sleep(0.5)
        else:
            pytest.fail(f"nothing spooled: {log.read_text()[-2000:]}")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    spooled = spooled_up_timestamps(state / "spool")
    assert len(spooled) >= 3
    restarted = Settings(state_dir=state, user_known_hosts=tmp_path / "none")
    async with MetricsBackend(restarted, vm_url=vm.url, flush_interval=0.2) as backend:
        for _ in range(60):
            if backend.spool.is_empty():  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.5)
    series = vm.wait_for_samples('up{job="node"}', count=len(spooled))
    exported = {(s.labels["instance"], ts) for s in series for ts in s.timestamps}
    assert spooled <= exported


async def test_host_whose_sshd_dies_goes_down_and_comes_back(lab, settings) -> None:
    taken: list[HostSweep] = []

    async def sink(sweep: HostSweep) -> None:
        taken.append(sweep)

    async def wait_for(predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            await asyncio.sleep(0.2)
        return False

    interval = 2.0
    async with ConnectionPool(settings) as pool:
        loop = CollectionLoop(jobs_for(lab, pool, "public", timeout=3), sink, interval=interval)
        loop.start()
        try:
            assert await wait_for(lambda: {s.host for s in taken} >= {"host01", "host02"}, 10)
            lab.lab.stop_sshd("host02")
            killed_at = len(taken)
            went_down = await wait_for(
                lambda: any(not s.up for s in taken[killed_at:] if s.host == "host02"),
                interval + 3 + 2,
            )
            assert went_down, "host02 not marked down within one interval"
            down_at = len(taken)
            lab.lab.start_sshd("host02")
            came_back = await wait_for(
                lambda: any(s.up for s in taken[down_at:] if s.host == "host02"), 45
            )
            assert came_back, "host02 did not come back after sshd returned"
        finally:
            await loop.stop()
    others = [s for s in taken[killed_at:] if s.host != "host02"]
    assert others and all(s.up for s in others)
    down = next(s for s in taken[killed_at:] if s.host == "host02" and not s.up)
    assert [x.value for x in down.samples if x.name == "up"] == [0]


def test_collect_once_print_is_prometheus_text(lab, tmp_path) -> None:
    env = {**os.environ, "SERVERGUARD_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli.main", "collect", "-i", str(lab.inventory_path),
         "private01", "--once", "--print"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any(line.startswith('up{instance="private01",job="node"} 1 ') for line in lines)
    timestamps = {line.rsplit(" ", 1)[1] for line in lines}
    assert len(timestamps) == 1  # one timestamp per host per sweep
    names = {line.split("{")[0].split(" ")[0] for line in lines}
    assert {"node_load1", "node_memory_MemTotal_bytes", "node_cpu_seconds_total"} <= names
    assert len(names) > 40
    assert default_registry().get("cpu").name == "cpu"


def test_collect_runs_probes_from_a_file_through_the_bastion(lab, tmp_path) -> None:
    probes = tmp_path / "probes.yml"
    probes.write_text(
        "probes:\n"
        "  - {name: bastion-ssh, type: tcp, target: '169.254.10.2:22'}\n"
        "  - {name: private-ssh, type: tcp, target: '169.254.20.11:22', vantage: bastion}\n"
        "  - {name: private-ssh-direct, type: tcp, target: '169.254.20.11:22', timeout: 2}\n"
    )
    env = {**os.environ, "SERVERGUARD_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli.main", "collect", "-i", str(lab.inventory_path),
         "host01", "--once", "--print", "--probes", str(probes)],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert done.returncode == 2, done.stderr  # the direct probe cannot reach the private subnet
    success = {
        line.split('probe="')[1].split('"')[0]: line.split()[1]
        for line in done.stdout.splitlines()
        if line.startswith("probe_success{")
    }
    assert success == {"bastion-ssh": "1", "private-ssh": "1", "private-ssh-direct": "0"}
