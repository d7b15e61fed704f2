"""The CPU draft backend: no weights, every stage a real classical algorithm, seconds per ad."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from pipeline.schemas import Relight
from pipeline.worker.backends.base import StepCallback
from pipeline.worker.stages.analyze import analyze_draft
from pipeline.worker.stages.background import generate_draft
from pipeline.worker.stages.cutout import CutoutResult, cut_out
from pipeline.worker.stages.lighting import Light
from pipeline.worker.stages.refine import harmonise


class DraftBackend:
    name = "draft"
    one_pass = False
    overlap = True  # numpy and OpenCV on the CPU, no state between calls

    def segment(self, photo: Image.Image, on_step: StepCallback) -> CutoutResult:
        on_step(0.1, "segmentation (classical cut-out)")
        return cut_out(photo)

    def background(
        self, prompt: str, negative: str, width: int, height: int, seed: int, guidance: float, on_step: StepCallback
    ) -> tuple[Image.Image, dict[str, Any]]:
        on_step(0.1, "background_generation (procedural scene)")
        image, plan = generate_draft(prompt, width, height, seed)
        # Stand the product a little below the horizon so it reads as resting on the floor.
        ground = min(0.93, plan.horizon + (1 - plan.horizon) * 0.62)
        return image, {"light_x": plan.light_x, "ground": ground, "texture": plan.texture}

    def refine(
        self, composite: Image.Image, mask: np.ndarray, prompt: str, negative: str, strength: float,
        guidance: float, seed: int, on_step: StepCallback, relight: Relight = "subtle", light: Light | None = None,
    ) -> Image.Image:
        on_step(0.1, "refinement (tone harmonisation)")
        return harmonise(composite, mask, strength, relight, light)

    def analyze(self, image: Image.Image, mask: np.ndarray | None, on_step: StepCallback) -> dict[str, Any]:
        on_step(0.1, "image_analysis (statistics)")
        return analyze_draft(image, mask)

    def info(self) -> dict[str, Any]:
        return {"backend": self.name, "device": "cpu", "precision": "float32", "models": []}
