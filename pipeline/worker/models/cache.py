"""The worker's model cache: keep models loaded between jobs as the memory plan says.

Bytes are counted where they are: tensors on an accelerator are VRAM, tensors in host memory
(a CPU run, or an offloaded pipeline's resting weights) are host RAM. The budget applies to
the compute device's memory: VRAM on CUDA, host RAM on a CPU. A model the plan does not keep
resident (or that does not fit the budget) is loaded for its stage and dropped afterwards.
"""

from __future__ import annotations

import gc
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)


def flush_gpu() -> None:
    """Return cached allocator blocks to the driver and collect Python garbage (design doc 9.2)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.synchronize()


def named_modules(value: Any) -> dict[str, nn.Module]:
    """The torch modules a cached value holds, by component name."""
    if hasattr(value, "named_modules") and not isinstance(value, nn.Module):
        return dict(value.named_modules())
    if isinstance(value, nn.Module):
        return {type(value).__name__: value}
    if hasattr(value, "components"):  # a diffusers pipeline
        return {k: v for k, v in value.components.items() if isinstance(v, nn.Module)}
    if isinstance(value, (tuple, list)):
        out: dict[str, nn.Module] = {}
        for item in value:
            out.update(named_modules(item))
        return out
    return {}


def _tensors(module: nn.Module) -> Iterator[torch.Tensor]:
    yield from module.parameters()
    yield from module.buffers()


def describe(name: str, module: nn.Module) -> dict[str, Any]:
    """One component: class, dtype and device (of most of its bytes), bytes in VRAM and in host RAM."""
    by_dtype: Counter[str] = Counter()
    by_device: Counter[str] = Counter()
    seen: set[int] = set()
    for t in _tensors(module):
        if id(t) in seen or t.device.type == "meta":
            continue
        seen.add(id(t))
        n = t.numel() * t.element_size()
        if t.is_floating_point():
            by_dtype[str(t.dtype).removeprefix("torch.")] += n
        by_device[t.device.type] += n
    vram = sum(v for k, v in by_device.items() if k != "cpu")
    host = by_device.get("cpu", 0)
    return {
        "name": name, "class": type(module).__name__,
        "dtype": by_dtype.most_common(1)[0][0] if by_dtype else None,
        "dtypes": sorted(by_dtype), "device": by_device.most_common(1)[0][0] if by_device else None,
        "bytes": vram + host, "vram_bytes": vram, "host_bytes": host,
    }


def components(value: Any) -> list[dict[str, Any]]:
    return [describe(name, m) for name, m in named_modules(value).items()]


@dataclass
class Entry:
    key: str
    value: Any
    footprint: int  # bytes that count against the device budget while it is loaded
    loaded_at: float
    resident: bool

    def memory(self) -> tuple[int, int]:
        """(VRAM bytes, host bytes) now: offload hooks move weights, so this is measured, not remembered."""
        parts = components(self.value)
        return sum(c["vram_bytes"] for c in parts), sum(c["host_bytes"] for c in parts)


class ModelCache:
    def __init__(self, budget_bytes: int, device: str = "cpu") -> None:
        self.budget = budget_bytes
        self.device = device
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self.loads = 0
        self.evictions = 0
        self.load_seconds: dict[str, float] = {}

    def footprint(self, value: Any) -> int:
        """Bytes of ``value`` on the compute device; an offloaded model counts its largest component,
        which is what it holds on the device while it runs."""
        parts = components(value)
        if getattr(value, "offload", None):
            return max((c["bytes"] for c in parts), default=0)
        key = "host_bytes" if self.device == "cpu" else "vram_bytes"
        return sum(c[key] for c in parts)

    @property
    def used(self) -> int:
        return sum(e.footprint for e in self._entries.values())

    def get(self, key: str, load: Callable[[], Any], keep: bool = True) -> Any:
        """The cached model, or a fresh load. ``keep`` = the memory plan keeps it between jobs; a model
        kept or not, that does not fit next to the others, evicts the least recently used first."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            return entry.value
        started = time.monotonic()
        value = load()
        footprint = self.footprint(value)
        self.loads += 1
        self.load_seconds[key] = round(time.monotonic() - started, 3)
        resident = keep and footprint <= self.budget
        if footprint > self.budget:
            log.info("%s (%.1f MB) exceeds the %.1f MB budget: load-use-unload", key, footprint / 2**20,
                     self.budget / 2**20)
            self.evict_all()  # it needs the whole budget to itself
        else:
            while self._entries and self.used + footprint > self.budget:
                self.evict(next(iter(self._entries)))
        self._entries[key] = Entry(key, value, footprint, time.time(), resident)
        return value

    def release(self, key: str) -> None:
        """Called after a stage: a model that is not kept resident is unloaded now."""
        entry = self._entries.get(key)
        if entry is not None and not entry.resident:
            self.evict(key)

    def evict(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.evictions += 1
            log.info("unloading %s (%.1f MB)", key, entry.footprint / 2**20)
            del entry
            flush_gpu()

    def evict_all(self, keep: str | None = None) -> None:
        for key in [k for k in self._entries if k != keep]:
            self.evict(key)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def value(self, key: str) -> Any:
        return self._entries[key].value

    def components(self) -> list[dict[str, Any]]:
        """Every loaded component with its model key, class, dtype, device and bytes."""
        return [{"model": e.key, **c} for e in self._entries.values() for c in components(e.value)]

    def info(self) -> dict[str, Any]:
        mb = lambda b: round(b / 2**20, 2)  # noqa: E731
        parts = self.components()
        vram = sum(c["vram_bytes"] for c in parts)
        host = sum(c["host_bytes"] for c in parts)
        return {
            "device": self.device,
            "budget_mb": mb(self.budget),
            "used_mb": mb(self.used),  # against the budget
            "vram_mb": mb(vram), "host_mb": mb(host),
            "loads": self.loads,
            "evictions": self.evictions,
            "load_seconds": dict(self.load_seconds),
            "resident": [{"key": e.key, "mb": mb(e.footprint), "resident": e.resident} for e in self._entries.values()],
        }
