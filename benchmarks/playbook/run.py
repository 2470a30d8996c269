"""Shipped playbooks through ServerGuard's runner vs plain ``ansible-playbook`` defaults.

    python benchmarks/playbook/run.py [--sizes 20,50] [--rounds 3] [--playbooks ...]

One netns lab of 50 real hosts (``LabSpec(hosts=50, private=0, deep=0)``), taken under the
machine-wide lab lock (``/tmp/serverguard-test-lab.lock``, the test suite's). For each round,
size and playbook, the contenders run one after the other on the same hosts (interleaved;
the order alternates between rounds), each from the same starting state: before every run
the hosts are reset with ``host_exec`` (the ruleset, sysctl values and files put back), so
every run does the full work of a first apply, not a no-op re-run. Before round 1, one
warm-up run of each contender and playbook on the smallest size (``--warmup``), reported
apart: ServerGuard's caches under its state directory are cold in its first run, as once
after an install.

Contenders:
  serverguard      orchestrator.playbooks.run(), defaults (mitogen, forks = hosts, ...)
  sg-no-mitogen    the same runner with --strategy free (pipelining, ControlPersist, forks)
  ansible-default  ``ansible-playbook -i <lab inventory> PLAYBOOK -l HOSTS -e ansible_user=root``
                   with Ansible's defaults (5 forks, linear, no pipelining, ControlPersist 60s)

Every run gets a fresh ControlPath directory (a cold start: sockets left by the previous run
would otherwise make later runs look faster); the ssh masters a run leaves behind are counted
(their CPU) and stopped before the next run.

Measured per run: wall time; controller CPU (this process and everything it waited for, plus
the ssh ControlPersist masters the run left behind); hosts' CPU (every process in the lab
hosts' PID namespaces: sshd, the remote Python, the commands). The machine's load average
is recorded before every run: other work on the machine shows up there. Results (medians,
ratios) go to benchmarks/playbook/README.md and results.json.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from orchestrator.lab import Lab, LabSpec  # noqa: E402
from orchestrator.playbooks import (  # noqa: E402
    PlaybookConfig,
    Tuning,
    mitogen_status,
    resolve_playbook,
    run,
)
from orchestrator.settings import Settings  # noqa: E402

LOCK = "/tmp/serverguard-test-lab.lock"
HERE = Path(__file__).resolve().parent
CONTENDERS = ("serverguard", "sg-no-mitogen", "ansible-default")
# net.* values the sysctl playbook changes (the rest is read-only in the lab): saved once,
# written back before every run.
SYSCTL_PATHS = [
    "/proc/sys/net/ipv4/conf/all/rp_filter", "/proc/sys/net/ipv4/conf/default/rp_filter",
    "/proc/sys/net/ipv4/conf/all/accept_redirects",
    "/proc/sys/net/ipv4/conf/default/accept_redirects",
    "/proc/sys/net/ipv4/conf/all/secure_redirects", "/proc/sys/net/ipv4/conf/all/send_redirects",
    "/proc/sys/net/ipv4/conf/default/send_redirects",
    "/proc/sys/net/ipv4/conf/default/accept_source_route",
    "/proc/sys/net/ipv4/conf/all/log_martians", "/proc/sys/net/ipv6/conf/all/accept_redirects",
    "/proc/sys/net/ipv6/conf/default/accept_redirects",
]
SAVE = ("nft -s list ruleset > /root/.sgbench.nft; "
        + "; ".join(f'echo "{p} $(cat {p})"' for p in SYSCTL_PATHS) + " > /root/.sgbench.sysctl")
RESET = ("pkill -f '[s]g-deadman'; { echo 'flush ruleset'; cat /root/.sgbench.nft; } | nft -f -; "
         "while read -r p v; do echo \"$v\" > \"$p\"; done < /root/.sgbench.sysctl; "
         "rm -rf /var/lib/serverguard /etc/nftables.conf /etc/sysctl.d/60-serverguard.conf")


HZ = os.sysconf("SC_CLK_TCK")


def _stat(pid: str) -> list[bytes]:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        raw = fh.read()
    return raw[raw.rfind(b")") + 2:].split()


def _cpu(fields: list[bytes]) -> float:
    """utime + stime + cutime + cstime (the process and the children it waited for)."""
    return sum(int(x) for x in fields[11:15]) / HZ


def hosts_cpu() -> float:
    """CPU seconds used so far by every process in another PID namespace: the lab hosts."""
    own = os.readlink("/proc/self/ns/pid")
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry.name}/ns/pid") == own:
                continue
            total += _cpu(_stat(entry.name))
        except OSError:
            continue
    return total


def controller_cpu() -> float:
    """CPU seconds of this process and of every process it (transitively) waited for."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def stop_masters(control_dir: str) -> float:
    """The ssh ControlPersist masters a run left (``ssh: <dir>/... [mux]``): nobody waits for
    them, so their CPU is read here; then they are stopped. Returns their CPU seconds."""
    total = 0.0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                cmdline = fh.read()
            if control_dir.encode() not in cmdline:
                continue
            total += _cpu(_stat(entry.name))
            os.kill(int(entry.name), signal.SIGTERM)
        except (OSError, ValueError):
            continue
    return total


def load() -> str:
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


@contextlib.contextmanager
def measured() -> Iterator[dict[str, Any]]:
    """Wall time and CPU of what runs inside, with a fresh ControlPath directory."""
    out: dict[str, Any] = {"load": load()}
    with tempfile.TemporaryDirectory(prefix="sgb-cp-") as cp:
        out["control_dir"] = cp
        ctl, hosts, started = controller_cpu(), hosts_cpu(), time.monotonic()
        yield out
        out["seconds"] = time.monotonic() - started
        out["controller_cpu"] = controller_cpu() - ctl + stop_masters(cp)
        out["hosts_cpu"] = hosts_cpu() - hosts
    del out["control_dir"]


@contextlib.contextmanager
def lab_lock() -> Iterator[None]:
    with open(LOCK, "w") as fh:
        print(f"waiting for the lab lock {LOCK} ...", flush=True)
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def reset(lab: Lab, hosts: list[str]) -> None:
    for host in hosts:
        lab.host_exec(host, ["sh", "-c", RESET], check=True)


def run_serverguard(inventory: Path, playbook: str, hosts: list[str], settings: Settings,
                    strategy: str) -> dict[str, Any]:
    with measured() as out:
        result = run(PlaybookConfig(
            playbook, inventory=[str(inventory)], limit=",".join(hosts),
            extra_vars={"ansible_user": "root"},
            tuning=Tuning(strategy=strategy,
                          env={"ANSIBLE_SSH_CONTROL_PATH_DIR": out["control_dir"]})), settings)
    return {**out, "ok": result.exit_code == 0, "strategy": result.plan.strategy,
            "changed": sum(s.changed for s in result.stats.values())}


def run_ansible(inventory: Path, playbook: str, hosts: list[str]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
            str(resolve_playbook(playbook)), "-l", ",".join(hosts), "-e", "ansible_user=root"]
    with measured() as out:
        env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = out["control_dir"]
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    recap = proc.stdout[proc.stdout.rfind("PLAY RECAP"):]
    changed = sum(int(part.split("=")[1]) for part in recap.split() if part.startswith("changed="))
    if proc.returncode:
        print(proc.stdout[-3000:], file=sys.stderr)
    return {**out, "ok": proc.returncode == 0, "strategy": "linear (defaults)",
            "changed": changed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="20,50")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1,
                        help="runs of each contender and playbook on the smallest size before "
                             "the rounds, reported apart (default 1)")
    parser.add_argument("--playbooks", default="sysctl_baseline,firewall")
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--no-write", action="store_true", help="Print only.")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    playbooks = args.playbooks.split(",")
    contenders = args.contenders.split(",")
    state = Path(tempfile.mkdtemp(prefix="sg-pbbench-"))
    settings = Settings(state_dir=state, user_known_hosts=state / "none", use_ssh_agent=False)
    # What a long-running ServerGuard pays once, not per run: importing ansible-runner and
    # checking mitogen (the CLI pays it per run: about 0.25 s here).
    import ansible_runner  # noqa: F401

    mitogen_status()
    samples: dict[str, list[dict[str, Any]]] = {}
    warmup: dict[str, list[dict[str, Any]]] = {}
    uptime: list[str] = []
    with lab_lock():
        uptime.append(subprocess.run(["uptime"], capture_output=True, text=True,
                                     check=False).stdout.strip())
        print(f"start: {uptime[0]}", flush=True)
        lab = Lab(settings)
        info = lab.up(LabSpec(hosts=max(sizes), private=0, deep=0, loopback_hosts=0),
                      replace=True)
        try:
            all_hosts = [f"host{i:02d}" for i in range(1, max(sizes) + 1)]
            for host in all_hosts:
                lab.host_exec(host, ["sh", "-c", SAVE], check=True)
            def one(label: str, who: str, playbook: str, size: int) -> dict[str, Any]:
                hosts = all_hosts[:size]
                reset(lab, hosts)
                if who == "ansible-default":
                    out = run_ansible(info.inventory_path, playbook, hosts)
                else:
                    out = run_serverguard(info.inventory_path, playbook, hosts, settings,
                                          "auto" if who == "serverguard" else "free")
                print(f"{label} {playbook:16} {size:3} hosts {who:16} "
                      f"{out['seconds']:7.2f}s cpu {out['controller_cpu']:6.1f}+"
                      f"{out['hosts_cpu']:5.1f}s ok={out['ok']} changed={out['changed']} "
                      f"({out['strategy']}) load {out['load']}", flush=True)
                return out

            # The first run of each contender and playbook, apart: ServerGuard's caches in
            # its state directory (compiled templates, code for the hosts) are cold then, as
            # they are once after an install; the rounds measure the runs after.
            for _ in range(args.warmup):
                for playbook in playbooks:
                    for who in contenders:
                        warmup.setdefault(f"{playbook}|{min(sizes)}|{who}", []).append(
                            one("warm-up", who, playbook, min(sizes)))
            for rnd in range(args.rounds):
                for size in sizes:
                    for playbook in playbooks:
                        order = contenders if rnd % 2 == 0 else list(reversed(contenders))
                        for who in order:
                            samples.setdefault(f"{playbook}|{size}|{who}", []).append(
                                one(f"round {rnd + 1}", who, playbook, size))
        finally:
            lab.down()
            shutil.rmtree(state, ignore_errors=True)
            uptime.append(subprocess.run(["uptime"], capture_output=True, text=True,
                                         check=False).stdout.strip())
            print(f"end: {uptime[-1]}", flush=True)
    report(samples, warmup, sizes, playbooks, contenders, args, uptime,
           write=not args.no_write)


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    return statistics.median(r[key] for r in runs) if runs else None


def report(samples: dict[str, list[dict[str, Any]]], warmup: dict[str, list[dict[str, Any]]],
           sizes: list[int], playbooks: list[str], contenders: list[str],
           args: argparse.Namespace, uptime: list[str], *, write: bool) -> None:
    rows = []
    for playbook in playbooks:
        for size in sizes:
            row: dict[str, Any] = {"playbook": playbook, "hosts": size}
            for who in contenders:
                runs = samples.get(f"{playbook}|{size}|{who}", [])
                row[who] = _median(runs, "seconds")
                row[who + "_ok"] = all(r["ok"] for r in runs)
                ctl, hosts = _median(runs, "controller_cpu"), _median(runs, "hosts_cpu")
                row[who + "_cpu"] = [ctl, hosts] if ctl is not None and hosts is not None \
                    else None
            base, ours = row.get("ansible-default"), row.get("serverguard")
            row["speedup"] = base / ours if base and ours else None
            base_cpu, our_cpu = row.get("ansible-default_cpu"), row.get("serverguard_cpu")
            row["cpu_ratio"] = sum(base_cpu) / sum(our_cpu) if base_cpu and our_cpu else None
            rows.append(row)
    wall = ["| playbook | hosts | " + " | ".join(f"{c} (s)" for c in contenders)
            + " | defaults / serverguard |", "|---|---:|" + "---:|" * len(contenders) + "---:|"]
    cpu = ["| playbook | hosts | " + " | ".join(f"{c} (s)" for c in contenders)
           + " | defaults / serverguard |", "|---|---:|" + "---:|" * len(contenders) + "---:|"]
    for row in rows:
        cells = [f"{row[c]:.1f}" + ("" if row[c + "_ok"] else " (failed)")
                 if row[c] is not None else "-" for c in contenders]
        speed = f"**{row['speedup']:.1f}x**" if row["speedup"] else "-"
        wall.append(f"| {row['playbook']} | {row['hosts']} | " + " | ".join(cells)
                    + f" | {speed} |")
        cells = [f"{row[c + '_cpu'][0]:.1f} + {row[c + '_cpu'][1]:.1f}"
                 if row[c + "_cpu"] else "-" for c in contenders]
        ratio = f"{row['cpu_ratio']:.1f}x" if row["cpu_ratio"] else "-"
        cpu.append(f"| {row['playbook']} | {row['hosts']} | " + " | ".join(cells)
                   + f" | {ratio} |")
    table = "\n".join(wall)
    cpu_table = "\n".join(cpu)
    first = "; ".join(
        f"{playbook}: " + ", ".join(
            f"{who} " + "/".join(f"{r['seconds']:.1f}" for r in warmup[key]) + " s"
            for who in contenders if (key := f"{playbook}|{min(sizes)}|{who}") in warmup)
        for playbook in playbooks)
    warm_line = (f"\nWarm-up, not in the medians (the first run of each contender and "
                 f"playbook on {min(sizes)} hosts, ServerGuard's caches cold): {first}.\n"
                 if warmup else "")
    print(table + "\n\n" + cpu_table + "\n" + warm_line)
    if not write:
        return
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    (HERE / "results.json").write_text(json.dumps({
        "date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine,
        "rounds": args.rounds, "uptime": uptime, "rows": rows, "samples": samples,
        "warmup": warmup},
        indent=2) + "\n")
    readme = HERE / "README.md"
    text = readme.read_text() if readme.exists() else ""
    start, end = "<!-- results -->", "<!-- /results -->"
    block = (f"{start}\nMeasured {datetime.now(UTC):%Y-%m-%d} on {machine}; median of "
             f"{args.rounds} interleaved rounds; wall time of the whole run (setup included)."
             f"\nMachine load (`uptime`) at the start: `{uptime[0]}`; at the end: "
             f"`{uptime[-1]}`.\n\n{table}\n\nCPU seconds, controller + hosts (medians):\n\n"
             f"{cpu_table}\n{warm_line}{end}")
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text += "\n" + block + "\n"
    readme.write_text(text)


if __name__ == "__main__":
    main()
