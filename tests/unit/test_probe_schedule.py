"""The probe loop's schedule: a slow probe delays only itself (real probes, on loopback)."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from orchestrator.probes import parse_probes
from orchestrator.probes.schedule import ProbeLoop, ProbeRound


async def test_a_probe_that_hangs_to_its_timeout_does_not_hold_back_the_others() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts, reads the request, never answers
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    specs = parse_probes([
        {"name": "slow", "type": "http", "target": f"http://127.0.0.1:{port}/", "timeout": "3s"},
        {"name": "fast", "type": "tcp", "target": f"127.0.0.1:{port}"},
    ], "probes.yml")
    seen: collections.Counter[str] = collections.Counter()

    async def sink(result: ProbeRound) -> None:
        for sample in result.samples:
            if sample.name == "probe_success":
                seen[dict(sample.labels)["probe"]] += 1

    pool: Any = None  # both probes run from the orchestrator: no SSH
    loop = ProbeLoop(specs, pool, None, sink, interval=0.2)
    loop.start()
    try:
        await asyncio.sleep(2.0)
    finally:
        await loop.stop()
        server.close()
        await server.wait_closed()
    assert seen["slow"] == 0  # still waiting for its answer (3 s timeout)
    assert seen["fast"] >= 3, seen  # about every 0.2 s meanwhile, not once per slow round
