"""Start-up checks of the server side: enough GPU memory, a browser and fonts for the text layer."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

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
