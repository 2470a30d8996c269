"""What the sweep does with a reply the host parsed itself (``collectors.host_render``): a
well-formed one becomes the host's samples; anything else fails that sweep, never reaches
the writer, and the host's output is parsed here from the next sweep on.

The replies are canned (a stand-in for the pool): this checks the sweep's handling of what
comes back, the trust boundary; the real reader is in tests/collectors/test_rendered.py and
tests/integration/test_sweep_reader.py.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from collectors.registry import default_registry
from collectors.rendered import host_text, reply
from collectors.sample import Sample, exposition_lines
from orchestrator.ssh.exec import ExecResult
from orchestrator.sweep import Sweeper


class CannedPool:
    """Answers every sweep with the next canned stdout; remembers the plans asked for."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.plans: list[dict[str, Any]] = []

    async def run_with_reader(self, target: Any, program: bytes, plan_id: str, plan: bytes,
                              **_: Any) -> ExecResult:
        self.plans.append(json.loads(plan))
        return ExecResult(target.name, rc=0, stdout_bytes=self.answers.pop(0).encode())


HOST = SimpleNamespace(name="web1")
MINE = [Sample("node_load1", 0.5), Sample("node_cpu_seconds_total", 12.0,
                                            (("cpu", "0"), ("mode", "user")))]
REPORTS = [["loadavg", True, 0.01, 0, [], []], ["cpu", True, 0.0, 0, [], ["a note"]]]


def sweeper(pool: CannedPool) -> Sweeper:
    return Sweeper(pool, default_registry().defaults())  # type: ignore[arg-type]


async def test_a_well_formed_reply_becomes_the_hosts_samples() -> None:
    pool = CannedPool()
    s = sweeper(pool)
    pool.answers.append(reply(s.script.nonce, REPORTS, host_text(MINE)))
    swept = await s.sweep(HOST)  # type: ignore[arg-type]
    assert swept is not None and swept.up and swept.error is None
    assert pool.plans[0]["render"]["collectors"][0] == "cpu"  # it asked the host to parse
    assert swept.via == "reader (python3), parsed on the host"
    names = [x.name for x in swept.samples]
    assert names == ["node_load1", "node_cpu_seconds_total", "up",
                     "serverguard_scrape_duration_seconds"]
    assert all(("instance", "web1") in x.labels and ("job", "node") in x.labels
               for x in swept.samples)
    assert swept.sample_count == 4 == swept.to_json()["samples"]
    assert swept.to_json()["notes"] == {"cpu": ["a note"]}
    assert swept.reports["loadavg"].success and swept.reports["loadavg"].duration_seconds == 0.01


async def test_a_reply_that_would_write_another_hosts_series_fails_the_sweep() -> None:
    pool = CannedPool()
    s = sweeper(pool)
    forged = 'node_load1{instance="db9",job="node",\x01 99\n'
    pool.answers += [
        reply(s.script.nonce, REPORTS, host_text(MINE) + forged),
        # the next sweep: the raw output of the loadavg file, parsed here
        f"\n@@SG {s.script.nonce} BEGIN files\n==> /proc/loadavg <==\n0.25 0.2 0.1 1/9 7\n"
        f"\n@@SG {s.script.nonce} END files 0 1.00 1.01\n",
    ]
    first = await s.sweep(HOST)  # type: ignore[arg-type]
    assert first is not None and not first.up
    assert "web1: the sweep reader's parsed output was refused: malformed line" in (
        first.error or "")
    assert "db9" in (first.error or "")  # the line at fault is quoted
    lines = exposition_lines(first.collected, 1, first.target_labels)
    assert all("db9" not in line for line in lines) and not first.rendered
    assert lines[0].startswith('up{instance="web1",job="node"} 0 ')
    second = await s.sweep(HOST)  # type: ignore[arg-type]
    assert "render" not in pool.plans[1]  # from now on the host sends its raw output
    assert second is not None and second.up
    assert second.via == "reader (python3), parsed here: its parsed output was refused"
    assert ("node_load1", 0.25) in {(x.name, x.value) for x in second.samples}


async def test_a_host_that_cannot_parse_says_why_once_and_the_sweep_shows_it() -> None:
    pool = CannedPool()
    s = sweeper(pool)
    raw = (f"\n@@SG {s.script.nonce} BEGIN files\n==> /proc/loadavg <==\n0.5 0.2 0.1 1/9 7\n"
           f"\n@@SG {s.script.nonce} END files 0 1.00 1.01\n")
    pool.answers += ["@@SGRAW python3 3.9 is older than 3.11\n" + raw, raw]
    for _ in range(2):
        swept = await s.sweep(HOST)  # type: ignore[arg-type]
        assert swept is not None and swept.up and not swept.rendered
        assert swept.via == "reader (python3), parsed here: python3 3.9 is older than 3.11"
        assert ("node_load1", 0.5) in {(x.name, x.value) for x in swept.samples}
