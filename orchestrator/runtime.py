"""Garbage-collector settings for the processes that sweep hosts (``collect``, ``serve``).

A sweep allocates about a thousand short-lived objects per host (samples, label tuples,
parser intermediates). Reference counting frees nearly all of them; the cyclic collector
still ran every 700 allocations, about once per host, and walked every young object: 1.6 of
the 4.1 ms of orchestrator CPU per host in the sweep benchmark (``gc.callbacks`` timing).
:func:`tune_gc` freezes what is alive at start-up (imported modules, inventory, scripts) out
of full collections and collects the young generation every ``GEN0_THRESHOLD`` allocations.
Cyclic garbage waits a little longer (at most that many objects); nothing else changes.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 50_000


def tune_gc() -> None:
    """Idempotent: freeze the start-up heap once, raise the gen-0 threshold if lower."""
    if gc.get_freeze_count() == 0:
        gc.collect()
        gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    if 0 < gen0 < GEN0_THRESHOLD:
        gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
