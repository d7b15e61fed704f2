"""Runs one job's stages in order inside the worker, writing artifacts and emitting events.

The plan is decided up front from the request (start_step, text, analysis on/off) so the
server can weight progress over exactly the stages that will run.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from pipeline.backends.base import Backend
from pipeline.images import save_png, save_preview
from pipeline.cssvalues import css_font_stack, parse_font_family
from pipeline.design.fontembed import font_face_css
from pipeline.design.local_llm import LocalDesigner
from pipeline.design.prompt import build_prompt
from pipeline.design.sanitize import build_document, contains_copy, sanitize_html
from pipeline.messages import (
    Command,
    DesignAnswer,
    DesignNeeded,
    Event,
    JobFinished,
    RunJob,
    StageFinished,
    StageProgress,
    StageStarted,
)
from pipeline.render.browser import RenderError, TextRenderer
from pipeline.schemas import GenerateRequest
from pipeline.stages.composite import composite
from pipeline.stages.design import Design, DesignSpec, design_template

log = logging.getLogger(__name__)

STEP1_STAGES = ("segment", "background", "composite", "refine")
STAGE_LABELS = {
    "segment": "segmentation",
    "background": "background_generation",
    "composite": "compositing",
    "refine": "refinement",
    "analyze": "image_analysis",
    "design": "html_design",
    "render": "html_rendering",
    "final": "final_composite",
}
STAGE_MESSAGES = {
    "segment": "Cutting the product out of its photo...",
    "background": "Generating the background scene...",
    "composite": "Placing the product with shadows...",
    "refine": "Harmonising the product with the scene...",
    "analyze": "Analysing the image (space, colour, light, mood)...",
    "design": "Designing the text layer (HTML/CSS)...",
    "render": "Rendering the text layer in headless Chromium...",
    "final": "Compositing the final ad...",
}


def covers(layer: Image.Image, mask: np.ndarray | None, tolerance: float = 0.002) -> bool:
    """Whether a text layer's ink lands on the product (mask grown by a small margin)."""
    if mask is None or not (mask > 127).any():
        return False
    grown = cv2.dilate((mask > 127).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    ink = np.asarray(layer.getchannel("A")) > 32
    return (ink & grown).sum() > tolerance * grown.sum()


def step_of(stage: str) -> str:
    return "step1_background" if stage in STEP1_STAGES else "step2_html_rendering"


def plan_stages(req: GenerateRequest) -> tuple[str, ...]:
    stages: list[str] = list(STEP1_STAGES) if req.start_step == 1 else []
    if req.text_content is not None:
        if req.use_qwen_analysis:
            stages.append("analyze")
        stages += ["design", "render", "final"]
    elif req.start_step == 2:
        stages.append("final")  # nothing to add: the given step 1 image becomes the final image
    return tuple(stages)


class JobStopped(Exception):
    pass


class JobRunner:
    def __init__(
        self,
        backends: Callable[[GenerateRequest], Backend],
        renderer: TextRenderer,
        emit: Callable[[Event], None],
        stop_requested: Callable[[str], bool],
        receive: Callable[[float], Command | None],
        answer_timeout: float,
        fonts_dir: Path,
        local_designer: LocalDesigner | None = None,
    ) -> None:
        self._backends = backends
        self._renderer = renderer
        self._emit = emit
        self._stop_requested = stop_requested
        self._receive = receive
        self._answer_timeout = answer_timeout
        self._fonts_dir = fonts_dir
        self._local = local_designer

    def run(self, cmd: RunJob) -> JobFinished:
        job_dir = Path(cmd.job_dir)
        info: dict[str, Any] = {}
        try:
            req = GenerateRequest.model_validate(cmd.request)
            seed = req.seed if req.seed is not None else secrets.randbelow(2**32)
            info["seed"] = seed
            backend = self._backends(req)
            info["backend"] = backend.name
            self._run_plan(cmd.job_id, job_dir, req, seed, backend, info)
            return JobFinished(cmd.job_id, "completed", info=info)
        except JobStopped:
            return JobFinished(cmd.job_id, "stopped", "stopped on request", info=info)
        except Exception as exc:  # the worker must survive any job
            log.error("job %s failed:\n%s", cmd.job_id, traceback.format_exc())
            reason = str(exc) if getattr(exc, "user_facing", False) else f"{type(exc).__name__}: {exc}"
            if getattr(exc, "fatal", False):
                info["fatal"] = True  # the worker exits after reporting; the server starts a fresh one
            return JobFinished(cmd.job_id, "failed", reason[:500], info=info)

    def _run_plan(
        self, job_id: str, job_dir: Path, req: GenerateRequest, seed: int, backend: Backend, info: dict[str, Any]
    ) -> None:
        plan = plan_stages(req)
        state: dict[str, Any] = {}
        if req.start_step == 2:
            state["step1"] = Image.open(job_dir / "step1.png").convert("RGB")
            state["mask"] = None
        else:
            state["photo"] = Image.open(job_dir / "product.png")
            state["photo"].load()
        width, height = req.width, req.height

        for stage in plan:
            self._check(job_id)
            self._emit(StageStarted(job_id, stage, plan, STAGE_MESSAGES[stage]))
            started = time.monotonic()
            label = STAGE_LABELS[stage]

            def on_step(fraction: float, sub: str, _stage: str = stage) -> None:
                self._check(job_id)
                self._emit(StageProgress(job_id, _stage, max(0.0, min(1.0, fraction)), sub))

            artifacts: list[str] = []
            if stage == "segment":
                state["cutout"] = backend.segment(state["photo"], on_step)
                artifacts.append(self._save(job_dir, "cutout.png", state["cutout"]))
            elif stage == "background":
                bg, hints = backend.background(
                    req.bg_prompt, req.bg_negative_prompt, width, height, seed, req.guidance_scale, on_step
                )
                state["background"], state["hints"] = bg, hints
                artifacts.append(self._save(job_dir, "background.png", bg))
            elif stage == "composite":
                hints = state["hints"]
                comp, mask = composite(
                    state["background"], state["cutout"], light_x=hints.get("light_x", 0.5),
                    ground=hints.get("ground", 0.86),
                )
                state["composite"], state["mask"] = comp, mask
                artifacts.append(self._save(job_dir, "composite.png", comp))
                artifacts.append(self._save(job_dir, "mask.png", Image.fromarray(mask, "L")))
            elif stage == "refine":
                state["step1"] = backend.refine(
                    state["composite"], state["mask"], req.bg_composition_prompt, req.bg_composition_negative_prompt,
                    req.strength, req.guidance_scale, seed, on_step,
                )
                artifacts.append(self._save(job_dir, "step1.png", state["step1"]))
                save_preview(state["step1"], job_dir / "preview.jpg")
            elif stage == "analyze":
                analysis = backend.analyze(state["step1"], state.get("mask"), on_step)
                state["analysis"] = analysis
                (job_dir / "analysis.json").write_text(json.dumps(analysis, ensure_ascii=False, indent=1))
                artifacts.append("analysis.json")
            elif stage == "design":
                spec = DesignSpec(
                    text=req.text_content or "", style_prompt=req.html_style_prompt, font_family=req.font_family,
                    font_weight=req.font_weight, text_color=req.text_color, text_size=req.text_size,
                    position=req.text_position, width=width, height=height,
                )
                families = parse_font_family(req.font_family)
                state["font_css"] = font_face_css(families, spec.text, self._fonts_dir)
                template = design_template(spec, state.get("analysis"), state["step1"], state.get("mask"),
                                           state["font_css"])
                state["template"] = template
                state["design"] = self._design(job_id, req, template, state, on_step, info)
                (job_dir / "design.html").write_text(state["design"].html)
                artifacts.append("design.html")
            elif stage == "render":
                on_step(0.1, f"{label} (chromium)")
                state["text"] = self._render(req, state, info)
                artifacts.append(self._save(job_dir, "text.png", state["text"]))
            elif stage == "final":
                final = self._final(state)
                artifacts.append(self._save(job_dir, "final.png", final))
                save_preview(final, job_dir / "preview.jpg")
            self._emit(StageFinished(job_id, stage, time.monotonic() - started, tuple(artifacts)))

        if "final" not in plan:  # no copy: step 1 is the final image
            self._save(job_dir, "final.png", state["step1"])

    def _design(
        self, job_id: str, req: GenerateRequest, template: Design, state: dict[str, Any],
        on_step: Callable[[float, str], None], info: dict[str, Any],
    ) -> Design:
        """An LLM's design when one answers usably, else the template (with a note saying why)."""
        info.update(designer="template", text_region=template.region, font_px=template.font_px)
        if not req.use_llm_html:
            info["design_note"] = "use_llm_html is false: template designer"
            return template
        mask = state.get("mask")
        bbox = None
        if mask is not None and (mask > 127).any():
            ys, xs = np.nonzero(mask > 127)
            bbox = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
        prompt = build_prompt(
            text=req.text_content or "", style=req.html_style_prompt,
            font_stack=css_font_stack(parse_font_family(req.font_family)), weight=req.font_weight,
            color=req.text_color, size_px=template.font_px, position=req.text_position, region=template.region,
            width=req.width, height=req.height, analysis=state.get("analysis"), product_bbox=bbox,
        )
        on_step(0.2, "html_design (asking the LLM)")
        self._emit(DesignNeeded(job_id, prompt.system, prompt.user, prompt.max_tokens))
        answer = self._await_answer(job_id)
        notes: list[str] = []
        if answer is None:
            notes.append("no answer from the LLM designers in time")
        elif answer.text is None:
            notes.append(answer.note or "no LLM available")
        else:
            if answer.note:  # e.g. sampling failed before Anthropic answered
                notes.append(answer.note)
            if design := self._usable(answer.source, answer.text, req, template, state, info, notes):
                return design
        if self._local is not None:
            # Nobody on the server side answered usably: the worker's own small LLM tries.
            on_step(0.4, "html_design (local LLM)")
            try:
                text = self._local.generate(prompt, lambda: self._stop_requested(job_id))
            except Exception as exc:
                notes.append(f"local_llm failed ({type(exc).__name__}: {str(exc)[:120]})")
            else:
                self._check(job_id)
                if design := self._usable("local_llm", text, req, template, state, info, notes):
                    return design
        info["design_note"] = "; ".join(notes) + ": template designer used"
        return template

    def _usable(
        self, source: str, text: str, req: GenerateRequest, template: Design, state: dict[str, Any],
        info: dict[str, Any], notes: list[str],
    ) -> Design | None:
        """The sanitised LLM document if it still carries the copy; else None, with a note added."""
        try:
            clean = sanitize_html(text)
        except ValueError as exc:
            notes.append(f"{source}: {exc}")
            return None
        if not contains_copy(clean.text, req.text_content or ""):
            notes.append(f"{source} answer did not contain the ad copy")
            return None
        if clean.removed:
            info["design_removed"] = list(clean.removed)
        info.update(designer=source, design_note="; ".join(notes))
        doc = build_document(clean, req.width, req.height, state.get("font_css", ""))
        return replace(template, html=doc, designer=source)

    def _await_answer(self, job_id: str) -> DesignAnswer | None:
        deadline = time.monotonic() + self._answer_timeout
        while time.monotonic() < deadline:
            self._check(job_id)
            cmd = self._receive(0.25)
            if isinstance(cmd, DesignAnswer) and cmd.job_id == job_id:
                return cmd
        return None

    def _render(self, req: GenerateRequest, state: dict[str, Any], info: dict[str, Any]) -> Image.Image:
        design: Design = state["design"]
        if design.designer == "template":
            return self._renderer.render(design.html, req.width, req.height)
        try:
            layer = self._renderer.render(design.html, req.width, req.height)
        except RenderError as exc:  # an LLM's page that cannot be rendered: the template can
            return self._render_template(req, state, info, f"{design.designer} layout failed to render ({exc})")
        if req.text_position == "auto" and covers(layer, state.get("mask")):
            # The LLM's layout landed on the product, which auto placement must never do.
            return self._render_template(req, state, info, f"{design.designer} layout covered the product: template used")
        return layer

    def _render_template(self, req: GenerateRequest, state: dict[str, Any], info: dict[str, Any], note: str) -> Image.Image:
        info.update(designer="template", design_note=note)
        state["design"] = state["template"]
        return self._renderer.render(state["template"].html, req.width, req.height)

    @staticmethod
    def _final(state: dict[str, Any]) -> Image.Image:
        base = state["step1"].convert("RGBA")
        layer = state.get("text")
        if layer is not None:
            if layer.size != base.size:
                layer = layer.resize(base.size, Image.Resampling.LANCZOS)
            base = Image.alpha_composite(base, layer)
        return base.convert("RGB")

    @staticmethod
    def _save(job_dir: Path, name: str, img: Image.Image) -> str:
        save_png(img, job_dir / name)
        return name

    def _check(self, job_id: str) -> None:
        if self._stop_requested(job_id):
            raise JobStopped()

