"""edit_ad: a finished job's request with some fields changed, and the least work that honours them.

Changes to the copy, its look or the delivered file re-run only design -> render -> final on the
parent's own step 1 image (identical pixels). Changes to the scene, the size or the product re-run
step 1, with the parent's seed unless a new one is given. A new text position re-runs step 1 only
when the product stands where the copy must go (the planner would have placed it elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from pipeline.images import PHOTO_UPLOAD, InputError
from pipeline.jobs.book import JobBook
from pipeline.jobs.job import Job
from pipeline.jobs.store import JobStore
from pipeline.schemas import EDITABLE_FIELDS, GenerateRequest

# Fields read only from step 2 on. Any other field (scene prompts, size, seed, cut-out, placements...) changes
# step 1's image, so a change to it re-runs step 1: a new field is safe by default.
STEP2_FIELDS = frozenset({
    "text_content", "subline", "cta", "badge", "price", "html_style_prompt", "use_qwen_analysis", "font_family",
    "font_weight", "text_color", "text_position", "text_size", "use_llm_html", "output_format", "quality",
    "brand_kit",
})
# Where the copy goes for each position, as a band of the canvas height (top, bottom fractions).
POSITION_BANDS = {"top": (0.0, 0.38), "center": (0.31, 0.69), "bottom": (0.62, 1.0)}
PRODUCT_IN_BAND = 0.12  # share of the band the product may cover before the copy cannot avoid it
MAX_LINEAGE = 32


@dataclass(frozen=True)
class EditPlan:
    request: GenerateRequest
    rerun_step1: bool
    note: str  # for the person: what is redone and why


def plan_edit(book: JobBook, store: JobStore, job_id: str, changes: dict[str, Any]) -> EditPlan:
    """The request for the edited job. Raises JobNotFound, InputError or pydantic's ValidationError."""
    parent = book.get(job_id)
    if parent.status != "completed":
        raise InputError(f"job_id: job {job_id} is {parent.status}; only a completed job can be edited")
    unknown = sorted(set(changes) - set(EDITABLE_FIELDS))
    if unknown:
        raise InputError(f"{', '.join(unknown)[:200]}: not editable (the photo and step 1 come from the job)")
    base = {k: v for k, v in parent.params.items() if k in EDITABLE_FIELDS}
    changed = {k: v for k, v in changes.items() if base.get(k) != v}
    scene = sorted(k for k in changed if k not in STEP2_FIELDS)
    moved = "text_position" in changed and _product_in_band(store, job_id, changed["text_position"])
    merged = {**base, **changes}
    if not (scene or moved):
        if not store.has(job_id, "step1.png"):
            raise InputError(f"job_id: job {job_id} has no step 1 image any more (removed); generate it again")
        req = GenerateRequest(**merged, start_step=2, parent_job_id=job_id)
        what = ", ".join(sorted(changed)) or "nothing changed"
        return EditPlan(req, False, f"Edited {what}: only the text layer was redone, on the same scene (identical "
                        "pixels).")
    source = photo_source(book, store, parent)
    if source != job_id and "seed" not in changes:
        merged["seed"] = book.get(source).seed  # a text-only edit's own seed never drew this scene
    req = GenerateRequest(**merged, start_step=1, parent_job_id=source)
    why = (f"{', '.join(scene)} changed the scene" if scene
           else f"the product stood where the copy goes ({changed['text_position']})")
    seed = "a new seed" if "seed" in changed else f"the same seed ({merged.get('seed')})"
    return EditPlan(req, True, f"Step 1 was generated again with {seed}: {why}.")


def photo_source(book: JobBook, store: JobStore, job: Job) -> str:
    """The nearest job in the lineage that still has the product photo (a step-2 job has none of its own)."""
    seen = 0
    current: Job | None = job
    while current is not None and seen < MAX_LINEAGE:
        if store.has(current.id, "product.png") or (store.job_dir(current.id) / PHOTO_UPLOAD).is_file():
            return current.id
        seen += 1
        current = book.jobs.get(current.parent_job_id) if current.parent_job_id else None
    raise InputError(f"job_id: the product photo of job {job.id} is no longer on the server; generate it again")


def _product_in_band(store: JobStore, job_id: str, position: str) -> bool:
    """Whether the parent's product covers the band the new position puts the copy in."""
    band = POSITION_BANDS.get(position)
    path = store.artifact(job_id, "mask.png")
    if band is None or path is None:
        return False  # auto: the planner finds the free space; no mask: nothing known to avoid
    with Image.open(path) as img:
        mask = np.asarray(img.convert("L").reduce(4)) > 127
    h = mask.shape[0]
    rows = mask[int(band[0] * h):max(int(band[0] * h) + 1, int(band[1] * h))]
    return bool(rows.mean() > PRODUCT_IN_BAND) if rows.size else False
