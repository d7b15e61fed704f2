"""One typed configuration object, built once from the environment and passed in.

Nothing in the project reads ``os.environ`` for settings except ``Settings.from_env``;
the worker process receives the same object (it is picklable), so both sides agree.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_FONTS_DIR = REPO_ROOT / "fonts"


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "adgen"


def _find_chromium() -> str:
    # The real binary avoids the Debian wrapper's shell warning; the wrapper works too.
    for candidate in ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(candidate).exists():
            return candidate
    return "/usr/bin/chromium"


_ENV_FIELDS = {
    "ADGEN_DATA_DIR": "data_dir", "ADGEN_BACKEND": "backend", "ADGEN_QUEUE_MAX": "queue_max",
    "ADGEN_CHROMIUM": "chromium_path", "ADGEN_RENDER_TIMEOUT": "render_timeout_s", "ADGEN_STOP_GRACE": "stop_grace_s",
    "ADGEN_DEVICE": "device", "ADGEN_FLUX_MODEL": "flux_model", "ADGEN_FLUX_PROFILE": "flux_profile",
    "ADGEN_FLUX_STEPS": "flux_steps", "ADGEN_TRUE_CFG_SCALE": "true_cfg_scale", "ADGEN_SEG_MODEL": "seg_model",
    "ADGEN_SEG_INPUT_SIZE": "seg_input_size", "ADGEN_VLM_MODEL": "vlm_model", "ADGEN_VLM_MAX_PIXELS": "vlm_max_pixels",
    "ADGEN_VLM_MAX_NEW_TOKENS": "vlm_max_new_tokens", "ADGEN_VRAM_BUDGET_GB": "vram_budget_gb",
    "ADGEN_VRAM_RESERVE_GB": "vram_reserve_gb", "ADGEN_ANTHROPIC_MODEL": "anthropic_model",
    "ADGEN_LLM_TIMEOUT": "llm_timeout_s", "ADGEN_LOCAL_LLM": "local_llm",
    "ADGEN_LOCAL_LLM_MAX_NEW_TOKENS": "local_llm_max_new_tokens", "ADGEN_TOKEN": "token", "ADGEN_KEEP_JOBS": "keep_jobs",
    "ADGEN_KEEP_DAYS": "keep_days", "ADGEN_VRAM_CHECK": "vram_check", "ADGEN_MIN_FREE_VRAM_GB": "min_free_vram_gb",
}
_ENV_LISTS = {
    "ADGEN_INPUT_DIRS": ("input_dirs", os.pathsep),
    "ADGEN_ALLOWED_HOSTS": ("allowed_hosts", ","),
    "ADGEN_INJECT_FAULTS": ("inject_faults", ","),
}


class Settings(BaseModel):
    """Server-wide settings. Per-job choices live in ``GenerateRequest`` instead."""

    data_dir: Path = Field(default_factory=_default_data_dir, description="Job folders and statistics.")
    input_dirs: list[Path] = Field(
        default_factory=list,
        description="Folders from which *_path request fields may read images; empty = paths refused.",
    )
    backend: Literal["draft", "auto", "diffusion"] = "draft"
    queue_max: int = Field(16, ge=1, le=1000, description="Jobs accepted at once (running + waiting).")
    chromium_path: str = Field(default_factory=_find_chromium)
    fonts_dir: Path = BUNDLED_FONTS_DIR
    render_timeout_s: float = Field(15.0, gt=0)
    stop_grace_s: float = Field(5.0, gt=0, description="Cooperative stop deadline before the worker is killed.")
    max_image_bytes: int = Field(25 * 1024 * 1024, description="Largest decoded input image file.")
    max_image_pixels: int = Field(40_000_000, description="Largest input image in pixels (decompression bombs).")
    anthropic_model: str = "claude-sonnet-5"
    llm_timeout_s: float = Field(90.0, gt=0, description="Longest wait for an LLM designer's answer.")
    # ---- model stages (diffusion backend) ----
    device: Literal["auto", "cuda", "cpu"] = "auto"
    flux_model: str = Field("black-forest-labs/FLUX.1-dev", description="Hugging Face id or local folder.")
    flux_profile: Literal["auto", "dev", "schnell"] = Field("auto", description="Step/guidance defaults.")
    flux_steps: int | None = Field(None, ge=1, le=200, description="Override the profile's step count.")
    true_cfg_scale: float = Field(
        1.0, ge=1.0, le=20.0, description="> 1 enables FLUX true CFG, which is what makes negative prompts work."
    )
    seg_model: str = "ZhengPeng7/BiRefNet"
    seg_input_size: int = Field(1024, ge=64, le=2048)
    vlm_model: str = "Qwen/Qwen2-VL-2B-Instruct"
    vlm_max_pixels: int = Field(512 * 28 * 28, ge=4 * 28 * 28)
    vlm_max_new_tokens: int = Field(96, ge=1, le=1024)
    vram_budget_gb: float | None = Field(None, ge=0, description="Model cache budget; None = free VRAM minus reserve.")
    vram_reserve_gb: float = Field(2.0, ge=0)
    offline: bool = Field(False, description="Never reach the hub (HF_HUB_OFFLINE=1 also turns this on).")
    inject_faults: list[str] = Field(
        default_factory=list,
        description="Testing only: 'oom@<stage>' raises CUDA OOM, 'poison@<stage>' a fatal CUDA error, "
        "'chromium@render' kills the browser once in the middle of a render.",
    )
    local_llm: str | None = Field(
        None, description="Offline designer in the worker: 'smollm2', a .gguf file or a model folder."
    )
    local_llm_max_new_tokens: int = Field(384, ge=16, le=4096)
    token: str | None = Field(None, description="Bearer token for the HTTP transports, REST and dashboard.")
    allowed_hosts: list[str] = Field(default_factory=list, description="Extra Host headers (host:port or host:*).")
    keep_jobs: int = Field(200, ge=1, description="Finished jobs kept on disk (oldest removed first).")
    keep_days: float = Field(30.0, gt=0, description="Finished jobs older than this are removed.")
    vram_check: Literal["warn", "refuse", "off"] = Field(
        "warn", description="At start-up with a GPU backend: warn or refuse when free VRAM is under min_free_vram_gb."
    )
    min_free_vram_gb: float = Field(22.0, ge=0, description="The design doc's L4 figure.")

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Defaults < config file (ADGEN_CONFIG, TOML or JSON) < environment < explicit overrides."""
        env = os.environ
        values: dict[str, object] = {}
        if path := env.get("ADGEN_CONFIG"):
            text = Path(path).read_text()
            values.update(tomllib.loads(text) if path.endswith(".toml") else json.loads(text))
        # Strings are converted and checked by the fields' own types, so a bad value names its variable.
        for var, field in _ENV_FIELDS.items():
            if v := env.get(var):
                values[field] = v
        for var, (field, sep) in _ENV_LISTS.items():
            if v := env.get(var):
                values[field] = [item for item in v.split(sep) if item]
        if env.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") or env.get("ADGEN_OFFLINE") == "1":
            values["offline"] = True
        values.update(overrides)
        return cls(**values)

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def stats_path(self) -> Path:
        return self.data_dir / "stage_stats.json"
