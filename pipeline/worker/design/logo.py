"""The brand kit's logo on the finished ad: a corner, inside the margins and the safe zone.

Size: about 12% of the canvas's short side tall (a wide logo at most 30% of it wide). Place: the
kit's corner, at the layout's margin, below/above the placement's safe zone (a story's profile
bar and reply field), and never over the copy's ink or the product. When the chosen corner is
taken, the logo shrinks a little, then tries the corner beside it, then the other two; when no
corner is free it is left out with a warning rather than covering something.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from pipeline.worker.layout import Box, margin_px

HEIGHT_SHARE = 0.12  # of the short side
WIDTH_SHARE = 0.30
GAP_SHARE = 0.02  # of the short side: air between the logo and the copy or the product
SCALES = (1.0, 0.8, 0.65)
_NEXT = {  # the chosen corner, then the one beside it, then the rest
    "top-left": ("top-left", "top-right", "bottom-left", "bottom-right"),
    "top-right": ("top-right", "top-left", "bottom-right", "bottom-left"),
    "bottom-left": ("bottom-left", "bottom-right", "top-left", "top-right"),
    "bottom-right": ("bottom-right", "bottom-left", "top-right", "top-left"),
}


def logo_size(logo: tuple[int, int], canvas: tuple[int, int], scale: float = 1.0) -> tuple[int, int]:
    short = min(canvas)
    k = min(HEIGHT_SHARE * short / logo[1], WIDTH_SHARE * short / logo[0]) * scale
    return max(1, round(logo[0] * k)), max(1, round(logo[1] * k))


def corner_box(corner: str, size: tuple[int, int], canvas: tuple[int, int], safe: tuple[int, int]) -> Box:
    W, H = canvas
    m = margin_px(canvas)
    x = m if corner.endswith("left") else W - m - size[0]
    y = m + safe[0] if corner.startswith("top") else H - m - safe[1] - size[1]
    return Box(x, y, size[0], size[1])


def blocked(canvas: tuple[int, int], text: Image.Image | None, mask: np.ndarray | None) -> np.ndarray:
    """Where the logo must not go: the copy's ink and the product, each grown by a small gap."""
    W, H = canvas
    out = np.zeros((H, W), np.uint8)
    if text is not None:
        alpha = np.asarray(text.getchannel("A").resize((W, H)) if text.size != canvas else text.getchannel("A"))
        out |= (alpha > 16).astype(np.uint8)
    if mask is not None and mask.shape == (H, W):
        out |= (mask > 127).astype(np.uint8)
    gap = max(1, round(GAP_SHARE * min(canvas)))
    return cv2.dilate(out, np.ones((2 * gap + 1, 2 * gap + 1), np.uint8)) > 0


def place(logo: tuple[int, int], corner: str, canvas: tuple[int, int], safe: tuple[int, int],
          taken: np.ndarray) -> tuple[Box, str] | None:
    """The first free box and its corner: the chosen corner at full size, smaller, then the other corners."""
    for c in _NEXT.get(corner, _NEXT["top-right"]):
        for scale in SCALES:
            box = corner_box(c, logo_size(logo, canvas, scale), canvas, safe)
            if box.x < 0 or box.y < 0 or box.right > canvas[0] or box.bottom > canvas[1]:
                continue
            if not taken[box.y: box.bottom, box.x: box.right].any():
                return box, c
    return None


def add_logo(image: Image.Image, logo: Image.Image, corner: str, safe: tuple[int, int],
             text: Image.Image | None, mask: np.ndarray | None) -> tuple[Image.Image, Box | None, str | None]:
    """The image with the logo composited, the box it went in, and a note when it moved or was left out."""
    canvas = image.size
    found = place(logo.size, corner, canvas, safe, blocked(canvas, text, mask))
    if found is None:
        return image, None, ("The brand logo was left out: every corner is taken by the copy or the product at "
                             "this size.")
    box, where = found
    scaled = logo.convert("RGBA").resize((box.w, box.h), Image.Resampling.LANCZOS)
    out = image.convert("RGBA")
    out.alpha_composite(scaled, (box.x, box.y))
    note = None
    if where != corner:
        note = f"The brand logo went {where}: the {corner} corner is taken by the copy or the product."
    return out.convert(image.mode), box, note
