"""What every timed window of the benchmarks shares."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """The measuring process's garbage collector off for a timed window, as ``timeit`` does, then a collection.

    The clients that time a server keep every reply they receive; a full collection of their heap took up to
    ~290 ms of wall time on these 2 cores, and a reply that arrived meanwhile was stamped that much late: the
    client's pause counted as the server's latency. The servers themselves collect as they always do."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.collect()
