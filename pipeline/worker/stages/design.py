"""Ad-copy design: the template designer that writes the text layer's HTML/CSS.

It is the fallback behind the LLM designers and the default with no LLM: one centred
block of copy in the layout plan's copy box (``pipeline.worker.layout``), at the plan's font
size, coloured for contrast, on a panel when the scenery or the product is behind it, with
effects picked from the style prompt's words. Line breaking follows the copy's language.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from pipeline.cssvalues import css_font_stack, is_gradient, parse_font_family
from pipeline.fonts import copy_attributes
from pipeline.worker.design.hyphenate import copy_language, hyphenate_html
from pipeline.worker.layout import (
    BUTTON_X,
    BUTTON_Y,
    CTA_GAP,
    LINE_HEIGHT,
    PILL_X,
    PILL_Y,
    ROW_GAP,
    ROW_SPACE,
    SUB_GAP,
    Box,
    CopyParts,
    LayoutPlan,
    PartSizes,
    TextStyle,
    choose_third,
    fit_font,
    min_font_px,
    plan_layout,
    requested_font_px,
    script_lang,
    with_scenery,
)


@dataclass(frozen=True)
class DesignSpec:
    text: str
    style_prompt: str
    font_family: str
    font_weight: str
    text_color: str | None
    text_size: int
    position: str  # top / center / bottom / auto
    width: int
    height: int
    subline: str = ""
    price: str = ""
    badge: str = ""
    cta: str = ""
    # A brand kit's choices and the contrast check's (pipeline/worker/design/brand.py); None = the template's own.
    body_font_family: str | None = None  # subline, price, badge and button
    accent_fill: tuple[str, str] | None = None  # the button's fill and lettering
    badge_fill: tuple[str, str] | None = None
    panel_fill: str | None = None  # a panel in this colour behind the copy, whatever the scenery
    safe: tuple[int, int] = (0, 0)  # px at the top and bottom kept free of copy (a placement's safe zone)

    @property
    def parts(self) -> CopyParts:
        return CopyParts(self.text, self.subline, self.price, self.badge, self.cta)


def copy_parts(request: Any) -> CopyParts:
    """The structured copy of a GenerateRequest (headline = text_content)."""
    return CopyParts(request.text_content or "", request.subline or "", request.price or "", request.badge or "",
                     request.cta or "")


ALERT_RED = "#d6372e"  # badge and accent fill: white lettering on it reaches WCAG's 4.5:1 (4.7)
_MARKUP = re.compile(r"\*\*(.+?)\*\*|==(.+?)==", re.DOTALL)


def render_markup(text: str, nested: bool = False) -> str:
    """Our tiny safe markup as HTML: ``**bold**`` -> <strong>, ``==highlight==`` -> <mark>; every
    other character (``<``, ``&``, quotes...) is escaped, so copy can never carry HTML."""
    out, pos = [], 0
    for m in _MARKUP.finditer(text):
        out.append(html.escape(text[pos:m.start()]))
        tag = "strong" if m.group(1) is not None else "mark"
        inner = m.group(1) if m.group(1) is not None else m.group(2)
        out.append(f"<{tag}>{html.escape(inner) if nested else render_markup(inner, True)}</{tag}>")
        pos = m.end()
    out.append(html.escape(text[pos:]))
    return "".join(out).replace("\n", "<br>")


@dataclass(frozen=True)
class Design:
    html: str
    region: str
    font_px: int
    color: str
    designer: str = "template"


def fit_font_size(text: str, requested: int, box_w: int, box_h: int, minimum: int = 14) -> int:
    """The largest size up to ``requested`` at which the copy fits the box, never below ``minimum``."""
    fit = fit_font(text, box_w, box_h, requested, min(minimum, requested), TextStyle(lang=script_lang(text)))
    return fit[0] if fit else min(minimum, requested)


def mask_box(mask: np.ndarray | None) -> Box | None:
    """The product's bounding box on the canvas from its mask (None without a product)."""
    if mask is None or not (mask > 127).any():
        return None
    ys, xs = np.nonzero(mask > 127)
    return Box(int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))


def choose_region(position: str, free_space: dict[str, float] | None, mask: np.ndarray | None) -> str:
    """The third of the canvas for the copy when no product is placed by us (step 2)."""
    height = mask.shape[0] if mask is not None else 3
    return choose_third(position, free_space, mask_box(mask), height)


def _hex_luminance(color: str) -> float | None:
    m = re.search(r"#([0-9a-fA-F]{6}|[0-9a-fA-F]{3})\b", color)
    if not m:
        return None
    h = m.group(1) if len(m.group(1)) == 6 else "".join(c * 2 for c in m.group(1))
    r, g, b = (int(h[i: i + 2], 16) / 255 for i in (0, 2, 4))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def auto_color(image: Image.Image | None, box: Box | None) -> str:
    """Dark copy on light scenery, white copy on dark, judged under the copy box."""
    if image is None or box is None:
        return "#ffffff"
    grey = np.asarray(image.convert("L"), np.float32)[max(0, box.y): box.bottom, max(0, box.x): box.right]
    return "#1d1d1f" if grey.size and float(grey.mean()) > 150 else "#ffffff"


def text_style(text: str, style_prompt: str) -> TextStyle:
    """What the style prompt's effects do to the copy's width (see ``_effects``), for the planner."""
    s = style_prompt.lower()
    return TextStyle(
        lang=script_lang(text),
        letter_spacing_em=0.08 if any(k in s for k in ("wide", "spacing", "자간")) else 0.0,
        uppercase=any(k in s for k in ("uppercase", "caps", "대문자")),
    )


def plan_copy(spec: DesignSpec, analysis: dict[str, Any] | None, mask: np.ndarray | None) -> LayoutPlan:
    """A plan for the copy alone, when no product was placed by this job (step 2): a calm third of
    the canvas for ``auto`` (never the one holding a product the mask shows)."""
    canvas = (spec.width, spec.height)
    return plan_layout(
        canvas, None, spec.parts, spec.position, requested_font_px(spec.text_size, canvas),
        free_space=(analysis or {}).get("free_space"), style=text_style(spec.parts.plain(), spec.style_prompt),
        avoid=mask_box(mask), safe=spec.safe,
    )


def _line_breaking(lang: str) -> str:
    """CSS line breaking for the copy's language: Korean breaks between words only, Chinese and
    Japanese anywhere, Latin hyphenates (with ``lang``); anything too long still breaks."""
    if lang == "ko":
        rule = "word-break: keep-all"
    elif lang in ("zh", "ja"):
        rule = "word-break: normal; line-break: normal"
    else:
        rule = "word-break: normal; hyphens: auto; -webkit-hyphens: auto"
    return rule + "; overflow-wrap: anywhere"


def _panel(color: str, fill: str | None = None) -> str:
    """A translucent panel behind the copy, light behind dark copy and dark behind the rest (or ``fill``)."""
    lum = _hex_luminance(color)
    fill = fill or ("rgba(255,255,255,.78)" if lum is not None and lum < 0.4 else "rgba(12,12,14,.58)")
    return f"background: {fill}; border-radius: .28em; box-shadow: 0 .1em .5em rgba(0,0,0,.18)"


def _secondary(parts: CopyParts) -> str:
    """Subline, price row (price and badge) and call-to-action button under the headline."""
    out = ""
    if parts.subline:
        out += f'<div class="sub">{render_markup(parts.subline)}</div>'
    if parts.price or parts.badge:
        row = (f'<span class="price">{render_markup(parts.price)}</span>' if parts.price else "") + \
              (f'<span class="badge">{render_markup(parts.badge)}</span>' if parts.badge else "")
        out += f'<div class="row">{row}</div>'
    if parts.cta:
        out += f'<div class="cta"><span class="button" role="button">{render_markup(parts.cta)}</span></div>'
    return out


def _accent(color: str) -> tuple[str, str]:
    """Fill and text colour of the badge and the button: the copy's colour when it is a plain
    colour, with dark or white lettering on it; a warm accent under gradient copy."""
    lum = _hex_luminance(color)
    if is_gradient(color) or lum is None:
        return (ALERT_RED, "#ffffff") if is_gradient(color) else (color, "#1d1d1f")
    return color, ("#1d1d1f" if lum > 0.5 else "#ffffff")


def _effects(style: str, color: str, gradient: bool) -> list[str]:
    s = style.lower()
    dark_text = (_hex_luminance(color) or 1.0) < 0.4  # a dark copy gets a light halo (a dark one would blur it)
    shadow_rgb = "255,255,255" if dark_text else "0,0,0"
    rules: list[str] = []
    if any(k in s for k in ("neon", "glow", "네온")):
        glow = f"0 0 6px {color}, 0 0 18px {color}, 0 0 36px rgba({shadow_rgb},.5)"
        rules.append(f"filter: drop-shadow(0 0 10px rgba({shadow_rgb},.55))" if gradient else f"text-shadow: {glow}")
    elif any(k in s for k in ("3d", "입체")):
        layers = ", ".join(f"{i}px {i}px 0 rgba({shadow_rgb},{0.5 - i * 0.05:.2f})" for i in range(1, 6))
        rules.append(f"filter: drop-shadow(4px 4px 0 rgba({shadow_rgb},.45))" if gradient else f"text-shadow: {layers}")
    else:
        rules.append(f"filter: drop-shadow(0 3px 8px rgba({shadow_rgb},.45))")
    if any(k in s for k in ("outline", "stroke", "외곽선")) and not gradient:
        rules.append(f"-webkit-text-stroke: 2px rgba({shadow_rgb},.8)")
    if any(k in s for k in ("italic", "이탤릭")):
        rules.append("font-style: italic")
    if any(k in s for k in ("uppercase", "caps", "대문자")):
        rules.append("text-transform: uppercase")
    if any(k in s for k in ("wide", "spacing", "자간")):
        rules.append("letter-spacing: 0.08em")
    return rules


def design_template(
    spec: DesignSpec, analysis: dict[str, Any] | None, image: Image.Image | None, mask: np.ndarray | None,
    font_css: str = "", plan: LayoutPlan | None = None,
) -> Design:
    """The text layer's document. ``plan`` is the job's layout plan (copy box, font size, panel);
    without one the copy is planned alone (``plan_copy``) and checked against the scenery."""
    if plan is None or plan.copy_box is None:
        plan = with_scenery(plan_copy(spec, analysis, mask), image)
    box = plan.copy_box
    assert box is not None
    font_px = plan.font_px
    pad_x, pad_y = plan.pad_px()
    color = spec.text_color or ("#ffffff" if plan.panel else auto_color(image, box))
    gradient = is_gradient(color)
    paint = (
        f"background: {color}; -webkit-background-clip: text; background-clip: text; color: transparent"
        if gradient else f"color: {color}"
    )
    rules = ";\n  ".join([paint, *_effects(spec.style_prompt, color, gradient)])
    panel = f" {_panel(color, spec.panel_fill)};" if plan.panel or spec.panel_fill else ""
    parts = spec.parts
    text = parts.plain()  # every part's text: the font stack and dir/lang cover all of them
    body = f'<div class="copy">{render_markup(parts.headline)}</div>' + _secondary(parts)
    # Soft hyphens in long words: this Chromium has no hyphenation dictionaries, so hyphens:auto does nothing.
    body = hyphenate_html(body, copy_language(text))
    z = PartSizes.of(font_px, min_font_px((spec.width, spec.height)))
    accent = spec.accent_fill or _accent(color)
    badge = spec.badge_fill or (ALERT_RED, "#ffffff")
    halo = "rgba(255,255,255,.35)" if (_hex_luminance(color) or 1.0) < 0.4 else "rgba(0,0,0,.35)"
    body_stack = css_font_stack(parse_font_family(spec.body_font_family), text) if spec.body_font_family else ""
    body_font = f".sub, .row, .cta {{ font-family: {body_stack}; }}" if body_stack else ""
    doc = f"""<!doctype html>
<html lang="{plan.lang}"><head><meta charset="utf-8"><style>
{font_css}
html, body {{ margin: 0; width: {spec.width}px; height: {spec.height}px; background: transparent; overflow: hidden; }}
body {{ box-sizing: border-box; display: flex; align-items: center; justify-content: center;
  padding: {box.y}px {spec.width - box.right}px {spec.height - box.bottom}px {box.x}px; }}
.band {{ box-sizing: border-box; max-width: min(100%, {plan.measure_px}px); padding: {pad_y}px {pad_x}px;{panel} }}
.block {{ text-align: center; line-height: {LINE_HEIGHT}; {_line_breaking(plan.lang)};
  font-family: {css_font_stack(parse_font_family(spec.font_family), text)}; font-weight: {spec.font_weight}; }}
{body_font}
.copy {{ text-wrap: balance; font-size: {font_px}px; {rules}; }}
.sub {{ margin-top: {round(SUB_GAP * font_px)}px; font-size: {z.subline}px; font-weight: 400; text-wrap: balance;
  {paint}; filter: drop-shadow(0 2px 5px {halo}); }}
.row {{ margin-top: {round(ROW_GAP * font_px)}px; display: flex; flex-wrap: wrap; justify-content: center;
  align-items: center; gap: 0 {round(ROW_SPACE * z.price)}px; }}
.price {{ font-size: {z.price}px; font-weight: 800; max-width: 100%; {paint};
  filter: drop-shadow(0 2px 6px {halo}); }}
.badge {{ font-size: {z.badge}px; max-width: 100%; box-sizing: border-box; padding: {round(PILL_Y * z.badge)}px
  {round(PILL_X * z.badge)}px; border-radius: {round(z.badge * 0.5)}px; background: {badge[0]}; color: {badge[1]}; }}
.cta {{ margin-top: {round(CTA_GAP * font_px)}px; }}
.button {{ display: inline-block; box-sizing: border-box; max-width: 100%; font-size: {z.cta}px;
  padding: {round(BUTTON_Y * z.cta)}px {round(BUTTON_X * z.cta)}px; border-radius: {round(z.cta * 1.2)}px;
  background: {accent[0]}; color: {accent[1]}; box-shadow: 0 .15em .5em rgba(0,0,0,.25); }}
strong {{ font-weight: 900; -webkit-text-stroke: .035em currentColor; }}  /* heavier even in a bold line */
mark {{ background: rgba(255,214,10,.92); color: #1d1d1f; -webkit-text-fill-color: #1d1d1f; border-radius: .12em;
  box-shadow: .14em 0 0 rgba(255,214,10,.92), -.14em 0 0 rgba(255,214,10,.92); }}
</style></head>
<body><div class="band"><div class="block"{copy_attributes(text)}>{body}</div></div></body></html>
"""
    return Design(html=doc, region=plan.region, font_px=font_px, color=color)
