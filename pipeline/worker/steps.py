"""Stage implementations: one function of the job context per stage in the registry.

Each function reads what earlier stages left in the context, writes its own results and
artifacts, and reports progress through ``ctx.on_step``. They never know about MCP or HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import cv2
import numpy as np
from PIL import Image

from pipeline import registry
from pipeline.cssvalues import css_font_stack, parse_font_family
from pipeline.messages import DesignAnswer, DesignPrompt
from pipeline.worker import branding
from pipeline.worker.backends.base import SceneBackend
from pipeline.worker.context import JobContext
from pipeline.worker.deliver import deliver, output_name
from pipeline.worker.design.fontembed import font_face_css
from pipeline.worker.design.local_llm import LocalDesigner
from pipeline.worker.design.prompt import build_prompt
from pipeline.worker.design.sanitize import build_document, contains_copy, sanitize_html
from pipeline.worker.layout import plain_copy, plan_layout, requested_font_px, with_scenery
from pipeline.worker.provenance import job_provenance
from pipeline.worker.render.browser import RenderError, TextRenderer
from pipeline.worker.stages.analyze import free_space
from pipeline.worker.stages.card import product_card
from pipeline.worker.stages.composite import composite as composite_product
from pipeline.worker.stages.cutout import CONFIDENCE_THRESHOLD, apply_mask, cut_out, has_useful_alpha
from pipeline.worker.stages.design import Design, DesignSpec, copy_parts, design_template, plan_copy, text_style
from pipeline.worker.stages.fidelity import keep_product, relight_kwargs
from pipeline.worker.stages.lighting import estimate_light, light_kwargs
from pipeline.worker.stages.scene import paint_mask, place_product, product_reference, scene_prompt


@dataclass
class Services:
    """What stages use beyond the job's own state: the warm browser and the designers."""

    renderer: TextRenderer
    fonts_dir: Path
    ask_llm: Callable[[str, DesignPrompt], DesignAnswer | None]  # the server's designers; None = no answer
    output_dir: Path  # where finished ads are delivered for people
    local_designer: LocalDesigner | None = None


StageFn = Callable[[JobContext, Services], None]


def covers(layer: Image.Image, mask: np.ndarray | None, tolerance: float = 0.002) -> bool:
    """Whether a text layer's ink lands on the product (mask grown by a small margin)."""
    if mask is None or not (mask > 127).any():
        return False
    grown = cv2.dilate((mask > 127).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    ink = np.asarray(layer.getchannel("A")) > 32
    return bool((ink & grown).sum() > tolerance * grown.sum())


def segment(ctx: JobContext, svc: Services) -> None:
    """The product cut from its photo, or, when the cut cannot be trusted, the photo as a card."""
    assert ctx.photo is not None
    mode = ctx.request.cutout
    given = ctx.job_dir / "product_mask.png"
    if given.exists() or mode != "auto" or has_useful_alpha(ctx.photo):
        # The client told us what the product is (mask, alpha, whole photo): no model needed.
        ctx.on_step(0.1, f"{registry.SEGMENT.label} ({'given mask' if given.exists() else mode})")
        result = cut_out(ctx.photo, mode, Image.open(given) if given.exists() else None)
    else:
        result = ctx.backend.segment(ctx.photo, ctx.on_step)
    ctx.warnings.extend(result.warnings)
    ctx.cutout_confidence = result.confidence
    if result.confidence < CONFIDENCE_THRESHOLD:
        ctx.cutout = product_card(ctx.photo)
        ctx.warnings.append(
            f"The product could not be cut out of this photo cleanly (confidence {result.confidence:.2f}), so the "
            "whole photo is shown as a framed card. For a cut-out, send the product on a plain background, a PNG "
            "with transparency, or a product_mask."
        )
    else:
        ctx.cutout = apply_mask(ctx.photo, result.mask)
    ctx.save("cutout.png", ctx.cutout)


def background(ctx: JobContext, svc: Services) -> None:
    r = ctx.request
    ctx.background, ctx.hints = ctx.backend.background(
        r.bg_prompt, r.bg_negative_prompt, ctx.width, ctx.height, ctx.seed, r.guidance_scale, ctx.on_step
    )
    ctx.save("background.png", ctx.background)


def composite(ctx: JobContext, svc: Services) -> None:
    assert ctx.background is not None and ctx.cutout is not None
    r = ctx.request
    canvas = (ctx.width, ctx.height)
    # Light side and ground line read from the scene's pixels (stages/lighting.py), for the shadow and relight.
    light = ctx.hints["light"] = estimate_light(ctx.background)
    # One plan for product and copy: the product goes where the copy will not be.
    ctx.layout = plan_layout(
        canvas, ctx.cutout.size, copy_parts(r), r.text_position, requested_font_px(r.text_size, canvas),
        free_space=free_space(ctx.background, None), ground=round(light.stand * ctx.height),
        style=text_style(copy_parts(r).plain(), r.html_style_prompt), safe=ctx.safe,
    )
    ctx.warnings.extend(ctx.layout.warnings)
    ctx.composite, ctx.mask = composite_product(ctx.background, ctx.cutout, box=ctx.layout.product_box, light=light)
    ctx.save("composite.png", ctx.composite)
    ctx.save("mask.png", Image.fromarray(ctx.mask, "L"))


def refine(ctx: JobContext, svc: Services) -> None:
    r = ctx.request
    assert ctx.composite is not None and ctx.mask is not None
    composite, mask, relight = ctx.composite, ctx.mask, relight_kwargs(ctx.backend.refine, r.relight)
    light = light_kwargs(ctx.backend.refine, ctx.hints.get("light"))

    def run(seed: int) -> Image.Image:
        return ctx.backend.refine(composite, mask, r.bg_composition_prompt, r.bg_composition_negative_prompt,
                                  r.strength, r.guidance_scale, seed, ctx.on_step, **relight, **light)

    # Every backend's result goes through the same restore + measure (+ one retry with seed + 1).
    kept = keep_product(run, composite, mask, r.relight, ctx.seed,
                        on_retry=lambda note: ctx.on_step(0.5, f"{registry.REFINE.label} ({note})"))
    ctx.step1, ctx.refine_seed = kept.image, kept.seed
    ctx.product_fidelity = kept.fidelity.as_dict() if kept.fidelity else None
    ctx.warnings.extend(kept.warnings)
    ctx.provenance = job_provenance(ctx)
    ctx.save("step1.png", ctx.step1, ctx.provenance)
    ctx.save_preview(ctx.step1)


def scene(ctx: JobContext, svc: Services) -> None:
    """One pass (profiles fast, quality): the product placed by the layout plan, the model paints everything
    but its core (surface, contact shadow, reflections, light); then the product's own pixels come back."""
    assert ctx.cutout is not None
    r = ctx.request
    canvas = (ctx.width, ctx.height)
    ctx.layout = plan_layout(
        canvas, ctx.cutout.size, copy_parts(r), r.text_position, requested_font_px(r.text_size, canvas),
        style=text_style(copy_parts(r).plain(), r.html_style_prompt), safe=ctx.safe,
    )
    ctx.warnings.extend(ctx.layout.warnings)
    assert ctx.layout.product_box is not None
    ctx.composite, ctx.mask = place_product(ctx.cutout, canvas, ctx.layout.product_box)
    ctx.save("composite.png", ctx.composite)
    ctx.save("mask.png", Image.fromarray(ctx.mask, "L"))
    composite, paint, reference = ctx.composite, paint_mask(ctx.mask), product_reference(ctx.cutout)
    backend = cast(SceneBackend, ctx.backend)

    def run(seed: int) -> Image.Image:
        return backend.scene(composite, paint, reference, scene_prompt(r.bg_prompt, r.bg_composition_prompt),
                             r.bg_negative_prompt, seed, r.guidance_scale, ctx.on_step)

    kept = keep_product(run, composite, ctx.mask, r.relight, ctx.seed,
                        on_retry=lambda note: ctx.on_step(0.5, f"{registry.SCENE.label} ({note})"))
    ctx.step1, ctx.refine_seed = kept.image, kept.seed
    ctx.product_fidelity = kept.fidelity.as_dict() if kept.fidelity else None
    ctx.warnings.extend(kept.warnings)
    ctx.provenance = job_provenance(ctx)
    ctx.save("step1.png", ctx.step1, ctx.provenance)
    ctx.save_preview(ctx.step1)


def analyze(ctx: JobContext, svc: Services) -> None:
    assert ctx.step1 is not None
    ctx.analysis = ctx.backend.analyze(ctx.step1, ctx.mask, ctx.on_step)
    ctx.write_text("analysis.json", json.dumps(ctx.analysis, ensure_ascii=False, indent=1))


def design(ctx: JobContext, svc: Services) -> None:
    r = ctx.request
    spec = DesignSpec(
        text=r.text_content or "", style_prompt=r.html_style_prompt, font_family=r.font_family,
        font_weight=r.font_weight, text_color=r.text_color, text_size=r.text_size, position=r.text_position,
        width=ctx.width, height=ctx.height, subline=r.subline or "", price=r.price or "", badge=r.badge or "",
        cta=r.cta or "", safe=ctx.safe,
    )
    ctx.font_css = font_face_css(branding.families(ctx, r.font_family), spec.parts.plain(), svc.fonts_dir) + \
        branding.uploaded_font_css(ctx, spec)  # the request's fonts and a brand kit's (bundled or uploaded)
    if ctx.layout is None or ctx.layout.copy_box is None:  # step 2: no product placed by this job
        ctx.layout = plan_copy(spec, ctx.analysis, ctx.mask)
        ctx.warnings.extend(ctx.layout.warnings)
    ctx.layout = with_scenery(ctx.layout, ctx.step1)  # busy scenery under the copy: a panel
    spec = branding.template_spec(ctx, spec)  # a brand kit's colours and fonts; a panel when contrast needs one
    ctx.template = design_template(spec, ctx.analysis, ctx.step1, ctx.mask, ctx.font_css, ctx.layout)
    ctx.design = _choose_design(ctx, svc, ctx.template)
    ctx.write_text("design.html", ctx.design.html)


def render(ctx: JobContext, svc: Services) -> None:
    ctx.on_step(0.1, f"{registry.RENDER.label} (chromium)")
    # The copy's contrast measured on the rendered layer (a template design is redone on a panel when short).
    ctx.text = branding.readable(ctx, svc.renderer, _render_layer(ctx, svc))
    ctx.save("text.png", ctx.text)


def final(ctx: JobContext, svc: Services) -> None:
    assert ctx.step1 is not None
    base = ctx.step1.convert("RGBA")
    if ctx.text is not None:
        layer = ctx.text if ctx.text.size == base.size else ctx.text.resize(base.size, Image.Resampling.LANCZOS)
        base = Image.alpha_composite(base, layer)
    base = branding.with_logo(ctx, base)  # a brand kit's logo in its corner, clear of the copy and the product
    ctx.final = base.convert("RGB")
    # Written once, saying what made it; deliver_final copies these bytes to the output folder.
    ctx.provenance = job_provenance(ctx)
    ctx.save("final.png", ctx.final, ctx.provenance)
    ctx.save_preview(ctx.final)


def deliver_final(ctx: JobContext, svc: Services) -> None:
    """After the plan: the final image in the job folder and, for people, in the output folder."""
    # No copy stage: final.png is the step 1 image (with a brand kit's logo), saying what made it.
    image = ctx.final or (branding.with_logo(ctx, ctx.step1) if ctx.step1 is not None else None)
    assert image is not None
    if ctx.final is None:
        ctx.provenance = job_provenance(ctx)
        ctx.save("final.png", image, ctx.provenance)
    r = ctx.request
    ctx.writes.flush()  # final.png on disk: a PNG delivery copies its bytes
    try:
        path = deliver(image, svc.output_dir, output_name(ctx.job_id, r.text_content, r.output_format),
                       r.output_format, r.quality, ctx.provenance, encoded=ctx.job_dir / "final.png")
    except OSError as exc:  # a full or read-only output folder must not lose the finished job
        ctx.warnings.append(f"The ad could not be written to the output folder ({exc.strerror or exc}); "
                            "it is still available from the job's final_result.")
    else:
        ctx.output_file = str(path)


IMPLEMENTATIONS: dict[str, StageFn] = {
    registry.SEGMENT.key: segment,
    registry.BACKGROUND.key: background,
    registry.COMPOSITE.key: composite,
    registry.REFINE.key: refine,
    registry.SCENE.key: scene,
    registry.ANALYZE.key: analyze,
    registry.DESIGN.key: design,
    registry.RENDER.key: render,
    registry.FINAL.key: final,
}
assert set(IMPLEMENTATIONS) == set(registry.STAGES), "every registered stage needs an implementation"


# ---- the design stage's choice between LLM designers and the template ------------------
def _choose_design(ctx: JobContext, svc: Services, template: Design) -> Design:
    """An LLM's design when one answers usably, else the template (with a note saying why)."""
    r = ctx.request
    ctx.designer = "template"
    if not r.use_llm_html:
        ctx.design_note = "use_llm_html is false: template designer"
        return template
    prompt = build_prompt(
        text=r.text_content or "", style=r.html_style_prompt, parts=copy_parts(r),
        font_stack=css_font_stack(parse_font_family(branding.headline_family(ctx)), copy_parts(r).plain(),
                                  svc.fonts_dir),
        weight=r.font_weight, color=branding.text_color(ctx), brand=branding.prompt_lines(ctx),
        size_px=template.font_px, position=r.text_position, copy_box=_copy_box(ctx), width=ctx.width,
        height=ctx.height, analysis=ctx.analysis, product_bbox=ctx.product_bbox(),
    )
    ctx.on_step(0.2, f"{registry.DESIGN.label} (asking the LLM)")
    answer = svc.ask_llm(ctx.job_id, prompt)
    notes: list[str] = []
    if answer is None:
        notes.append("no answer from the LLM designers in time")
    elif answer.text is None:
        notes.append(answer.note or "no LLM available")
    else:
        if answer.note:  # e.g. sampling failed before Anthropic answered
            notes.append(answer.note)
        if usable := _usable(ctx, answer.source, answer.text, template, notes):
            return usable
    if svc.local_designer is not None:
        # Nobody on the server side answered usably: the worker's own small LLM tries.
        ctx.on_step(0.4, f"{registry.DESIGN.label} (local LLM)")
        try:
            text = svc.local_designer.generate(prompt, ctx.stop_requested)
        except Exception as exc:
            notes.append(f"local_llm failed ({type(exc).__name__}: {str(exc)[:120]})")
        else:
            ctx.check_stop()
            if usable := _usable(ctx, "local_llm", text, template, notes):
                return usable
    ctx.design_note = "; ".join(notes) + ": template designer used"
    return template


def _usable(ctx: JobContext, source: str, text: str, template: Design, notes: list[str]) -> Design | None:
    """The sanitised LLM document if it still carries the copy; else None, with a note added."""
    try:
        clean = sanitize_html(text)
    except ValueError as exc:
        notes.append(f"{source}: {exc}")
        return None
    names = ("headline", "subline", "price", "badge", "cta")
    missing = [name for name, part in zip(names, _part_list(ctx), strict=True)
               if part and not contains_copy(clean.text, plain_copy(part))]
    if missing:
        notes.append(f"{source} answer did not contain the ad copy ({', '.join(missing)})")
        return None
    if why := branding.llm_violation(ctx, f"{clean.css} {clean.body}"):  # a brand kit's colour and font
        notes.append(f"{source} answer {why}")
        return None
    ctx.design_removed = tuple(clean.removed)
    ctx.designer, ctx.design_note = source, "; ".join(notes)
    doc = build_document(clean, ctx.width, ctx.height, ctx.font_css)
    return replace(template, html=doc, designer=source)


def _part_list(ctx: JobContext) -> list[str]:
    p = copy_parts(ctx.request)
    return [p.headline, p.subline, p.price, p.badge, p.cta]


def _render_layer(ctx: JobContext, svc: Services) -> Image.Image:
    assert ctx.design is not None and ctx.template is not None
    if ctx.design.designer == "template":
        return svc.renderer.render(ctx.design.html, ctx.width, ctx.height)
    try:
        layer = svc.renderer.render(ctx.design.html, ctx.width, ctx.height)
    except RenderError as exc:  # an LLM's page that cannot be rendered: the template can
        return _render_template(ctx, svc, f"{ctx.design.designer} layout failed to render ({exc})")
    if covers(layer, ctx.mask) and not _plan_overlaps_product(ctx):
        # The LLM's layout landed on the product, which the plan keeps clear for every position.
        return _render_template(ctx, svc, f"{ctx.design.designer} layout covered the product: template used")
    return layer


def _copy_box(ctx: JobContext) -> tuple[int, int, int, int]:
    """The plan's copy box for the LLM designer (the whole canvas if there is somehow none)."""
    box = ctx.layout.copy_box if ctx.layout is not None else None
    return box if box is not None else (0, 0, ctx.width, ctx.height)


def _plan_overlaps_product(ctx: JobContext) -> bool:
    """Only the planner's last resort (copy on a panel over the product) may cover the product."""
    p = ctx.layout
    return p is not None and p.panel and p.copy_box is not None and p.product_box is not None \
        and p.copy_box.overlaps(p.product_box)


def _render_template(ctx: JobContext, svc: Services, note: str) -> Image.Image:
    assert ctx.template is not None
    ctx.designer, ctx.design_note, ctx.design = "template", note, ctx.template
    return svc.renderer.render(ctx.template.html, ctx.width, ctx.height)
