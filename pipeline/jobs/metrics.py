"""System metrics: CPU and RAM from psutil, per-GPU figures from NVML when a driver exists."""

from __future__ import annotations

import logging
import threading
from typing import Any

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
