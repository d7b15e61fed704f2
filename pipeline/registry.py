"""The stage registry: every stage of a job declared once, with everything both sides need.

The server reads it to plan a job, weight its progress and label its status; the worker
reads it to run the plan (its implementations are keyed by these specs). A stage's key
string appears here and nowhere else; other modules refer to the spec objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from pipeline.schemas import GenerateRequest

Step = Literal["step1_background", "step2_html_rendering"]


@dataclass(frozen=True)
class StageSpec:
    key: str  # also the fault key tests use (e.g. "oom@segment") and the statistics key
    label: str  # shown as sub_step, as the design doc names the stages
    message: str  # shown while the stage runs
    step: Step
    artifacts: tuple[str, ...]  # files the stage writes into the job folder
    # First guesses in seconds, per backend, before anything is measured. The diffusion figures
    # are the design doc's L4 measurements; the draft ones were measured on a 2-core CPU.
    default_seconds: dict[str, float] = field(default_factory=dict)


SEGMENT = StageSpec(
    "segment", "segmentation", "Cutting the product out of its photo...", "step1_background",
    ("cutout.png",), {"draft": 0.4, "diffusion": 8.0},
)
BACKGROUND = StageSpec(
    "background", "background_generation", "Generating the background scene...", "step1_background",
    ("background.png",), {"draft": 0.5, "diffusion": 260.0},
)
COMPOSITE = StageSpec(
    "composite", "compositing", "Placing the product with shadows...", "step1_background",
    ("composite.png", "mask.png"), {"draft": 0.3, "diffusion": 1.0},
)
REFINE = StageSpec(
    "refine", "refinement", "Harmonising the product with the scene...", "step1_background",
    ("step1.png",), {"draft": 0.3, "diffusion": 120.0},
)
# The one-pass profiles (fast, quality): background + composite + refine collapse into this one stage, which
# places the product by the layout plan and lets the model paint the scene around it (pipeline/profiles.py).
SCENE = StageSpec(
    "scene", "scene_generation", "Painting the scene around the product...", "step1_background",
    ("composite.png", "mask.png", "step1.png"), {"diffusion": 20.0},
)
ANALYZE = StageSpec(
    "analyze", "image_analysis", "Analysing the image (space, colour, light, mood)...", "step2_html_rendering",
    ("analysis.json",), {"draft": 0.2, "diffusion": 130.0},
)
DESIGN = StageSpec(
    "design", "html_design", "Designing the text layer (HTML/CSS)...", "step2_html_rendering",
    ("design.html",), {"draft": 0.05, "diffusion": 44.0},
)
RENDER = StageSpec(
    "render", "html_rendering", "Rendering the text layer in headless Chromium...", "step2_html_rendering",
    ("text.png",), {"draft": 0.4, "diffusion": 7.0},
)
FINAL = StageSpec(
    "final", "final_composite", "Compositing the final ad...", "step2_html_rendering",
    ("final.png",), {"draft": 0.1, "diffusion": 1.0},
)

STAGES: dict[str, StageSpec] = {
    s.key: s for s in (SEGMENT, BACKGROUND, COMPOSITE, REFINE, SCENE, ANALYZE, DESIGN, RENDER, FINAL)
}
STEP1: tuple[StageSpec, ...] = (SEGMENT, BACKGROUND, COMPOSITE, REFINE)  # the classic path and the draft backend
STEP1_ONE_PASS: tuple[StageSpec, ...] = (SEGMENT, SCENE)
_COLLAPSED = (BACKGROUND.key, COMPOSITE.key, REFINE.key)
FALLBACK_SECONDS = 1.0  # a stage or backend with no default


def default_seconds(backend: str, key: str) -> float:
    return STAGES[key].default_seconds.get(backend, FALLBACK_SECONDS) if key in STAGES else FALLBACK_SECONDS


def plan_stages(req: GenerateRequest, one_pass: bool = False) -> tuple[str, ...]:
    """The keys of every stage this request will run, in order (decided once, at submit). ``one_pass``: the
    job runs on a backend whose profile paints the scene around the product (one scene stage)."""
    stages = [s.key for s in (STEP1_ONE_PASS if one_pass else STEP1)] if req.start_step == 1 else []
    if req.text_content is not None:
        if req.use_qwen_analysis:
            stages.append(ANALYZE.key)
        stages += [DESIGN.key, RENDER.key, FINAL.key]
    elif req.start_step == 2:
        stages.append(FINAL.key)  # nothing to add: the given step 1 image becomes the final image
    return tuple(stages)


def one_pass_plan(plan: tuple[str, ...]) -> tuple[str, ...]:
    """A plan made for the classic path, run on a one-pass backend: background, composite and refine
    become the one scene stage (in place of the first of them)."""
    if SCENE.key in plan or not any(k in plan for k in _COLLAPSED):
        return plan
    out: list[str] = []
    for key in plan:
        if key in _COLLAPSED:
            if SCENE.key not in out:
                out.append(SCENE.key)
        else:
            out.append(key)
    return tuple(out)
