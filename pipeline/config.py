"""One typed configuration object (pydantic-settings), built once and passed in.

Nothing in the project reads the environment for settings except ``Settings``; the worker
process receives the same object (it is picklable), so both sides agree.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BeforeValidator, Field
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


def _bundled_fonts_dir() -> Path:
    """The shipped fonts: package data ``adgen_fonts`` (the repository's fonts/ folder, mapped in
    pyproject.toml), so a wheel install finds them in site-packages, not beside this file."""
    from importlib.resources import files

    try:
        root = files("adgen_fonts")
    except ModuleNotFoundError:
        # A source checkout whose editable install predates the mapping (pip install -e . fixes it).
        return REPO_ROOT / "fonts"
    if not isinstance(root, Path):  # fontconfig and Chromium need a real folder, not a zip member
        raise TypeError("adgen_fonts is not a folder on disk: install adgen unzipped (pip does)")
    return root


BUNDLED_FONTS_DIR = _bundled_fonts_dir()


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "adgen"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "adgen"


def _default_output_dir() -> Path:
    """The user's pictures folder (XDG_PICTURES_DIR, else ~/Pictures), subfolder adgen."""
    pictures = os.environ.get("XDG_PICTURES_DIR")
    return (Path(pictures).expanduser() if pictures else Path.home() / "Pictures") / "adgen"


def _find_chromium() -> str:
    # The real binary avoids the Debian wrapper's shell warning; the wrapper works too.
    for candidate in ("/usr/lib/chromium/chromium", "/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if Path(candidate).exists():
            return candidate
    return "/usr/bin/chromium"


def _split(sep: str) -> Any:
    """Environment lists are separated strings (ADGEN_INPUT_DIRS=/a:/b), not JSON."""

    def split(value: Any) -> Any:
        return [item for item in value.split(sep) if item] if isinstance(value, str) else value

    return BeforeValidator(split)


class _ConfigFile(PydanticBaseSettingsSource):
    """The optional file named by ADGEN_CONFIG (TOML or JSON; keys are the field names)."""

    def __init__(self, settings_cls: type[BaseSettings], path: str | None) -> None:
        super().__init__(settings_cls)
        self.path = path

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole file

    def __call__(self) -> dict[str, Any]:
        if not self.path:
            return {}
        text = Path(self.path).read_text()
        data = tomllib.loads(text) if self.path.endswith(".toml") else json.loads(text)
        return dict(data)


class Settings(BaseSettings):
    """Server-wide settings. Per-job choices live in ``GenerateRequest`` instead.

    Built once (``Settings.from_env()``) from defaults < the ADGEN_CONFIG file < environment
    (``ADGEN_<FIELD>``, plus the few names below) < explicit arguments, then passed in.
    """

    model_config = SettingsConfigDict(env_prefix="ADGEN_", populate_by_name=True, extra="ignore")


    data_dir: Path = Field(default_factory=_default_data_dir, description="Job folders and statistics.")
    input_dirs: Annotated[list[Path], NoDecode, _split(os.pathsep)] = Field(
        default_factory=list,
        description="Folders from which *_path request fields may read images; empty = paths refused.",
    )
    cache_dir: Path = Field(default_factory=_default_cache_dir,
                            description="Work the worker would otherwise redo at every start (font copies, "
                            "the local designer converted from GGUF).")
    output_dir: Path = Field(default_factory=_default_output_dir,
                             description="Finished ads, under readable names (date, copy, job id).")
    allow_private_urls: bool = Field(False, description="Let product_image_url reach loopback and private "
                                     "addresses (intranets, tests); link-local and metadata stay refused.")
    fetch_timeout_s: float = Field(15.0, gt=0, le=120, description="Whole download of an image URL.")
    backend: Literal["draft", "auto", "diffusion"] = "draft"
    queue_max: int = Field(16, ge=1, le=1000, description="Jobs accepted at once (running + waiting).")
    chromium_path: str = Field(default_factory=_find_chromium, validation_alias="ADGEN_CHROMIUM")
    fonts_dir: Path = BUNDLED_FONTS_DIR
    render_timeout_s: float = Field(15.0, gt=0, validation_alias="ADGEN_RENDER_TIMEOUT")
    stop_grace_s: float = Field(5.0, gt=0, validation_alias="ADGEN_STOP_GRACE",
                                description="Cooperative stop deadline before the worker is killed.")
    max_image_bytes: int = Field(25 * 1024 * 1024, description="Largest decoded input image file.")
    max_image_pixels: int = Field(40_000_000, description="Largest input image in pixels (decompression bombs).")
    anthropic_model: str = "claude-sonnet-5"
    anthropic_api_key: str | None = Field(None, validation_alias="ANTHROPIC_API_KEY", repr=False)
    anthropic_base_url: str | None = Field(None, validation_alias="ANTHROPIC_BASE_URL")
    llm_timeout_s: float = Field(90.0, gt=0, validation_alias="ADGEN_LLM_TIMEOUT",
                                 description="Longest wait for an LLM designer's answer.")
    # ---- model stages (diffusion backend) ----
    device: Literal["auto", "cuda", "cpu"] = "auto"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto",
        description="Compute dtype of every model and derived pipeline: auto = bfloat16 on CUDA, float32 on CPU.",
    )
    warmup: bool | None = Field(
        None, description="Load the configured models right after the worker starts; None = on when CUDA is present."
    )
    profile: Literal["auto", "fast", "quality", "classic"] = Field(
        "auto", description="Model profile (pipeline/profiles.py, docs/models.md): fast = FLUX.2 [klein] 4B one pass, "
        "commercial licences only; quality = FLUX.1 Fill [dev] one pass (non-commercial); classic = FLUX.1 "
        "text-to-image + composite + img2img. auto = classic when only flux_model is set, else fast.",
    )
    scene_model: str | None = Field(None, description="One-pass scene model (id or folder); None = the profile's.")
    scene_revision: str | None = Field(None, description="Hub branch, tag or commit of scene_model.")
    scene_pipeline: Literal["Flux2KleinInpaintPipeline", "FluxFillPipeline", "FluxKontextInpaintPipeline"] | None = (
        Field(None, description="One-pass pipeline class; None = the profile's. FluxKontextInpaintPipeline (default "
              "model FLUX.1-Kontext-dev, non-commercial) is quality's alternative to FLUX.1 Fill."))
    # Revisions: None = the commit a public source pins for the default model (docs/models.md), else "main".
    flux_model: str = Field("black-forest-labs/FLUX.1-dev", description="classic profile: FLUX.1 id or folder.")
    flux_revision: str | None = Field(None, description="Hub branch, tag or commit of flux_model.")
    flux_profile: Literal["auto", "dev", "schnell"] = Field("auto", description="Step/guidance defaults.")
    flux_steps: int | None = Field(None, ge=1, le=200, description="Override the generator's step count (any profile).")
    true_cfg_scale: float = Field(
        1.0, ge=1.0, le=20.0, description="> 1 enables FLUX true CFG, which is what makes negative prompts work."
    )
    segmenter: Literal["sam-hq", "birefnet-onnx"] = Field(
        "sam-hq", description="sam-hq: SAM-HQ box-prompted mask + ViTMatte edges (transformers' own classes); "
        "birefnet-onnx: BiRefNet as an ONNX graph run by onnxruntime (opt-in, extra 'birefnet')."
    )
    seg_model: str | None = Field(None, description="SAM-HQ checkpoint (id or folder); None = the profile's.")
    seg_revision: str | None = None
    matting_model: str | None = Field(
        None, description="ViTMatte checkpoint for soft edges; empty = SAM-HQ's edges; None = the profile's."
    )
    matting_revision: str | None = None
    matting_max_side: int = Field(1024, ge=64, le=4096, description="Longest side the matting model sees.")
    birefnet_onnx: str = Field("onnx-community/BiRefNet-ONNX", description="Hub id or folder holding the ONNX graph.")
    birefnet_onnx_file: str | None = Field(
        None, description="Graph inside it; None = onnx/model_fp16.onnx on CUDA, onnx/model.onnx on CPU."
    )
    birefnet_onnx_revision: str | None = None
    seg_input_size: int = Field(1024, ge=64, le=2048, description="BiRefNet's square input side.")
    vlm_model: str | None = Field(None, description="Analysis VLM (id or folder); None = the profile's.")
    vlm_revision: str | None = None
    vlm_max_pixels: int = Field(512 * 28 * 28, ge=4 * 28 * 28)
    vlm_max_new_tokens: int = Field(
        384, ge=1, le=2048, description="One JSON answer with four sentences-long fields needs ~200-300 tokens."
    )
    vram_budget_gb: float | None = Field(None, ge=0, description="Model cache budget; None = free VRAM minus reserve.")
    vram_reserve_gb: float = Field(2.0, ge=0)
    offline: bool = Field(False, validation_alias=AliasChoices("ADGEN_OFFLINE", "HF_HUB_OFFLINE"),
                          description="Never reach the hub (HF_HUB_OFFLINE=1 turns this on too).")
    worker_hooks: str | None = Field(
        None, description="Testing only: 'package.module:argument' whose make_hooks(argument) gives the worker's "
        "fault-injection hooks (see pipeline/worker/hooks.py).",
    )
    local_llm: str | None = Field(
        None, description="Offline designer in the worker: 'smollm2', a .gguf file or a model folder."
    )
    local_llm_max_new_tokens: int = Field(384, ge=16, le=4096)
    worker_nice: int = Field(10, ge=0, le=19, description="How much lower the worker's CPU priority is than the "
                             "server's (Unix nice), its browser's included: its batch work yields the cores to "
                             "accepts, polls and progress while both want them, and runs at full speed otherwise; "
                             "0 = the same priority.")
    log_level: str = Field("INFO", description="Server log level (logs go to stderr).")
    token: str | None = Field(None, repr=False, description="Bearer token for the HTTP transports, REST and dashboard.")
    allowed_hosts: Annotated[list[str], NoDecode, _split(",")] = Field(
        default_factory=list, description="Extra Host headers (host:port or host:*).")
    keep_jobs: int = Field(200, ge=1, description="Finished jobs kept on disk (oldest removed first).")
    keep_days: float = Field(30.0, gt=0, description="Finished jobs older than this are removed.")
    vram_check: Literal["warn", "refuse", "off"] = Field(
        "warn", description="At start-up with a GPU backend: warn or refuse when free VRAM is under min_free_vram_gb."
    )
    min_free_vram_gb: float = Field(22.0, ge=0, description="The design doc's L4 figure.")
    # ---- distributed mode (pipeline/distributed, docs/deploy.md; extra 'distributed') ----
    queue: str | None = Field(None, description="Unset = local (one worker in this process's care); "
                              "redis://host:port/db = jobs go to adgen-worker hosts through Dramatiq on Redis.")
    s3_endpoint: str | None = Field(None, description="S3-compatible endpoint URL for job files; None = AWS's.")
    s3_bucket: str = Field("adgen", description="Bucket holding every job's inputs and results.")
    s3_prefix: str = Field("", description="Key prefix inside the bucket (several deployments, one bucket).")
    s3_region: str = Field("us-east-1")
    s3_access_key: str | None = Field(None, repr=False)
    s3_secret_key: str | None = Field(None, repr=False)
    s3_presign_s: float = Field(0.0, ge=0, le=7 * 86400, description="> 0: a finished job's download_url is a "
                                "presigned bucket URL valid this long (clients fetch from the bucket); 0 = the API's.")
    s3_public_endpoint: str | None = Field(None, description="The bucket's endpoint as clients reach it, for "
                                           "presigned URLs; None = s3_endpoint.")
    host_heartbeat_s: float = Field(10.0, gt=0, le=300, description="How often a worker host says it is alive; "
                                    "three missed beats and its running job counts as lost.")
    job_time_limit_s: float = Field(3600.0, gt=0, description="Longest a job may run on a worker host.")
    requeue_timeout_s: float = Field(600.0, gt=0, description="A lost host's job that no other host takes "
                                     "within this long fails (nothing stays running forever).")
    max_lost_hosts: int = Field(2, ge=1, le=10, description="A job whose hosts died this often fails.")
    worker_name: str | None = Field(None, description="This worker host's name in statuses; None = hostname.")

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _ConfigFile(settings_cls, os.environ.get("ADGEN_CONFIG"))

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Defaults < config file (ADGEN_CONFIG, TOML or JSON) < environment < explicit overrides."""
        return cls(**overrides)

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def stats_path(self) -> Path:
        return self.data_dir / "stage_stats.json"
