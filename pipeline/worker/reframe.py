"""One picture reframed for another placement: a crop of it, widened past its edges when it must be.

A variant's shared scene holds every placement (pipeline/units.py ``master_canvas``), so a centred
crop is enough there. A finished picture given to a step 2 job (resume, edit) has its product
somewhere: its crop is moved to keep the product whole, and when the product does not fit the
crop (a story's tall bottle in a 16:9 frame) the frame widens past the picture's edges, which are
extended with their own pixels, blurred, like a backdrop seen out of focus.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from PIL import Image

Window = tuple[float, float, float, float]  # x, y, w, h in the source picture's pixels (may pass its edges)
MARGIN = 0.08  # of the product's size, kept around it inside the frame


def cover_window(src: tuple[int, int], size: tuple[int, int]) -> Window:
    """The largest centred window of the aspect of ``size`` inside the picture."""
    iw, ih = src
    W, H = size
    scale = max(W / iw, H / ih)
    cw, ch = min(iw, W / scale), min(ih, H / scale)
    return max(0.0, (iw - cw) / 2), max(0.0, (ih - ch) / 2), cw, ch


def product_window(src: tuple[int, int], size: tuple[int, int], box: tuple[int, int, int, int] | None) -> Window:
    """The cover window moved to centre the product (``box``: x, y, w, h), widened when the product needs it."""
    x0, y0, cw, ch = cover_window(src, size)
    if box is None:
        return x0, y0, cw, ch
    iw, ih = src
    bx, by, bw, bh = box
    k = max(1.0, bw * (1 + 2 * MARGIN) / cw, bh * (1 + 2 * MARGIN) / ch)
    cw, ch = cw * k, ch * k

    def place(centre: float, extent: float, side: float) -> float:
        lo, hi = min(0.0, side - extent), max(0.0, side - extent)  # inside the picture, or covering it
        return min(max(centre - extent / 2, lo), hi)

    return place(bx + bw / 2, cw, iw), place(by + bh / 2, ch, ih), cw, ch


def take(image: Image.Image, window: Window, size: tuple[int, int], extend: bool = True) -> Image.Image:
    """The window scaled to exactly ``size``; beyond the picture, its edge pixels blurred (``extend``) or black."""
    x, y, w, h = window
    iw, ih = image.size
    pads = (math.ceil(max(0.0, -y)), math.ceil(max(0.0, y + h - ih)), math.ceil(max(0.0, -x)),
            math.ceil(max(0.0, x + w - iw)))
    if not any(pads):
        return image.resize(size, Image.Resampling.LANCZOS, box=(x, y, x + w, y + h))
    top, bottom, left, right = pads
    arr = np.asarray(image)
    if extend:
        grown = cv2.copyMakeBorder(arr, top, bottom, left, right, cv2.BORDER_REPLICATE)
        sigma = max(pads) / 6 + 2
        soft = cv2.GaussianBlur(grown, (0, 0), sigma)
        # The picture itself stays sharp; the extension fades from it into the blur over a short band.
        inside = np.zeros(grown.shape[:2], np.float32)
        inside[top: top + ih, left: left + iw] = 1.0
        inside = cv2.GaussianBlur(inside, (0, 0), max(2.0, sigma / 4)) * inside
        weight = inside[..., None] if grown.ndim == 3 else inside
        grown = (grown * weight + soft * (1 - weight)).astype(np.uint8)
    else:
        grown = cv2.copyMakeBorder(arr, top, bottom, left, right, cv2.BORDER_CONSTANT, value=0)
    box = (x + left, y + top, x + left + w, y + top + h)
    return Image.fromarray(grown).convert(image.mode).resize(size, Image.Resampling.LANCZOS, box=box)


def cover(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The largest centred crop of ``image`` with the aspect of ``size``, scaled to exactly ``size``."""
    return take(image, cover_window(image.size, size), size)
