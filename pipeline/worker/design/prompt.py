"""The prompt for an LLM designer, following the design doc's structure (sections 8.2-8.3)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.messages import DesignPrompt

if TYPE_CHECKING:
    from pipeline.worker.layout import CopyParts

SYSTEM_PROMPT = """You are a senior advertising typographer. You write the text layer of an ad as ONE
self-contained HTML document that is rendered on a transparent canvas and composited over a photo.
Rules: no JavaScript, no images, no external URLs or @import, no @font-face (the fonts you are given
are installed). Keep html and body transparent. Position the copy absolutely in pixels inside the
canvas. Use CSS for colour, gradients (background-clip: text), shadows and letter-spacing.
Answer with the HTML document only."""


def build_prompt(
    *, text: str, style: str, font_stack: str, weight: str, color: str | None, size_px: int, position: str,
    copy_box: tuple[int, int, int, int], width: int, height: int, analysis: dict[str, Any] | None,
    product_bbox: list[int] | None, parts: CopyParts | None = None, brand: list[str] | None = None,
) -> DesignPrompt:
    x, y, w, h = copy_box  # the layout plan's box for the copy: clear of the product, inside the margins
    if analysis:
        lines = [
            "[Image analysis]",
            f"- Overall scene: {analysis.get('overall', '')}",
            f"- Colour/material: {analysis.get('color_material', '')}",
            f"- Lighting/mood: {analysis.get('lighting_mood', '')}",
            f"- Spatial layout: {analysis.get('spatial', '')}",
        ]
    else:
        lines = ["[Image analysis]", "- Not analysed for this job (use_qwen_analysis is false)."]
    avoid = (
        f"- The product occupies x {product_bbox[0]}-{product_bbox[2]}, y {product_bbox[1]}-{product_bbox[3]}: "
        "keep every letter out of that box." if product_bbox else "- Product position unknown."
    )
    user = "\n".join([
        "Write the HTML text layer for this ad, in harmony with the background described below.",
        "",
        *lines,
        "",
        "[Ad]",
        *_copy_lines(text, parts),
        f"- Style hint: {style}",
        f"- font-family: {font_stack}; font-weight: {weight}; base size about {size_px}px",
        f"- Text colour: {color or 'choose one with strong contrast against the background region'}",
        "",
        "[Canvas]",
        f"- {width}x{height} px, transparent background.",
        f"- Place every letter of the copy inside the box x {x}-{x + w}px, y {y}-{y + h}px "
        f"({position} requested); centre it there.",
        avoid,
        *(["", *brand] if brand else []),  # a brand kit, as structured input (pipeline/worker/design/brand.py)
    ])
    return DesignPrompt(system=SYSTEM_PROMPT, user=user)


def _copy_lines(text: str, parts: CopyParts | None) -> list[str]:
    """The copy as structured input: each part the designer must set, and the emphasis markup."""
    if parts is None or parts.texts() == [parts.headline]:
        lines = [f"- Copy (use exactly this text, line breaks may move): \"{text}\""]
    else:
        lines = ["- Copy, in parts; use exactly these texts (line breaks may move), each one:"]
        for label, value in (("Headline (largest)", parts.headline), ("Subline (smaller, under the headline)",
                             parts.subline), ("Price (prominent)", parts.price),
                             ("Badge (small pill beside the price, e.g. a discount)", parts.badge),
                             ("Call to action (draw it as a button)", parts.cta)):
            if value:
                lines.append(f"  - {label}: \"{value}\"")
    if any("**" in t or "==" in t for t in ([text] if parts is None else parts.texts())):
        lines.append("- Emphasis markup: text between ** and ** is bold (<strong>), between == and == highlighted "
                     "(<mark>); write the tags, never the ** or == markers themselves.")
    return lines
