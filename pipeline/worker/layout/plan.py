"""``plan_layout``: the product's box and the copy's box, decided together (see the package's docstring)."""

from __future__ import annotations

import math
from dataclasses import replace

from pipeline.worker.errors import UserFacingError
from pipeline.worker.layout.arrange import Ask, best_arrangement, choose_third, product_box_at
from pipeline.worker.layout.fitting import block_height, fit_font, inner_width
from pipeline.worker.layout.geometry import (
    DEFAULT_GROUND,
    MIN_PRODUCT,
    PAD_X,
    POSITIONS,
    PRODUCT_H,
    PRODUCT_W,
    THIRDS,
    Box,
    LayoutPlan,
    margin_px,
    min_font_px,
)
from pipeline.worker.layout.parts import CopyParts, as_parts, plain_copy
from pipeline.worker.layout.text import TextStyle, count_lines, script_lang, text_measure


def _copy_only(
    canvas: tuple[int, int], copy: CopyParts, position: str, req: int, fmin: int, style: TextStyle,
    free_space: dict[str, float] | None, avoid: Box | None, safe: tuple[int, int] = (0, 0),
) -> tuple[Box, int, int, str, list[str]]:
    """No product to place (step 2 on a given picture): the copy goes in a third of the canvas,
    the calmest one for ``auto`` and never the one holding a known product."""
    W, H = canvas
    m = margin_px(canvas)
    top, low = max(m, safe[0]), H - max(m, safe[1])
    region = choose_third(position, free_space, avoid, H)
    i = THIRDS.index(region)
    y0, y1 = max(top, round(H * i / 3)), min(low, round(H * (i + 1) / 3))
    box_w = W - 2 * m
    warnings: list[str] = []
    fit = fit_font(copy, box_w, y1 - y0, req, fmin, style) if y1 > y0 else None
    if fit is None:  # long copy: keep the legible minimum and let the copy take more of the canvas
        fit = fit_font(copy, box_w, low - top, fmin, fmin, style)
        if fit is None:
            raise _too_long(canvas, fmin)
        warnings.append(_long_warning(canvas, fmin))
    f, lines = fit
    ch = block_height(copy, f, inner_width(box_w, f), style, fmin)[1]  # type: ignore[index]  # it fitted
    anchor = {"top": y0, "center": (y0 + y1 - ch) / 2, "bottom": y1 - ch}[region]
    cy = int(min(max(anchor, top), low - ch))
    return Box(m, cy, box_w, ch), f, lines, region, warnings


def _too_long(canvas: tuple[int, int], fmin: int) -> UserFacingError:
    return UserFacingError(
        f"text_content: too long for a {canvas[0]}x{canvas[1]} canvas even at the legible minimum of {fmin} px; "
        "shorten the copy or use a larger canvas"
    )


def _long_warning(canvas: tuple[int, int], fmin: int) -> str:
    return (f"The copy is long for a {canvas[0]}x{canvas[1]} canvas: it is set at the legible minimum of "
            f"{fmin} px and takes more of the picture.")


def _plan(
    canvas: tuple[int, int], product: Box | None, copy_box: Box, ground: int | None, panel: bool, font: int,
    lines: int, region: str, style: TextStyle, warnings: list[str], copy: CopyParts,
) -> LayoutPlan:
    pad = math.ceil(PAD_X * font)
    if copy.texts() == [copy.headline]:
        measure = min(copy_box.w, text_measure(plain_copy(copy.headline), font, copy_box.w - 2 * pad, style) + 2 * pad)
    else:
        measure = _block_measure(copy, font, copy_box.w, style, min_font_px(canvas))
    return LayoutPlan(canvas, product, copy_box, ground, panel, font, lines, region, style.lang, warnings, measure)


def _block_measure(parts: CopyParts, font: int, box_w: int, style: TextStyle, fmin: int) -> int:
    """The narrowest box width (padding included) at which the whole block is no taller than in
    ``box_w``: the band's max-width, so that a panel hugs the copy (as ``text_measure``)."""
    def height(w: int) -> int:
        size = block_height(parts, font, inner_width(w, font), style, fmin)
        return size[1] if size is not None else 1 << 30

    target = height(box_w)
    lo, hi = 1, box_w
    while lo < hi:
        mid = (lo + hi) // 2
        if height(mid) <= target:
            hi = mid
        else:
            lo = mid + 1
    return min(box_w, hi + 2)


def plan_layout(
    canvas: tuple[int, int],
    product_size: tuple[int, int] | None,
    copy: str | CopyParts,
    position: str,
    font_px_requested: int,
    *,
    free_space: dict[str, float] | None = None,
    ground: int | None = None,
    style: TextStyle | None = None,
    avoid: Box | None = None,
    safe: tuple[int, int] = (0, 0),
) -> LayoutPlan:
    """Plan the product's box and the copy's box together.

    ``product_size`` is the cut-out's size (None when no product is placed by us: step 2);
    ``free_space`` the analysis's per-third calm scores; ``ground`` the y where the scene's floor
    wants the product to stand; ``avoid`` a product already in the picture (step 2 with a mask).
    ``copy`` is the headline, or ``CopyParts`` (headline, subline, price, badge, call to action):
    the copy box then holds all of them. ``safe`` is (top, bottom) in px kept free of copy on top
    of the margins (a placement's safe zone, e.g. a story's UI). Raises UserFacingError only when
    the copy cannot fit the canvas even at the legible minimum.
    """
    if position not in POSITIONS:
        raise ValueError(f"text_position must be one of {', '.join(POSITIONS)}")
    W, H = canvas
    parts = as_parts(copy)
    parts = replace(parts, headline=parts.headline.strip("\n "))
    copy = parts.headline
    style = style or TextStyle(lang=script_lang(parts.plain()))
    fmin = min_font_px(canvas)
    req = max(fmin, font_px_requested)
    ground0 = int(min(H - 2, max(H * 0.3, ground if ground is not None else H * DEFAULT_GROUND)))

    if product_size is None:
        if not copy:
            return LayoutPlan(canvas, None, None, None, False, req, 0, position, style.lang)
        box, f, lines, region, warnings = _copy_only(canvas, parts, position, req, fmin, style, free_space, avoid,
                                                     safe)
        return _plan(canvas, None, box, None, False, f, lines, region, style, warnings, parts)

    pw, ph = max(1, product_size[0]), max(1, product_size[1])
    nat = min(H * PRODUCT_H / ph, W * PRODUCT_W / pw)
    natural = product_box_at(pw, ph, min(nat, (ground0 - 1) / ph), W / 2, ground0)
    if not copy:
        return LayoutPlan(canvas, natural, None, ground0, False, req, 0, position, style.lang)

    best = best_arrangement(Ask(canvas, (pw, ph), parts, req, fmin, ground0, nat, style, safe), position, free_space)
    if best is not None:
        warnings = []
        if best.font == fmin < req and (len(parts.texts()) > 1 or count_lines(
                plain_copy(copy), fmin, inner_width(best.copy.w, fmin), style) > 1):
            warnings.append(_long_warning(canvas, fmin))
        if best.product_ratio < MIN_PRODUCT:
            warnings.append("The product was made smaller than usual to leave room for the copy.")
        return _plan(canvas, best.product, best.copy, best.ground, False, best.font, best.lines, best.region, style,
                     warnings, parts)

    # No arrangement keeps them apart: the copy goes where it was asked, over the product, on a panel.
    box, f, lines, region, warnings = _copy_only(
        canvas, parts, "top" if position == "auto" else position, req, fmin, style, free_space, None, safe)
    warnings.append("The copy could not be kept clear of the product at a legible size, so it is set on a panel "
                    "over the picture.")
    return _plan(canvas, natural, box, ground0, True, f, lines, region, style, warnings, parts)
