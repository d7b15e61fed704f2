"""The model backend: SAM-HQ (+ ViTMatte) segmentation, the profile's generator, a VLM's analysis.

The generator follows the profile (``pipeline/profiles.py``): ``fast`` and ``quality`` paint the scene
around the placed product in one pass (``scene``: FLUX.2 [klein] inpainting with the product as
``image_reference``, or FLUX.1 Fill); ``classic`` runs FLUX.1 text-to-image (``background``) and img2img
over the composite (``refine``) on the same modules.

Models come from the one loader, in the dtype and placement of the memory plan, and live in
the model cache. Denoising loops report every step through ``callback_on_step_end``; a stop
request ends the loop through diffusers' own ``pipe._interrupt`` (so the pipeline still runs
its clean-up, which re-arms offload hooks) and is raised once the pipeline has returned.
CUDA out-of-memory errors are retried twice after freeing memory.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any, TypeVar

import cv2
import numpy as np
import torch
from PIL import Image

from pipeline import profiles, registry
from pipeline.config import Settings
from pipeline.schemas import Relight
from pipeline.worker.backends.base import StepCallback
from pipeline.worker.errors import FatalDeviceError, UserFacingError
from pipeline.worker.hooks import WorkerHooks
from pipeline.worker.models import loader
from pipeline.worker.models.cache import ModelCache, flush_gpu
from pipeline.worker.models.memory import GiB, MemoryPlan
from pipeline.worker.stages.analyze import analyze_draft
from pipeline.worker.stages.cutout import CutoutResult, cut_out, fill_holes
from pipeline.worker.stages.lighting import Light
from pipeline.worker.stages.refine import harmonise

log = logging.getLogger(__name__)
T = TypeVar("T")

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
OOM_RETRIES = 2
LOADERS: dict[str, Callable[[Settings, MemoryPlan], Any]] = {
    "flux": loader.load_flux, "scene": loader.load_scene, "segmenter": loader.load_segmenter, "vlm": loader.load_vlm,
}

# The design doc's four questions (section 8.3), asked at once for one JSON answer.
ANALYSIS_KEYS = ("spatial", "color_material", "lighting_mood", "overall")
ANALYSIS_PROMPT = (
    "Look at this advertising image and answer with one JSON object and nothing else. It must have exactly "
    "these four keys, each value one or two complete English sentences:\n"
    '"spatial": where the product is and where there is empty space for text;\n'
    '"color_material": the dominant colours and the materials and textures;\n'
    '"lighting_mood": the lighting (direction, softness, time of day) and the mood;\n'
    '"overall": the whole scene in one sentence.'
)
ANALYSIS_RETRY = (
    ANALYSIS_PROMPT + "\nYour previous answer was not such a JSON object. Reply with only the JSON object, "
    'starting with {"spatial": and ending with }.'
)


_POISON = ("illegal memory access", "device-side assert", "unspecified launch failure", "misaligned address")


def flux_size(width: int, height: int) -> tuple[int, int]:
    """The nearest size FLUX can generate (multiples of 16: 8x VAE downsampling, then 2x2 patches);
    the result is resized to the exact requested size afterwards."""
    return max(16, round(width / 16) * 16), max(16, round(height / 16) * 16)


def _exact(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)


def text_encoder_layers(text_layers: int, joint_dim: int, hidden: int) -> tuple[int, ...]:
    """The hidden layers FLUX.2 [klein] stacks into its text embedding: as many as the transformer's joint
    dimension holds, evenly spaced; (9, 18, 27) for the published 36-layer Qwen3 encoders."""
    n = max(1, joint_dim // max(1, hidden))
    return tuple(max(1, min(text_layers, round((i + 1) * text_layers / (n + 1)))) for i in range(n))


def is_poisoned(exc: BaseException) -> bool:
    """Errors after which every later CUDA call fails too (the context is lost)."""
    return isinstance(exc, RuntimeError) and any(k in str(exc).lower() for k in _POISON)


def img2img_steps(steps: int, strength: float) -> int:
    """The denoising steps FluxImg2ImgPipeline really runs (its ``get_timesteps``): 17 of 28 at 0.6."""
    init = min(steps * strength, steps)
    return steps - int(max(steps - init, 0))


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


def salient_box(rgb: Image.Image) -> tuple[list[float], np.ndarray]:
    """The box that prompts SAM-HQ: the classical cut-out's mask bounds, padded by 2% (the middle
    90% of the photo when it finds nothing), and that mask."""
    w, h = rgb.size
    mask = cut_out(rgb).mask
    ys, xs = np.nonzero(mask > 127)
    if len(xs) == 0 or (len(xs) > 0.97 * w * h):
        return [0.05 * w, 0.05 * h, 0.95 * w, 0.95 * h], mask
    pad = 0.02 * max(w, h)
    return [max(0.0, xs.min() - pad), max(0.0, ys.min() - pad), min(w - 1.0, xs.max() + pad),
            min(h - 1.0, ys.max() + pad)], mask


def trimap(mask: np.ndarray, band: int) -> np.ndarray:
    """255 sure product, 0 sure background, 128 the band around the edge ViTMatte decides."""
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    solid = mask.astype(np.uint8)
    out = np.full(mask.shape, 128, np.uint8)
    out[cv2.erode(solid, k) > 0] = 255
    out[cv2.dilate(solid, k) == 0] = 0
    return out


def parse_analysis(text: str) -> dict[str, str] | None:
    """The four keys from a VLM's answer, or None unless it is that JSON object with whole sentences."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        data = json.loads(text[start:end + 1])
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    out = {}
    for key in ANALYSIS_KEYS:
        value = data.get(key)
        if not isinstance(value, str):
            return None
        value = " ".join(value.split())[:800]
        # A whole sentence: a few words, ending like one (a cut-off answer would not reach the brace anyway).
        if len(value.split()) < 3 or not re.search(r"[.!?]['\")\]]?$", value):
            return None
        out[key] = value
    return out


class _StepReporter:
    """``callback_on_step_end`` that reports progress; when ``on_step`` raises (a stop request), it ends
    the denoising loop through ``pipe._interrupt`` and keeps the exception to raise after the call."""

    def __init__(self, label: str, total: int, on_step: StepCallback) -> None:
        self.label, self.total, self.on_step = label, total, on_step
        self.error: BaseException | None = None
        self.calls = 0

    def __call__(self, pipe: Any, step: int, timestep: Any, kwargs: dict) -> dict:
        self.calls += 1
        try:
            self.on_step(min(1.0, (step + 1) / self.total), f"{self.label} ({step + 1}/{self.total})")
        except Exception as exc:
            self.error = exc
            pipe._interrupt = True
        return kwargs

    def raise_if_stopped(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error


class DiffusionBackend:
    name = "diffusion"

    def __init__(self, settings: Settings, hooks: WorkerHooks | None = None) -> None:
        self.settings = settings
        self.hooks = hooks or WorkerHooks()
        self.device = loader.resolve_device(settings)
        self.dtype = loader.resolve_dtype(settings, self.device)
        budget_gb = loader.memory_budget_gb(settings, self.device)
        self.cache = ModelCache(int(budget_gb * GiB), self.device)
        self.profile = profiles.active(settings)
        self.one_pass = self.profile.one_pass
        # Model stages stay in turn: the model cache may offload one pipeline to load another's.
        self.overlap = False
        self.generator_key = loader.generator_key(settings)
        if self.one_pass:
            self.flux_preset = None
            self.steps, self.default_guidance = profiles.steps_and_guidance(settings)
        else:  # classic: FLUX.1 [dev] or [schnell] (ADGEN_FLUX_MODEL keeps its meaning)
            self.flux_preset, self.steps, self.default_guidance = loader.flux_profile(settings)
        self.oom_retries_used = 0
        self.plan: MemoryPlan | None = None
        self.problem: str | None = None
        self._plan_now()
        log.info("diffusion backend on %s in %s (profile %s, %s, %d steps)", self.device,
                 str(self.dtype).removeprefix("torch."), self.profile.name, profiles.scene_pipeline(settings),
                 self.steps)

    # ---- plan --------------------------------------------------------------------------
    def _plan_now(self) -> None:
        try:
            self.plan = loader.plan_for(self.settings, self.device)
            self.problem = self.plan.refusal and f"the configured models do not fit this machine: {self.plan.refusal}"
            log.info("memory plan: %s", self.plan.summary())
        except UserFacingError as exc:  # a model not downloaded yet: the worker still serves draft jobs
            self.plan, self.problem = None, str(exc)
            log.error("no memory plan: %s", exc)
        except Exception as exc:  # an unreadable config: the same, with the reason in one line
            self.plan = None
            self.problem = f"could not plan memory for the configured models: {type(exc).__name__}: " + (
                str(exc).strip().splitlines() or [""])[0][:200]
            log.exception("no memory plan")

    def _require_plan(self) -> MemoryPlan:
        if self.plan is None:
            self._plan_now()  # the model may have been downloaded since
        if self.problem is not None or self.plan is None:
            raise UserFacingError(self.problem or "no memory plan")
        return self.plan

    def _get(self, key: str) -> Any:
        plan = self._require_plan()
        return self.cache.get(key, lambda: LOADERS[key](self.settings, plan), keep=plan.keeps(key))

    def warmup_pending(self) -> list[str]:
        """Models the plan keeps resident that are not loaded yet (loaded one by one while idle)."""
        if self.plan is None or self.problem is not None:
            return []
        return [k for k in self.plan.resident if k in LOADERS and k not in self.cache]

    def warm_one(self) -> str | None:
        pending = self.warmup_pending()
        if not pending:
            return None
        self._get(pending[0])
        log.info("warm start: %s loaded", pending[0])
        return pending[0]

    # ---- helpers -----------------------------------------------------------------------
    def _with_oom_retry(self, spec: registry.StageSpec, keep: str, fn: Callable[[], T]) -> T:
        stage = spec.label
        for attempt in range(OOM_RETRIES + 1):
            try:
                self.hooks.model_call(spec.key)
                return fn()
            except torch.cuda.OutOfMemoryError as exc:
                message = (str(exc).strip().splitlines() or ["CUDA out of memory"])[0][:200]
            except RuntimeError as exc:
                if is_poisoned(exc):
                    raise FatalDeviceError(f"{stage}: {exc}") from exc
                raise
            # Out of the handler now: the exception, its traceback and the failed attempt's frames (holding
            # its tensors) are released, so the eviction and flush below can give that memory back.
            log.warning("%s: CUDA out of memory (attempt %d/%d): %s", stage, attempt + 1, OOM_RETRIES + 1, message)
            if attempt == OOM_RETRIES:
                raise UserFacingError(
                    f"{stage}: out of GPU memory after {OOM_RETRIES} retries; try a smaller canvas or "
                    "lower the VRAM budget so models are offloaded"
                )
            self.oom_retries_used += 1
            self.cache.evict_all(keep=keep)  # each eviction flushes; flush once more for what
            flush_gpu()  # the failed attempt itself left in the allocator
        raise AssertionError("unreachable")

    def _generator(self, seed: int) -> torch.Generator:
        return torch.Generator(device="cpu").manual_seed(seed)

    def _cfg(self, negative: str) -> dict[str, Any]:
        # FLUX ignores negative prompts unless true CFG is on (true_cfg_scale > 1), which doubles the compute.
        if negative.strip() and self.settings.true_cfg_scale > 1:
            return {"negative_prompt": negative, "true_cfg_scale": self.settings.true_cfg_scale}
        return {}

    # ---- stages ------------------------------------------------------------------------
    def segment(self, photo: Image.Image, on_step: StepCallback) -> CutoutResult:
        self._require_plan()

        def run() -> CutoutResult:
            models = self._get("segmenter")
            if isinstance(models, loader.OnnxSegmenter):
                result = self._segment_onnx(models, photo, on_step)
            else:
                result = self._segment_sam(models, photo, on_step)
            self.cache.release("segmenter")
            return result

        return self._with_oom_retry(registry.SEGMENT, "segmenter", run)

    def _segment_sam(self, models: loader.SegmenterModels, photo: Image.Image, on_step: StepCallback) -> CutoutResult:
        rgb = photo.convert("RGB")
        w, h = rgb.size
        on_step(0.1, "segmentation (salient box)")
        box, classical = salient_box(rgb)
        on_step(0.3, "segmentation (SAM-HQ)")
        param = next(models.sam.parameters())
        inputs = models.sam_processor(images=rgb, input_boxes=[[box]], return_tensors="pt")
        with torch.inference_mode():
            out = models.sam(pixel_values=inputs["pixel_values"].to(param.device, param.dtype),
                             input_boxes=inputs["input_boxes"].to(param.device, torch.float32),
                             multimask_output=False)
        logits = models.sam_processor.image_processor.post_process_masks(
            out.pred_masks.float().cpu(), inputs["original_sizes"], inputs["reshaped_input_sizes"], binarize=False,
        )[0][0, 0].numpy()
        prob = 1.0 / (1.0 + np.exp(-np.clip(logits, -30, 30)))
        predicted_iou = float(out.iou_scores.float().flatten()[0].clamp(0, 1))
        hard = fill_holes(((prob > 0.5) * 255).astype(np.uint8)) > 0
        alpha = prob
        if models.matte is not None and hard.any():
            on_step(0.6, "segmentation (ViTMatte edges)")
            alpha = self._matte(models, rgb, hard)
        solid = fill_holes(((alpha > 0.5) * 255).astype(np.uint8))
        soft = np.where(solid > 0, np.maximum(alpha, 0.5), np.where(alpha > 0.05, alpha, 0))
        decided = mask_confidence(alpha)
        agreement = float((hard & (classical > 127)).sum() / max(1, (hard | (classical > 127)).sum()))
        # Uncalibrated until measured on real weights: trust the weaker of SAM-HQ's own IoU estimate and
        # how decided the matte is.
        confidence = round(min(predicted_iou, decided), 4)
        return CutoutResult((np.clip(soft, 0, 1) * 255).astype(np.uint8), confidence, "sam-hq+vitmatte"
                            if models.matte is not None else "sam-hq",
                            components={"predicted_iou": round(predicted_iou, 4), "decided": decided,
                                        "classical_agreement": round(agreement, 4)})

    def _matte(self, models: loader.SegmenterModels, rgb: Image.Image, hard: np.ndarray) -> np.ndarray:
        """Alpha from ViTMatte in the band around SAM-HQ's edge; solid inside, clear outside."""
        w, h = rgb.size
        tri = trimap(hard, max(3, round(0.012 * max(w, h))))
        scale = min(1.0, self.settings.matting_max_side / max(w, h))
        sw, sh = max(32, round(w * scale)), max(32, round(h * scale))
        small = rgb.resize((sw, sh), Image.Resampling.BILINEAR) if scale < 1 else rgb
        small_tri = cv2.resize(tri, (sw, sh), interpolation=cv2.INTER_NEAREST) if scale < 1 else tri
        param = next(models.matte.parameters())
        inputs = models.matte_processor(images=small, trimaps=Image.fromarray(small_tri), return_tensors="pt")
        with torch.inference_mode():
            alphas = models.matte(pixel_values=inputs["pixel_values"].to(param.device, param.dtype)).alphas
        alpha = alphas[0, 0, :sh, :sw].float().cpu().numpy()
        if scale < 1:
            alpha = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR)
        return np.where(tri == 255, 1.0, np.where(tri == 0, 0.0, np.clip(alpha, 0, 1))).astype(np.float32)

    def _segment_onnx(self, models: loader.OnnxSegmenter, photo: Image.Image, on_step: StepCallback) -> CutoutResult:
        on_step(0.3, "segmentation (BiRefNet, ONNX)")
        rgb = photo.convert("RGB")
        size = self.settings.seg_input_size
        x = np.asarray(rgb.resize((size, size), Image.Resampling.BILINEAR), np.float32) / 255.0
        x = ((x - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None]
        feed = models.session.get_inputs()[0]
        x = x.astype(np.float16 if "float16" in feed.type else np.float32)
        pred = np.asarray(models.session.run(None, {feed.name: x})[-1], np.float32)[0, 0]
        if pred.min() < 0.0 or pred.max() > 1.0:  # a graph that ends in logits rather than its sigmoid
            pred = 1.0 / (1.0 + np.exp(-np.clip(pred, -30, 30)))
        mask = cv2.resize(pred, rgb.size, interpolation=cv2.INTER_LINEAR)
        solid = fill_holes(((mask > 0.5) * 255).astype(np.uint8))
        soft = np.where(solid > 0, np.maximum(mask, 0.5), np.where(mask > 0.15, mask, 0))
        return CutoutResult((np.clip(soft, 0, 1) * 255).astype(np.uint8), mask_confidence(mask), "birefnet-onnx")

    def background(
        self, prompt: str, negative: str, width: int, height: int, seed: int, guidance: float, on_step: StepCallback
    ) -> tuple[Image.Image, dict[str, Any]]:
        plan = self._require_plan()
        steps = self.steps
        g = guidance if self.flux_preset == "dev" else self.default_guidance
        gen_w, gen_h = flux_size(width, height)  # FLUX's grid; resized to the exact size after
        if self.one_pass:
            raise UserFacingError(f"profile {self.profile.name} paints the scene around the product in one pass; "
                                  "it has no separate background stage")

        def run() -> Image.Image:
            flux = self._get("flux")
            flux.set_vae_tiling(gen_w * gen_h > plan.vae_tiling_above)
            on_step(0.0, f"background_generation (0/{steps})")
            reporter = _StepReporter("background_generation", steps, on_step)
            out = flux.t2i(
                prompt=prompt, height=gen_h, width=gen_w, num_inference_steps=steps, guidance_scale=g,
                generator=self._generator(seed), callback_on_step_end=reporter, **self._cfg(negative),
            )
            reporter.raise_if_stopped()
            return out.images[0]

        image = _exact(self._with_oom_retry(registry.BACKGROUND, "flux", run).convert("RGB"), (width, height))
        return image, {"light_x": 0.5, "ground": 0.86}

    def refine(
        self, composite: Image.Image, mask: np.ndarray, prompt: str, negative: str, strength: float,
        guidance: float, seed: int, on_step: StepCallback, relight: Relight = "subtle", light: Light | None = None,
    ) -> Image.Image:
        plan = self._require_plan()
        steps = img2img_steps(self.steps, strength) if strength > 0 else 0
        g = guidance if self.flux_preset == "dev" else self.default_guidance
        gen_w, gen_h = flux_size(*composite.size)

        def run() -> Image.Image:
            if steps == 0:
                return composite
            flux = self._get("flux")
            flux.set_vae_tiling(gen_w * gen_h > plan.vae_tiling_above)
            reporter = _StepReporter("refinement", steps, on_step)
            out = flux.i2i(
                prompt=prompt, image=_exact(composite.convert("RGB"), (gen_w, gen_h)), strength=strength,
                height=gen_h, width=gen_w,
                num_inference_steps=self.steps, guidance_scale=g, generator=self._generator(seed + 1),
                callback_on_step_end=reporter, **self._cfg(negative),
            )
            reporter.raise_if_stopped()
            return out.images[0]

        refined = _exact(self._with_oom_retry(registry.REFINE, "flux", run).convert("RGB"), composite.size)
        # img2img would redraw the product too, and an ad must show the real one: keep the product from
        # the composite, take light, shadows and surroundings from the refined image, then harmonise tones.
        keep = cv2.erode(mask, np.ones((5, 5), np.uint8)).astype(np.float32)[..., None] / 255.0
        merged = np.asarray(refined, np.float32) * (1 - keep) + np.asarray(composite.convert("RGB"), np.float32) * keep
        out = Image.fromarray(np.clip(merged, 0, 255).astype(np.uint8), "RGB")
        # Tones pulled towards the scene and the side facing its light shaded, as far as ``relight`` allows
        # (the same rule as the draft's refinement; keep_product enforces it after this).
        return harmonise(out, mask, strength * 0.5, relight, light)

    def scene(
        self, canvas: Image.Image, paint: np.ndarray, reference: Image.Image, prompt: str, negative: str, seed: int,
        guidance: float, on_step: StepCallback,
    ) -> Image.Image:
        """One pass: the model paints everything ``paint`` marks around the placed product, seeing it (see
        ``backends.base.SceneBackend``). FLUX.2 [klein] also gets the product as ``image_reference``."""
        plan = self._require_plan()
        if not self.one_pass:
            raise UserFacingError(f"profile {self.profile.name} has no one-pass scene model")
        steps = self.steps
        gen_w, gen_h = flux_size(*canvas.size)
        image = _exact(canvas.convert("RGB"), (gen_w, gen_h))
        mask = Image.fromarray(paint, "L").resize((gen_w, gen_h), Image.Resampling.BILINEAR)

        def run() -> Image.Image:
            scene = self._get("scene")
            scene.set_vae_tiling(gen_w * gen_h > plan.vae_tiling_above)
            on_step(0.0, f"{registry.SCENE.label} (0/{steps})")
            reporter = _StepReporter(registry.SCENE.label, steps, on_step)
            common = dict(prompt=prompt, image=image, mask_image=mask, height=gen_h, width=gen_w, strength=1.0,
                          num_inference_steps=steps, generator=self._generator(seed), callback_on_step_end=reporter)
            if scene.kind == "Flux2KleinInpaintPipeline":
                pipe = scene.pipe
                layers = text_encoder_layers(pipe.text_encoder.config.num_hidden_layers,
                                             pipe.transformer.config.joint_attention_dim,
                                             pipe.text_encoder.config.hidden_size)
                out = pipe(**common, image_reference=reference, guidance_scale=self.default_guidance,
                           text_encoder_out_layers=layers)
            elif scene.kind == "FluxKontextInpaintPipeline":
                # Kontext also reads the product as a reference; without _auto_resize=False it would generate at
                # ~1024² whatever the canvas (and the product's placement would no longer match).
                out = scene.pipe(**common, image_reference=reference, guidance_scale=self.default_guidance,
                                 _auto_resize=False, max_area=gen_w * gen_h)
            else:  # FluxFillPipeline: the product is the unmasked part of the canvas it sees
                out = scene.pipe(**common, guidance_scale=self.default_guidance)
            reporter.raise_if_stopped()
            self.cache.release("scene")
            return out.images[0]

        return _exact(self._with_oom_retry(registry.SCENE, "scene", run).convert("RGB"), canvas.size)

    def _ask(self, vlm: loader.VisionLanguageModel, image: Image.Image, question: str) -> str:
        processor, model = vlm.processor, vlm.model
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = processor(text=[text], images=[image], return_tensors="pt").to(model.device)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=self.settings.vlm_max_new_tokens, do_sample=False)
        return processor.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0].strip()

    def analyze(self, image: Image.Image, mask: np.ndarray | None, on_step: StepCallback) -> dict[str, Any]:
        result = analyze_draft(image, mask)  # free-space map, palette: measured from pixels
        self._require_plan()

        def run() -> tuple[dict[str, str] | None, int]:
            vlm = self._get("vlm")
            answers, attempts = None, 0
            for attempts, question in enumerate((ANALYSIS_PROMPT, ANALYSIS_RETRY), start=1):
                on_step((attempts - 1) / 2, f"image_analysis (VLM, {'one JSON answer' if attempts == 1 else 'retry'})")
                answers = parse_analysis(self._ask(vlm, image, question))
                if answers is not None:
                    break
            self.cache.release("vlm")
            return answers, attempts

        answers, attempts = self._with_oom_retry(registry.ANALYZE, "vlm", run)
        result["vlm_attempts"] = attempts
        if answers is not None:
            result.update(answers)
            result["analysis_source"] = "vlm"
        else:  # the four keys stay the pixel statistics' sentences
            result["analysis_source"] = "pixels"
            log.warning("the VLM's answer was not the four-key JSON after %d attempts; pixel statistics used", attempts)
        return result

    def info(self) -> dict[str, Any]:
        refs = loader.model_refs(self.settings)
        models = {k: {"id": r.id, "revision": r.revision} for k, r in refs.items()}
        detail = profiles.describe(self.settings, models)
        return {
            "profile": self.profile.name, "profile_detail": detail, "one_pass": self.one_pass,
            "backend": self.name, "device": self.device, "dtype": str(self.dtype).removeprefix("torch."),
            "precision": {"device": self.device, "dtype": str(self.dtype).removeprefix("torch."),
                          "level": self.plan.level if self.plan else None,
                          "reason": self.plan.summary() if self.plan else self.problem},
            "memory_plan": self.plan.as_dict() if self.plan else None, "problem": self.problem,
            "models": detail["models"],  # each with its licence and commercial-use flag
            "generator": {"model": refs[self.generator_key].id, "pipeline": profiles.scene_pipeline(self.settings),
                          "steps": self.steps, "guidance": self.default_guidance},
            **({"flux": {"model": self.settings.flux_model, "profile": self.flux_preset, "steps": self.steps}}
               if not self.one_pass else {}),
            "segmentation": self.settings.segmenter, "analysis": refs["vlm"].id,
            "components": self.cache.components(),
            "cache": self.cache.info(), "oom_retries_used": self.oom_retries_used,
        }
