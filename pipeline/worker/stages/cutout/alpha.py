"""Cut-outs from the photo's own transparency, with baked-in drop shadows taken out.

One job: the alpha channel. ``alpha_of`` reads it, ``useful_alpha`` says whether it outlines a
product, and ``alpha_mask`` turns it into the mask, dropping a soft drop shadow (and the
shadow's share of the anti-aliased rim, a = p + s(1-p)) when asked to detect one.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from pipeline.worker.stages.cutout.masks import fill_holes


def alpha_of(photo: Image.Image) -> np.ndarray | None:
    if photo.mode in ("RGBA", "LA") or (photo.mode == "P" and "transparency" in photo.info):
        return np.asarray(photo.convert("RGBA").getchannel("A"))
    return None


def useful_alpha(alpha: np.ndarray | None) -> bool:
    if alpha is None:
        return False
    transparent = float((alpha < 128).mean())
    return 0.02 < transparent < 0.98


def alpha_mask(
    photo: Image.Image, alpha: np.ndarray, detect_shadow: bool
) -> tuple[np.ndarray, list[str], dict[str, float]]:
    if not detect_shadow:
        return alpha.copy(), [], {}
    a = alpha.astype(np.float32) / 255
    rgb = np.asarray(photo.convert("RGB")).astype(np.float32)
    lum = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    solid = (a >= 0.8).astype(np.uint8)
    if solid.sum() == 0:
        return alpha.copy(), [], {}
    h, w = alpha.shape
    band = max(2.0, 0.006 * max(h, w))  # the anti-aliased rim of a real edge
    dist = cv2.distanceTransform(1 - solid, cv2.DIST_L2, 3)
    soft = (a > 0.02) & (a < 0.8)
    wide = soft & (dist > band)
    shadowish = wide & (lum < 110)
    share = float(shadowish.sum() / max(1, solid.sum()))
    comps = {"shadow_share": share}
    if share < 0.02:
        return alpha.copy(), [], comps
    # Next to the product the shadow lies under its anti-aliased rim: estimate the shadow's
    # own (smooth) alpha there from the shadow around it and take it back out, a = p + s(1-p).
    sigma = 3.0 * band
    weight = cv2.GaussianBlur(shadowish.astype(np.float32), (0, 0), sigma)
    level = cv2.GaussianBlur(np.where(shadowish, a, 0).astype(np.float32), (0, 0), sigma)
    s_a = np.where(weight > 0.02, level / np.maximum(weight, 1e-6), 0.0)
    rim = np.clip((a - s_a) / np.maximum(1.0 - s_a, 1e-3), 0, 1)
    keep = (solid > 0) | (soft & (dist <= band))
    keep = fill_holes(keep.astype(np.uint8) * 255) > 0
    out = np.where(solid > 0, a, np.where(keep, rim, 0.0))
    out[out < 8 / 255] = 0
    mask = np.round(out * 255).astype(np.uint8)
    return mask, ["The photo's transparency held a soft drop shadow; it was removed and only the product kept."], comps
