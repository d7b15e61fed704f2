"""The server's health: start-up checks (GPU memory, a browser, fonts) and the health/resources answers."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pipeline.config import Settings
from pipeline.jobs.supervisor import WorkerSupervisor
from pipeline.schemas import HealthResponse, ResourcesResponse, SystemMetrics

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


def _browser_fix() -> str:
    if sys.platform == "darwin":
        return "install Google Chrome or Chromium, then set ADGEN_CHROMIUM to its executable"
    return "apt-get install chromium (or your distribution's package) or set ADGEN_CHROMIUM"


def environment_problems(settings: Settings, font_files: Callable[[], dict[str, tuple[str, ...]]]) -> list[str]:
    """What would make every text-layer render fail, one sentence each with its fix.

    Checked once at start-up so a job fails at once with the fix instead of a browser
    traceback minutes later. ``font_files`` is the font catalog's fontconfig scan.
    """
    problems = []
    configured = settings.chromium_path
    found = configured if os.sep in configured else shutil.which(configured)
    if not found or not Path(found).is_file():
        problems.append(f"Chromium not found at {configured}: {_browser_fix()}")
    elif not os.access(found, os.X_OK):
        problems.append(f"Chromium at {configured} is not executable: chmod +x it or set ADGEN_CHROMIUM")
    if shutil.which("fc-list") is None:
        problems.append("fontconfig is missing (no fc-list), so no font can be found: "
                        + ("brew install fontconfig" if sys.platform == "darwin" else "apt-get install fontconfig"))
    elif not font_files():
        problems.append(f"fontconfig finds no fonts (not even the bundled ones in {settings.fonts_dir}): "
                        "apt-get install fonts-noto-core, or check ADGEN_FONTS_DIR")
    return problems


def health_response(
    worker: WorkerSupervisor, problems: list[str], metrics: SystemMetrics, backend: str, queue_length: int,
    running: str | None,
) -> HealthResponse:
    """ok, warming (models loading; jobs are still taken) or degraded (with the fix for each problem)."""
    alive = worker.alive()
    state = worker.state
    status: Literal["ok", "warming", "degraded"] = "ok" if alive and not problems else "degraded"
    if status == "ok" and state is not None and state.warming:
        status = "warming"
    return HealthResponse(
        status=status, gpu_available=bool(metrics.gpu_info), worker_alive=alive, backend=backend,
        queue_length=queue_length, running_job=running, problems=problems,
    )


def resources_response(
    settings: Settings, worker: WorkerSupervisor, problems: list[str], metrics: SystemMetrics, backend: str,
) -> ResourcesResponse:
    """What get_resources shows: folders, URL policy, metrics and what the worker holds."""
    handle, state = worker.handle, worker.state
    models: dict[str, Any] = {}
    if state is not None:
        models = {"backend": {"default": state.default_backend, "reason": state.backend_reason,
                              **state.backend_info},
                  "renderer_launches": state.renderer_launches, "local_llm": state.local_llm}
    alive = worker.alive()
    inputs = [d.expanduser().resolve() for d in settings.input_dirs]
    return ResourcesResponse(
        system_metrics=metrics, backend=backend, worker_alive=alive,
        worker_pid=handle.pid if handle else None, models=models,
        status="ok" if alive and not problems else "degraded", problems=problems,
        input_dirs=[str(d) for d in inputs if d.is_dir()], output_dir=str(settings.output_dir.expanduser().resolve()),
        urls_accepted=True, private_urls_accepted=settings.allow_private_urls,
    )
