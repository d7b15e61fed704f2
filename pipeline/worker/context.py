"""The typed state of one job inside the worker: what each stage reads and writes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipeline.messages import JobReport
from pipeline.schemas import GenerateRequest
from pipeline.worker.artifacts import ArtifactWriter
from pipeline.worker.backends.base import Backend, StepCallback
from pipeline.worker.layout import LayoutPlan
from pipeline.worker.stages.contrast import take_lowest
from pipeline.worker.stages.design import Design, DesignSpec


class JobStopped(Exception):
    """Raised at a safe point when the server asked this job to stop."""


@dataclass
class JobContext:
    job_id: str
    job_dir: Path
    request: GenerateRequest
    seed: int
    backend: Backend
    plan: tuple[str, ...]
    on_step: StepCallback  # set by the runner for the stage in progress; raises when a stop is requested
    stop_requested: Callable[[], bool]
    # Images and facts, filled in by the stages in plan order.
    photo: Image.Image | None = None
    cutout: Image.Image | None = None
    background: Image.Image | None = None
    hints: dict[str, Any] = field(default_factory=dict)
    composite: Image.Image | None = None
    mask: np.ndarray | None = None  # the product on the canvas (uint8, 255 = product); None when unknown
    step1: Image.Image | None = None
    analysis: dict[str, Any] | None = None
    layout: LayoutPlan | None = None  # the product's and the copy's boxes (composite plans, design follows)
    font_css: str = ""
    template: Design | None = None
    design_spec: DesignSpec | None = None  # the template's spec, brand kit and contrast choices applied
    contrast_ratio: float | None = None  # lowest WCAG ratio of the copy on the rendered ad (stages/contrast.py)
    design: Design | None = None
    text: Image.Image | None = None
    final: Image.Image | None = None
    # What the job reports about itself (designer used, notes).
    designer: str | None = None
    design_note: str | None = None
    design_removed: tuple[str, ...] = ()
    warnings: list[str] = field(default_factory=list)  # one sentence each, for the person
    cutout_confidence: float | None = None
    output_file: str | None = None
    product_fidelity: dict[str, float] | None = None  # set by refine (stages/fidelity.py)
    refine_seed: int | None = None  # the seed of the kept refinement (seed + 1 after a retry)
    provenance: dict[str, Any] | None = None  # written into step1.png, final.png and the delivered file
    artifacts: list[str] = field(default_factory=list)
    safe: tuple[int, int] = (0, 0)  # px at the top and bottom kept free of copy (a placement's platform UI)
    results: list[dict[str, Any]] = field(default_factory=list)  # placements/variants jobs (worker/unit_runner.py)
    writes: ArtifactWriter = field(default_factory=ArtifactWriter)  # artifacts, written in the background
    # A placements job's later units keep only what is read or checked: their text.png and final.png (moved to
    # results/); their composite, mask and step 1 pictures are served by nothing and cost an encode each, and
    # they have no preview.jpg (the job's is the first unit's, then the contact sheet).
    keep: frozenset[str] | None = None

    @property
    def width(self) -> int:
        return self.request.width

    @property
    def height(self) -> int:
        return self.request.height

    def check_stop(self) -> None:
        if self.stop_requested():
            raise JobStopped()

    def save(self, name: str, img: Image.Image, provenance: dict[str, Any] | None = None) -> None:
        """Encoded while the job goes on (``writes.flush`` before reading it back); ``provenance``: metadata
        chunks saying what made the image (pipeline/worker/provenance.py)."""
        if self.keep is not None and name not in self.keep:
            return
        self.writes.png(img, self.job_dir / name, provenance)
        self.artifacts.append(name)

    def save_preview(self, img: Image.Image) -> None:
        if self.keep is None:
            self.writes.preview(img, self.job_dir / "preview.jpg")

    def write_text(self, name: str, text: str) -> None:
        (self.job_dir / name).write_text(text)
        self.artifacts.append(name)

    def product_bbox(self) -> list[int] | None:
        if self.mask is None or not (self.mask > 127).any():
            return None
        ys, xs = np.nonzero(self.mask > 127)
        return [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]

    def report(self) -> JobReport:
        """What the job says about itself at its end, once every artifact it wrote is on disk."""
        self.writes.flush()
        t = self.design or self.template
        return JobReport(
            designer=self.designer, design_note=self.design_note, design_removed=self.design_removed,
            text_region=t.region if t else None, font_px=t.font_px if t else None,
            warnings=tuple(dict.fromkeys(self.warnings)), cutout_confidence=self.cutout_confidence,
            output_file=self.output_file, product_fidelity=self.product_fidelity, provenance=self.provenance,
            contrast_ratio=take_lowest(self.job_id, self.contrast_ratio),  # over every result of the job
            results=tuple(self.results),
        )
