"""The one model loader: every model comes through its library's own ``from_pretrained``.

A source is a Hugging Face id or a local folder; offline mode passes ``local_files_only``.
Precision and offloading follow the memory budget and are decided in one place
(``plan_precision``), logged, and reported through get_resources.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import asdict, dataclass
from typing import Any

import psutil
import torch

from pipeline.config import Settings

log = logging.getLogger(__name__)

FLUX_PROFILES = {  # steps, guidance
    "dev": (28, 3.5),
    "schnell": (4, 0.0),
}


@dataclass(frozen=True)
class PrecisionPlan:
    device: str
    dtype: str  # torch dtype name
    offload: bool  # diffusers model CPU offload for FLUX
    quantize: str | None  # "nf4" when bitsandbytes is available and the card is small
    budget_gb: float
    reason: str

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_device(settings: Settings) -> str:
    if settings.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return settings.device


def memory_budget_gb(settings: Settings, device: str) -> float:
    if settings.vram_budget_gb is not None:
        return settings.vram_budget_gb
    if device == "cuda":
        free, _total = torch.cuda.mem_get_info()
        return max(0.0, free / 2**30 - settings.vram_reserve_gb)
    return max(0.5, psutil.virtual_memory().available / 2**30 * 0.5)


def plan_precision(device: str, budget_gb: float, bnb_available: bool | None = None) -> PrecisionPlan:
    """bf16 with everything resident on big cards; offload (+ NF4 transformer) on 24 GB; fp32 on CPU."""
    if bnb_available is None:
        bnb_available = importlib.util.find_spec("bitsandbytes") is not None
    if device != "cuda":
        return PrecisionPlan(device, "float32", False, None, budget_gb, "CPU: float32 (bf16 matmuls are slow on CPU)")
    if budget_gb >= 40:
        return PrecisionPlan(device, "bfloat16", False, None, budget_gb, "bf16, models stay resident between jobs")
    if budget_gb >= 16:
        quant = "nf4" if bnb_available else None
        why = "NF4 FLUX transformer + " if quant else "bf16 (bitsandbytes missing, no NF4) + "
        return PrecisionPlan(device, "bfloat16", True, quant, budget_gb,
                             f"{budget_gb:.0f} GB budget: {why}model CPU offload, load-use-unload")
    return PrecisionPlan(device, "bfloat16", True, "nf4" if bnb_available else None, budget_gb,
                         f"{budget_gb:.0f} GB budget: aggressive offload; expect slow jobs")


def _common(settings: Settings) -> dict[str, Any]:
    return {"local_files_only": True} if settings.offline else {}


def flux_profile(settings: Settings) -> tuple[str, int, float]:
    profile = settings.flux_profile
    if profile == "auto":
        profile = "schnell" if "schnell" in settings.flux_model.lower() else "dev"
    steps, guidance = FLUX_PROFILES[profile]
    return profile, settings.flux_steps or steps, guidance


def load_flux(settings: Settings, plan: PrecisionPlan) -> Any:
    from diffusers import FluxPipeline

    kwargs: dict[str, Any] = {"dtype": plan.torch_dtype, **_common(settings)}
    if plan.quantize == "nf4":
        from diffusers import BitsAndBytesConfig, FluxTransformer2DModel

        kwargs["transformer"] = FluxTransformer2DModel.from_pretrained(
            settings.flux_model, subfolder="transformer", dtype=plan.torch_dtype, **_common(settings),
            quantization_config=BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=plan.torch_dtype
            ),
        )
    pipe = FluxPipeline.from_pretrained(settings.flux_model, **kwargs)
    if plan.offload:
        pipe.enable_model_cpu_offload()
    else:
        pipe.to(plan.device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def flux_img2img(pipe: Any) -> Any:
    """The img2img pipeline over the loaded text-to-image one: same module objects, nothing loaded."""
    from diffusers import FluxImg2ImgPipeline

    i2i = FluxImg2ImgPipeline.from_pipe(pipe)
    i2i.set_progress_bar_config(disable=True)
    return i2i


def load_segmenter(settings: Settings, plan: PrecisionPlan) -> Any:
    from transformers import AutoModelForImageSegmentation

    # BiRefNet's code lives in its hub repository: trust_remote_code is how it is meant to load.
    model = AutoModelForImageSegmentation.from_pretrained(
        settings.seg_model, trust_remote_code=True, **_common(settings)
    )
    return model.to(plan.device, dtype=plan.torch_dtype if plan.device == "cuda" else torch.float32).eval()


def load_vlm(settings: Settings, plan: PrecisionPlan) -> tuple[Any, Any]:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(settings.vlm_model, **_common(settings))
    # Cap the image tokens (Qwen2-VL's cost grows with pixels): 28x28 pixels per merged token.
    processor.image_processor.max_pixels = settings.vlm_max_pixels
    if hasattr(processor.image_processor, "size") and isinstance(processor.image_processor.size, dict):
        processor.image_processor.size = {**processor.image_processor.size, "longest_edge": settings.vlm_max_pixels}
    model = AutoModelForImageTextToText.from_pretrained(settings.vlm_model, dtype=plan.torch_dtype, **_common(settings))
    return processor, model.to(plan.device).eval()


def weights_resolvable(settings: Settings) -> tuple[bool, str]:
    """Whether every configured model is a local folder or already in the hub cache (no download)."""
    from pathlib import Path

    from huggingface_hub import snapshot_download

    for name in (settings.flux_model, settings.seg_model, settings.vlm_model):
        if Path(name).is_dir():
            continue
        try:
            snapshot_download(name, local_files_only=True)
        except Exception:
            return False, f"{name} is neither a local folder nor in the Hugging Face cache"
    return True, "all weights found locally"
