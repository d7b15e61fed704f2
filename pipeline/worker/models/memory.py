"""The memory plan: which precision and placement every model gets on this machine.

Two halves. ``measure_*`` reads the configured models' *configs* (never their weights),
builds each component on the meta device and counts what it would hold: parameters,
parameters in linear layers (what bitsandbytes NF4 stores in 4 bits), parameters in layers
diffusers' layerwise casting stores in fp8, the largest repeated block (group offload's unit)
and an estimate of one forward pass's working memory at the planning size. ``plan_memory``
is a pure function of those sizes, the accelerator memory and the host memory: it tries the
cheapest arrangement first and takes the first whose every stage fits by its own accounting.

Levels, in order:
  resident   every model on the device in the compute dtype, kept between jobs;
  encoder-nf4  (one-pass scene generator, CUDA with bitsandbytes) its large text encoder in NF4, everything
             else in the compute dtype and kept: on a 24 GB card FLUX.2 [klein] 4B keeps the segmenter
             and the VLM resident instead of reloading them every job;
  evict      the generator kept; segmenter and VLM loaded for their stage and dropped;
  quantized  the generator's large components in NF4 (bitsandbytes, CUDA only) or fp8 storage
             (layerwise casting); the others kept if they fit, else loaded per stage;
  offload    quantized as above, and the generator's components moved to the device one at a
             time (diffusers' model CPU offload); accelerator only;
  group      fp8 storage and block-level group offload with CUDA streams; accelerator only,
             slow, needs the generator in host RAM;
  refused    nothing fits: the reason says by how much.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

GiB = 2**30
PLAN_SIDE = 1024  # the canvas the plan is made for; larger canvases decode with VAE tiling
TEXT_TOKENS = 512  # FLUX's T5 sequence length
NF4_BYTES = 0.5 + 4 / 64  # 4-bit weights plus one fp32 absmax per 64-value block
FP8_BYTES = 1.0
# diffusers' layerwise casting: these layer types are stored in fp8, names matching these stay in 16 bits
_CASTABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_CAST_SKIP = ("pos_embed", "patch_embed", "norm", "^proj_in$", "^proj_out$")
GENERATORS = ("flux", "scene")  # model keys of the image generator (classic / one pass): kept in preference


@dataclass(frozen=True)
class ComponentSize:
    """What one component would hold, counted on the meta device from its config."""

    model: str  # cache key: "flux", "segmenter", "vlm"
    name: str  # "transformer", "text_encoder_2", "vae", "sam", "matting", "vlm"...
    cls: str
    role: str  # "denoiser", "text_encoder", "vae" or "model"
    params: int
    linear_params: int  # in nn.Linear weights: what NF4 would store in 4 bits
    castable_params: int  # what fp8 layerwise casting would store in 8 bits
    block_params: int  # the largest repeated block (group offload moves one at a time)
    activation_bytes: int  # one forward at the planning size, in 16-bit, without VAE tiling
    tiled_activation_bytes: int  # the same with VAE tiling (VAE only; others equal activation_bytes)
    library: str = "transformers"  # diffusers models can take fp8 layerwise casting (see plan_memory)

    def weight_bytes(self, storage: str, dtype_bytes: int) -> int:
        if storage == "nf4":
            return int(self.linear_params * NF4_BYTES + (self.params - self.linear_params) * dtype_bytes)
        if storage == "fp8":
            return int(self.castable_params * FP8_BYTES + (self.params - self.castable_params) * dtype_bytes)
        return self.params * dtype_bytes


@dataclass(frozen=True)
class Placement:
    storage: str  # "dtype" (the compute dtype), "nf4" or "fp8"
    where: str  # "device", "model-offload", "group-offload"
    weight_bytes: int


@dataclass(frozen=True)
class MemoryPlan:
    level: str
    device: str
    dtype: str
    placements: dict[str, Placement]  # "flux.transformer" -> placement
    resident: tuple[str, ...]  # models kept loaded between jobs
    per_stage: tuple[str, ...]  # models loaded for their stage, then dropped
    device_budget: int  # bytes the plan may use on the device (after the reserve)
    host_budget: int
    stage_peaks: dict[str, int]  # model -> device bytes while its stages run, by the plan's accounting
    host_peak: int
    vae_tiling_above: int = PLAN_SIDE * PLAN_SIDE  # pixels
    reason: str = ""
    refusal: str | None = None

    @property
    def peak(self) -> int:
        return max(self.stage_peaks.values(), default=0)

    @property
    def headroom(self) -> int:
        return self.device_budget - self.peak

    @property
    def fits(self) -> bool:
        return self.refusal is None and self.peak <= self.device_budget and self.host_peak <= self.host_budget

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def storage(self, model: str, name: str) -> str:
        p = self.placements.get(f"{model}.{name}")
        return p.storage if p else "dtype"

    def offload(self, model: str) -> str | None:
        """"model-offload" / "group-offload" when the model's components are offloaded, else None."""
        kinds = {p.where for k, p in self.placements.items() if k.startswith(model + ".") and p.where != "device"}
        return kinds.pop() if kinds else None

    def keeps(self, model: str) -> bool:
        return model in self.resident

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        gib = lambda b: round(b / GiB, 2)  # noqa: E731
        d["placements"] = {k: {"storage": p.storage, "where": p.where, "gib": gib(p.weight_bytes)}
                           for k, p in self.placements.items()}
        d["stage_peaks_gib"] = {k: gib(v) for k, v in self.stage_peaks.items()}
        del d["stage_peaks"]
        d.update(device_budget_gib=gib(self.device_budget), host_budget_gib=gib(self.host_budget),
                 peak_gib=gib(self.peak), headroom_gib=gib(self.headroom), host_peak_gib=gib(self.host_peak),
                 fits=self.fits)
        for k in ("device_budget", "host_budget", "host_peak"):
            del d[k]
        return d

    def summary(self) -> str:
        parts = [f"{k} {p.storage if p.storage != 'dtype' else self.dtype}"
                 + ("" if p.where == "device" else f" ({p.where})") for k, p in self.placements.items()
                 if p.storage != "dtype" or p.where != "device"]
        return (f"{self.level}: {self.reason}; peak {self.peak / GiB:.1f} of {self.device_budget / GiB:.1f} GiB "
                f"on {self.device}" + (f"; {', '.join(parts)}" if parts else "") + (
                    f"; REFUSED: {self.refusal}" if self.refusal else ""))


# --------------------------------------------------------------------------- measuring


def _skip_patterns(module: nn.Module) -> tuple[str, ...]:
    extra = tuple(getattr(module, "_skip_layerwise_casting_patterns", None) or ())
    return _CAST_SKIP + extra


def count_module(module: nn.Module) -> tuple[int, int, int, int]:
    """(params, linear params, fp8-castable params, largest repeated block's params) of a module."""
    params = sum(p.numel() for p in module.parameters())
    linear = sum(m.weight.numel() for m in module.modules() if isinstance(m, nn.Linear))
    patterns = _skip_patterns(module)
    castable = 0
    for name, m in module.named_modules():
        if isinstance(m, _CASTABLE) and not any(re.search(p, name) for p in patterns):
            castable += sum(p.numel() for p in m.parameters(recurse=False))
    block = max((sum(p.numel() for p in b.parameters()) for m in module.modules() if isinstance(m, nn.ModuleList)
                 for b in m if b is not None), default=params)  # FLUX.2's VAE keeps None slots in a list
    return params, linear, castable, block


def _cfg(config: Any, *names: str, default: Any = None) -> Any:
    for n in names:
        v = config.get(n) if isinstance(config, dict) else getattr(config, n, None)
        if v is not None:
            return v
    return default


def _attention_bytes(tokens: int, hidden: int, heads: int) -> int:
    """One transformer layer over ``tokens``: a materialised attention matrix (16-bit scores and
    their fp32 softmax, as SAM/ViTDet compute it) plus ~16 hidden-width activations."""
    return int(heads * tokens * tokens * 6 + tokens * hidden * 2 * 16)


def measure(model: str, name: str, module: nn.Module, role: str, activation: int, tiled: int | None = None
            ) -> ComponentSize:
    params, linear, castable, block = count_module(module)
    library = type(module).__module__.split(".")[0]
    return ComponentSize(model, name, type(module).__name__, role, params, linear, castable, block,
                         int(activation), int(activation if tiled is None else tiled), library)


def _meta(build: Any) -> nn.Module:
    from accelerate import init_empty_weights

    with init_empty_weights():
        module = build()
    # Shared tensors (T5's embeddings, a tied LM head) are one tensor once loaded: count them once. (Inside
    # init_empty_weights the tie does not take.)
    if hasattr(module, "tie_weights"):
        module.tie_weights()
    return module


def measure_diffusers_pipeline(model: str, source: str, load_kwargs: dict[str, Any], side: int = PLAN_SIDE,
                               image_streams: int = 1) -> list[ComponentSize]:
    """Every torch component of a diffusers pipeline, from model_index.json and each config.json.

    ``image_streams``: how many canvases' worth of image tokens the denoiser attends to (2 for a one-pass
    model that also sees the product reference or the masked image as tokens)."""
    import importlib

    from diffusers import DiffusionPipeline

    index = DiffusionPipeline.load_config(source, **load_kwargs)
    vae_scale = 8
    entries: list[tuple[str, Any, Any]] = []
    for name, spec in index.items():
        if name.startswith("_") or not isinstance(spec, (list, tuple)) or len(spec) != 2 or spec[0] is None:
            continue
        library, cls_name = spec
        found = getattr(importlib.import_module(library), cls_name, None)
        if found is None or not (isinstance(found, type) and issubclass(found, nn.Module)):
            continue  # tokenizers, schedulers
        cls: Any = found  # a diffusers ModelMixin or a transformers PreTrainedModel
        if library == "diffusers":
            config = cls.load_config(source, subfolder=name, **load_kwargs)
        else:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(source, subfolder=name, **load_kwargs)
        entries.append((name, cls, config))
        if name == "vae":
            vae_scale = 2 ** (len(_cfg(config, "block_out_channels", default=[0] * 4)) - 1)
    pixels = side * side
    out = []
    for name, cls, config in entries:
        if hasattr(cls, "from_config") and isinstance(config, dict):
            module = _meta(lambda cls=cls, config=config: cls.from_config(config))
        else:
            module = _meta(lambda cls=cls, config=config: cls._from_config(config))
        if name == "vae":
            full = getattr(module, "config", config)  # the class's defaults filled in (a config may omit them)
            ch = _cfg(full, "block_out_channels")[0]
            tile = _cfg(full, "sample_size", default=512)
            tile = tile[0] if isinstance(tile, (list, tuple)) else tile
            act = pixels * ch * 2 * 8  # the decoder's last blocks at full resolution: ~8 live maps
            out.append(measure(model, name, module, "vae", act, min(pixels, tile * tile) * ch * 2 * 8))
        elif name.startswith("text_encoder"):
            hidden = _cfg(config, "d_model", "hidden_size", default=1024)
            heads = _cfg(config, "num_heads", "num_attention_heads", default=16)
            seq = min(TEXT_TOKENS, _cfg(config, "max_position_embeddings", default=TEXT_TOKENS))
            out.append(measure(model, name, module, "text_encoder", _attention_bytes(seq, hidden, heads)))
        else:  # the denoiser: image tokens after the VAE and 2x2 packing, plus the text tokens
            inner = _cfg(config, "num_attention_heads", default=24) * _cfg(config, "attention_head_dim", default=128)
            tokens = pixels // (vae_scale * 2) ** 2 * image_streams + TEXT_TOKENS
            # a fused single block holds ~12 hidden widths (qkv, 4x MLP, concat, residual); flash attention
            out.append(measure(model, name, module, "denoiser", tokens * inner * 2 * 12))
    return out


def measure_transformers_model(model: str, name: str, source: str, load_kwargs: dict[str, Any], auto_class: Any,
                               tokens: int | None = None) -> ComponentSize:
    """A transformers model from its config.json. ``tokens`` is the sequence its vision part sees;
    None = the config's own input (image_size / patch_size squared, as for SAM)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source, **load_kwargs)
    module = _meta(lambda: auto_class.from_config(config) if hasattr(auto_class, "from_config")
                   else auto_class._from_config(config))
    vision = _cfg(config, "vision_config", "backbone_config", default=config)
    hidden = _cfg(vision, "hidden_size", "embed_dim", default=768)
    heads = _cfg(vision, "num_attention_heads", "num_heads", default=12)
    if tokens is None:
        side, patch = _cfg(vision, "image_size", default=1024), _cfg(vision, "patch_size", default=16)
        side, patch = (side[0] if isinstance(side, (list, tuple)) else side), (
            patch[0] if isinstance(patch, (list, tuple)) else patch)
        tokens = (side // patch) ** 2
    return measure(model, name, module, "model", _attention_bytes(tokens, hidden, heads))


# --------------------------------------------------------------------------- planning


def _sum_weights(parts: Iterable[tuple[ComponentSize, Placement]]) -> int:
    return sum(p.weight_bytes for _, p in parts)


@dataclass
class _Candidate:
    level: str
    reason: str
    storage: dict[str, str] = field(default_factory=dict)  # component key -> storage
    where: str = "device"  # for the generator's components
    keep_aux: bool = True


def _account(components: list[ComponentSize], cand: _Candidate, dtype_bytes: int, aux_resident: set[str]
             ) -> tuple[dict[str, Placement], dict[str, int], int]:
    """Placements, device bytes per stage and host bytes for one arrangement."""
    placements: dict[str, Placement] = {}
    for c in components:
        key = f"{c.model}.{c.name}"
        storage = cand.storage.get(key, "dtype")
        where = cand.where if c.model in GENERATORS else "device"
        placements[key] = Placement(storage, where, c.weight_bytes(storage, dtype_bytes))
    by_model: dict[str, list[ComponentSize]] = {}
    for c in components:
        by_model.setdefault(c.model, []).append(c)

    def on_device_at_rest(model: str) -> int:
        if model in GENERATORS:
            return 0 if cand.where != "device" else sum(placements[f"{model}.{c.name}"].weight_bytes
                                                        for c in by_model[model])
        if model not in aux_resident:
            return 0
        return sum(placements[f"{model}.{c.name}"].weight_bytes for c in by_model[model])

    stages: dict[str, int] = {}
    for model, parts in by_model.items():
        kept = sum(on_device_at_rest(m) for m in by_model if m != model)
        weights = [placements[f"{model}.{c.name}"].weight_bytes for c in parts]
        # At the planning size the VAE decodes untiled (tiling starts above it and keeps larger canvases at
        # the tile's working memory, tiled_activation_bytes).
        acts = [c.activation_bytes for c in parts]
        if model in GENERATORS and cand.where == "model-offload":
            # one component on the device at a time, with its own working memory
            working = max(w + a for w, a in zip(weights, acts, strict=True))
        elif model in GENERATORS and cand.where == "group-offload":
            working = max(int(c.block_params * 2 * (FP8_BYTES if cand.storage.get(f"{model}.{c.name}") == "fp8"
                                                    else dtype_bytes)) + a for c, a in zip(parts, acts, strict=True))
        else:
            working = sum(weights) + max(acts)
        stages[model] = kept + working
    # Host: offloaded weights live there, and a model is staged there while it loads.
    offloaded = sum(p.weight_bytes for k, p in placements.items() if p.where != "device")
    staging = max((sum(c.weight_bytes("dtype", dtype_bytes) for c in parts) for parts in by_model.values()), default=0)
    return placements, stages, offloaded + staging


def plan_memory(
    components: list[ComponentSize],
    *,
    device: str,
    device_bytes: int,
    host_bytes: int,
    dtype: torch.dtype = torch.bfloat16,
    nf4_available: bool = False,
) -> MemoryPlan:
    """The first arrangement, cheapest first, whose every stage fits ``device_bytes``.

    ``device_bytes`` is what the models may use (free accelerator memory minus the reserve, or
    the host RAM budget on a CPU); ``host_bytes`` the host RAM available for offloaded weights.
    """
    dtype_name = str(dtype).removeprefix("torch.")
    dtype_bytes = torch.finfo(dtype).bits // 8
    accelerator = device != "cpu"
    models = sorted({c.model for c in components}, key=lambda m: (m not in GENERATORS, m))
    aux = [m for m in models if m not in GENERATORS]
    gen = [c for c in components if c.model in GENERATORS]
    gen_total = sum(c.params for c in gen) or 1
    # Worth quantising: the denoiser and any text encoder holding >= 5% of the generator. fp8 layerwise casting
    # only for diffusers models: FluxPipeline casts the prompt embeddings to ``text_encoder_2.dtype``, which a
    # transformers T5 reports as its storage dtype (fp8), so T5 stays in the compute dtype on that path.
    big = [c for c in gen if c.role in ("denoiser", "text_encoder") and c.params >= 0.05 * gen_total]
    quant = "nf4" if nf4_available and device == "cuda" else "fp8"
    big_q = [f"{c.model}.{c.name}" for c in big if quant == "nf4" or c.library == "diffusers"]
    big_fp8 = [f"{c.model}.{c.name}" for c in big if c.library == "diffusers"]
    q_name = "NF4 (bitsandbytes)" if quant == "nf4" else "fp8 storage (layerwise casting)"
    # The one-pass generator's text encoder (Qwen3-4B for klein: as large as its transformer) runs once per job:
    # NF4 there costs little and keeps the segmenter and VLM resident on a 24 GB card.
    encoders = [f"{c.model}.{c.name}" for c in big if c.role == "text_encoder" and c.model == "scene"]
    candidates = [
        _Candidate("resident", f"every model in {dtype_name}, kept between jobs"),
        *([_Candidate("encoder-nf4", f"{', '.join(k.split('.', 1)[1] for k in encoders)} in NF4 (bitsandbytes), "
                      f"the rest in {dtype_name}", storage=dict.fromkeys(encoders, "nf4"))]
          if encoders and quant == "nf4" else []),
        _Candidate("evict", f"{dtype_name}; the generator kept, the segmenter and VLM loaded per stage",
                   keep_aux=False),
        _Candidate("quantized", f"{', '.join(k.split('.', 1)[1] for k in big_q)} in {q_name}",
                   storage=dict.fromkeys(big_q, quant)),
    ]
    if accelerator:
        candidates += [
            _Candidate("offload", f"{', '.join(k.split('.', 1)[1] for k in big_q)} in {q_name} and model CPU "
                       "offload of the generator", storage=dict.fromkeys(big_q, quant), where="model-offload"),
            _Candidate("group", "fp8 storage and block-level group offload with streams (slow)",
                       storage=dict.fromkeys(big_fp8, "fp8"), where="group-offload", keep_aux=False),
        ]
    tried: list[tuple[_Candidate, dict[str, Placement], dict[str, int], int, set[str]]] = []
    for cand in candidates:
        # Keep as many auxiliary models resident as fit (smallest first); the rest load per stage.
        options = [set(aux)] if cand.keep_aux else []
        if cand.keep_aux and cand.level != "resident":
            by_size = sorted(aux, key=lambda m: sum(c.params for c in components if c.model == m))
            options += [set(by_size[:i]) for i in range(len(by_size) - 1, -1, -1)]
        options = options or [set()]
        for kept in options:
            placements, stages, host_peak = _account(components, cand, dtype_bytes, kept)
            tried.append((cand, placements, stages, host_peak, kept))
            if max(stages.values(), default=0) <= device_bytes and host_peak <= host_bytes:
                resident = tuple(m for m in models if m in GENERATORS or m in kept)
                per_stage = tuple(m for m in models if m not in resident)
                reason = cand.reason + (f"; {', '.join(per_stage)} loaded per stage" if per_stage and cand.keep_aux
                                        else "")
                return MemoryPlan(cand.level, device, dtype_name, placements, resident, per_stage, device_bytes,
                                  host_bytes, stages, host_peak, reason=reason)
    # Nothing fits: report the last (most frugal) arrangement and by how much it misses.
    cand, placements, stages, host_peak, kept = tried[-1]
    peak = max(stages.values(), default=0)
    if peak > device_bytes:
        why = (f"even {cand.reason} needs {peak / GiB:.1f} GiB on {device}, {device_bytes / GiB:.1f} GiB available")
    else:
        why = f"{cand.reason} needs {host_peak / GiB:.1f} GiB of host RAM, {host_bytes / GiB:.1f} GiB available"
    return MemoryPlan("refused", device, dtype_name, placements, tuple(models), (), device_bytes, host_bytes, stages,
                      host_peak, reason=cand.reason, refusal=why)
