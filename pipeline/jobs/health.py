"""Start-up checks of the server side: is there enough GPU memory for the configured backend?"""

from __future__ import annotations

import logging

from pipeline.config import Settings
from pipeline.schemas import SystemMetrics

log = logging.getLogger("adgen.health")


class StartupError(RuntimeError):
    pass


def check_vram(settings: Settings, metrics: SystemMetrics) -> None:
    """The design doc's start-up guard: enough free VRAM for the models, or warn / refuse."""
    s = settings
    if s.backend == "draft" or s.vram_check == "off":
        return
    gpus = metrics.gpu_info
    free_gb = max(((g.vram_total_mb - g.vram_used_mb) / 1024 for g in gpus), default=0.0)
    if free_gb >= s.min_free_vram_gb:
        return
    problem = (f"{free_gb:.1f} GB of VRAM free, {s.min_free_vram_gb:g} GB wanted" if gpus
               else "no NVIDIA GPU found (NVML)")
    if s.vram_check == "refuse":
        raise StartupError(f"refusing to start the {s.backend} backend: {problem} "
                           "(set ADGEN_VRAM_CHECK=warn to start anyway)")
    log.warning("%s backend: %s; models will be offloaded or the draft backend used", s.backend, problem)
