"""Benchmark: ``GET /api/v1/metrics/summary`` for 1,000 hosts under 50 concurrent clients.

Set-up (all on loopback, in a private temp dir removed at the end):

* an embedded ``victoria-metrics`` child (the same one ``serve`` starts; its query cache on,
  as in production) holding synthetic node_exporter samples for ``host0001..host1000``
  (two points 30 s apart, so ``rate()`` has something to work with);
* an inventory YAML with the range ``host[0001:1000]``;
* a SQLite database with one admin, and ``uvicorn`` serving ``create_app(settings)`` in a
  subprocess (``--workers``: 1 by default), pointed at VictoriaMetrics with ``vm_url``.

Client (closed loop: 50 keep-alive connections, each sending its next request as soon as
the previous answer arrived; a 2 s warm-up not counted):

* ``wrk`` when it is installed (``apt-get install wrk``): one C thread, a Lua script in the
  private temp dir sets the bearer token (not on the command line, where ``ps`` shows it)
  and prints the exact percentiles. Non-2xx answers are counted as errors; one answer is
  checked for its 1,000 rows beforehand.
* otherwise a minimal asyncio HTTP/1.1 client in this process (``--client python``), which
  checks every answer (status 200, 1,000 rows). It is not httpx: at these rates a
  full-featured Python client costs more CPU than the server and would measure itself; even
  this one takes CPU from the server on a 2-CPU machine, so its figures are worse than wrk's.

The server's CPU time (all uvicorn processes) is reported per request, from /proc.

    python -m benchmarks.api.run [--hosts 1000] [--clients 50] [--seconds 10] [--workers 1]
                                 [--loop asyncio|uvloop] [--client auto|wrk|python]
                                 [--baseline]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from orchestrator.metrics.vm_process import EmbeddedVictoriaMetrics, free_port
from orchestrator.storage.db import Database
from orchestrator.storage.models import Role, UserCreate
from orchestrator.storage.settings import ServiceSettings

PASSWORD = "benchmark password 1234"
PATH = "/api/v1/metrics/summary?limit=1000"
BASELINE_PATH = "/api/v1/users/me"  # the cheapest authenticated route: the floor


def synthetic_samples(hosts: int, now_s: float) -> str:
    t1 = int((now_s - 5) * 1000)
    t0 = t1 - 30_000
    lines: list[str] = []
    for i in range(1, hosts + 1):
        base = f'job="node",instance="host{i:04d}"'
        for n, t in enumerate((t0, t1)):
            lines += [
                f"up{{{base}}} 1 {t}",
                f"node_load1{{{base}}} {i % 7 + 0.25} {t}",
                f"node_memory_MemTotal_bytes{{{base}}} 8000000000 {t}",
                f"node_memory_MemAvailable_bytes{{{base}}} {1000000000 + i * 1000000} {t}",
            ]
            for mount in ("/", "/var"):
                labels = f'{base},mountpoint="{mount}",fstype="ext4"'
                lines += [f"node_filesystem_size_bytes{{{labels}}} 100000000000 {t}",
                          f"node_filesystem_avail_bytes{{{labels}}} {i * 50000000} {t}"]
            for cpu in range(2):
                lines.append(f'node_cpu_seconds_total{{{base},cpu="{cpu}",mode="idle"}} '
                             f"{10000 + n * 30 * (0.5 + cpu * 0.2)} {t}")
    return "\n".join(lines) + "\n"


def inventory_yaml(hosts: int) -> str:
    return ("all:\n  children:\n    fleet:\n      hosts:\n"
            f"        host[0001:{hosts:04d}]:\n          ansible_host: 127.0.0.1\n")


async def closed_loop(port: int, token: str, clients: int, seconds: float,
                      hosts: int, path: str = PATH) -> tuple[list[float], int, int]:
    """Latencies (s) of every request completed in ``seconds`` after a 2 s warm-up, the
    errors, and how many requests were answered in all (warm-up included)."""
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               f"Authorization: Bearer {token}\r\n\r\n").encode()
    latencies: list[float] = []
    errors = answered = 0
    start = time.perf_counter()
    measure_from = start + 2.0
    stop_at = measure_from + seconds

    async def one_client() -> None:
        nonlocal errors, answered
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                sent = time.perf_counter()
                if sent >= stop_at:
                    return
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                body = await reader.readexactly(length)
                done = time.perf_counter()
                answered += 1
                if status != 200 or (path == PATH and body.count(b'"host"') != hosts):
                    errors += 1
                if sent >= measure_from:
                    latencies.append(done - sent)
        finally:
            writer.close()
            await writer.wait_closed()

    await asyncio.gather(*(one_client() for _ in range(clients)))
    return latencies, errors, answered


WRK_SCRIPT = """\
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer %(token)s"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK %%.0f %%.0f %%.0f %%.0f %%.0f %%.0f %%.0f %%.0f\\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def wrk_command(port: int, token: str, clients: int, seconds: float, path: str,
                workdir: Path) -> list[str]:
    script = workdir / "bearer.lua"
    script.touch(mode=0o600)
    script.write_text(WRK_SCRIPT % {"token": token})
    return ["wrk", "-t1", f"-c{clients}", f"-d{seconds:g}s", "--timeout", "10s",
            "-s", str(script), f"http://127.0.0.1:{port}{path}"]


def run_wrk(command: list[str]) -> dict[str, float]:
    """One closed-loop wrk run: counts and latencies in ms."""
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    found = re.search(r"^WRK ((?:\d+ ){7}\d+)$", out, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    requests_, duration_us, status_errors, socket_errors, p50, p90, p99, top = (
        float(v) for v in found.group(1).split())
    return {"requests": requests_, "duration_s": duration_us / 1e6,
            "errors": status_errors + socket_errors, "p50_ms": p50 / 1000,
            "p90_ms": p90 / 1000, "p99_ms": p99 / 1000, "max_ms": top / 1000}


def run_python(port: int, token: str, clients: int, seconds: float, path: str,
               hosts: int) -> dict[str, float]:
    latencies, errors, answered = asyncio.run(
        closed_loop(port, token, clients, seconds, hosts, path))
    latencies.sort()
    q = statistics.quantiles(latencies, n=100)
    return {"requests": len(latencies), "answered": answered, "duration_s": seconds,
            "errors": errors,
            "p50_ms": q[49] * 1000, "p90_ms": q[89] * 1000, "p99_ms": q[98] * 1000,
            "max_ms": latencies[-1] * 1000}


def server_cpu_seconds(pgid: int) -> float:
    """User + system CPU time of every process in the server's process group."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields after the name: state ppid pgrp ... utime stime
            total += int(fields[11]) + int(fields[12])
    return total / tick


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="uvicorn's event loop (serverguard serve runs asyncio's; uvloop "
                        "is not a dependency: pip install uvloop to compare)")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto",
                        help="load generator (auto: wrk when installed)")
    parser.add_argument("--baseline", action="store_true",
                        help="also measure GET /api/v1/users/me (auth and framework only)")
    args = parser.parse_args()
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    elif client == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed (Debian/Ubuntu: apt-get install wrk)")

    from orchestrator.auth.service import AuthService

    tmp = Path(tempfile.mkdtemp(prefix="sg-api-bench-"))
    vm = EmbeddedVictoriaMetrics(tmp / "vm", port=0, startup_timeout=30.0)
    server: subprocess.Popen[bytes] | None = None
    try:
        vm.start()
        requests.post(vm.url + "/api/v1/import/prometheus",
                      data=synthetic_samples(args.hosts, time.time()),
                      timeout=60).raise_for_status()
        requests.get(vm.url + "/internal/force_flush", timeout=30).raise_for_status()
        (tmp / "inventory.yml").write_text(inventory_yaml(args.hosts))
        port = free_port()
        env = {
            **os.environ,
            "SERVERGUARD_STATE_DIR": str(tmp / "state"),
            "SERVERGUARD_INVENTORY": json.dumps([str(tmp / "inventory.yml")]),
            "SERVERGUARD_VM_URL": vm.url,
            "SERVERGUARD_DATABASE_URL": f"sqlite:///{tmp / 'serverguard.db'}",
            "SERVERGUARD_USE_SSH_AGENT": "false",
        }
        settings = ServiceSettings(state_dir=tmp / "state", vm_url=vm.url,
                                   database_url=env["SERVERGUARD_DATABASE_URL"])
        db = Database(settings.resolved_database_url)
        db.migrate()
        with db.session() as session:
            AuthService(settings).create_user(session, data=UserCreate(
                username="admin", role=Role.ADMIN, password=PASSWORD))
            session.commit()
        db.dispose()
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "benchmarks.api.app:make_app",
             "--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers),
             "--loop", args.loop,
             "--log-level", "warning", "--no-access-log"],
            env=env, start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz")
        token = requests.post(base + "/api/v1/login", timeout=30, json={
            "username": "admin", "password": PASSWORD}).json()["access_token"]
        check = requests.get(base + PATH, headers={"Authorization": f"Bearer {token}"},
                             timeout=30)
        check.raise_for_status()
        rows = check.json()["data"]
        assert len(rows) == args.hosts and rows[0]["cpu_percent"] is not None, rows[:2]

        paths = [PATH, BASELINE_PATH] if args.baseline else [PATH]
        for path in paths:
            if client == "wrk":
                run_wrk(wrk_command(port, token, args.clients, 2.0, path, tmp))  # warm-up
                cpu_before = server_cpu_seconds(server.pid)
                run = run_wrk(wrk_command(port, token, args.clients, args.seconds, path, tmp))
            else:  # (its 2 s warm-up is inside: CPU is divided by every answer)
                cpu_before = server_cpu_seconds(server.pid)
                run = run_python(port, token, args.clients, args.seconds, path, args.hosts)
            cpu = server_cpu_seconds(server.pid) - cpu_before
            result = {
                "path": path, "client": client, "hosts": args.hosts, "clients": args.clients,
                "workers": args.workers, "loop": args.loop, "seconds": args.seconds,
                "requests": int(run["requests"]), "errors": int(run["errors"]),
                "rps": round(run["requests"] / run["duration_s"], 1),
                **{k: round(run[k], 1) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")},
                "server_cpu_ms_per_request": round(
                    cpu * 1000 / max(1.0, run.get("answered", run["requests"])), 2),
                "body_bytes": len(check.content) if path == PATH else None,
                "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
            }
            print(json.dumps(result))
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        vm.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
