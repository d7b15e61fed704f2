"""Model profiles: which model plays each role, with what steps, guidance, dtype and licence.

Declarative and import-light (no torch): the server shows it in get_resources, the worker's
loader reads the role defaults from it, docs/models.md describes the same table. A role's own
setting (``ADGEN_SCENE_MODEL``, ``ADGEN_SEG_MODEL``, ``ADGEN_VLM_MODEL``... and their revisions)
overrides the profile's default; ``classic`` keeps ``ADGEN_FLUX_MODEL`` as its generator.

- ``fast``: one pass around the product with FLUX.2 [klein] 4B; every model licensed for commercial use.
- ``quality``: one pass with FLUX.1 Fill [dev]; the best published one-pass result, non-commercial.
- ``classic``: the design document's path: FLUX.1 text-to-image, composite with shadow, img2img refine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pipeline.config import Settings

ProfileName = Literal["fast", "quality", "classic"]
PROFILE_NAMES: tuple[ProfileName, ...] = ("fast", "quality", "classic")
ScenePipeline = Literal["Flux2KleinInpaintPipeline", "FluxFillPipeline", "FluxKontextInpaintPipeline", "FluxPipeline"]
KONTEXT = "black-forest-labs/FLUX.1-Kontext-dev"  # ADGEN_SCENE_PIPELINE=FluxKontextInpaintPipeline: its default model
KONTEXT_STEPS_GUIDANCE = (28, 2.5)  # BFL's Kontext [dev] defaults


@dataclass(frozen=True)
class Licence:
    name: str
    commercial: bool  # the licence itself allows commercial use of the weights' outputs


APACHE = Licence("Apache-2.0", True)
FLUX_DEV_NC = Licence("FLUX.1 [dev] Non-Commercial License", False)
UNKNOWN = Licence("unknown (see the model card)", False)

# Licences of every model a profile names or the docs mention (model cards; see docs/models.md).
LICENCES: dict[str, Licence] = {
    "black-forest-labs/FLUX.2-klein-4B": APACHE,
    "black-forest-labs/FLUX.1-Fill-dev": FLUX_DEV_NC,
    "black-forest-labs/FLUX.1-Kontext-dev": FLUX_DEV_NC,
    "black-forest-labs/FLUX.1-dev": FLUX_DEV_NC,
    "black-forest-labs/FLUX.1-schnell": APACHE,
    "syscv-community/sam-hq-vit-huge": APACHE,
    "syscv-community/sam-hq-vit-large": APACHE,
    "syscv-community/sam-hq-vit-base": APACHE,
    # The checkpoint's card says Apache-2.0, but it is trained on Composition-1k (Adobe's research terms):
    # not counted as commercial-safe, so the fast profile leaves it out.
    "hustvl/vitmatte-base-composition-1k": Licence("Apache-2.0 (trained on Composition-1k: research terms)", False),
    "hustvl/vitmatte-small-composition-1k": Licence("Apache-2.0 (trained on Composition-1k: research terms)", False),
    "Qwen/Qwen2-VL-2B-Instruct": APACHE,
    "Qwen/Qwen2-VL-7B-Instruct": APACHE,
    "onnx-community/BiRefNet-ONNX": Licence("MIT", True),
}


def licence_of(model_id: str) -> Licence:
    return LICENCES.get(model_id, UNKNOWN)


@dataclass(frozen=True)
class Profile:
    name: ProfileName
    scene_model: str  # the generator (classic: ADGEN_FLUX_MODEL's default)
    scene_pipeline: ScenePipeline
    segmenter: str  # SAM-HQ checkpoint
    matting: str | None  # ViTMatte checkpoint, None = SAM-HQ's own edges
    vlm: str
    steps: int
    guidance: float
    dtype: str  # on CUDA; a CPU computes in float32 unless ADGEN_DTYPE says otherwise
    one_pass: bool  # the scene is painted around the product (one stage) instead of bg + composite + refine
    vram_gb: float  # published/estimated weights of every model resident in bf16 (docs/models.md)
    purpose: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


PROFILES: dict[ProfileName, Profile] = {
    "fast": Profile(
        "fast", "black-forest-labs/FLUX.2-klein-4B", "Flux2KleinInpaintPipeline",
        "syscv-community/sam-hq-vit-huge", None, "Qwen/Qwen2-VL-2B-Instruct",
        steps=4, guidance=1.0, dtype="bfloat16", one_pass=True, vram_gb=23.0,
        purpose="commercial use and 24 GB cards: every model commercially licensed, one 4-step pass",
    ),
    "quality": Profile(
        "quality", "black-forest-labs/FLUX.1-Fill-dev", "FluxFillPipeline",
        "syscv-community/sam-hq-vit-huge", "hustvl/vitmatte-base-composition-1k", "Qwen/Qwen2-VL-7B-Instruct",
        steps=28, guidance=30.0, dtype="bfloat16", one_pass=True, vram_gb=53.0,
        purpose="the best one-pass result regardless of licence (FLUX.1 [dev] licence: non-commercial)",
    ),
    "classic": Profile(
        "classic", "black-forest-labs/FLUX.1-dev", "FluxPipeline",
        "syscv-community/sam-hq-vit-huge", "hustvl/vitmatte-base-composition-1k", "Qwen/Qwen2-VL-2B-Instruct",
        steps=28, guidance=3.5, dtype="bfloat16", one_pass=False, vram_gb=40.0,
        purpose="the design document's path: text-to-image, composite with shadow, img2img refinement",
    ),
}


def resolve_name(settings: Settings) -> ProfileName:
    """``ADGEN_PROFILE``; ``auto`` = ``classic`` when only ``ADGEN_FLUX_MODEL`` was set (its old meaning),
    else ``fast``."""
    name = settings.profile
    if name != "auto":
        return name
    explicit = settings.model_fields_set
    if "flux_model" in explicit and "scene_model" not in explicit:
        return "classic"
    return "fast"


def active(settings: Settings) -> Profile:
    return PROFILES[resolve_name(settings)]


def scene_pipeline(settings: Settings) -> ScenePipeline:
    """The generator's pipeline class: ``ADGEN_SCENE_PIPELINE`` for a one-pass profile, else the profile's."""
    p = active(settings)
    return settings.scene_pipeline if p.one_pass and settings.scene_pipeline else p.scene_pipeline


def generator_model(settings: Settings) -> str:
    """The generator's id or folder: the role setting, else the profile's default (Kontext [dev] when the
    Kontext inpainting pipeline is chosen instead of the profile's)."""
    p = active(settings)
    if p.name == "classic":
        return settings.flux_model
    if settings.scene_model:
        return settings.scene_model
    if scene_pipeline(settings) == "FluxKontextInpaintPipeline" and p.scene_pipeline != "FluxKontextInpaintPipeline":
        return KONTEXT
    return p.scene_model


def segmenter_model(settings: Settings) -> str:
    return settings.seg_model or active(settings).segmenter


def matting_model(settings: Settings) -> str | None:
    """None = SAM-HQ's own edges (the profile has no matting model, or ``ADGEN_MATTING_MODEL=`` empty)."""
    if settings.matting_model is not None:
        return settings.matting_model or None
    return active(settings).matting


def vlm_model(settings: Settings) -> str:
    return settings.vlm_model or active(settings).vlm


def steps_and_guidance(settings: Settings) -> tuple[int, float]:
    """The generator's steps (``ADGEN_FLUX_STEPS`` overrides any profile's) and guidance."""
    p = active(settings)
    steps, guidance = p.steps, p.guidance
    if scene_pipeline(settings) == "FluxKontextInpaintPipeline" and p.scene_pipeline != "FluxKontextInpaintPipeline":
        steps, guidance = KONTEXT_STEPS_GUIDANCE
    return settings.flux_steps or steps, guidance


def describe(settings: Settings, models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The active profile for get_resources: its defaults and the models really configured, with licences.

    ``models`` is role -> {"id", "revision"}; each gets its licence and commercial-use flag added."""
    p = active(settings)
    out = {}
    for role, entry in models.items():
        lic = licence_of(str(entry.get("id")))
        out[role] = {**entry, "license": lic.name, "commercial_use": lic.commercial}
    return {
        "name": p.name, "requested": settings.profile, "scene_pipeline": scene_pipeline(settings),
        "one_pass": p.one_pass, "steps": steps_and_guidance(settings)[0], "guidance": steps_and_guidance(settings)[1],
        "dtype": p.dtype,
        "vram_gb_estimate": p.vram_gb, "purpose": p.purpose, "models": out,
        "commercial_use": all(m["commercial_use"] for m in out.values()) if out else None,
    }
