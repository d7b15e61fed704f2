"""Text fitting: the copy block's height at a font size in a column, and the largest size that fits a box."""

from __future__ import annotations

import math

from pipeline.worker.layout.geometry import (
    BUTTON_X,
    BUTTON_Y,
    CTA_GAP,
    LINE_ESTIMATE,
    PAD_X,
    PAD_Y,
    PILL_X,
    PILL_Y,
    ROW_GAP,
    ROW_SPACE,
    SUB_GAP,
)
from pipeline.worker.layout.parts import CopyParts, PartSizes, as_parts, plain_copy
from pipeline.worker.layout.text import TextStyle, count_lines, text_width_em

_PLAIN = TextStyle()  # frozen: safe as a default


def block_height(parts: CopyParts, font_px: int, inner_w: int, style: TextStyle, fmin: int) -> tuple[int, int] | None:
    """(headline lines, height with padding) of the whole copy block in a column ``inner_w`` wide
    at headline size ``font_px``: an upper bound of the template's CSS; None when it cannot fit."""
    z = PartSizes.of(font_px, fmin)
    if inner_w < font_px:
        return None
    lines = count_lines(plain_copy(parts.headline), font_px, inner_w, style) if parts.headline else 0
    h = lines * font_px * LINE_ESTIMATE + 2 * PAD_Y * font_px
    if parts.subline:
        sub_lines = count_lines(plain_copy(parts.subline), z.subline, inner_w, style)
        h += SUB_GAP * font_px + sub_lines * z.subline * LINE_ESTIMATE
    if parts.price or parts.badge:
        price_w = text_width_em(plain_copy(parts.price), style) * z.price if parts.price else 0.0
        badge_inner = inner_w - 2 * math.ceil(PILL_X * z.badge)
        if parts.badge and badge_inner < z.badge:
            return None
        badge_w = text_width_em(plain_copy(parts.badge), style) * z.badge + 2 * PILL_X * z.badge if parts.badge else 0.0
        badge_h = (count_lines(plain_copy(parts.badge), z.badge, badge_inner, style) * LINE_ESTIMATE + 2 * PILL_Y) \
            * z.badge if parts.badge else 0.0
        price_h = count_lines(plain_copy(parts.price), z.price, inner_w, style) * z.price * LINE_ESTIMATE \
            if parts.price else 0.0
        one_row = parts.price and parts.badge and price_w + ROW_SPACE * z.price + badge_w <= inner_w
        h += ROW_GAP * font_px + (max(price_h, badge_h) if one_row or not (parts.price and parts.badge)
                                  else price_h + badge_h)
    if parts.cta:
        button_inner = inner_w - 2 * math.ceil(BUTTON_X * z.cta)
        if button_inner < z.cta:
            return None
        cta_lines = count_lines(plain_copy(parts.cta), z.cta, button_inner, style)
        h += CTA_GAP * font_px + (cta_lines * LINE_ESTIMATE + 2 * BUTTON_Y) * z.cta
    return lines, math.ceil(h)


def copy_height(font_px: int, lines: int) -> int:
    return math.ceil(font_px * (lines * LINE_ESTIMATE + 2 * PAD_Y))


def inner_width(box_w: int, font_px: int) -> int:
    return box_w - 2 * math.ceil(PAD_X * font_px)


def font_steps(requested: int, minimum: int) -> list[int]:
    sizes, f = [], float(max(requested, minimum))
    while f > minimum:
        sizes.append(int(f))
        f *= 0.94
    sizes.append(minimum)
    return sorted(set(sizes), reverse=True)


def fit_font(text: str | CopyParts, box_w: int, box_h: int, requested: int, minimum: int,
             style: TextStyle = _PLAIN) -> tuple[int, int] | None:
    """The largest font in [minimum, requested] whose copy (all its parts) fits box_w x box_h,
    with the headline's line count; None when even the minimum does not fit."""
    parts = as_parts(text)
    for f in font_steps(requested, minimum):
        size = block_height(parts, f, inner_width(box_w, f), style, minimum)
        if size is not None and size[1] <= box_h:
            return f, size[0]
    return None
