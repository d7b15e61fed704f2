"""The layout planner: where the product stands and where the copy goes, decided together.

Pure functions (numpy/PIL only). The composite stage places the product at ``product_box``;
the design stage sets the copy inside ``copy_box`` at ``font_px``. For every ``text_position``
the two boxes never overlap: for ``center``/``bottom`` the product moves and/or shrinks (copy at
the bottom lifts the product; copy in the centre puts the product to one side or below it),
and only when no arrangement fits does the copy go on a readable panel, with a warning.

Copy size is estimated without a layout engine: advance widths are deliberately generous and
line breaks are only taken where Chromium may take them too (spaces; CJK characters; never
before closing punctuation), so the estimated line count is an upper bound of what Chromium
draws with the template's CSS (``word-break: keep-all`` for Korean, soft hyphens for Latin,
``overflow-wrap: anywhere`` as the last resort). Tests render the copy to check this.

Modules, one job each: ``geometry`` (proportions, ``Box``, ``LayoutPlan``, sizes from a canvas),
``parts`` (the structured copy), ``text`` (script, advance widths, line counts), ``fitting``
(block height, the largest font that fits), ``arrange`` (candidate arrangements and their
scores), ``plan`` (``plan_layout``) and ``scenery`` (a panel over busy scenery). Everything other
modules use is re-exported here.
"""

from __future__ import annotations

from pipeline.worker.layout.arrange import (
    Ask,
    Candidate,
    best_arrangement,
    choose_third,
    product_box_at,
)
from pipeline.worker.layout.fitting import (
    block_height,
    copy_height,
    fit_font,
    font_steps,
    inner_width,
)
from pipeline.worker.layout.geometry import (
    BADGE_EM,
    BUSY_EDGES,
    BUTTON_X,
    BUTTON_Y,
    CENTRE_LEVELS,
    COMFORT_EM,
    CTA_EM,
    CTA_GAP,
    DEFAULT_GROUND,
    GAP,
    LAST_PRODUCT,
    LINE_ESTIMATE,
    LINE_HEIGHT,
    MARGIN,
    MIN_FONT,
    MIN_FONT_PX,
    MIN_PRODUCT,
    PAD_X,
    PAD_Y,
    PILL_X,
    PILL_Y,
    POSITIONS,
    PRICE_EM,
    PRODUCT_H,
    PRODUCT_W,
    ROW_GAP,
    ROW_SPACE,
    SIDE_COLUMN,
    SIDE_H,
    SIDE_W,
    SUB_EM,
    SUB_GAP,
    THIRDS,
    Box,
    LayoutPlan,
    margin_px,
    min_font_px,
    requested_font_px,
)
from pipeline.worker.layout.parts import (
    CopyParts,
    PartSizes,
    as_parts,
    plain_copy,
)
from pipeline.worker.layout.plan import (
    plan_layout,
)
from pipeline.worker.layout.scenery import (
    edge_density,
    with_scenery,
)
from pipeline.worker.layout.text import (
    TextStyle,
    char_em,
    count_lines,
    is_rtl,
    script_lang,
    text_measure,
    text_width_em,
)

__all__ = [
    "Ask",
    "BADGE_EM",
    "BUSY_EDGES",
    "BUTTON_X",
    "BUTTON_Y",
    "Box",
    "CENTRE_LEVELS",
    "COMFORT_EM",
    "CTA_EM",
    "CTA_GAP",
    "Candidate",
    "CopyParts",
    "DEFAULT_GROUND",
    "GAP",
    "LAST_PRODUCT",
    "LINE_ESTIMATE",
    "LINE_HEIGHT",
    "LayoutPlan",
    "MARGIN",
    "MIN_FONT",
    "MIN_FONT_PX",
    "MIN_PRODUCT",
    "PAD_X",
    "PAD_Y",
    "PILL_X",
    "PILL_Y",
    "POSITIONS",
    "PRICE_EM",
    "PRODUCT_H",
    "PRODUCT_W",
    "PartSizes",
    "ROW_GAP",
    "ROW_SPACE",
    "SIDE_COLUMN",
    "SIDE_H",
    "SIDE_W",
    "SUB_EM",
    "SUB_GAP",
    "THIRDS",
    "TextStyle",
    "as_parts",
    "best_arrangement",
    "block_height",
    "char_em",
    "choose_third",
    "copy_height",
    "count_lines",
    "edge_density",
    "fit_font",
    "font_steps",
    "inner_width",
    "is_rtl",
    "margin_px",
    "min_font_px",
    "plain_copy",
    "plan_layout",
    "product_box_at",
    "requested_font_px",
    "script_lang",
    "text_measure",
    "text_width_em",
    "with_scenery",
]
