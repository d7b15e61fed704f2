"""System metrics: CPU and RAM from psutil, per-GPU figures from NVML when a driver exists."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import anyio
import anyio.abc
import psutil

from pipeline.schemas import GpuInfo, SystemMetrics

log = logging.getLogger(__name__)
_nvml_lock = threading.Lock()
_nvml_state: dict[str, bool] = {}


def _nvml() -> Any:
    """The pynvml module once initialised, or None without an NVIDIA driver (checked once)."""
    with _nvml_lock:
        if "ok" not in _nvml_state:
            try:
                import pynvml

                pynvml.nvmlInit()
                _nvml_state["ok"] = True
            except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ImportError...
                log.info("no NVIDIA GPU metrics: %s", type(exc).__name__)
                _nvml_state["ok"] = False
        if not _nvml_state["ok"]:
            return None
        import pynvml

        return pynvml


def gpu_info() -> list[GpuInfo]:
    nv = _nvml()
    if nv is None:
        return []
    out: list[GpuInfo] = []
    try:
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            mem = nv.nvmlDeviceGetMemoryInfo(h)
            name = nv.nvmlDeviceGetName(h)
            try:
                util = int(nv.nvmlDeviceGetUtilizationRates(h).gpu)
            except Exception:
                util = None
            out.append(
                GpuInfo(
                    index=i, name=name.decode() if isinstance(name, bytes) else str(name),
                    vram_used_mb=int(mem.used // 2**20), vram_total_mb=int(mem.total // 2**20),
                    vram_percent=round(100.0 * mem.used / max(1, mem.total), 1), utilization=util,
                )
            )
    except Exception as exc:
        log.warning("NVML query failed: %s", exc)
    return out


def system_metrics() -> SystemMetrics:
    vm = psutil.virtual_memory()
    return SystemMetrics(
        cpu_percent=psutil.cpu_percent(interval=None),
        ram_used_gb=round((vm.total - vm.available) / 2**30, 2),
        ram_total_gb=round(vm.total / 2**30, 2),
        ram_percent=vm.percent,
        gpu_info=gpu_info(),
    )


class MetricsCache:
    """CPU/RAM/GPU figures at most about ``max_age_s`` old, without blocking the event loop.

    Collecting them (psutil, NVML) takes from 0.4 ms to several with GPUs, so under polling the
    figures are refreshed in a thread while callers get the previous snapshot; only a snapshot that
    nobody asked for in a while (or the first, or one asked for outside a task group) is collected
    on the spot.
    """

    def __init__(self, max_age_s: float = 1.0, stale_s: float = 5.0) -> None:
        self.max_age_s, self.stale_s = max_age_s, stale_s
        self._snap: tuple[float, SystemMetrics] | None = None
        self._refreshing = False

    def get(self, tg: anyio.abc.TaskGroup | None) -> SystemMetrics:
        """The current snapshot; refreshed in the background in ``tg`` (None: collected inline)."""
        now = time.monotonic()
        snap = self._snap
        if snap is None or now - snap[0] > self.stale_s or tg is None:
            if snap is None or now - snap[0] > self.max_age_s:
                self._snap = snap = (now, system_metrics())
        elif now - snap[0] > self.max_age_s and not self._refreshing:
            self._refreshing = True
            tg.start_soon(self._refresh)
        return snap[1]

    async def _refresh(self) -> None:
        try:
            metrics = await anyio.to_thread.run_sync(system_metrics)
            self._snap = (time.monotonic(), metrics)
        finally:
            self._refreshing = False
