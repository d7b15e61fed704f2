"""A job's units: every (placement, variant) it returns, and its plan with the repeated stages.

A request with ``placements`` and/or ``variants`` makes several images. Some stages run once for
the whole job (cutting the product out), the background once per variant (one scene, cropped to
every placement: see pipeline/worker/units.py), everything else once per unit (the product is
placed, refined and the copy laid out again for each placement and its safe zones).

The plan says so by repeating stage keys with a suffix, ``composite#story-v2``: the server weights
progress and ETA per key exactly as for a one-ad job, and stage statistics are kept per base stage
and per unit canvas, so a story's compositing teaches the estimate for 1080x1920 compositing. A job
with one unit keeps the plain keys. Shared core: no heavy imports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.placements import PLACEMENTS
from pipeline.schemas import MAX_VARIANTS, GenerateRequest

SEP = "#"
CUSTOM = "custom"  # the placement name of a job sized by width/height
SHARED_STAGES = frozenset({"segment"})  # once per job, whatever the units
VARIANT_STAGES = frozenset({"background"})  # once per variant: one scene for every placement
MAX_MASTER_PIXELS = 1920 * 1280  # a shared scene larger than this (2.5 MP) is generated smaller; crops upscale
_NAMES = "|".join([*PLACEMENTS, CUSTOM])
# The artifact name a result is served under (adgen://jobs/<id>/result-story-v2.png); the file is
# results/story-v2.png in the job folder. Only names this pattern matches are ever served.
RESULT_ARTIFACT_RE = re.compile(rf"^result-({_NAMES})-v([1-{MAX_VARIANTS}])\.png$")


@dataclass(frozen=True)
class Unit:
    placement: str
    variant: int  # 1-based
    width: int
    height: int
    safe: tuple[int, int] = (0, 0)  # px at the top and bottom kept free of copy

    @property
    def name(self) -> str:
        return f"{self.placement}-v{self.variant}"

    @property
    def artifact(self) -> str:
        return f"result-{self.name}.png"

    def seed(self, job_seed: int) -> int:
        return (job_seed + self.variant - 1) % 2**32


def units_of(req: GenerateRequest) -> list[Unit]:
    """Every result in the order the worker makes them: variant by variant (each variant's scene is
    shared by its placements), placements in the order given. The first is final_result."""
    if req.placements:
        sizes = [Unit(p, 1, PLACEMENTS[p].width, PLACEMENTS[p].height, PLACEMENTS[p].safe_px())
                 for p in req.placements]
    else:
        sizes = [Unit(CUSTOM, 1, req.width, req.height)]
    return [Unit(u.placement, v, u.width, u.height, u.safe) for v in range(1, req.variants + 1) for u in sizes]


def is_multi(req: GenerateRequest) -> bool:
    """Whether the job goes through the units runner (placements given or several variants)."""
    return bool(req.placements) or req.variants > 1


def base_key(key: str) -> str:
    return key.split(SEP, 1)[0]


def tag_of(key: str) -> str | None:
    """``story-v2`` of ``composite#story-v2``, ``v2`` of ``background#v2``; None for a plain key."""
    parts = key.split(SEP, 1)
    return parts[1] if len(parts) == 2 else None


def expand_plan(req: GenerateRequest, plan: tuple[str, ...]) -> tuple[str, ...]:
    """The stage plan for every unit: shared stages once, then variant by variant its scene and each
    placement's stages in plan order (the first result is finished first)."""
    units = units_of(req)
    if len(units) == 1:
        return plan
    shared = [k for k in plan if k in SHARED_STAGES]
    per_variant = [k for k in plan if k in VARIANT_STAGES]
    per_unit = [k for k in plan if k not in SHARED_STAGES and k not in VARIANT_STAGES]
    out = list(shared)
    for v in range(1, req.variants + 1):
        out += [f"{k}{SEP}v{v}" for k in per_variant]
        out += [f"{k}{SEP}{u.name}" for u in units if u.variant == v for k in per_unit]
    return tuple(out)


def master_canvas(req: GenerateRequest) -> tuple[int, int]:
    """The canvas of a variant's shared scene: wide and tall enough that every placement is a crop of
    it without upscaling (the largest width by the largest height), scaled down past MAX_MASTER_PIXELS."""
    units = units_of(req)
    w, h = max(u.width for u in units), max(u.height for u in units)
    if w * h > MAX_MASTER_PIXELS:
        k = (MAX_MASTER_PIXELS / (w * h)) ** 0.5
        w, h = round(w * k), round(h * k)
    return w, h


def stage_canvas(req: GenerateRequest | None, key: str, default: tuple[int, int]) -> tuple[int, int]:
    """The canvas a stage of the plan works on (for its statistics and estimate)."""
    if req is None or not is_multi(req):
        return default
    base, tag = base_key(key), tag_of(key)
    units = units_of(req)
    if base in VARIANT_STAGES:
        return master_canvas(req)
    if base in SHARED_STAGES:
        return default
    unit = next((u for u in units if u.name == tag), units[0])
    return unit.width, unit.height


def with_tag(label: str, key: str) -> str:
    """A stage label (or sub-step) marked with its unit: 'compositing [story-v2]'."""
    tag = tag_of(key)
    return f"{label} [{tag}]" if tag else label
