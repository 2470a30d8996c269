"""Markdown tables from benchmark result files (what README.md shows).

    python benchmarks/report.py benchmarks/results/fanout-DATE.json \
        benchmarks/results/sweep-DATE.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def s(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def both(a: float | None, b: float | None) -> str:
    return "-" if a is None else f"{x(a)} ({x(b)})"


def machine(d: dict[str, Any]) -> str:
    m = d["machine"]
    return (
        f"{m['date']}, {m['nproc']} x {m['cpu_model']}, kernel {m['kernel']}, Python "
        f"{m['python']}, {m['openssh']}; load average at start {m['loadavg_at_start']}, at end "
        f"{d.get('loadavg_at_end')}; run took {d['duration_s']} s"
    )


def fanout(d: dict[str, Any]) -> str:
    out = [f"Machine: {machine(d)}.", ""]
    for n, rows in d["results"].items():
        out += [
            f"**{n} hosts** (`{d['command']}`; ratios: of the medians (median of per-round "
            "ratios))",
            "",
            "| row | mode | median wall | min..max | orch. CPU | rounds | vs asyncssh cold "
            "| vs floor | x faster than Ansible |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in rows.values():
            w = row["wall_s"]
            flag = "" if row["all_ok"] else " (failures)"
            out.append(
                f"| {row['label']}{flag} | {row['mode']} | {s(w['median'])} | "
                f"{s(w['min'])}..{s(w['max'])} | {s(row['orchestrator_cpu_s']['median'])} | "
                f"{w['n']} | {both(row['vs_asyncssh_cold'], row['paired_vs_asyncssh_cold'])} | "
                f"{both(row['vs_floor'], row['paired_vs_floor'])} | "
                f"{both(row['ansible_speedup'], row['paired_ansible_speedup'])} |"
            )
        out.append("")
    out += ["| hosts | target | ratio of medians | paired | met |", "|---|---|---:|---:|---|"]
    for v in d["targets"]:
        met = {True: "met", False: "**MISSED**", None: "n/a"}[v["met"]]
        out.append(f"| {v['hosts']} | {v['target']} | {x(v['value'])} | {x(v['paired'])} | {met} |")
    return "\n".join(out)


def sweep(d: dict[str, Any]) -> str:
    n = d["settings"]["hosts"]
    out = [
        f"Machine: {machine(d)}.", "",
        f"**{n} hosts**, collectors: {', '.join(d['collectors'])} (script "
        f"{d['script_bytes']} bytes)", "",
        "| row | median wall | min..max | rounds | orch. CPU per host | vs floor (paired) "
        "| vs script floor (paired) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in d["results"].values():
        w = row["wall_s"]
        flag = "" if row["all_ok"] else " (failures)"
        out.append(
            f"| {row['label']}{flag} | {s(w['median'])} | {s(w['min'])}..{s(w['max'])} | "
            f"{w['n']} | {row['cpu_ms_per_host']:.2f} ms | "
            f"{both(row['vs_floor'], row['paired_vs_floor'])} | "
            f"{both(row['vs_script_floor'], row['paired_vs_script_floor'])} |"
        )
    ne = d.get("node_exporter")
    if ne:
        out.append(
            f"| node_exporter 1 scrape (GET /metrics, keep-alive) | {s(ne['wall_s']['median'])}"
            f" | {s(ne['wall_s']['min'])}..{s(ne['wall_s']['max'])} | {ne['wall_s']['n']} | "
            f"{1000 * ne['client_cpu_s']['median']:.2f} ms client, "
            f"{1000 * ne['exporter_cpu_s']['median']:.1f} ms node_exporter | | |"
        )
    out += ["", "Processes started on the lab machine (PID namespace last-PID delta, 5 times "
            "each, median):", "", "| what | processes |", "|---|---:|"]
    for k, v in d["processes_per_sweep_one_host"].items():
        out.append(f"| {k} | {v['median']} |")
    mem = d.get("memory", {})
    out += ["", "Orchestrator memory per host (fresh process, all hosts warm):", "",
            "| mode | RSS delta / host | tracemalloc / host |", "|---|---:|---:|"]
    labels = {"service": "service: the collection loop (serve, collect)",
              "serverguard": "sweep_all: two bursts of all hosts at once (collect --once)",
              "floor": "floor: bare asyncssh, an open sh per host"}
    for mode in ("service", "serverguard", "floor"):
        m, t = mem.get(mode), mem.get(f"{mode}+trace", {})
        if m is None:
            continue
        out.append(f"| {labels[mode]} | {m.get('rss_per_host_kib')} KiB | "
                   f"{t.get('traced_per_host_kib')} KiB |")
    out += ["", "| target | value | met |", "|---|---:|---|"]
    for v in d["targets"]:
        met = {True: "met", False: "**MISSED**", None: "n/a"}[v["met"]]
        out.append(f"| {v['target']} | {v['shown']} | {met} |")
    prof = d.get("profile")
    if prof:
        out += ["", "Orchestrator CPU per host and sweep (ms):", "", "| part | ms |", "|---|---:|"]
        out += [f"| {k} | {v} |" for k, v in prof["cpu_ms_per_host"].items()]
    return "\n".join(out)


def main() -> int:
    for arg in sys.argv[1:]:
        d = json.loads(Path(arg).read_text())
        print(f"### {d['benchmark']} ({Path(arg).name})\n")
        print(fanout(d) if d["benchmark"] == "fanout" else sweep(d))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
