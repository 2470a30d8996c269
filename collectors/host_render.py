"""Parsing on the host: the sweep reader runs the collectors' parsers itself.

Parsing and formatting some 300 samples per host and sweep is most of the orchestrator's CPU
in a sweep (benchmarks/README.md). The sweep reader is a python3 process kept on the host
anyway, so when the host's python3 is recent enough it can run the same parsers on its own
output and send back rendered text (``collectors.rendered``); the orchestrator then only
checks that text and adds ``job``, ``instance`` and the timestamp.

Nothing is installed: ``collectors.host_code.render_spec`` puts the parsers' source (this
package, and the exception classes they raise) into the sweep plan, compressed (about 45 KB,
once per plan and connection); the reader loads it into memory from there
(``host_reader.load_renderer``: about 30 ms of the host's CPU once per connection, and
about 4 MB of its memory) and hands each sweep's raw output to ``HostRenderer.reply``. This
module is what runs there, so it imports only what the parsers need. The reader sends its
raw output instead, and the orchestrator parses it as it always did, whenever:

- the host's python3 is older than ``collectors.host_code.MIN_PYTHON`` (the parsers are
  written for the orchestrator's Python), or the code does not load there;
- a collector is not a built-in one, or the plan's output is unbounded (textfile);
- a label value holds the mark character (``collectors.rendered``), or rendering raised.

The CPU counter guard (``collectors.cpu.CpuCounterGuard``) then lives in the reader: like
node_exporter's, it starts afresh when the process does (a new connection).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from collectors.cpu import CpuCounterGuard
from collectors.registry import default_registry
from collectors.rendered import RenderedError, host_text, reply
from collectors.script import ScriptPlan, run_parsers

_PROCESS_GUARD = CpuCounterGuard()  # the reader's: one per process, as node_exporter's


class HostRenderer:
    """Runs on the host (in the sweep reader): raw output in, rendered reply out."""

    def __init__(
        self,
        names: Sequence[str],
        options: Mapping[str, Mapping[str, Any]] | None,
        nonce: str,
        guard: CpuCounterGuard | None = None,
    ) -> None:
        """``guard``: the reader's one guard (the process's, by default), kept across
        plans."""
        registry = default_registry()
        self.guard = guard if guard is not None else _PROCESS_GUARD
        self.collectors = [registry.get(n) for n in names]
        self.options = options or None
        self.plan = ScriptPlan(self.collectors, self.options)
        self.nonce = nonce

    def reply(self, raw: str) -> str | None:
        """The rendered reply for ``raw``; ``None``: send ``raw`` as it is."""
        parsed = run_parsers(raw, self.collectors, self.options, nonce=self.nonce,
                             cpu_guard=self.guard, plan=self.plan)
        try:
            # well-formed by construction (the orchestrator checks it all the same)
            text = host_text(parsed.samples + parsed.collector_samples)
        except RenderedError:
            return None
        reports = [[r.name, r.success, r.duration_seconds, r.rc, list(r.problems),
                    list(r.notes)] for r in parsed.reports.values()]
        return reply(self.nonce, reports, text)
