"""The contract every image backend fulfils, so the runner never knows which one it drives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from PIL import Image

from pipeline.worker.stages.cutout import CutoutResult

# Called by long stages with (fraction 0..1, sub-step label); it raises to stop the job.
StepCallback = Callable[[float, str], None]


class Backend(Protocol):
    name: str
    one_pass: bool  # the scene is painted around the product in one stage (SceneBackend.scene)
    # A placements job may run a placement's step 1 on a second thread while the one before it renders its
    # copy. Only for backends whose stages are thread-safe and share no model cache with the copy stages.
    overlap: bool

    def segment(self, photo: Image.Image, on_step: StepCallback) -> CutoutResult:
        """The product's mask at the photo's resolution, with how far to trust it."""

    def background(
        self, prompt: str, negative: str, width: int, height: int, seed: int, guidance: float, on_step: StepCallback
    ) -> tuple[Image.Image, dict[str, Any]]:
        """The empty scene, plus hints for the composite (e.g. ``light_x``, ``ground``)."""

    def refine(
        self, composite: Image.Image, mask: np.ndarray, prompt: str, negative: str, strength: float,
        guidance: float, seed: int, on_step: StepCallback,
    ) -> Image.Image:
        """The composite made coherent (light, colour, contact) while keeping the product.

        A backend that relights the product itself may also take ``relight: Relight`` (keyword, default
        "subtle") and is then given the request's; either way ``stages/fidelity.keep_product`` restores and
        measures the product after it, the same for every backend."""

    def analyze(self, image: Image.Image, mask: np.ndarray | None, on_step: StepCallback) -> dict[str, Any]:
        """The design doc's four keys (spatial, color_material, lighting_mood, overall) and free_space."""

    def info(self) -> dict[str, Any]:
        """What is loaded, on which device and precision (for get_resources)."""


class SceneBackend(Backend, Protocol):
    """A backend whose profile paints the scene around the product in one pass (profiles fast, quality)."""

    def scene(
        self, canvas: Image.Image, paint: np.ndarray, reference: Image.Image, prompt: str, negative: str, seed: int,
        guidance: float, on_step: StepCallback,
    ) -> Image.Image:
        """``canvas``: the product placed by the layout plan on a neutral canvas; ``paint``: uint8, 255 where the
        model paints (everything but the product's eroded core, feathered); ``reference``: the product alone.
        Returns the scene at the canvas size; ``stages/fidelity.keep_product`` restores the product after it."""
