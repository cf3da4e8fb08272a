"""How often the gateway's processes run CPython's cyclic garbage collector (issue 7).

Why: the collector's first generation is collected every 700 net allocations of container objects
(CPython's default), and each collection walks every object it holds; the older generations follow every
10 of the one before. A night allocates millions of short-lived containers (a dict and a tuple per
line read, per row stored, per event checked), and a bulk submission thousands per request, so at the
default the collector ran ~370 times during a 20,000-event night in the run's process, and ~700 times
in a process taking 20,000 events through the API. Measured by timing each collection (``gc.callbacks``):
0.19–0.27 s of the run's CPU during a night (eight nights), 0.65 s of the API's ~2.5 s for 20,000 new
events. With the first generation at `FIRST_GENERATION` objects: 0.035–0.05 s and 0.21 s, and the API's
CPU for those events 2.56 → 2.10 s (mean of six alternated pairs, lower in all six). A young collection
walks more objects but runs ~15 times less often, and fewer short-lived objects are still alive when it
runs, so fewer are promoted and walked again by the older generations' collections.

What it costs: garbage in reference cycles waits longer to be freed, at most `FIRST_GENERATION`
objects of it in the young generation (about a megabyte at worst). The gateway's large things (lxml
trees, the rows of a batch, response bodies) hold no cycles and are freed by reference counting the
moment they are dropped: the emulator's peak for 200,000 events was 283–286 MB with this setting and
288–294 MB without (`bench/night.py`, two nights each), the run's 247–250 MB either way.

Every process of the gateway calls `tune_gc` first thing: the ``gateway`` command (`gateway.cli`, so
``run``, ``demo``, ``serve`` and the emulator's ``serve``), each worker of ``gateway serve --workers N``
(`gateway.api.worker`) and the export reader's process (`gateway.pipeline.reading`). The benchmarks do
as the command does.
"""

from __future__ import annotations

import gc

#: Net allocations of container objects between two young collections (CPython's default: 700).
#: 5,000 to 50,000 measured alike on a night (`gc.callbacks`); 10,000 keeps the young generation small.
FIRST_GENERATION = 10_000


def tune_gc() -> None:
    """Set this process's collection thresholds: the first generation at `FIRST_GENERATION`, the
    older two at CPython's defaults (each collected every 10 collections of the one before)."""
    gc.set_threshold(FIRST_GENERATION, 10, 10)
