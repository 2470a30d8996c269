"""Metrics pipeline: the VictoriaMetrics writer, its disk spool, the embedded VictoriaMetrics.

Example::

    from orchestrator.metrics import Spool, VMWriter

    with Spool(state_dir / "spool") as spool:
        async with VMWriter("http://127.0.0.1:8428", spool=spool, registry=registry) as writer:
            await writer.write_at(samples, timestamp_ms)
"""

from orchestrator.metrics.spool import Spool, SpoolRecord, SpoolStats
from orchestrator.metrics.vm_process import EmbeddedVictoriaMetrics
from orchestrator.metrics.writer import VMWriter

__all__ = ["EmbeddedVictoriaMetrics", "Spool", "SpoolRecord", "SpoolStats", "VMWriter"]
