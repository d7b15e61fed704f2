"""Layout geometry: the planner's proportions, boxes, the plan itself, and sizes derived from a canvas.

Every proportion is relative to the canvas (margins, the gap between copy and product, the legible
minimum, the product's natural size) or to a font size (padding, the structured copy's parts), so
one plan works from 256 to 4096 px.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

POSITIONS = ("top", "center", "bottom", "auto")
THIRDS = ("top", "center", "bottom")

MARGIN = 0.045  # of the short side: the copy keeps this far from every canvas edge
GAP = 0.035  # of the short side: air between the copy and the product
MIN_FONT = 0.022  # of the short side, and never below MIN_FONT_PX: the legible minimum
MIN_FONT_PX = 14
LINE_HEIGHT = 1.15  # the template's CSS line-height
LINE_ESTIMATE = 1.24  # per line in the estimate: mixed fonts (emoji, fallbacks) can grow a line box
PAD_X, PAD_Y = 0.5, 0.3  # em: inner padding of the copy box (the panel's padding; room for shadows)
PRODUCT_H, PRODUCT_W = 0.56, 0.5  # the product's natural size: at most this much of the canvas
SIDE_H, SIDE_W = 0.66, 0.42  # beside the copy the product may stand taller
SIDE_COLUMN = 0.3  # of the width: the product's column when the copy is beside it
MIN_PRODUCT = 0.4  # of the natural size: smaller and the arrangement is not considered a fit
LAST_PRODUCT = 0.22  # of the natural size: the smallest product when long copy needs the room
BUSY_EDGES = 0.07  # edge density over which scenery is too busy for bare copy
DEFAULT_GROUND = 0.86
COMFORT_EM = 8.0  # a copy column narrower than this many em reads as a cramped stack of words
CENTRE_LEVELS = ((0.5, 1.0), (0.46, 0.98), (0.42, 0.96))  # "center": copy centre (of the height), weight
# Structured copy, relative to the headline's font size (each part never below the legible minimum):
SUB_EM, PRICE_EM, BADGE_EM, CTA_EM = 0.5, 0.62, 0.4, 0.42
SUB_GAP, ROW_GAP, CTA_GAP = 0.3, 0.35, 0.45  # em of the headline: air above the subline, price row, button
PILL_X, PILL_Y = 0.6, 0.25  # em of the badge: its pill's padding
BUTTON_X, BUTTON_Y = 1.2, 0.55  # em of the call to action: its button's padding
ROW_SPACE = 0.5  # em of the price: between the price and the badge on one row


class Box(NamedTuple):
    """x, y, w, h on the canvas, in pixels."""

    x: int
    y: int
    w: int
    h: int

    @property
    def right(self) -> int:
        return self.x + self.w

    @property
    def bottom(self) -> int:
        return self.y + self.h

    def overlaps(self, other: Box) -> bool:
        return self.x < other.right and other.x < self.right and self.y < other.bottom and other.y < self.bottom

    def inside(self, other: Box) -> bool:
        return self.x >= other.x and self.y >= other.y and self.right <= other.right and self.bottom <= other.bottom


@dataclass(frozen=True)
class LayoutPlan:
    canvas: tuple[int, int]
    product_box: Box | None  # where the product image goes (None: no product known)
    copy_box: Box | None  # where the copy goes, padding included (None: no copy)
    ground: int | None  # y where the product stands
    panel: bool  # the copy sits on a readable panel (it overlaps busy scenery or the product)
    font_px: int
    lines: int  # estimated line count at font_px
    region: str  # top / center / bottom / left / right: where the copy went, in words
    lang: str
    warnings: list[str] = field(default_factory=list)
    measure_px: int = 0  # the copy's line length, padding included (at most copy_box.w)

    def pad_px(self) -> tuple[int, int]:
        """The copy box's inner padding (x, y) in pixels, as the template must apply it."""
        return math.ceil(PAD_X * self.font_px), math.ceil(PAD_Y * self.font_px)


def margin_px(canvas: tuple[int, int]) -> int:
    return max(8, round(MARGIN * min(canvas)))


def min_font_px(canvas: tuple[int, int]) -> int:
    return max(MIN_FONT_PX, math.ceil(MIN_FONT * min(canvas)))


def requested_font_px(text_size: int, canvas: tuple[int, int]) -> int:
    """``text_size`` is in CSS px at 1024 px: scaled with the width, except that a wide banner
    scales with its area (its width alone would make a headline a third of its height)."""
    w, h = canvas
    return max(1, round(text_size * min(math.sqrt(w * h), w) / 1024))
