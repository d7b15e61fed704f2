"""Brand kits and readability in the worker's stages: the one place steps.py calls for them.

Each function takes the job context and does one thing the design, render or final stage needs:
the fonts to embed, the template's spec with the kit applied (and a panel when contrast needs
one), what an LLM designer is told and whether its answer honoured the kit, the contrast measured
on the rendered copy (the template retried once on a stronger panel when it falls short), and the
logo on the finished image.
"""

from __future__ import annotations

from dataclasses import replace

from PIL import Image

from pipeline.cssvalues import parse_font_family
from pipeline.worker.context import JobContext
from pipeline.worker.design import brand as kits
from pipeline.worker.design.logo import add_logo
from pipeline.worker.render.browser import TextRenderer
from pipeline.worker.stages.contrast import choose, hex_rgb, measure_page, record, strongest, warning
from pipeline.worker.stages.design import DesignSpec, design_template


def families(ctx: JobContext, requested: str) -> list[str]:
    """Families whose bundled faces are embedded: the kit's (if from list_fonts), then the request's."""
    brand = kits.load(ctx.job_dir)
    if brand is None:
        return parse_font_family(requested)
    named = [brand.family(role) for role in kits.ROLES if brand.font_file(role) is None]
    return list(dict.fromkeys([*named, *parse_font_family(requested)]))


def uploaded_font_css(ctx: JobContext, spec: DesignSpec) -> str:
    """``@font-face`` rules of the kit's uploaded fonts, subset to the copy."""
    return kits.font_css(kits.load(ctx.job_dir), {"all": spec.parts.plain()})


def template_spec(ctx: JobContext, spec: DesignSpec) -> DesignSpec:
    """The template's spec with the kit's fonts and colours and the panel that contrast needs (kept on ctx)."""
    plan = ctx.layout
    box = tuple(plan.copy_box) if plan is not None and plan.copy_box is not None else None
    spec = kits.apply(spec, kits.load(ctx.job_dir), ctx.step1, box,  # type: ignore[arg-type]
                      plan.font_px if plan is not None else spec.text_size, busy=bool(plan and plan.panel))
    ctx.design_spec = spec
    return spec


def headline_family(ctx: JobContext) -> str:
    brand = kits.load(ctx.job_dir)
    requested = ctx.request.font_family
    return kits.family_list(brand, "headline", requested) if brand is not None else requested


def text_color(ctx: JobContext) -> str | None:
    """The copy colour an LLM designer must use: the template's choice when a kit or the request fixed one."""
    spec = ctx.design_spec
    return spec.text_color if spec is not None and spec.text_color else ctx.request.text_color


def prompt_lines(ctx: JobContext) -> list[str]:
    return kits.prompt_lines(kits.load(ctx.job_dir))


def llm_violation(ctx: JobContext, css: str) -> str | None:
    """Why an LLM's sanitised page ignores the brand kit (then the template is used), or None."""
    return kits.violation(kits.load(ctx.job_dir), css, text_color(ctx))


def readable(ctx: JobContext, renderer: TextRenderer, layer: Image.Image) -> Image.Image:
    """Measure the copy's contrast on the rendered layer; a template design below WCAG is redone once on
    the most readable panel for its colour. Sets ``ctx.contrast_ratio`` and warns when still short."""
    if ctx.step1 is None or ctx.design is None:
        return layer
    def draw(html: str, clip: tuple[int, int, int, int] | None = None) -> Image.Image:
        return renderer.render(html, ctx.width, ctx.height, clip)

    result = measure_page(ctx.design.html, draw, ctx.step1, layer)
    spec = ctx.design_spec
    if result.failing and ctx.design.designer == "template" and spec is not None and ctx.layout is not None:
        colour = spec.text_color if spec.text_color and hex_rgb(spec.text_color) else (
            ctx.design.color if hex_rgb(ctx.design.color) else "#ffffff")
        # The lightest panel predicted to reach the threshold, else the strongest one for that colour.
        box = ctx.layout.copy_box
        fix = choose(colour, ctx.step1, tuple(box) if box is not None else None,  # type: ignore[arg-type]
                     max(f.required for f in result.failing), need_panel=True)
        if fix.panel is None or fix.predicted < max(f.required for f in result.failing) * 1.15:
            fix = strongest(colour)
        spec = ctx.design_spec = replace(spec, text_color=fix.color, panel_fill=fix.panel_css)
        ctx.template = ctx.design = design_template(spec, ctx.analysis, ctx.step1, ctx.mask, ctx.font_css, ctx.layout)
        (ctx.job_dir / "design.html").write_text(ctx.design.html)
        layer = draw(ctx.design.html)
        result = measure_page(ctx.design.html, draw, ctx.step1, layer)
    if result.ratio is not None:  # this result's ratio; the job's lowest over all its results is kept beside it
        ctx.contrast_ratio = result.ratio
        record(ctx.job_id, result.ratio)
    if note := warning(result):
        ctx.warnings.append(note)
    return layer


def with_logo(ctx: JobContext, image: Image.Image) -> Image.Image:
    """The image with the kit's logo in its corner (or another free one), or as it was without a logo."""
    brand = kits.load(ctx.job_dir)
    logo = brand.logo() if brand is not None else None
    if brand is None or logo is None:
        return image
    out, _, note = add_logo(image, logo, brand.kit.logo_corner, getattr(ctx, "safe", (0, 0)), ctx.text, ctx.mask)
    if note:
        ctx.warnings.append(note)
    return out
