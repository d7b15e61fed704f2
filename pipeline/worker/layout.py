"""The layout planner: where the product stands and where the copy goes, decided together.

Pure functions (numpy/PIL only). The composite stage places the product at ``product_box``;
the design stage sets the copy inside ``copy_box`` at ``font_px``. For every ``text_position``
the two boxes never overlap: for ``center``/``bottom`` the product moves and/or shrinks (copy at
the bottom lifts the product; copy in the centre puts the product to one side or below it),
and only when no arrangement fits does the copy go on a readable panel, with a warning.

Copy size is estimated without a layout engine: advance widths are deliberately generous and
line breaks are only taken where Chromium may take them too (spaces; CJK characters; never
before closing punctuation), so the estimated line count is an upper bound of what Chromium
draws with the template's CSS (``word-break: keep-all`` for Korean, ``hyphens: auto`` for
Latin, ``overflow-wrap: anywhere`` as the last resort). Tests render the copy to check this.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
from PIL import Image

from pipeline.worker.errors import UserFacingError

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
_EMPHASIS = re.compile(r"\*\*(.+?)\*\*|==(.+?)==", re.DOTALL)


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
class TextStyle:
    """What changes the copy's width besides the font size (from the style prompt)."""

    lang: str = "en"
    letter_spacing_em: float = 0.0
    uppercase: bool = False


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


def plain_copy(text: str) -> str:
    """The copy without its emphasis markers (``**bold**``, ``==highlight==``): what is drawn."""
    return _EMPHASIS.sub(lambda m: plain_copy(m.group(1) or m.group(2)), text)


@dataclass(frozen=True)
class CopyParts:
    """Structured copy: the headline and the optional subline, price, badge and call to action
    (each may carry emphasis markup; sizes are estimated on the plain text)."""

    headline: str
    subline: str = ""
    price: str = ""
    badge: str = ""
    cta: str = ""

    def texts(self) -> list[str]:
        """The non-empty parts, marked up as given, headline first."""
        return [t for t in (self.headline, self.subline, self.price, self.badge, self.cta) if t]

    def plain(self) -> str:
        """All the drawn text, one part a line (for script detection and font stacks)."""
        return "\n".join(plain_copy(t) for t in self.texts())


@dataclass(frozen=True)
class PartSizes:
    """Font sizes of the parts for a headline size (the template and the estimate share them)."""

    headline: int
    subline: int
    price: int
    badge: int
    cta: int

    @staticmethod
    def of(font_px: int, fmin: int) -> PartSizes:
        part = lambda k: max(min(fmin, font_px), round(font_px * k))  # noqa: E731
        return PartSizes(font_px, part(SUB_EM), part(PRICE_EM), part(BADGE_EM), part(CTA_EM))


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


def as_parts(copy: str | CopyParts) -> CopyParts:
    return copy if isinstance(copy, CopyParts) else CopyParts(copy)


# ---- sizes ---------------------------------------------------------------------------------
def margin_px(canvas: tuple[int, int]) -> int:
    return max(8, round(MARGIN * min(canvas)))


def min_font_px(canvas: tuple[int, int]) -> int:
    return max(MIN_FONT_PX, math.ceil(MIN_FONT * min(canvas)))


def requested_font_px(text_size: int, canvas: tuple[int, int]) -> int:
    """``text_size`` is in CSS px at 1024 px: scaled with the width, except that a wide banner
    scales with its area (its width alone would make a headline a third of its height)."""
    w, h = canvas
    return max(1, round(text_size * min(math.sqrt(w * h), w) / 1024))


# ---- script and line breaking --------------------------------------------------------------
# Code point ranges that name a language for line breaking and hyphenation (first match wins).
_SCRIPT_RANGES = (
    ("ko", ((0xAC00, 0xD7A3), (0x1100, 0x11FF), (0x3130, 0x318F))),
    ("ja", ((0x3040, 0x30FF),)),
    ("zh", ((0x4E00, 0x9FFF), (0x3400, 0x4DBF))),
    ("ar", ((0x0600, 0x06FF),)),
    ("he", ((0x0590, 0x05FF),)),
    ("ru", ((0x0400, 0x04FF),)),
)


def _char_lang(ch: str) -> str | None:
    cp = ord(ch)
    for lang, ranges in _SCRIPT_RANGES:
        if any(lo <= cp <= hi for lo, hi in ranges):
            return lang
    return "en" if ch.isalpha() else None


def script_lang(text: str) -> str:
    """The copy's language as far as line breaking and hyphenation care (an HTML lang tag)."""
    counts: dict[str, int] = {}
    for ch in text:
        if (key := _char_lang(ch)) is not None:
            counts[key] = counts.get(key, 0) + 1
    if counts.get("ko"):
        return "ko"  # Hangul with some Hanja or Latin is still Korean
    if counts.get("ja"):
        return "ja"  # kana decide Japanese over Chinese
    return max(counts, key=lambda k: counts[k]) if counts else "en"


def is_rtl(lang: str) -> bool:
    return lang in ("ar", "he")


def char_em(ch: str) -> float:
    """A generous advance width in em (bold sans fonts, the colour emoji font)."""
    cp = ord(ch)
    if ch in " \u00a0\u3000":
        return 1.0 if ch == "\u3000" else 0.34
    if unicodedata.category(ch) in ("Mn", "Me", "Cf") or 0xFE00 <= cp <= 0xFE0F or 0x1F3FB <= cp <= 0x1F3FF:
        return 0.0  # combining marks, variation selectors, ZWJ, skin tones: no advance of their own
    if cp >= 0x1F000 or 0x2600 <= cp <= 0x27BF or 0x2B00 <= cp <= 0x2BFF:
        return 1.32  # colour emoji are wider than an em
    if unicodedata.east_asian_width(ch) in ("W", "F"):
        return 1.02
    if ch in "mwMW@%&—…":
        return 1.06
    if ch in "ijlI.,:;'!|`":
        return 0.4
    if ch.isupper() or ch.isdigit() or ch in "#$?~€£₩¥":
        return 0.78
    return 0.66


def _is_cjk_char(ch: str) -> bool:
    cp = ord(ch)
    return 0x2E80 <= cp <= 0x9FFF or 0xF900 <= cp <= 0xFAFF or 0xFF00 <= cp <= 0xFFEF or 0x20000 <= cp <= 0x3FFFF


# No line may start with these (Chromium's line breaker and CJK kinsoku agree on them).
_NO_START = set(",.!?:;)]}%、。，．！？：；）」』】〉》〕｝ー・…‥゛゜ぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮヵヶ")
# No line may end with these.
_NO_END = set("([{「『【〈《〔｛$₩¥£€")


def _atoms(paragraph: str, lang: str) -> list[tuple[str, bool]]:
    """The paragraph as unbreakable pieces, each with whether a space precedes it.

    Breaks only where Chromium may break: at spaces, and for Chinese/Japanese between CJK
    characters. Korean (``keep-all``) and Latin break at spaces only (hyphenation and breaks
    after hyphens would only make fewer lines)."""
    atoms: list[tuple[str, bool]] = []
    for i, word in enumerate(paragraph.split(" ")):
        if not word:
            continue
        spaced = bool(atoms) or i > 0
        if lang in ("zh", "ja"):
            pieces: list[str] = []
            for ch in word:
                glue = pieces and (ch in _NO_START or not _is_cjk_char(ch) and not _is_cjk_char(pieces[-1][-1])
                                   or pieces[-1][-1] in _NO_END)
                if glue:
                    pieces[-1] += ch
                else:
                    pieces.append(ch)
            atoms.append((pieces[0], spaced))
            atoms.extend((p, False) for p in pieces[1:])
        else:
            atoms.append((word, spaced))
    return atoms


def text_width_em(s: str, style: TextStyle = TextStyle()) -> float:
    if style.uppercase:
        s = s.upper()
    return sum(char_em(c) + (style.letter_spacing_em if char_em(c) else 0.0) for c in s)


def count_lines(text: str, font_px: int, width_px: int, style: TextStyle = TextStyle()) -> int:
    """Lines the copy takes at ``font_px`` in a column ``width_px`` wide (greedy, an upper bound)."""
    avail = width_px / font_px
    space = char_em(" ") + style.letter_spacing_em
    lines = 0
    for paragraph in text.split("\n"):
        lines += 1
        used = 0.0
        for atom, spaced in _atoms(paragraph, style.lang):
            w = text_width_em(atom, style)
            if used and used + (space if spaced else 0.0) + w <= avail:
                used += (space if spaced else 0.0) + w
                continue
            if used:
                lines += 1
                used = 0.0
            if w <= avail:
                used = w
                continue
            # Longer than the column: overflow-wrap: anywhere breaks it between characters.
            for ch in atom:
                cw = text_width_em(ch, style)
                if used and used + cw > avail:
                    lines += 1
                    used = 0.0
                used += cw
    return lines


def text_measure(text: str, font_px: int, width_px: int, style: TextStyle = TextStyle()) -> int:
    """The narrowest line length that still sets the copy in as few lines as ``width_px`` does.

    CSS cannot shrink a wrapped block to its longest line, so a panel would span the whole box;
    with this as its max-width it hugs the copy. Safe: the estimate's widths are upper bounds and
    greedy wrapping of narrower pieces never takes more lines."""
    target = count_lines(text, font_px, width_px, style)
    lo, hi = 1, width_px
    while lo < hi:
        mid = (lo + hi) // 2
        if count_lines(text, font_px, mid, style) <= target:
            hi = mid
        else:
            lo = mid + 1
    return min(width_px, hi + 2)


def copy_height(font_px: int, lines: int) -> int:
    return math.ceil(font_px * (lines * LINE_ESTIMATE + 2 * PAD_Y))


def _inner_width(box_w: int, font_px: int) -> int:
    return box_w - 2 * math.ceil(PAD_X * font_px)


def _font_steps(requested: int, minimum: int) -> list[int]:
    sizes, f = [], float(max(requested, minimum))
    while f > minimum:
        sizes.append(int(f))
        f *= 0.94
    sizes.append(minimum)
    return sorted(set(sizes), reverse=True)


def fit_font(text: str | CopyParts, box_w: int, box_h: int, requested: int, minimum: int,
             style: TextStyle = TextStyle()) -> tuple[int, int] | None:
    """The largest font in [minimum, requested] whose copy (all its parts) fits box_w x box_h,
    with the headline's line count; None when even the minimum does not fit."""
    parts = as_parts(text)
    for f in _font_steps(requested, minimum):
        size = block_height(parts, f, _inner_width(box_w, f), style, minimum)
        if size is not None and size[1] <= box_h:
            return f, size[0]
    return None


# ---- arrangements --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Candidate:
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
    return min(1.0, _inner_width(box_w, font_px) / font_px / COMFORT_EM) / (1 + 0.06 * max(0, lines - 4))


def _product_box(pw: int, ph: int, scale: float, cx: float, ground: int) -> Box:
    w, h = max(1, round(pw * scale)), max(1, round(ph * scale))
    return Box(round(cx - w / 2), ground - h, w, h)


@dataclass(frozen=True)
class _Ask:
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
        return block_height(self.copy, font_px, _inner_width(box_w, font_px), self.style, self.fmin)


def _stacked(where: str, a: _Ask, floor: float, weight: float) -> list[_Candidate]:
    """Copy across the canvas above (top), below (bottom) or in the middle (center@level) of the
    product, which stands centred on its ground line."""
    W, H = a.canvas
    m, gap = a.margin, a.gap
    pw, ph = a.product
    box_w = W - 2 * m
    out = []
    for f in _font_steps(a.req, a.fmin):
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
        out.append(_Candidate(
            product=_product_box(pw, ph, scale, W / 2, ground), copy=Box(m, cy, box_w, ch), ground=ground,
            font=f, lines=lines, product_ratio=scale / a.nat, region=where.split("@")[0], weight=weight * lift,
            font_ratio=f / a.req, shape=_shape(box_w, f, lines),
        ))
    return out


def _beside(a: _Ask, floor: float, weight: float, copy_left: bool, centre_copy: bool) -> list[_Candidate]:
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
        prod = _product_box(pw, ph, scale, (W - m - column / 2) if copy_left else (m + column / 2), a.ground0)
        # Copy level with the middle of the canvas for "center", else with the product's middle.
        mid = H / 2 if centre_copy else prod.y + prod.h / 2
        for f in _font_steps(a.req, a.fmin):
            size = a.block(f, box_w)
            if size is None or size[1] > a.low - a.top:
                continue
            lines, ch = size
            cy = int(min(max(mid - ch / 2, a.top), a.low - ch))
            out.append(_Candidate(
                product=prod, copy=Box(m if copy_left else W - m - box_w, cy, box_w, ch), ground=a.ground0,
                font=f, lines=lines, product_ratio=scale / a.nat, region="left" if copy_left else "right",
                weight=weight, font_ratio=f / a.req, shape=_shape(box_w, f, lines),
            ))
    return out


def _candidates(a: _Ask, position: str, floor: float) -> list[_Candidate]:
    """Every arrangement for the position with the product at least ``floor`` of its natural size."""
    W, H = a.canvas
    wide = W >= H * 1.3
    found: list[_Candidate] = []
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


def _best(a: _Ask, position: str, free_space: dict[str, float] | None) -> _Candidate | None:
    """The arrangement giving product and copy the most room (calm scenery breaks near-ties)."""
    def top(found: list[_Candidate]) -> _Candidate | None:
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
    ch = block_height(copy, f, _inner_width(box_w, f), style, fmin)[1]  # type: ignore[index]  # it fitted
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
        size = block_height(parts, font, _inner_width(w, font), style, fmin)
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
    natural = _product_box(pw, ph, min(nat, (ground0 - 1) / ph), W / 2, ground0)
    if not copy:
        return LayoutPlan(canvas, natural, None, ground0, False, req, 0, position, style.lang)

    best = _best(_Ask(canvas, (pw, ph), parts, req, fmin, ground0, nat, style, safe), position, free_space)
    if best is not None:
        warnings = []
        if best.font == fmin < req and (len(parts.texts()) > 1 or count_lines(
                plain_copy(copy), fmin, _inner_width(best.copy.w, fmin), style) > 1):
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


# ---- scenery under the copy ----------------------------------------------------------------
def edge_density(image: Image.Image, box: Box) -> float:
    """Share of edge pixels under the box (how busy the scenery is where the copy goes), measured
    at a fixed working size so that the same scene scores the same at any resolution."""
    k = 512 / max(image.size)
    small = image.convert("L").resize((max(1, round(image.width * k)), max(1, round(image.height * k))),
                                       Image.Resampling.BOX)
    grey = np.asarray(small, np.float32)
    region = grey[max(0, int(box.y * k)): math.ceil(box.bottom * k), max(0, int(box.x * k)): math.ceil(box.right * k)]
    if region.shape[0] < 2 or region.shape[1] < 2:
        return 0.0
    # Gradient magnitude from neighbour differences (numpy only): strong local steps are edges.
    gy, gx = np.abs(np.diff(region, axis=0))[:, :-1], np.abs(np.diff(region, axis=1))[:-1, :]
    return float(((gx + gy) > 40).mean())


def with_scenery(plan: LayoutPlan, image: Image.Image | None) -> LayoutPlan:
    """The plan with ``panel`` set when the scenery under the copy box is too busy for bare copy."""
    if plan.copy_box is None or image is None or plan.panel:
        return plan
    if edge_density(image, plan.copy_box) <= BUSY_EDGES:
        return plan
    return replace(plan, panel=True)  # a design choice, visible in the picture: no warning needed
