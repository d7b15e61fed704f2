"""Candidate arrangements of product and copy, and their scores.

Copy stacked above, below or across the middle of the product, or in a column beside it; each
candidate is scored by how much of its natural size the product keeps, how close the font is to the
one asked for, how comfortable the copy's column is and how calm the scenery under it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.worker.layout.fitting import block_height, font_steps, inner_width
from pipeline.worker.layout.geometry import (
    CENTRE_LEVELS,
    COMFORT_EM,
    GAP,
    LAST_PRODUCT,
    MIN_PRODUCT,
    SIDE_COLUMN,
    SIDE_H,
    SIDE_W,
    THIRDS,
    Box,
    margin_px,
)
from pipeline.worker.layout.parts import CopyParts
from pipeline.worker.layout.text import TextStyle, is_rtl


@dataclass(frozen=True)
class Candidate:
    product: Box
    copy: Box
    ground: int
    font: int
    lines: int
    product_ratio: float  # of the natural size
    region: str
    weight: float

    font_ratio: float = 1.0
    shape: float = 1.0  # 1 for a comfortable column; less when the copy is squeezed into a narrow one

    @property
    def score(self) -> float:
        return min(1.0, self.product_ratio) * self.font_ratio * self.shape * self.weight


def _shape(box_w: int, font_px: int, lines: int) -> float:
    """A column under COMFORT_EM wide wraps into a stack of one-word lines, and a headline of many
    lines reads worse than a smaller one of few: both are worth less."""
    return min(1.0, inner_width(box_w, font_px) / font_px / COMFORT_EM) / (1 + 0.06 * max(0, lines - 4))


def product_box_at(pw: int, ph: int, scale: float, cx: float, ground: int) -> Box:
    w, h = max(1, round(pw * scale)), max(1, round(ph * scale))
    return Box(round(cx - w / 2), ground - h, w, h)


@dataclass(frozen=True)
class Ask:
    """One planning problem: what every arrangement is tried against."""

    canvas: tuple[int, int]
    product: tuple[int, int]  # the cut-out's size
    copy: CopyParts
    req: int  # requested font px (never below the minimum)
    fmin: int  # the legible minimum
    ground0: int  # where the scene wants the product to stand
    nat: float  # the product's natural scale
    style: TextStyle
    safe: tuple[int, int] = (0, 0)  # px at the top and bottom that must stay free of copy (platform UI)

    @property
    def margin(self) -> int:
        return margin_px(self.canvas)

    @property
    def top(self) -> int:
        """The highest y the copy may start at."""
        return max(self.margin, self.safe[0])

    @property
    def low(self) -> int:
        """The lowest y the copy may reach."""
        return self.canvas[1] - max(self.margin, self.safe[1])

    @property
    def gap(self) -> int:
        return max(4, round(GAP * min(self.canvas)))

    def block(self, font_px: int, box_w: int) -> tuple[int, int] | None:
        """(headline lines, block height) at this headline size in a box this wide."""
        return block_height(self.copy, font_px, inner_width(box_w, font_px), self.style, self.fmin)


def _stacked(where: str, a: Ask, floor: float, weight: float) -> list[Candidate]:
    """Copy across the canvas above (top), below (bottom) or in the middle (center@level) of the
    product, which stands centred on its ground line."""
    W, H = a.canvas
    m, gap = a.margin, a.gap
    pw, ph = a.product
    box_w = W - 2 * m
    out = []
    for f in font_steps(a.req, a.fmin):
        size = a.block(f, box_w)
        if size is None:
            continue
        lines, ch = size
        if where == "bottom":  # the copy takes the bottom, the product stands above it (raised if need be)
            cy = a.low - ch
            ground = min(a.ground0, cy - gap)
            room = ground - m
        else:
            cy = a.top if where == "top" else round(H * float(where.split("@")[1]) - ch / 2)
            ground = a.ground0
            if where != "top":  # a product squeezed under centred copy may stand nearer the viewer (lower)
                ground = max(ground, min(ground + round(H * 0.05), H - 2 * m, round(cy + ch + gap + a.nat * ph)))
            room = ground - (cy + ch + gap)
        scale = min(a.nat, room / ph, (W - 2 * m) / pw)
        if cy < a.top or cy + ch > a.low or room <= 0 or scale < a.nat * floor:
            continue
        # A product lifted far above the scene's floor line starts to float on the wall behind it.
        lift = 1.0 - 0.6 * max(0, a.ground0 - ground) / H
        out.append(Candidate(
            product=product_box_at(pw, ph, scale, W / 2, ground), copy=Box(m, cy, box_w, ch), ground=ground,
            font=f, lines=lines, product_ratio=scale / a.nat, region=where.split("@")[0], weight=weight * lift,
            font_ratio=f / a.req, shape=_shape(box_w, f, lines),
        ))
    return out


def _beside(a: Ask, floor: float, weight: float, copy_left: bool, centre_copy: bool) -> list[Candidate]:
    """Copy in a column beside the product (product on the right for left-to-right copy)."""
    W, H = a.canvas
    m, gap = a.margin, a.gap
    pw, ph = a.product
    side_nat = min(H * SIDE_H / ph, W * SIDE_W / pw, (a.ground0 - m) / ph)
    out = []
    for frac in (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.22):
        scale = side_nat * frac
        if scale < a.nat * floor:
            break
        column = max(round(W * SIDE_COLUMN), round(pw * scale) + 2 * gap)
        box_w = W - 2 * m - column
        if box_w < max(a.fmin * 4, W * 0.25):
            continue
        prod = product_box_at(pw, ph, scale, (W - m - column / 2) if copy_left else (m + column / 2), a.ground0)
        # Copy level with the middle of the canvas for "center", else with the product's middle.
        mid = H / 2 if centre_copy else prod.y + prod.h / 2
        for f in font_steps(a.req, a.fmin):
            size = a.block(f, box_w)
            if size is None or size[1] > a.low - a.top:
                continue
            lines, ch = size
            cy = int(min(max(mid - ch / 2, a.top), a.low - ch))
            out.append(Candidate(
                product=prod, copy=Box(m if copy_left else W - m - box_w, cy, box_w, ch), ground=a.ground0,
                font=f, lines=lines, product_ratio=scale / a.nat, region="left" if copy_left else "right",
                weight=weight, font_ratio=f / a.req, shape=_shape(box_w, f, lines),
            ))
    return out


def _candidates(a: Ask, position: str, floor: float) -> list[Candidate]:
    """Every arrangement for the position with the product at least ``floor`` of its natural size."""
    W, H = a.canvas
    wide = W >= H * 1.3
    found: list[Candidate] = []
    if position in ("top", "auto"):
        found += _stacked("top", a, floor, 0.97 if wide else 1.0)
    if position in ("bottom", "auto"):
        found += _stacked("bottom", a, floor, 0.95 if position == "auto" else 1.0)
    if position == "center":
        # Centred copy with the product standing below it; the copy may sit a little above the
        # middle (still "center") when that leaves the product much more room.
        for level, w in CENTRE_LEVELS:
            found += _stacked(f"center@{level}", a, floor, w)
    if position in ("center", "auto"):
        # Beside the product: the natural choice on wide canvases, a fallback on tall ones.
        found += _beside(a, floor, 1.02 if wide else 0.9, not is_rtl(a.style.lang), position == "center")
    return found


def best_arrangement(a: Ask, position: str, free_space: dict[str, float] | None) -> Candidate | None:
    """The arrangement giving product and copy the most room (calm scenery breaks near-ties)."""
    def top(found: list[Candidate]) -> Candidate | None:
        return max(found, key=lambda c: c.score * (0.85 + 0.15 * _calm(free_space, c.copy, a.canvas[1])),
                   default=None)

    best = top(_candidates(a, position, MIN_PRODUCT))
    if best is None or best.font == a.fmin < a.req:
        # Long copy: the product may shrink further before the copy gives up on its own space.
        smaller = top(_candidates(a, position, LAST_PRODUCT))
        if smaller is not None and (best is None or smaller.score > best.score):
            best = smaller
    return best


def _calm(free_space: dict[str, float] | None, box: Box, H: int) -> float:
    """The free-space score (0..1) of the third the copy box mostly lies in; 1 when unknown."""
    if not free_space:
        return 1.0
    third = THIRDS[min(2, int((box.y + box.h / 2) / (H / 3)))]
    return max(0.0, min(1.0, float(free_space.get(third, 1.0))))


def choose_third(position: str, free_space: dict[str, float] | None, avoid: Box | None, height: int) -> str:
    """The third of the canvas for copy placed on its own: the one asked for, or for ``auto`` the
    calmest by the analysis's free-space scores, never one holding a known product, the top on ties."""
    if position != "auto":
        return position
    scores = dict(free_space or {r: 1.0 for r in THIRDS})
    if avoid is not None:
        for i, r in enumerate(THIRDS):
            if avoid.y < height * (i + 1) / 3 and avoid.bottom > height * i / 3:
                scores[r] = scores.get(r, 0.0) - 2.0  # never over the product when we choose
    return max(THIRDS, key=lambda r: (scores.get(r, 0.0), r == "top"))  # headlines read first at the top
