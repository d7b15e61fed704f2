"""The one model loader: every model comes through its library's own ``from_pretrained``.

A source is a Hugging Face id (with a revision) or a local folder. Every load takes the
compute dtype from ``resolve_dtype`` and its placement (device, quantisation, offload) from
the memory plan (``memory.plan_memory``), decided once per worker and shown in get_resources.
A model that is not on this machine fails with one line naming its id, its revision and the
command that downloads it.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psutil
import torch
from torch import nn

from pipeline import profiles
from pipeline.config import Settings
from pipeline.worker.errors import UserFacingError
from pipeline.worker.models import memory
from pipeline.worker.models.memory import ComponentSize, GiB, MemoryPlan

log = logging.getLogger(__name__)

FLUX_PROFILES = {  # steps, guidance
    "dev": (28, 3.5),
    "schnell": (4, 0.0),
}
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
# Commits a public source states for a default model (docs/models.md cites each); other ids load "main".
PINNED_REVISIONS = {
    # Lockyc/plate, internal/pins/pins.go
    "hustvl/vitmatte-base-composition-1k": "bf486d01a7d9e3dbcc8400f7942835caf0eaf76e",
}


class ModelMissingError(UserFacingError):
    """A configured model is neither a local folder nor downloadable/in the cache."""


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class ModelRef:
    role: str  # "flux", "scene", "segmenter", "matting", "vlm", "birefnet"
    id: str  # hub id or local folder
    revision: str | None  # None for a folder

    @property
    def is_folder(self) -> bool:
        """A local folder (or, for the ONNX segmenter, a local file) rather than a hub id."""
        return Path(self.id).expanduser().exists()

    def kwargs(self, settings: Settings) -> dict[str, Any]:
        kw: dict[str, Any] = {} if self.is_folder else {"revision": self.revision}
        if settings.offline:
            kw["local_files_only"] = True
        return kw

    @property
    def source(self) -> str:
        return str(Path(self.id).expanduser()) if self.is_folder else self.id

    def download_command(self) -> str:
        return f"hf download {self.id} --revision {self.revision}"

    def missing(self, why: str = "") -> ModelMissingError:
        detail = f" ({why})" if why else ""
        return ModelMissingError(
            f"{self.role} model {self.id} at revision {self.revision} is not on this machine{detail}: download it "
            f"with `{self.download_command()}` (gated models: accept the licence on huggingface.co and "
            "`hf auth login` first), or point the setting at a local folder"
        )


def _ref(role: str, model_id: str, revision: str | None) -> ModelRef:
    if Path(model_id).expanduser().exists():
        return ModelRef(role, model_id, None)
    return ModelRef(role, model_id, revision or PINNED_REVISIONS.get(model_id, "main"))


def generator_key(settings: Settings) -> str:
    """The generator's cache key: "flux" (classic: text-to-image + img2img) or "scene" (one pass)."""
    return "scene" if profiles.active(settings).one_pass else "flux"


def model_refs(settings: Settings) -> dict[str, ModelRef]:
    """The configured models by cache key (the matting model travels with the segmenter); each role's
    own setting, else the active profile's default (pipeline/profiles.py)."""
    key = generator_key(settings)
    revision = settings.flux_revision if key == "flux" else settings.scene_revision
    refs = {key: _ref(key, profiles.generator_model(settings), revision),
            "vlm": _ref("vlm", profiles.vlm_model(settings), settings.vlm_revision)}
    if settings.segmenter == "birefnet-onnx":
        refs["segmenter"] = _ref("birefnet", settings.birefnet_onnx, settings.birefnet_onnx_revision)
    else:
        refs["segmenter"] = _ref("segmenter", profiles.segmenter_model(settings), settings.seg_revision)
        matting = profiles.matting_model(settings)
        if matting:
            refs["matting"] = _ref("matting", matting, settings.matting_revision)
    return refs


def locate(ref: ModelRef) -> Path | None:
    """The model's folder on this machine (a local folder or its snapshot in the hub cache), or None."""
    if ref.is_folder:
        return Path(ref.source)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(ref.id, revision=ref.revision, local_files_only=True))
    except (OSError, ValueError):
        return None


class _Guard:
    """Turns a load's 'not found' (OSError, the hub's errors included) into ModelMissingError."""

    def __init__(self, ref: ModelRef) -> None:
        self.ref = ref

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        if isinstance(exc, OSError) and not isinstance(exc, ModelMissingError) and locate(self.ref) is None:
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            raise self.ref.missing(first) from None
        return False


def weights_resolvable(settings: Settings) -> tuple[bool, str]:
    """Whether every configured model is a local folder or already in the hub cache (no download)."""
    for ref in model_refs(settings).values():
        if locate(ref) is None:
            return False, f"{ref.id} (revision {ref.revision}) is neither a local folder nor in the Hugging Face cache"
    return True, "all weights found locally"


# --------------------------------------------------------------------------- device, dtype, plan


def resolve_device(settings: Settings) -> str:
    if settings.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return settings.device


def resolve_dtype(settings: Settings, device: str) -> torch.dtype:
    """auto = bf16 on CUDA (FLUX's trained precision, half the memory), fp32 on CPU."""
    if settings.dtype == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    return DTYPES[settings.dtype]


def memory_budget_gb(settings: Settings, device: str) -> float:
    """What the models may use on the compute device: the setting, else free VRAM minus the reserve
    (on a CPU: half the available RAM)."""
    if settings.vram_budget_gb is not None:
        return settings.vram_budget_gb
    if device == "cuda":
        free, _total = torch.cuda.mem_get_info()
        return max(0.0, free / 2**30 - settings.vram_reserve_gb)
    return max(0.5, psutil.virtual_memory().available / 2**30 * 0.5)


def host_budget_bytes() -> int:
    return int(psutil.virtual_memory().available * 0.8)


def bnb_available() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def measure_models(settings: Settings, device: str) -> list[ComponentSize]:
    """Component sizes of the configured models, from their configs on the meta device."""
    refs = model_refs(settings)
    out: list[ComponentSize] = []
    key = generator_key(settings)
    gen = refs[key]
    with _Guard(gen):
        # A one-pass model also attends to the product reference / masked image: twice the image tokens.
        out += memory.measure_diffusers_pipeline(key, gen.source, gen.kwargs(settings),
                                                 image_streams=2 if key == "scene" else 1)
    seg = refs["segmenter"]
    if settings.segmenter == "birefnet-onnx":
        # An ONNX graph: its file holds the weights (fp16 on CUDA); its working memory is an estimate
        # (BiRefNet's decoder at 1024 px), scaled with the input side.
        path = onnx_path(settings, device)
        size = path.stat().st_size
        params = size // (2 if "fp16" in path.name else 4)
        act = int(2 * GiB * (settings.seg_input_size / 1024) ** 2)
        out.append(ComponentSize("segmenter", "birefnet", "InferenceSession", "model", params, 0, 0, params, act, act,
                                 "onnxruntime"))
    if settings.segmenter == "sam-hq":
        from transformers import SamHQModel, VitMatteForImageMatting

        with _Guard(seg):
            out.append(memory.measure_transformers_model("segmenter", "sam", seg.source, seg.kwargs(settings),
                                                         SamHQModel))
        if "matting" in refs:
            mat = refs["matting"]
            with _Guard(mat):
                out.append(memory.measure_transformers_model(
                    "segmenter", "matting", mat.source, mat.kwargs(settings), VitMatteForImageMatting,
                    tokens=(settings.matting_max_side // 16) ** 2))
    vlm = refs["vlm"]
    from transformers import AutoModelForImageTextToText

    with _Guard(vlm):
        out.append(memory.measure_transformers_model("vlm", "vlm", vlm.source, vlm.kwargs(settings),
                                                     AutoModelForImageTextToText,
                                                     tokens=settings.vlm_max_pixels // (14 * 14)))
    return out


def plan_for(settings: Settings, device: str, components: list[ComponentSize] | None = None) -> MemoryPlan:
    """The memory plan for this machine and these models (logged by the caller)."""
    dtype = resolve_dtype(settings, device)
    budget = int(memory_budget_gb(settings, device) * GiB)
    components = measure_models(settings, device) if components is None else components
    return memory.plan_memory(components, device=device, device_bytes=budget, host_bytes=host_budget_bytes(),
                              dtype=dtype, nf4_available=bnb_available())


def flux_profile(settings: Settings) -> tuple[str, int, float]:
    """The classic profile's FLUX.1 preset (dev or schnell: steps, guidance)."""
    profile = settings.flux_profile
    if profile == "auto":
        profile = "schnell" if "schnell" in settings.flux_model.lower() else "dev"
    steps, guidance = FLUX_PROFILES[profile]
    return profile, settings.flux_steps or steps, guidance


# --------------------------------------------------------------------------- loaded models


@dataclass
class FluxModels:
    """The text-to-image pipeline and its img2img twin over the very same modules (built once)."""

    t2i: Any
    i2i: Any
    offload: str | None = None

    def named_modules(self) -> dict[str, nn.Module]:
        return {k: v for k, v in self.t2i.components.items() if isinstance(v, nn.Module)}

    def set_vae_tiling(self, on: bool) -> None:
        vae = self.t2i.vae
        vae.enable_tiling() if on else vae.disable_tiling()


@dataclass
class SegmenterModels:
    sam: Any
    sam_processor: Any
    matte: Any = None
    matte_processor: Any = None

    def named_modules(self) -> dict[str, nn.Module]:
        return {k: v for k, v in (("sam", self.sam), ("matting", self.matte)) if isinstance(v, nn.Module)}


@dataclass
class OnnxSegmenter:
    session: Any  # onnxruntime.InferenceSession
    path: str
    providers: list[str] = field(default_factory=list)

    def named_modules(self) -> dict[str, nn.Module]:
        return {}


@dataclass
class VisionLanguageModel:
    processor: Any
    model: Any

    def named_modules(self) -> dict[str, nn.Module]:
        return {"vlm": self.model}


def _fp8_storage(module: nn.Module, compute: torch.dtype) -> None:
    """Weights stored in fp8, cast to ``compute`` layer by layer as they run (diffusers' hook)."""
    from diffusers.hooks import apply_layerwise_casting

    patterns = memory._skip_patterns(module) + tuple(getattr(module, "_keep_in_fp32_modules", None) or ())
    apply_layerwise_casting(module, storage_dtype=torch.float8_e4m3fn, compute_dtype=compute,
                            skip_modules_pattern=patterns)


def _load_placed(cls: Any, key: str, ref: ModelRef, settings: Settings, plan: MemoryPlan) -> tuple[Any, str | None]:
    """A diffusers pipeline loaded in the plan's dtype, quantisation and placement; (pipe, offload kind)."""
    dtype = plan.torch_dtype
    kwargs: dict[str, Any] = {"dtype": dtype, **ref.kwargs(settings)}
    expected = cls._get_signature_keys(cls)[0]  # the pipeline's components (FLUX.2 has no text_encoder_2)
    names = [n for n in ("transformer", "text_encoder", "text_encoder_2", "vae") if n in expected]
    nf4 = [n for n in names if plan.storage(key, n) == "nf4"]
    if nf4:
        from diffusers import PipelineQuantizationConfig

        kwargs["quantization_config"] = PipelineQuantizationConfig(
            quant_backend="bitsandbytes_4bit", components_to_quantize=nf4,
            quant_kwargs={"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": dtype},
        )
    with _Guard(ref):
        pipe = cls.from_pretrained(ref.source, **kwargs)
    for n in names:
        if plan.storage(key, n) == "fp8":
            _fp8_storage(getattr(pipe, n), dtype)
    offload = plan.offload(key)
    if offload == "model-offload":
        pipe.enable_model_cpu_offload(device=plan.device)
    elif offload == "group-offload":
        pipe.enable_group_offload(onload_device=torch.device(plan.device), offload_type="block_level",
                                  num_blocks_per_group=1, use_stream=True)
    else:
        # Component by component: a bitsandbytes module quantises when it reaches the GPU (or is there already).
        for n in names:
            module = getattr(pipe, n)
            if any(t.device.type != torch.device(plan.device).type for t in module.parameters()):
                module.to(plan.device)
    pipe.set_progress_bar_config(disable=True)
    return pipe, offload


def load_flux(settings: Settings, plan: MemoryPlan) -> FluxModels:
    from diffusers import FluxImg2ImgPipeline, FluxPipeline

    pipe, offload = _load_placed(FluxPipeline, "flux", model_refs(settings)["flux"], settings, plan)
    # img2img over the same module objects. Not from_pipe: it ends in .to(dtype=float32 by default), which would
    # convert the shared modules in place (and undo fp8 storage). The constructor only registers them.
    i2i = FluxImg2ImgPipeline(**pipe.components)
    if offload == "model-offload":
        # Both pipelines re-arm the shared modules' offload hooks after each call (maybe_free_model_hooks).
        i2i.enable_model_cpu_offload(device=plan.device)
    i2i.set_progress_bar_config(disable=True)
    return FluxModels(pipe, i2i, offload)


@dataclass
class SceneModels:
    """A one-pass pipeline that paints the scene around the product (fast: FLUX.2 [klein] inpainting with
    the product as ``image_reference``; quality: FLUX.1 Fill)."""

    pipe: Any
    kind: str  # the pipeline class name (profiles.ScenePipeline)
    offload: str | None = None

    def named_modules(self) -> dict[str, nn.Module]:
        return {k: v for k, v in self.pipe.components.items() if isinstance(v, nn.Module)}

    def set_vae_tiling(self, on: bool) -> None:
        vae = self.pipe.vae
        if hasattr(vae, "enable_tiling"):
            vae.enable_tiling() if on else vae.disable_tiling()


def load_scene(settings: Settings, plan: MemoryPlan) -> SceneModels:
    import diffusers

    kind = profiles.scene_pipeline(settings)
    cls = getattr(diffusers, kind)
    pipe, offload = _load_placed(cls, "scene", model_refs(settings)["scene"], settings, plan)
    return SceneModels(pipe, kind, offload)


def load_segmenter(settings: Settings, plan: MemoryPlan) -> SegmenterModels | OnnxSegmenter:
    if settings.segmenter == "birefnet-onnx":
        return load_birefnet_onnx(settings, plan)
    from transformers import SamHQModel, SamHQProcessor, VitMatteForImageMatting, VitMatteImageProcessor

    refs = model_refs(settings)
    seg = refs["segmenter"]
    with _Guard(seg):
        processor = SamHQProcessor.from_pretrained(seg.source, **seg.kwargs(settings))
        sam = SamHQModel.from_pretrained(seg.source, dtype=plan.torch_dtype, **seg.kwargs(settings))
    bundle = SegmenterModels(sam.to(plan.device).eval(), processor)
    if "matting" in refs:
        mat = refs["matting"]
        with _Guard(mat):
            bundle.matte_processor = VitMatteImageProcessor.from_pretrained(mat.source, **mat.kwargs(settings))
            matte = VitMatteForImageMatting.from_pretrained(mat.source, dtype=plan.torch_dtype, **mat.kwargs(settings))
        bundle.matte = matte.to(plan.device).eval()
    return bundle


def load_birefnet_onnx(settings: Settings, plan: MemoryPlan) -> OnnxSegmenter:
    """BiRefNet as an ONNX graph (opt-in): no hub Python code, no coupling to the transformers version."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise UserFacingError("segmenter birefnet-onnx needs onnxruntime: pip install 'adgen[birefnet]'") from exc
    path = onnx_path(settings, plan.device)
    available = ort.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available
                 and (plan.device == "cuda" or p == "CPUExecutionProvider")]
    session = ort.InferenceSession(str(path), providers=providers)
    return OnnxSegmenter(session, str(path), session.get_providers())


def onnx_path(settings: Settings, device: str) -> Path:
    """The BiRefNet ONNX graph on this machine (a file, a folder, or a hub repository's file)."""
    ref = model_refs(settings)["segmenter"]
    name = settings.birefnet_onnx_file or ("onnx/model_fp16.onnx" if device == "cuda" else "onnx/model.onnx")
    if Path(ref.id).expanduser().is_file():
        return Path(ref.id).expanduser()
    if ref.is_folder:
        path = Path(ref.source) / name
    else:
        from huggingface_hub import hf_hub_download

        try:
            path = Path(hf_hub_download(ref.id, name, revision=ref.revision, local_files_only=settings.offline))
        except OSError as exc:
            raise ref.missing(f"{name}: {(str(exc).strip().splitlines() or [''])[0][:120]}") from None
    if not path.is_file():
        raise ref.missing(f"no {name} in it")
    return path


def load_vlm(settings: Settings, plan: MemoryPlan) -> VisionLanguageModel:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    ref = model_refs(settings)["vlm"]
    with _Guard(ref):
        processor = AutoProcessor.from_pretrained(ref.source, **ref.kwargs(settings))
        model = AutoModelForImageTextToText.from_pretrained(ref.source, dtype=plan.torch_dtype, **ref.kwargs(settings))
    # Cap the image tokens (Qwen2-VL's cost grows with pixels): 28x28 pixels per merged token. Qwen2-VL's
    # processor reads the cap as size.longest_edge (in pixels); a max_pixels attribute is deprecated.
    ip = processor.image_processor
    if getattr(ip, "size", None) is not None and hasattr(ip.size, "longest_edge"):
        from transformers.image_utils import SizeDict

        fields = {k: v for k, v in vars(ip.size).items() if v is not None}
        ip.size = SizeDict(**{**fields, "longest_edge": settings.vlm_max_pixels})
    return VisionLanguageModel(processor, model.to(plan.device).eval())
