"""Readability of the copy: WCAG contrast between its glyphs and what is really behind them.

Measured on the rendered ad, per line of copy. The glyphs come from a second render of the
same page with every decoration turned off (``glyph_only``: no shadows, filters, strokes,
panel, button or highlight fills), so the text layer's alpha there is the letters alone. The
text colour is read from the final picture at the glyphs' cores; the background is every other
pixel of the line's box in the final picture, so a panel, a button, a scrim or a shadow halo
counts as what the reader sees behind the letters. The background is judged at a worst-case
percentile (the 90th of its luminance under light text, the 10th under dark text), never the
mean, so a bright patch under white copy is not averaged away.

Thresholds follow WCAG 2: 4.5:1 for body text, 3:1 for large text. "Large" is judged on the
canvas: 18 pt on a phone showing the ad across its width is about 6% of the short side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

BODY_MIN, LARGE_MIN = 4.5, 3.0
LARGE_SHARE = 0.06  # estimated font size over the short side from which text counts as large
INK_TO_EM = 0.9  # a line's ink height (ascender to descender) is about this many em
WORST_PERCENTILE = 90.0
GLYPH_ONLY_CSS = (
    "<style>*, *::before, *::after { text-shadow: none !important; box-shadow: none !important; "
    "filter: none !important; background-color: transparent !important; border-color: transparent !important; "
    "outline: none !important; -webkit-text-stroke-width: 0 !important; }</style>"
)

# Job id -> the lowest ratio over its results: a placements job measures each in a context of its own.
_LOWEST: dict[str, float] = {}

_LIN = np.array([c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
                 for c in (np.arange(256) / 255.0)], np.float32)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """WCAG relative luminance of uint8 RGB pixels (..., 3) -> (...)."""
    lin = _LIN[rgb]
    return lin[..., 0] * 0.2126 + lin[..., 1] * 0.7152 + lin[..., 2] * 0.0722


def hex_rgb(color: str) -> tuple[int, int, int] | None:
    """#rgb / #rrggbb -> (r, g, b); None for anything else (gradients, names)."""
    c = color.strip().lstrip("#")
    if len(c) == 3:
        c = "".join(ch * 2 for ch in c)
    if len(c) != 6 or any(ch not in "0123456789abcdefABCDEF" for ch in c):
        return None
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def ratio(l1: float, l2: float) -> float:
    hi, lo = max(l1, l2), min(l1, l2)
    return (hi + 0.05) / (lo + 0.05)


def worst_background(text_l: float, bg_l: np.ndarray) -> float:
    """The background luminance a reader meets at worst: the brightest under light text, the darkest under dark."""
    if bg_l.size == 0:
        return 1.0 - text_l
    light_text = text_l > float(np.median(bg_l))
    return float(np.percentile(bg_l, WORST_PERCENTILE if light_text else 100 - WORST_PERCENTILE))


def lettering(fill: str) -> str:
    """White or near-black, whichever reads better on ``fill`` (#rrggbb): the button's and badge's text."""
    rgb = hex_rgb(fill) or (0, 0, 0)
    lum = float(luminance(np.asarray([rgb], np.uint8))[0])
    return "#ffffff" if ratio(lum, 1.0) >= ratio(lum, float(luminance(np.asarray([(29, 29, 31)], np.uint8))[0])) \
        else "#1d1d1f"


def threshold(font_px: float, canvas: tuple[int, int]) -> float:
    return LARGE_MIN if font_px >= LARGE_SHARE * min(canvas) else BODY_MIN


def record(job_id: str, value: float) -> float:
    """Note a result's ratio; the job's lowest so far."""
    _LOWEST[job_id] = min(_LOWEST.get(job_id, value), value)
    return _LOWEST[job_id]


def take_lowest(job_id: str, fallback: float | None = None) -> float | None:
    """The job's lowest ratio over all its results (forgotten once read, at the job's end)."""
    return _LOWEST.pop(job_id, fallback)


def glyph_only(html: str) -> str:
    """The page with every decoration off: what is left drawn is the letters themselves."""
    return html.replace("</head>", GLYPH_ONLY_CSS + "</head>", 1) if "</head>" in html else GLYPH_ONLY_CSS + html


# ---- measuring the rendered ad -----------------------------------------------------------------
@dataclass(frozen=True)
class LineContrast:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the line's ink
    ratio: float
    required: float  # 4.5 or 3.0 for its size


@dataclass(frozen=True)
class Contrast:
    lines: tuple[LineContrast, ...]

    @property
    def ratio(self) -> float | None:
        return min((c.ratio for c in self.lines), default=None)

    @property
    def failing(self) -> list[LineContrast]:
        return [c for c in self.lines if c.ratio < c.required]


def _runs(profile: np.ndarray, gap: int) -> list[tuple[int, int]]:
    """[start, end) runs of nonzero entries, runs closer than ``gap`` merged."""
    idx = np.flatnonzero(profile)
    if idx.size == 0:
        return []
    runs = []
    start = prev = int(idx[0])
    for i in idx[1:]:
        if i - prev > gap:
            runs.append((start, prev + 1))
            start = int(i)
        prev = int(i)
    runs.append((start, prev + 1))
    return runs


def ink_lines(glyphs: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Boxes of the copy's lines (and of blocks side by side on one line) in a glyph mask."""
    boxes = []
    for y0, y1 in _runs(np.asarray(glyphs.any(axis=1)), 1):
        band = glyphs[y0:y1]
        h = y1 - y0
        # A gap wider than the line is tall starts another block (price and badge, columns).
        for x0, x1 in _runs(np.asarray(band.any(axis=0)), max(2, h)):
            if band[:, x0:x1].sum() >= 12:
                boxes.append((x0, y0, x1, y1))
    return boxes


def _colour_groups(text_l: np.ndarray) -> list[np.ndarray]:
    """Glyph pixels split by colour when a line mixes a light and a dark one (dark words on a highlight in a
    light line): each is read against its own surroundings."""
    lo, hi = np.percentile(text_l, 5), np.percentile(text_l, 95)
    middle = (text_l > lo + (hi - lo) / 3) & (text_l < hi - (hi - lo) / 3)
    groups = [text_l < (lo + hi) / 2, text_l >= (lo + hi) / 2]
    # Two colours make two modes; antialiased edges make a continuum (many pixels in between).
    if hi - lo < 0.3 or middle.mean() > 0.15 or min(g.mean() for g in groups) < 0.05:
        return [np.ones(text_l.shape, bool)]
    return groups


# How far beyond the glyphs ``measure`` looks: the widest ring (10 px) plus the glyphs' halo (2 px), rounded up.
MEASURE_PAD = 16


def measure(final_rgb: Image.Image, glyph_layer: Image.Image, canvas: tuple[int, int] | None = None,
            offset: tuple[int, int] = (0, 0)) -> Contrast:
    """Contrast of every line of copy: the glyphs' cores against the pixels right around them (a ring a tenth of
    the line's height wide, 3-10 px, other glyphs excluded), in the final picture.

    The images may be a part of the picture (``measure_page`` passes the copy's surroundings only): ``offset``
    is where that part lies on the ``canvas`` (whose size sets the WCAG threshold for large text). The part
    must reach ``MEASURE_PAD`` px beyond the glyphs wherever it does not reach the canvas's edge."""
    rgb = np.asarray(final_rgb.convert("RGB"))
    alpha = np.asarray(glyph_layer.getchannel("A"))
    glyphs = alpha >= 128
    H, W = glyphs.shape
    canvas_w, canvas_h = canvas or (W, H)
    ox, oy = offset
    lum = luminance(rgb)
    kernel = np.ones((3, 3), np.uint8)
    opaque = alpha >= 230
    core = cv2.erode(opaque.astype(np.uint8), kernel) > 0
    halo = cv2.dilate(glyphs.astype(np.uint8), kernel, iterations=2) > 0
    out = []
    for x0, y0, x1, y1 in ink_lines(glyphs):
        h = y1 - y0
        ring = max(3, min(10, round(h * 0.1)))  # what lies right around the letters (2 px of antialiasing skipped)
        bx0, by0, bx1, by1 = max(0, x0 - ring), max(0, y0 - ring), min(W, x1 + ring), min(H, y1 + ring)
        sub = (slice(by0, by1), slice(bx0, bx1))
        inside = np.zeros((by1 - by0, bx1 - bx0), bool)
        inside[y0 - by0: y1 - by0, x0 - bx0: x1 - bx0] = True
        # The glyphs' cores (thin strokes of small text have none after erosion: their opaque pixels then).
        text = next((inside & m[sub] for m in (core, opaque) if (inside & m[sub]).sum() >= 8), inside & glyphs[sub])
        ys, xs = np.nonzero(text)
        if ys.size == 0:
            continue
        for group in _colour_groups(lum[sub][ys, xs]):
            mask = np.zeros(text.shape, np.uint8)
            mask[ys[group], xs[group]] = 1
            near = cv2.dilate(mask, np.ones((2 * ring + 1, 2 * ring + 1), np.uint8)) > 0
            text_l = float(np.median(lum[sub][ys[group], xs[group]]))
            r = ratio(text_l, worst_background(text_l, lum[sub][near & ~halo[sub]]))
            out.append(LineContrast((x0 + ox, y0 + oy, x1 + ox, y1 + oy), round(r, 2),
                                    threshold(h / INK_TO_EM, (canvas_w, canvas_h))))
    return Contrast(tuple(out))


def warning(c: Contrast) -> str | None:
    """One sentence for the status when some copy is under its WCAG minimum."""
    failing = c.failing
    if not failing:
        return None
    worst = min(failing, key=lambda x: x.ratio)
    return (f"Some of the copy has a contrast of only {worst.ratio:.1f}:1 against the picture behind it (WCAG asks "
            f"{worst.required:g}:1 for text that size), so it may be hard to read; a panel, another text colour or "
            "another scene would help.")


# ---- choosing a treatment before rendering (template designer) -----------------------------------
@dataclass(frozen=True)
class Treatment:
    color: str  # the copy's colour, #rrggbb
    panel: tuple[tuple[int, int, int], float] | None  # fill and opacity of a panel behind the copy
    predicted: float

    @property
    def panel_css(self) -> str | None:
        if self.panel is None:
            return None
        (r, g, b), a = self.panel
        return f"rgba({r},{g},{b},{a:.2f})"


def _sample(image: Image.Image, box: tuple[int, int, int, int], limit: int = 160) -> np.ndarray:
    """RGB pixels under a box, reduced to at most ``limit`` px a side (a percentile needs no more)."""
    x, y, w, h = box
    crop = image.convert("RGB").crop((max(0, x), max(0, y), max(x + 1, x + w), max(y + 1, y + h)))
    k = limit / max(crop.size)
    if k < 1:
        crop = crop.resize((max(1, round(crop.width * k)), max(1, round(crop.height * k))), Image.Resampling.BOX)
    return np.asarray(crop).reshape(-1, 3)


def predict(color: tuple[int, int, int], pixels: np.ndarray,
            panel: tuple[tuple[int, int, int], float] | None) -> float:
    """The contrast ``color`` would have over these pixels (seen through a panel, if any)."""
    if panel is not None:
        fill, a = panel
        pixels = np.clip(np.asarray(fill, np.float32) * a + pixels.astype(np.float32) * (1 - a), 0, 255)
    text_l = float(luminance(np.asarray([color], np.uint8))[0])
    return ratio(text_l, worst_background(text_l, luminance(pixels.astype(np.uint8))))


def choose(color: str, image: Image.Image | None, box: tuple[int, int, int, int] | None, needed: float,
           panel_color: str | None = None, need_panel: bool = False, margin: float = 1.15) -> Treatment:
    """Keep the brand's colour when it reads; else put it on a panel (the kit's background colour, then
    white or near-black); only when no panel makes it readable, change the colour itself."""
    rgb = hex_rgb(color)
    if rgb is None or image is None or box is None:
        return Treatment(color, None, 0.0)
    pixels = _sample(image, box)
    text_l = float(luminance(np.asarray([rgb], np.uint8))[0])
    contrasting = (255, 255, 255) if ratio(text_l, 1.0) >= ratio(text_l, 0.0) else (17, 17, 17)
    kit = hex_rgb(panel_color) if panel_color else None
    panels: list[tuple[tuple[int, int, int], float] | None] = [] if need_panel else [None]
    if kit is not None:
        panels += [(kit, 0.85), (kit, 0.95)]
    panels += [(contrasting, 0.85), (contrasting, 0.95)]
    goal = needed * margin
    scored = [(predict(rgb, pixels, p), p) for p in panels]
    for score, p in scored:
        if score >= goal:
            return Treatment(color, p, score)
    # No panel rescues the colour (it is mid-grey against everything): best readable pair instead.
    other = "#ffffff" if contrasting == (17, 17, 17) else "#111111"
    panel = (contrasting, 0.92)
    alt = Treatment(other, panel, predict(hex_rgb(other) or (255, 255, 255), pixels, panel))
    best_score, best_panel = max(scored, key=lambda sp: sp[0])
    return alt if alt.predicted > best_score else Treatment(color, best_panel, best_score)


def strongest(color: str) -> Treatment:
    """The most readable panel for a colour (the retry after a measured failure)."""
    rgb = hex_rgb(color) or (255, 255, 255)
    text_l = float(luminance(np.asarray([rgb], np.uint8))[0])
    fill = (255, 255, 255) if ratio(text_l, 1.0) >= ratio(text_l, 0.0) else (17, 17, 17)
    return Treatment(color, (fill, 0.96), ratio(text_l, float(luminance(np.asarray([fill], np.uint8))[0])))


Renderer = Callable[[str, "tuple[int, int, int, int] | None"], Image.Image]  # (html, clip) -> the page's layer


def measure_page(html: str, render: Renderer, step1: Image.Image, layer: Image.Image) -> Contrast:
    """Render the glyphs alone and measure the copy in the composite of ``layer`` over ``step1``."""
    ink = layer.getchannel("A").getbbox()  # on the page, before any resize
    if ink is None:  # nothing drawn: no copy to measure
        return Contrast(())
    # The glyph-only page changes colours, never positions: its ink lies inside the layer's, so only that
    # part is captured (a 1080x1920 capture is most of a render's time; the copy is a small part of it).
    pad = 2
    glyphs = render(glyph_only(html), (ink[0] - pad, ink[1] - pad, ink[2] + pad, ink[3] + pad))
    if layer.size != step1.size:
        layer = layer.resize(step1.size, Image.Resampling.LANCZOS)
    if glyphs.size != step1.size:
        glyphs = glyphs.resize(step1.size, Image.Resampling.LANCZOS)
        ink = glyphs.getchannel("A").getbbox() or ink
    # Only the copy's surroundings are composited and measured: the rest of a story-size canvas is ~2 MP of
    # pixels that no line's ring reaches.
    w, h = step1.size
    box = (max(0, ink[0] - MEASURE_PAD), max(0, ink[1] - MEASURE_PAD),
           min(w, ink[2] + MEASURE_PAD), min(h, ink[3] + MEASURE_PAD))
    final = Image.alpha_composite(step1.crop(box).convert("RGBA"), layer.crop(box)).convert("RGB")
    return measure(final, glyphs.crop(box), canvas=(w, h), offset=box[:2])
