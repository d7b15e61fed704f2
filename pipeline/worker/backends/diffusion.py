"""The model backend: BiRefNet segmentation, FLUX text-to-image and img2img, Qwen2-VL analysis.

Models come from the one loader and live in the VRAM-budgeted cache. Denoising loops report
every step through ``callback_on_step_end`` (which is also where a stop request lands), and
CUDA out-of-memory errors are retried twice after freeing memory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import cv2
import numpy as np
import torch
from PIL import Image

from pipeline.worker.backends.base import StepCallback
from pipeline.worker.errors import FatalDeviceError, UserFacingError
from pipeline.worker.hooks import WorkerHooks
from pipeline import registry
from pipeline.config import Settings
from pipeline.worker.models import loader
from pipeline.worker.models.cache import ModelCache, flush_gpu
from pipeline.worker.stages.analyze import analyze_draft
from pipeline.worker.stages.refine import harmonise
from pipeline.worker.stages.cutout import CutoutResult, fill_holes

log = logging.getLogger(__name__)
T = TypeVar("T")

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
OOM_RETRIES = 2

# The design doc's four questions (section 8.3).
VLM_QUESTIONS = {
    "spatial": "Describe the spatial layout: where the product is and where there is empty space for text.",
    "color_material": "Describe the dominant colours and the materials and textures you see.",
    "lighting_mood": "Describe the lighting (direction, softness, time of day) and the mood.",
    "overall": "Describe the whole scene in one sentence.",
}


_POISON = ("illegal memory access", "device-side assert", "unspecified launch failure", "misaligned address")


def is_poisoned(exc: BaseException) -> bool:
    """Errors after which every later CUDA call fails too (the context is lost)."""
    return isinstance(exc, RuntimeError) and any(k in str(exc).lower() for k in _POISON)


def mask_confidence(prob: np.ndarray) -> float:
    """How decided a segmenter's probability map is: few undecided pixels around a product of sane size.

    A model that knows where the product is answers near 0 or 1 almost everywhere; a wide band of
    middling values (or a product of almost nothing or almost everything) means it is guessing.
    """
    area = float((prob > 0.5).mean())
    if not 0.002 < area < 0.98:
        return 0.0
    undecided = float(((prob > 0.2) & (prob < 0.8)).sum()) / max(1.0, float((prob > 0.5).sum()))
    return round(float(np.clip(1.0 - 2.0 * undecided, 0.0, 1.0)), 4)


class DiffusionBackend:
    name = "diffusion"

    def __init__(self, settings: Settings, hooks: WorkerHooks | None = None) -> None:
        self.settings = settings
        self.hooks = hooks or WorkerHooks()
        self.device = loader.resolve_device(settings)
        budget_gb = loader.memory_budget_gb(settings, self.device)
        self.plan = loader.plan_precision(self.device, budget_gb)
        self.cache = ModelCache(int(budget_gb * 2**30))
        self.profile, self.steps, self.default_guidance = loader.flux_profile(settings)
        self.oom_retries_used = 0
        log.info("diffusion backend on %s: %s (FLUX profile %s, %d steps)", self.device, self.plan.reason,
                 self.profile, self.steps)

    # ---- helpers -----------------------------------------------------------------------
    def _with_oom_retry(self, spec: registry.StageSpec, keep: str, fn: Callable[[], T]) -> T:
        stage = spec.label
        for attempt in range(OOM_RETRIES + 1):
            try:
                self.hooks.model_call(spec.key)
                return fn()
            except torch.cuda.OutOfMemoryError as exc:
                log.warning("%s: CUDA out of memory (attempt %d/%d): %s", stage, attempt + 1, OOM_RETRIES + 1, exc)
                if attempt == OOM_RETRIES:
                    raise UserFacingError(
                        f"{stage}: out of GPU memory after {OOM_RETRIES} retries; try a smaller canvas or "
                        "lower the VRAM budget so models are offloaded"
                    ) from exc
                self.oom_retries_used += 1
                self.cache.evict_all(keep=keep)  # each eviction flushes; flush once more for what
                flush_gpu()  # the failed attempt itself left in the allocator
            except RuntimeError as exc:
                if is_poisoned(exc):
                    raise FatalDeviceError(f"{stage}: {exc}") from exc
                raise
        raise AssertionError("unreachable")

    def _flux(self) -> Any:
        return self.cache.get("flux", lambda: loader.load_flux(self.settings, self.plan))

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device="cpu").manual_seed(seed)

    def _step_callback(self, label: str, steps: int, on_step: StepCallback) -> Callable[..., dict]:
        def callback(pipe: Any, step: int, timestep: Any, kwargs: dict) -> dict:
            on_step((step + 1) / steps, f"{label} ({step + 1}/{steps})")  # raises when a stop is requested
            return kwargs

        return callback

    def _cfg(self, negative: str) -> dict[str, Any]:
        # FLUX ignores negative prompts unless true CFG is on (true_cfg_scale > 1), which doubles the compute.
        if negative.strip() and self.settings.true_cfg_scale > 1:
            return {"negative_prompt": negative, "true_cfg_scale": self.settings.true_cfg_scale}
        return {}

    # ---- stages ------------------------------------------------------------------------
    def segment(self, photo: Image.Image, on_step: StepCallback) -> CutoutResult:
        def run() -> CutoutResult:
            model = self.cache.get("segmenter", lambda: loader.load_segmenter(self.settings, self.plan))
            on_step(0.3, "segmentation (BiRefNet)")
            size = self.settings.seg_input_size
            rgb = photo.convert("RGB")
            x = np.asarray(rgb.resize((size, size), Image.Resampling.BILINEAR), np.float32) / 255.0
            x = (x - IMAGENET_MEAN) / IMAGENET_STD
            param = next(model.parameters())
            tensor = torch.from_numpy(x.transpose(2, 0, 1))[None].to(param.device, param.dtype)
            with torch.inference_mode():
                pred = model(tensor)[-1].sigmoid()[0, 0].float().cpu().numpy()
            self.cache.release("segmenter")
            mask = cv2.resize(pred, rgb.size, interpolation=cv2.INTER_LINEAR)
            # Clean edges: drop faint speckle, fill enclosed holes, keep the soft boundary.
            solid = fill_holes(((mask > 0.5) * 255).astype(np.uint8))
            soft = np.where(solid > 0, np.maximum(mask, 0.5), np.where(mask > 0.15, mask, 0))
            return CutoutResult((np.clip(soft, 0, 1) * 255).astype(np.uint8), mask_confidence(mask), "segmenter")

        return self._with_oom_retry(registry.SEGMENT, "segmenter", run)

    def background(
        self, prompt: str, negative: str, width: int, height: int, seed: int, guidance: float, on_step: StepCallback
    ) -> tuple[Image.Image, dict[str, Any]]:
        steps = self.steps
        g = guidance if self.profile == "dev" else self.default_guidance

        def run() -> Image.Image:
            pipe = self._flux()
            on_step(0.0, f"background_generation (0/{steps})")
            out = pipe(
                prompt=prompt, height=height, width=width, num_inference_steps=steps, guidance_scale=g,
                generator=self._generator(seed), callback_on_step_end=self._step_callback(
                    "background_generation", steps, on_step), **self._cfg(negative),
            )
            return out.images[0]

        image = self._with_oom_retry(registry.BACKGROUND, "flux", run)
        return image, {"light_x": 0.5, "ground": 0.86}

    def refine(
        self, composite: Image.Image, mask: np.ndarray, prompt: str, negative: str, strength: float,
        guidance: float, seed: int, on_step: StepCallback,
    ) -> Image.Image:
        # img2img runs only int(steps * strength) of its steps.
        steps = max(1, int(self.steps * strength)) if strength > 0 else 0
        g = guidance if self.profile == "dev" else self.default_guidance

        def run() -> Image.Image:
            if steps == 0:
                return composite
            i2i = loader.flux_img2img(self._flux())
            out = i2i(
                prompt=prompt, image=composite, strength=strength, height=composite.height, width=composite.width,
                num_inference_steps=self.steps, guidance_scale=g, generator=self._generator(seed + 1),
                callback_on_step_end=self._step_callback("refinement", steps, on_step), **self._cfg(negative),
            )
            return out.images[0]

        refined = self._with_oom_retry(registry.REFINE, "flux", run).convert("RGB")
        # img2img would redraw the product too, and an ad must show the real one: keep the product from
        # the composite, take light, shadows and surroundings from the refined image, then harmonise tones.
        keep = cv2.erode(mask, np.ones((5, 5), np.uint8)).astype(np.float32)[..., None] / 255.0
        merged = np.asarray(refined, np.float32) * (1 - keep) + np.asarray(composite.convert("RGB"), np.float32) * keep
        out = Image.fromarray(np.clip(merged, 0, 255).astype(np.uint8), "RGB")
        return harmonise(out, mask, strength * 0.5)

    def analyze(self, image: Image.Image, mask: np.ndarray | None, on_step: StepCallback) -> dict[str, Any]:
        result = analyze_draft(image, mask)  # free-space map, palette: measured from pixels

        def run() -> dict[str, str]:
            processor, model = self.cache.get("vlm", lambda: loader.load_vlm(self.settings, self.plan))
            answers = {}
            for i, (key, question) in enumerate(VLM_QUESTIONS.items()):
                on_step(i / len(VLM_QUESTIONS), f"image_analysis (Qwen2-VL {i + 1}/{len(VLM_QUESTIONS)})")
                messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
                text = processor.apply_chat_template(messages, add_generation_prompt=True)
                inputs = processor(text=[text], images=[image], return_tensors="pt").to(model.device)
                with torch.inference_mode():
                    out = model.generate(**inputs, max_new_tokens=self.settings.vlm_max_new_tokens, do_sample=False)
                new = out[:, inputs["input_ids"].shape[1]:]
                answers[key] = processor.batch_decode(new, skip_special_tokens=True)[0].strip()
            self.cache.release("vlm")
            return answers

        result.update(self._with_oom_retry(registry.ANALYZE, "vlm", run))
        return result

    def info(self) -> dict[str, Any]:
        return {
            "backend": self.name, "device": self.device, "precision": self.plan.as_dict(),
            "flux": {"model": self.settings.flux_model, "profile": self.profile, "steps": self.steps},
            "segmentation": self.settings.seg_model, "analysis": self.settings.vlm_model,
            "cache": self.cache.info(), "oom_retries_used": self.oom_retries_used,
        }
