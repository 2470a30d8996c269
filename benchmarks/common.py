"""What the benchmarks share: the loopback lab, targets, settings, the floor, bare asyncssh,
fork counting, statistics, machine facts and result files.

Every benchmark brings up its own loopback-mode lab in a private state dir under /tmp (one
sshd on 127.0.0.1 with MaxStartups/MaxSessions raised, entries lo001..loNNN, lab user
``sglab`` whose login shell is /bin/sh) and tears it down in ``finally``.

One entry, one connection: every lo* entry of the loopback lab is the same (user, address,
port), so ServerGuard's pool, which keys connections by route, would serve all of them over
ONE shared connection (and one persistent shell). The peers open one connection per entry.
To measure what the engine does with N real hosts, ``host_targets`` turns each entry into a
``PerHostTarget``: the same target whose route key also carries the inventory name, so the
unchanged pool opens one connection (and one shell) per entry, as it would for N distinct
hosts. The fan-out benchmark also reports the lab inventory as is, for comparison.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
LOOPBACK_MAX_STARTUPS = 10000  # orchestrator/lab/sshd.py LOOPBACK_LIMITS

from inventory import load_inventory  # noqa: E402
from inventory.targets import ConnectionTarget  # noqa: E402
from orchestrator.lab import Lab, LabInfo, LabSpec  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402

# ---------------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def machine_info() -> dict[str, Any]:
    """nproc, CPU model, kernel, date, load average at start, versions."""
    load = Path("/proc/loadavg").read_text().split()[:3]
    ssh_v = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": [float(x) for x in load],
        "openssh": ssh_v,
        "versions": {
            name: _version(name)
            for name in (
                "serverguard", "asyncssh", "parallel-ssh", "ssh2-python", "ansible-core",
                "pyinfra", "paramiko", "cryptography",
            )
        },
    }


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


# ---------------------------------------------------------------------------------- the lab


@contextlib.contextmanager
def loopback_lab(entries: int, say: Callable[[str], None] = print) -> Iterator[LabInfo]:
    """A loopback-mode lab of its own under /tmp, always torn down (and its dir removed)."""
    state = Path(tempfile.mkdtemp(prefix="sg-bench-"))
    lab = Lab(Settings(state_dir=state))
    try:
        info = lab.up(
            LabSpec(hosts=0, private=0, deep=0, loopback_hosts=entries, mode="loopback"),
            replace=True,
        )
        say(f"lab up: {entries} entries on {info.host('lo001').address}:"
            f"{info.host('lo001').port} (state {state})")
        yield info
    finally:
        with contextlib.suppress(Exception):
            lab.down()
        shutil.rmtree(state, ignore_errors=True)


@dataclass(frozen=True, slots=True)
class PerHostTarget(ConnectionTarget):
    """A lab entry as its own host: the pool gives it its own connection (see module doc)."""

    @property
    def route_key(self) -> tuple[tuple[str | None, str, int], ...]:
        hops = tuple(hop.endpoint for hop in self.jump)
        return (*hops, (f"{self.user}#{self.name}", self.address, self.port))


def lab_targets(info: LabInfo, n: int) -> list[ConnectionTarget]:
    """The first ``n`` loopback entries exactly as the lab inventory gives them."""
    inv = load_inventory([str(info.inventory_path)])
    names = inv.select("loopback")[:n]
    if len(names) < n:
        raise SystemExit(f"the lab has only {len(names)} loopback entries, {n} wanted")
    return inv.targets(names)


def host_targets(info: LabInfo, n: int) -> list[ConnectionTarget]:
    """The first ``n`` entries, one connection each (``PerHostTarget``)."""
    return [
        PerHostTarget(**{f.name: getattr(t, f.name) for f in dataclasses.fields(t)})
        for t in lab_targets(info, n)
    ]


def bench_settings(state_dir: Path, **extra: Any) -> Settings:
    """Settings matching the loopback sshd (MaxStartups 10000), no agent, no ~/.ssh."""
    values: dict[str, Any] = {
        "state_dir": state_dir,
        "handshakes_per_sshd": LOOPBACK_MAX_STARTUPS,
        "connects_in_flight": LOOPBACK_MAX_STARTUPS,
        "use_ssh_agent": False,
        "user_known_hosts": state_dir / "no-such-known_hosts",
        "idle_timeout": 0,
        "connect_timeout": 60.0,
        "command_timeout": 120.0,
    }
    values.update(extra)
    return Settings(**values)


# ---------------------------------------------------------------------------------- bare asyncssh


class BareSSH:
    """Plain asyncssh with the lab's key and known_hosts (parsed once, like the pool does)."""

    def __init__(self, info: LabInfo) -> None:
        lo = info.host("lo001")
        self.address, self.port, self.user = lo.address, lo.port, lo.user
        self.key = asyncssh.read_private_key(str(info.key_path))
        self.known_hosts = asyncssh.read_known_hosts(str(info.known_hosts_path))

    async def connect(self) -> asyncssh.SSHClientConnection:
        return await asyncssh.connect(
            self.address, self.port, username=self.user, client_keys=[self.key],
            known_hosts=self.known_hosts, agent_path=None, config=None,
            login_timeout=60,
        )

    async def connect_all(self, n: int) -> list[asyncssh.SSHClientConnection]:
        return list(await asyncio.gather(*(self.connect() for _ in range(n))))


async def close_all(conns: Sequence[asyncssh.SSHClientConnection]) -> None:
    for c in conns:
        c.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.gather(*(c.wait_closed() for c in conns)), 10)


class _RawShell(asyncssh.SSHClientSession[bytes]):
    """A /bin/sh channel read until a marker: the least any tool can do per round trip."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.marker = b""
        self.waiter: asyncio.Future[bytes] | None = None

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.buf += data
        if self.waiter is not None and not self.waiter.done():
            idx = self.buf.find(self.marker)
            if idx >= 0:
                out = bytes(self.buf[:idx])
                del self.buf[: idx + len(self.marker)]
                self.waiter.set_result(out)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("shell closed"))


class ShellFloor:
    """N open connections, each with one long-lived ``/bin/sh``; one write, read to a marker.

    ``round_trip`` is the floor for "run something on every host": no new connection, no new
    channel, no framing beyond one ``echo`` of a marker, no parsing.
    """

    MARK = "SG-FLOOR-MARK"

    def __init__(self, bare: BareSSH) -> None:
        self.bare = bare
        self.conns: list[asyncssh.SSHClientConnection] = []
        self.chans: list[asyncssh.SSHClientChannel[bytes]] = []
        self.shells: list[_RawShell] = []

    async def open(self, n: int) -> None:
        self.conns = await self.bare.connect_all(n)
        pairs = await asyncio.gather(
            *(c.create_session(_RawShell, "exec /bin/sh", encoding=None) for c in self.conns)
        )
        self.chans = [p[0] for p in pairs]
        self.shells = [p[1] for p in pairs]  # type: ignore[misc]

    async def one(self, i: int, script: str) -> bytes:
        shell = self.shells[i]
        shell.marker = f"{self.MARK}\n".encode()
        shell.waiter = asyncio.get_running_loop().create_future()
        self.chans[i].write(f"{script}\necho {self.MARK}\n".encode())
        return await shell.waiter

    async def round_trip(self, script: str = "cat /proc/loadavg") -> list[bytes]:
        return list(await asyncio.gather(*(self.one(i, script) for i in range(len(self.chans)))))

    async def close(self) -> None:
        for ch in self.chans:
            ch.close()
        await close_all(self.conns)
        self.conns, self.chans, self.shells = [], [], []


class ForkCounter:
    """Counts processes started on the lab machine, from its PID namespace's last PID.

    ``/proc/loadavg``'s last field is the last PID handed out in the reader's PID namespace;
    the loopback machine is a container with a PID namespace of its own, and this probe
    reads it with shell builtins only (``read``, ``echo``) over an already-open shell, so
    the measurement starts no process itself (checked by ``self_cost``).
    """

    def __init__(self, bare: BareSSH) -> None:
        self.floor = ShellFloor(bare)

    async def open(self) -> None:
        await self.floor.open(1)

    async def last_pid(self) -> int:
        out = await self.floor.one(0, 'read -r __l < /proc/loadavg; echo "$__l"')
        return int(out.split()[-1])

    async def count(self, action: Callable[[], Any], repeat: int = 5) -> list[int]:
        """Processes started by ``await action()``, measured ``repeat`` times."""
        counts = []
        for _ in range(repeat):
            before = await self.last_pid()
            await action()
            await asyncio.sleep(0.05)  # let sshd finish reaping/forking for a closed channel
            counts.append(await self.last_pid() - before)
        return counts

    async def self_cost(self) -> list[int]:
        async def nothing() -> None:
            return None

        return await self.count(nothing)

    async def close(self) -> None:
        await self.floor.close()


# ---------------------------------------------------------------------------------- stats


def median(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def summarize(xs: Sequence[float]) -> dict[str, Any]:
    if not xs:
        return {"n": 0}
    return {
        "n": len(xs), "median": statistics.median(xs), "min": min(xs), "max": max(xs),
        "values": [round(x, 6) for x in xs],
    }


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_s(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def fmt_x(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def rotate(items: Sequence[Any], k: int) -> list[Any]:
    """Round ``k``'s order: every tool goes first once in a while (no order bias)."""
    k %= max(1, len(items))
    return [*items[k:], *items[:k]]


class Stopwatch:
    """Wall (perf_counter) and process CPU (process_time) of a block."""

    def __enter__(self) -> Stopwatch:
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.c0


def children_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# ---------------------------------------------------------------------------------- results


def write_results(name: str, data: dict[str, Any], *, quick: bool = False) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    day = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    path = RESULTS / f"{name}{'-quick' if quick else ''}-{day}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


def python_exe() -> str:
    return sys.executable


def venv_bin(tool: str) -> str:
    """A console script next to this interpreter (the venv's ansible, pyinfra)."""
    here = Path(sys.executable).parent / tool
    return str(here) if here.exists() else (shutil.which(tool) or tool)


def pssh_cold_warm(
    info: LabInfo, n: int, command: str, ok: Callable[[int | None, str], bool], *, timeout: float
) -> tuple[tuple[Stopwatch, int], tuple[Stopwatch, int]]:
    """parallel-ssh on ``n`` loopback entries: a cold round (connect + run), then a warm one.

    Each round returns its stopwatch and how many hosts ``ok(exit_code, stdout)`` accepted.
    """
    from pssh.clients import ParallelSSHClient

    def run_all(client: Any) -> int:
        output = client.run_command(command, stop_on_errors=False)
        client.join(output)
        # read stdout to its end first: right after join() exit_code may still be None
        texts = ["".join(o.stdout) if o.stdout is not None else "" for o in output]
        return sum(1 for o, text in zip(output, texts, strict=True) if ok(o.exit_code, text))

    lo = info.host("lo001")
    with Stopwatch() as cold:
        client = ParallelSSHClient(
            [lo.address] * n, user=lo.user, port=lo.port, pkey=str(info.key_path),
            pool_size=n, num_retries=1, timeout=timeout, allow_agent=False,
            identity_auth=False,
        )
        ok_cold = run_all(client)
    with Stopwatch() as warm:
        ok_warm = run_all(client)
    for c in list(client._host_clients.values()):
        with contextlib.suppress(Exception):
            c.disconnect()
    del client
    return (cold, ok_cold), (warm, ok_warm)
