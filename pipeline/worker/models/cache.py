"""The worker's model cache: keep models resident between jobs while they fit a memory budget.

Least recently used models are evicted to make room. A model larger than the whole budget
is loaded, used for its stage and dropped again: the design doc's load-use-unload policy
for small cards, which this generalises.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)


def flush_gpu() -> None:
    """Return cached allocator blocks to the driver and collect Python garbage (design doc 9.2)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.synchronize()


def module_bytes(obj: Any) -> int:
    """Bytes of parameters and buffers of a module, a pipeline's modules, or a tuple of them."""
    seen: set[int] = set()
    total = 0

    def visit(m: Any) -> None:
        nonlocal total
        if isinstance(m, torch.nn.Module):
            for t in [*m.parameters(), *m.buffers()]:
                if id(t) not in seen:
                    seen.add(id(t))
                    total += t.numel() * t.element_size()
        elif isinstance(m, (tuple, list)):
            for x in m:
                visit(x)
        elif hasattr(m, "components"):  # a diffusers pipeline
            for x in m.components.values():
                visit(x)

    visit(obj)
    return total


@dataclass
class Entry:
    key: str
    value: Any
    nbytes: int
    loaded_at: float
    resident: bool


class ModelCache:
    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self.loads = 0
        self.evictions = 0
        self.load_seconds: dict[str, float] = {}

    @property
    def used(self) -> int:
        return sum(e.nbytes for e in self._entries.values())

    def get(self, key: str, load: Callable[[], Any]) -> Any:
        """The cached model, or a fresh load (evicting LRU models to fit the budget)."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return entry.value
        started = time.monotonic()
        value = load()
        nbytes = module_bytes(value)
        self.loads += 1
        self.load_seconds[key] = round(time.monotonic() - started, 3)
        resident = nbytes <= self.budget
        if resident:
            while self._entries and self.used + nbytes > self.budget:
                self.evict(next(iter(self._entries)))
        else:
            log.info("%s (%.1f MB) exceeds the %.1f MB budget: load-use-unload", key, nbytes / 2**20, self.budget / 2**20)
            self.evict_all()  # it needs the whole budget to itself
        self._entries[key] = Entry(key, value, nbytes, time.time(), resident)
        return value

    def release(self, key: str) -> None:
        """Called after a stage: a model that does not fit the budget is unloaded now."""
        entry = self._entries.get(key)
        if entry is not None and not entry.resident:
            self.evict(key)

    def evict(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.evictions += 1
            log.info("unloading %s (%.1f MB)", key, entry.nbytes / 2**20)
            del entry
            flush_gpu()

    def evict_all(self, keep: str | None = None) -> None:
        for key in [k for k in self._entries if k != keep]:
            self.evict(key)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def info(self) -> dict[str, Any]:
        return {
            "budget_mb": round(self.budget / 2**20, 1),
            "used_mb": round(self.used / 2**20, 1),
            "loads": self.loads,
            "evictions": self.evictions,
            "load_seconds": dict(self.load_seconds),
            "resident": [
                {"key": e.key, "mb": round(e.nbytes / 2**20, 2), "resident": e.resident} for e in self._entries.values()
            ],
        }
