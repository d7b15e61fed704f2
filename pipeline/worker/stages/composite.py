"""Composite (CPU): product scaled and stood on a ground line, with contact and cast shadows.

Where the product goes and how big it is comes from the layout plan (``pipeline.worker.layout``),
which keeps it clear of the copy; ``plan_placement`` is the stand-alone default (centred on the
ground line) for callers without a plan.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from pipeline.worker.layout import Box
from pipeline.worker.stages.lighting import Light, cast_geometry


@dataclass(frozen=True)
class Placement:
    x: int
    y: int
    width: int
    height: int


def plan_placement(
    canvas: tuple[int, int], product: tuple[int, int], ground: float = 0.86, max_h: float = 0.56, max_w: float = 0.5
) -> Placement:
    cw, ch = canvas
    pw, ph = product
    scale = min(ch * max_h / ph, cw * max_w / pw)
    w, h = max(1, round(pw * scale)), max(1, round(ph * scale))
    return Placement(x=(cw - w) // 2, y=round(ch * ground) - h, width=w, height=h)


def _shadow_layers(alpha: np.ndarray, p: Placement, canvas: tuple[int, int], light_x: float,
                   light: Light | None = None) -> np.ndarray:
    """Shadow opacity (0..1) over the canvas: a tight contact shadow plus a soft cast shadow, thrown away
    from the scene's light (``light``, read from the background's pixels; else ``light_x``)."""
    cw, ch = canvas
    shadow = np.zeros((ch, cw), np.float32)
    # Contact shadow: a flat ellipse under the product's footprint.
    cols = np.flatnonzero(alpha[-max(1, p.height // 20):].max(axis=0) > 0.3)
    if len(cols):
        foot_l, foot_r = p.x + cols.min(), p.x + cols.max()
    else:
        foot_l, foot_r = p.x, p.x + p.width
    centre = ((foot_l + foot_r) // 2, p.y + p.height)
    axes = (max(4, (foot_r - foot_l) // 2 + p.width // 12), max(3, p.height // 28))
    contact = np.zeros_like(shadow)
    cv2.ellipse(contact, centre, axes, 0, 0, 360, 1.0, -1)
    contact = _blur_near(contact, max(2.0, p.height / 45))
    # Cast shadow: the silhouette squashed onto the floor and sheared away from the light.
    shear, squash = cast_geometry(light, light_x)  # light on the left throws the shadow right
    sh_h = max(1, round(p.height * squash))
    flat = cv2.resize(alpha, (p.width, sh_h), interpolation=cv2.INTER_AREA)[::-1]
    m = np.array([[1, shear, 0], [0, 1, 0]], np.float32)
    pad = int(abs(shear) * sh_h) + 2
    wide = cv2.warpAffine(np.pad(flat, ((0, 0), (pad, pad))), m, (p.width + 2 * pad, sh_h))
    cast = np.zeros_like(shadow)
    x0, y0 = p.x - pad, p.y + p.height - 2
    xs, ys = max(0, x0), max(0, y0)
    xe, ye = min(cw, x0 + wide.shape[1]), min(ch, y0 + wide.shape[0])
    if xe > xs and ye > ys:
        cast[ys:ye, xs:xe] = wide[ys - y0 : ye - y0, xs - x0 : xe - x0]
    fade = np.clip(1.0 - (np.arange(ch, dtype=np.float32) - (p.y + p.height)) / max(1, sh_h), 0, 1)[:, None]
    cast = _blur_near(cast * fade, max(3.0, p.height / 30))
    return np.clip(contact * 0.55 + cast * 0.35, 0, 0.75)


def _blur_near(layer: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian blur of a canvas-sized layer that is zero but for a small region: only that region,
    grown by the kernel's reach (OpenCV's float kernels end at 4 sigma), is blurred. The same pixels as
    blurring the whole canvas, in a fraction of the time (a shadow is a few percent of the canvas)."""
    rows, cols = np.flatnonzero(layer.any(axis=1)), np.flatnonzero(layer.any(axis=0))
    if not len(rows):
        return layer
    reach = int(np.ceil(4 * sigma)) + 2
    h, w = layer.shape
    y0, y1 = max(0, rows[0] - reach), min(h, rows[-1] + reach + 1)
    x0, x1 = max(0, cols[0] - reach), min(w, cols[-1] + reach + 1)
    out = np.zeros_like(layer)
    out[y0:y1, x0:x1] = cv2.GaussianBlur(layer[y0:y1, x0:x1], (0, 0), sigmaX=sigma)
    return out


def _clamped(box: Box, canvas: tuple[int, int]) -> Placement:
    """The planned box as a placement that lies on the canvas (a plan never leaves it; be safe)."""
    w, h = max(1, min(box.w, canvas[0])), max(1, min(box.h, canvas[1]))
    return Placement(x=min(max(0, box.x), canvas[0] - w), y=min(max(0, box.y), canvas[1] - h), width=w, height=h)


def composite(
    background: Image.Image, product: Image.Image, light_x: float = 0.5, ground: float = 0.86,
    box: Box | None = None, light: Light | None = None,
) -> tuple[Image.Image, np.ndarray]:
    """Returns the composite (RGB) and the product's mask on the canvas (uint8, 255 = product).

    ``box`` is the layout plan's product box (x, y, w, h); without one the product is centred
    on the ``ground`` line at its default size. ``light`` (``lighting.estimate_light`` of the
    background) sets the cast shadow's side and length; without it ``light_x`` sets the side."""
    canvas = background.size
    p = _clamped(box, canvas) if box is not None else plan_placement(canvas, product.size, ground=ground)
    prod = product.convert("RGBA").resize((p.width, p.height), Image.Resampling.LANCZOS)
    alpha = np.asarray(prod.getchannel("A"), np.float32) / 255.0

    rgb = np.asarray(background.convert("RGB"))
    shadow = _shadow_layers(alpha, p, canvas, light_x, light)
    mask = np.zeros((canvas[1], canvas[0]), np.float32)
    mask[p.y : p.y + p.height, p.x : p.x + p.width] = alpha
    # Only the product's box and its shadow change: blended there, the rest of the scene copied as it is.
    y0, y1, x0, x1 = p.y, p.y + p.height, p.x, p.x + p.width
    shaded = shadow > 0
    rows, cols = np.flatnonzero(shaded.any(axis=1)), np.flatnonzero(shaded.any(axis=0))
    if len(rows):
        y0, y1, x0, x1 = min(y0, rows[0]), max(y1, rows[-1] + 1), min(x0, cols[0]), max(x1, cols[-1] + 1)
    win = (slice(y0, y1), slice(x0, x1))
    base = rgb[win].astype(np.float32) * (1.0 - shadow[win])[..., None]
    layer = np.zeros_like(base)
    layer[p.y - y0 : p.y - y0 + p.height, p.x - x0 : p.x - x0 + p.width] = np.asarray(prod.convert("RGB"), np.float32)
    m = mask[win][..., None]
    out = rgb.copy()
    out[win] = np.clip(base * (1 - m) + layer * m, 0, 255).astype(np.uint8)
    return Image.fromarray(out, "RGB"), (mask * 255).astype(np.uint8)
