"""Ad-copy design: the template designer that writes the text layer's HTML/CSS.

It is the fallback behind the LLM designers and the default with no LLM: one centred
block of copy in the chosen region, sized to fit, coloured for contrast, with effects
picked from the style prompt's words.
"""

from __future__ import annotations

import html
import math
import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from pipeline.cssvalues import css_font_stack, is_gradient, parse_font_family
from pipeline.fonts import copy_attributes
from pipeline.worker.stages.analyze import REGIONS, region_bounds


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


@dataclass(frozen=True)
class Design:
    html: str
    region: str
    font_px: int
    color: str
    designer: str = "template"


def _char_em(ch: str) -> float:
    """Rough advance width in em, enough to size copy without a layout engine."""
    if ch == " ":
        return 0.3
    if unicodedata.east_asian_width(ch) in ("W", "F") or ord(ch) >= 0x1F000:
        return 1.0
    if ch.isupper() or ch in "mwMW@%":
        return 0.7
    return 0.56


def fit_font_size(text: str, requested: int, box_w: int, box_h: int, max_lines: int = 4) -> int:
    lines = text.split("\n")
    size = requested
    while size > 10:
        rows = sum(max(1, math.ceil(sum(_char_em(c) for c in line) * size / box_w)) for line in lines)
        if rows <= max_lines and rows * size * 1.2 <= box_h:
            return size
        size = int(size * 0.92)
    return 10


def choose_region(position: str, free_space: dict[str, float] | None, mask: np.ndarray | None) -> str:
    if position != "auto":
        return position
    scores = dict(free_space or {r: 1.0 for r in REGIONS})
    if mask is not None:
        h = mask.shape[0]
        for r in REGIONS:
            y0, y1 = region_bounds(r, h)
            if (mask[y0:y1] > 127).mean() > 0.002:
                scores[r] = scores.get(r, 0) - 2.0  # never over the product when we choose
    # Prefer the top on ties: headlines read there first.
    return max(REGIONS, key=lambda r: (scores.get(r, 0), r == "top"))


def auto_color(image: Image.Image | None, region: str) -> str:
    if image is None:
        return "#ffffff"
    grey = np.asarray(image.convert("L"), np.float32)
    y0, y1 = region_bounds(region, grey.shape[0])
    return "#1d1d1f" if float(grey[y0:y1].mean()) > 150 else "#ffffff"


def _effects(style: str, color: str, gradient: bool) -> list[str]:
    s = style.lower()
    dark_text = color == "#1d1d1f"
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
    font_css: str = "",
) -> Design:
    region = choose_region(spec.position, (analysis or {}).get("free_space"), mask)
    scale = spec.width / 1024
    y0, y1 = region_bounds(region, spec.height)
    box_w, box_h = int(spec.width * 0.86), int((y1 - y0) * 0.9)
    font_px = fit_font_size(spec.text, max(10, round(spec.text_size * scale)), box_w, box_h)
    color = spec.text_color or auto_color(image, region)
    gradient = is_gradient(color)
    paint = (
        f"background: {color}; -webkit-background-clip: text; background-clip: text; color: transparent"
        if gradient else f"color: {color}"
    )
    rules = ";\n  ".join([paint, *_effects(spec.style_prompt, color, gradient)])
    body = "<br>".join(html.escape(line) for line in spec.text.split("\n"))
    doc = f"""<!doctype html>
<html><head><meta charset="utf-8"><style>
{font_css}
html, body {{ margin: 0; width: {spec.width}px; height: {spec.height}px; background: transparent; overflow: hidden; }}
.band {{ position: absolute; left: 0; top: {y0}px; width: {spec.width}px; height: {y1 - y0}px;
  display: flex; align-items: center; justify-content: center; }}
.copy {{ max-width: {box_w}px; text-align: center; line-height: 1.15; word-break: keep-all; text-wrap: balance; overflow-wrap: anywhere;
  font-family: {css_font_stack(parse_font_family(spec.font_family), spec.text)};
  font-weight: {spec.font_weight}; font-size: {font_px}px;
  {rules}; }}
</style></head>
<body><div class="band"><div class="copy"{copy_attributes(spec.text)}>{body}</div></div></body></html>
"""
    return Design(html=doc, region=region, font_px=font_px, color=color)
