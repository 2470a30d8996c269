"""Fan-out benchmark: ``cat /proc/loadavg`` on N loopback lab hosts, side by side.

    python benchmarks/fanout/run.py [--hosts 50,200] [--rounds 5] [--slow-rounds 3] [--quick]

Every round runs every tool once (the order rotates from round to round), so all tools see
the same machine load; the table shows medians over rounds and ratios. Rows:

- floor: bare asyncssh, one open ``/bin/sh`` per host, write ``cat /proc/loadavg; echo MARK``
  to all at once and read to MARK (the least "run on every host" can cost);
- asyncssh cold / warm: ``asyncio.gather`` of ``asyncssh.connect`` + ``conn.run`` / ``conn.run``
  on the same open connections;
- ServerGuard cold ``fan_out`` (new pool) / warm ``fan_out`` (same pool) / warm
  ``run_in_session`` (persistent shell per host), with one connection per entry;
- ServerGuard on the lab inventory as is (every entry shares one connection: see
  benchmarks/common.py) for comparison;
- parallel-ssh (native libssh2 client) cold (new client) / warm (same client);
- Ansible ad-hoc ``-m shell -f 50``, pipelining on, cold (no ControlMaster yet) / warm
  (ControlPersist masters up; one ControlPath per entry);
- pyinfra ``exec`` (--parallel 50), cold only (a CLI run keeps no connection).

Session-style rows (floor, ServerGuard session) time 3 round trips per round and keep their
median as that round's value. Results: benchmarks/results/fanout-<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rich.console import Console
from rich.table import Table

from benchmarks.common import (
    BareSSH,
    ShellFloor,
    Stopwatch,
    bench_settings,
    children_cpu,
    close_all,
    fmt_s,
    fmt_x,
    host_targets,
    lab_targets,
    loadavg,
    loopback_lab,
    machine_info,
    median,
    pssh_cold_warm,
    ratio,
    rotate,
    summarize,
    venv_bin,
    write_results,
)
from inventory.targets import ConnectionTarget
from orchestrator.executor import fan_out
from orchestrator.lab import LabInfo
from orchestrator.ssh.pool import ConnectionPool

COMMAND = "cat /proc/loadavg"
SESSION_TRIPS = 3
ANSIBLE_FORKS = 50
PYINFRA_PARALLEL = 50

console = Console(width=max(Console().width, 150))

ROWS: dict[str, tuple[str, str]] = {  # key: (label, mode)
    "floor": ("floor: bare asyncssh, open sh per host, 1 round trip", "warm"),
    "asyncssh_cold": ("bare asyncssh: gather(connect + run)", "cold"),
    "asyncssh_warm": ("bare asyncssh: gather(run), open conns", "warm"),
    "sg_cold": ("ServerGuard fan_out, new pool", "cold"),
    "sg_warm": ("ServerGuard fan_out, same pool", "warm"),
    "sg_session": ("ServerGuard run_in_session", "warm"),
    "sg_shared_cold": ("SG fan_out, lab inv. as is (1 shared conn)", "cold"),
    "sg_shared_warm": ("SG fan_out, as is, same pool", "warm"),
    "sg_shared_session": ("SG run_in_session, as is (1 shared shell)", "warm"),
    "pssh_cold": ("parallel-ssh (libssh2), new client", "cold"),
    "pssh_warm": ("parallel-ssh (libssh2), same client", "warm"),
    "ansible_cold": ("Ansible -m shell -f 50, pipelining", "cold"),
    "ansible_warm": ("Ansible, ControlPersist masters up", "warm"),
    "pyinfra_cold": ("pyinfra exec --parallel 50", "cold"),
}


@dataclass
class Sample:
    wall: float
    cpu: float
    ok: int


@dataclass
class Tool:
    name: str
    slow: bool
    measure: Callable[[int], dict[str, Sample]]


def loadavg_ok(out: bytes | str) -> bool:
    text = out.decode() if isinstance(out, bytes) else out
    return len(text.split()) == 5


# ------------------------------------------------------------------------------- the bench


@dataclass
class FanoutBench:
    lab: LabInfo
    work: Path
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)

    def __post_init__(self) -> None:
        self.bare = BareSSH(self.lab)
        self.settings = bench_settings(self.work / "sg-state")
        self._targets: dict[tuple[str, int], list[ConnectionTarget]] = {}

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def targets(self, n: int, *, shared: bool = False) -> list[ConnectionTarget]:
        key = ("shared" if shared else "host", n)
        if key not in self._targets:
            self._targets[key] = (lab_targets if shared else host_targets)(self.lab, n)
        return self._targets[key]

    # -- bare asyncssh and the floor ------------------------------------------------------------

    def m_asyncssh(self, n: int) -> dict[str, Sample]:
        async def go() -> dict[str, Sample]:
            async def one() -> tuple[Any, bytes]:
                conn = await self.bare.connect()
                res = await conn.run(COMMAND, encoding=None)
                return conn, res.stdout

            with Stopwatch() as cold:
                pairs = await asyncio.gather(*(one() for _ in range(n)))
            conns = [p[0] for p in pairs]
            ok_cold = sum(loadavg_ok(p[1]) for p in pairs)
            try:
                with Stopwatch() as warm:
                    outs = await asyncio.gather(*(c.run(COMMAND, encoding=None) for c in conns))
                ok_warm = sum(loadavg_ok(o.stdout) for o in outs)
            finally:
                await close_all(conns)
            return {
                "asyncssh_cold": Sample(cold.wall, cold.cpu, ok_cold),
                "asyncssh_warm": Sample(warm.wall, warm.cpu, ok_warm),
            }

        return self.run(go())

    def m_floor(self, n: int) -> dict[str, Sample]:
        async def go() -> dict[str, Sample]:
            floor = ShellFloor(self.bare)
            await floor.open(n)
            try:
                await floor.round_trip(COMMAND)  # prime
                trips = []
                for _ in range(SESSION_TRIPS):
                    with Stopwatch() as sw:
                        outs = await floor.round_trip(COMMAND)
                    trips.append(Sample(sw.wall, sw.cpu, sum(loadavg_ok(o) for o in outs)))
            finally:
                await floor.close()
            return {"floor": mid(trips)}

        return self.run(go())

    # -- ServerGuard ---------------------------------------------------------------------------

    def _m_serverguard(self, n: int, *, shared: bool) -> dict[str, Sample]:
        targets = self.targets(n, shared=shared)
        prefix = "sg_shared" if shared else "sg"

        async def go() -> dict[str, Sample]:
            async with ConnectionPool(self.settings) as pool:
                with Stopwatch() as cold:
                    res_cold, _ = await fan_out(pool, targets, COMMAND, forks=n)
                with Stopwatch() as warm:
                    res_warm, _ = await fan_out(pool, targets, COMMAND, forks=n)

                async def session_round() -> list[Any]:
                    return list(
                        await asyncio.gather(*(pool.run_in_session(t, COMMAND) for t in targets))
                    )

                await session_round()  # opens the shells
                trips = []
                for _ in range(SESSION_TRIPS):
                    with Stopwatch() as sw:
                        res = await session_round()
                    trips.append(
                        Sample(sw.wall, sw.cpu, sum(r.ok and loadavg_ok(r.stdout) for r in res))
                    )
                if not shared:
                    assert pool.stats["connects"] == n, pool.stats
            return {
                f"{prefix}_cold": Sample(
                    cold.wall, cold.cpu, sum(r.ok and loadavg_ok(r.stdout) for r in res_cold)
                ),
                f"{prefix}_warm": Sample(
                    warm.wall, warm.cpu, sum(r.ok and loadavg_ok(r.stdout) for r in res_warm)
                ),
                f"{prefix}_session": mid(trips),
            }

        return self.run(go())

    def m_serverguard(self, n: int) -> dict[str, Sample]:
        return self._m_serverguard(n, shared=False)

    def m_serverguard_shared(self, n: int) -> dict[str, Sample]:
        return self._m_serverguard(n, shared=True)

    # -- parallel-ssh ---------------------------------------------------------------------------

    def m_pssh(self, n: int) -> dict[str, Sample]:
        (cold, ok_cold), (warm, ok_warm) = pssh_cold_warm(
            self.lab, n, COMMAND, lambda rc, text: loadavg_ok(text) and rc == 0, timeout=60
        )
        gc.collect()
        return {
            "pssh_cold": Sample(cold.wall, cold.cpu, ok_cold),
            "pssh_warm": Sample(warm.wall, warm.cpu, ok_warm),
        }

    # -- Ansible --------------------------------------------------------------------------------

    def _ansible_files(self, n: int) -> tuple[Path, Path, dict[str, str]]:
        base = self.work / "ansible"
        cp = base / "cp"
        cp.mkdir(parents=True, exist_ok=True)
        (base / "home").mkdir(exist_ok=True)
        (base / "tmp").mkdir(exist_ok=True)
        cfg = base / "ansible.cfg"
        cfg.write_text("[defaults]\n")  # pin the defaults: no stray ansible.cfg
        inv = base / f"inventory-{n}.yml"
        if not inv.exists():
            lo = self.lab.host("lo001")
            lines = [
                "all:",
                "  vars:",
                f"    ansible_user: {lo.user}",
                f"    ansible_host: {lo.address}",
                f"    ansible_port: {lo.port}",
                f"    ansible_ssh_private_key_file: {self.lab.key_path}",
                "    ansible_python_interpreter: /usr/bin/python3",
                "  children:",
                "    loopback:",
                "      hosts:",
            ]
            for t in self.targets(n):
                # one ControlPath per entry: the default (%C: hash of host, port, user) would
                # multiplex every entry over one master, which N real hosts never share
                lines += [
                    f"        {t.name}:",
                    f"          ansible_ssh_common_args: -o UserKnownHostsFile="
                    f"{self.lab.known_hosts_path} -o StrictHostKeyChecking=yes "
                    f"-o ControlPath={cp}/{t.name}",
                ]
            inv.write_text("\n".join(lines) + "\n")
        env = dict(os.environ)
        env.update(
            ANSIBLE_CONFIG=str(cfg),
            ANSIBLE_PIPELINING="1",
            ANSIBLE_HOME=str(base / "home"),
            ANSIBLE_LOCAL_TEMP=str(base / "tmp"),
            ANSIBLE_NOCOLOR="1",
        )
        return inv, cp, env

    def _stop_masters(self, cp: Path) -> None:
        procs = [
            subprocess.Popen(
                ["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "lab"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            for sock in cp.iterdir()
        ]
        for p in procs:
            p.wait(timeout=30)
        for sock in cp.iterdir():
            sock.unlink(missing_ok=True)

    def m_ansible(self, n: int) -> dict[str, Sample]:
        inv, cp, env = self._ansible_files(n)
        self._stop_masters(cp)
        cmd = [
            venv_bin("ansible"), "-i", str(inv), "loopback", "-m", "shell", "-a", COMMAND,
            "-f", str(ANSIBLE_FORKS), "-o",
        ]

        def once() -> Sample:
            c0, t0 = children_cpu(), time.perf_counter()
            proc = subprocess.run(
                cmd, env=env, cwd=self.work, capture_output=True, text=True, timeout=900
            )
            wall, cpu = time.perf_counter() - t0, children_cpu() - c0
            ok = sum(
                1 for line in proc.stdout.splitlines()
                if "| CHANGED | rc=0 |" in line and loadavg_ok(line.split("(stdout)", 1)[-1])
            )
            if ok != n:
                console.print(f"[red]ansible: {ok}/{n} ok[/] {proc.stderr[-400:]}")
            return Sample(wall, cpu, ok)

        try:
            cold = once()
            warm = once()
        finally:
            self._stop_masters(cp)
        return {"ansible_cold": cold, "ansible_warm": warm}

    # -- pyinfra --------------------------------------------------------------------------------

    def _pyinfra_inventory(self, n: int) -> Path:
        base = self.work / "pyinfra"
        base.mkdir(exist_ok=True)
        inv = base / f"inventory_{n}.py"
        if not inv.exists():
            lo = self.lab.host("lo001")
            data = {
                "ssh_hostname": lo.address,
                "ssh_port": lo.port,
                "ssh_user": lo.user,
                "ssh_key": str(self.lab.key_path),
                "ssh_known_hosts_file": str(self.lab.known_hosts_path),
                "ssh_strict_host_key_checking": "yes",
                "ssh_allow_agent": False,
                "ssh_look_for_keys": False,
            }
            rows = [f"    ({t.name!r}, {data!r})," for t in self.targets(n)]
            inv.write_text("hosts = [\n" + "\n".join(rows) + "\n]\n")
        return inv

    def m_pyinfra(self, n: int) -> dict[str, Sample]:
        inv = self._pyinfra_inventory(n)
        cmd = [
            venv_bin("pyinfra"), str(inv), "exec", "-y", "--parallel", str(PYINFRA_PARALLEL),
            "--", COMMAND,
        ]
        c0, t0 = children_cpu(), time.perf_counter()
        proc = subprocess.run(
            cmd, cwd=inv.parent, capture_output=True, text=True, timeout=900
        )
        wall, cpu = time.perf_counter() - t0, children_cpu() - c0
        # pyinfra logs per host to stderr: "[lo001] 0.52 0.58 0.59 1/189 4242", "[lo001] Success"
        log = proc.stdout + proc.stderr
        outputs = sum(
            1 for line in log.splitlines()
            if line.startswith("[lo") and loadavg_ok(line.split("]", 1)[1])
        )
        ok = min(outputs, log.count("] Success")) if proc.returncode == 0 else 0
        if ok != n:
            console.print(f"[red]pyinfra: {ok}/{n} ok (rc {proc.returncode})[/] "
                          f"{(proc.stderr or proc.stdout)[-400:]}")
        return {"pyinfra_cold": Sample(wall, cpu, ok)}


def mid(samples: Sequence[Sample]) -> Sample:
    """The median round trip of a round (by wall time)."""
    return sorted(samples, key=lambda s: s.wall)[len(samples) // 2]


# ------------------------------------------------------------------------------- report


def paired(a: Sequence[Sample], b: Sequence[Sample] | None) -> float | None:
    """Median of the per-round ratios a/b (rounds where both ran: same load)."""
    if not b:
        return None
    k = min(len(a), len(b))
    return median([a[i].wall / b[i].wall for i in range(k) if b[i].wall > 0])


def summarise(raw: dict[int, dict[str, list[Sample]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n, rows in raw.items():
        med = {k: median([s.wall for s in v]) for k, v in rows.items()}
        per: dict[str, Any] = {}
        for key, samples in rows.items():
            label, mode = ROWS[key]
            m = med[key]
            per[key] = {
                "label": label,
                "mode": mode,
                "wall_s": summarize([s.wall for s in samples]),
                "orchestrator_cpu_s": summarize([s.cpu for s in samples]),
                "ok": [s.ok for s in samples],
                "all_ok": all(s.ok == n for s in samples),
                "vs_asyncssh_cold": ratio(m, med.get("asyncssh_cold")) if mode == "cold" else None,
                "vs_floor": ratio(m, med.get("floor")) if mode == "warm" else None,
                "ansible_speedup": ratio(med.get(f"ansible_{mode}"), m),
                # the same ratios taken inside each round (same load), then the median
                "paired_vs_asyncssh_cold": (
                    paired(samples, rows.get("asyncssh_cold")) if mode == "cold" else None
                ),
                "paired_vs_floor": paired(samples, rows.get("floor")) if mode == "warm" else None,
                "paired_ansible_speedup": (
                    1 / p if (p := paired(samples, rows.get(f"ansible_{mode}"))) else None
                ),
            }
        out[str(n)] = per
    return out


def targets_verdict(summary: dict[str, Any]) -> list[dict[str, Any]]:
    verdicts = []
    for n, per in summary.items():
        def get(key: str, field: str, per: dict[str, Any] = per) -> float | None:
            row = per.get(key)
            return row.get(field) if row else None

        cold_vs = get("sg_cold", "vs_asyncssh_cold")
        verdicts.append({
            "hosts": int(n), "target": "ServerGuard cold within 1.2x of bare asyncssh cold",
            "value": cold_vs, "paired": get("sg_cold", "paired_vs_asyncssh_cold"),
            "met": cold_vs is not None and cold_vs <= 1.2,
        })
        speed = get("sg_cold", "ansible_speedup")
        verdicts.append({
            "hosts": int(n), "target": "ServerGuard cold at least 10x faster than Ansible cold",
            "value": speed, "paired": get("sg_cold", "paired_ansible_speedup"),
            "met": None if speed is None else speed >= 10,
        })
        sess = get("sg_session", "vs_floor")
        verdicts.append({
            "hosts": int(n),
            "target": "ServerGuard warm persistent-session round trip within 2x of the floor"
            + (" (the target is set at 200 hosts)" if int(n) != 200 else ""),
            "value": sess, "paired": get("sg_session", "paired_vs_floor"),
            "met": sess is not None and sess <= 2,
        })
    return verdicts


def print_tables(summary: dict[str, Any], verdicts: list[dict[str, Any]]) -> None:
    for n, per in summary.items():
        table = Table(title=f"fan-out: {COMMAND} on {n} loopback hosts (medians over rounds)")
        for col in ("row", "mode", "wall", "min..max", "orch. CPU", "rounds",
                    "vs asyncssh cold", "vs floor", "x faster than Ansible"):
            # each ratio: of the medians / (median of the per-round ratios)
            table.add_column(col, justify="left" if col in ("row", "mode") else "right")
        for key in ROWS:
            row = per.get(key)
            if not row:
                continue
            w = row["wall_s"]
            table.add_row(
                row["label"] + ("" if row["all_ok"] else " [red](failures)[/]"),
                row["mode"], fmt_s(w["median"]), f"{fmt_s(w['min'])}..{fmt_s(w['max'])}",
                fmt_s(row["orchestrator_cpu_s"]["median"]), str(w["n"]),
                both(row["vs_asyncssh_cold"], row["paired_vs_asyncssh_cold"]),
                both(row["vs_floor"], row["paired_vs_floor"]),
                both(row["ansible_speedup"], row["paired_ansible_speedup"]),
            )
        console.print(table)
    console.print("ratios: of the medians / (median of the per-round ratios, same load)")
    vt = Table(title="targets (judged on the ratio of the medians)")
    for col in ("hosts", "target", "ratio of medians", "paired", "met"):
        vt.add_column(col)
    for v in verdicts:
        met = {True: "[green]met[/]", False: "[red]MISSED[/]", None: "n/a"}[v["met"]]
        vt.add_row(str(v["hosts"]), v["target"], fmt_x(v["value"]), fmt_x(v["paired"]), met)
    console.print(vt)


def both(a: float | None, b: float | None) -> str:
    return "-" if a is None else f"{fmt_x(a)} ({fmt_x(b)})"


# ------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hosts", default="50,200", help="host counts, comma separated")
    ap.add_argument("--rounds", type=int, default=5, help="rounds for the fast tools")
    ap.add_argument("--slow-rounds", type=int, default=3, help="rounds for Ansible and pyinfra")
    ap.add_argument("--quick", action="store_true", help="20 hosts, 2 rounds: a smoke run")
    ap.add_argument("--skip", default="", help="tools to leave out: ansible,pyinfra,pssh,shared")
    args = ap.parse_args(argv)
    if args.quick:
        args.hosts, args.rounds, args.slow_rounds = "20", 2, 1
    hosts = [int(x) for x in args.hosts.split(",") if x]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    machine = machine_info()
    console.print(
        f"[bold]machine[/] {machine['nproc']} x {machine['cpu_model']}, kernel "
        f"{machine['kernel']}, load {machine['loadavg_at_start']}, {machine['date']}"
    )
    started = time.perf_counter()
    raw: dict[int, dict[str, list[Sample]]] = {n: {} for n in hosts}
    load_per_round: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sg-fanout-") as tmp, loopback_lab(max(hosts)) as lab:
        bench = FanoutBench(lab, Path(tmp))
        tools = [
            Tool("floor", False, bench.m_floor),
            Tool("asyncssh", False, bench.m_asyncssh),
            Tool("serverguard", False, bench.m_serverguard),
            Tool("shared", False, bench.m_serverguard_shared),
            Tool("pssh", False, bench.m_pssh),
            Tool("ansible", True, bench.m_ansible),
            Tool("pyinfra", True, bench.m_pyinfra),
        ]
        tools = [t for t in tools if t.name not in skip]
        try:
            for n in hosts:
                for r in range(args.rounds):
                    load_per_round.append({"hosts": n, "round": r, "loadavg": loadavg()})
                    for tool in rotate(tools, r):
                        if tool.slow and r >= args.slow_rounds:
                            continue
                        t0 = time.perf_counter()
                        got = tool.measure(n)
                        for key, s in got.items():
                            raw[n].setdefault(key, []).append(s)
                        console.print(
                            f"  {n} hosts, round {r + 1}/{args.rounds}, {tool.name}: "
                            + ", ".join(f"{k} {fmt_s(s.wall)} ({s.ok} ok)" for k, s in got.items())
                            + f"  [{time.perf_counter() - t0:.1f}s]"
                        )
        finally:
            bench.loop.close()
    summary = summarise(raw)
    verdicts = targets_verdict(summary)
    print_tables(summary, verdicts)
    data = {
        "benchmark": "fanout",
        "command": COMMAND,
        "machine": machine,
        "loadavg_at_end": loadavg(),
        "load_per_round": load_per_round,
        "settings": {
            "hosts": hosts, "rounds": args.rounds, "slow_rounds": args.slow_rounds,
            "session_trips_per_round": SESSION_TRIPS, "ansible_forks": ANSIBLE_FORKS,
            "pyinfra_parallel": PYINFRA_PARALLEL, "skip": sorted(skip),
        },
        "duration_s": round(time.perf_counter() - started, 1),
        "results": summary,
        "targets": verdicts,
    }
    path = write_results("fanout", data, quick=args.quick)
    console.print(f"results: {path} ({data['duration_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
