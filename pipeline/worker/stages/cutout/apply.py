"""Applying a mask to the photo: the RGBA cut-out, cropped, without a halo.

One job: ``apply_mask`` sets the photo's alpha from the mask, takes the colour of each edge
pixel from the nearest solid product pixel (no fringe of the old backdrop) and crops to the
mask's box.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image


def apply_mask(photo: Image.Image, mask: np.ndarray) -> Image.Image:
    """RGBA cut-out cropped to the mask's box, at the photo's resolution, edge colours taken
    from the nearest solid product pixel (no halo of the old backdrop)."""
    rgba = photo.convert("RGBA")
    arr = np.asarray(rgba).copy()
    if mask.shape != arr.shape[:2]:
        mask = cv2.resize(mask, (arr.shape[1], arr.shape[0]), interpolation=cv2.INTER_LINEAR)
    arr[..., 3] = np.minimum(arr[..., 3], mask)
    _decontaminate(arr)
    ys, xs = np.nonzero(arr[..., 3] > 8)
    if len(xs) == 0:
        return Image.fromarray(arr, "RGBA")
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return Image.fromarray(arr, "RGBA").crop(box)


def _decontaminate(arr: np.ndarray) -> None:
    alpha = arr[..., 3]
    solid = alpha >= 243
    edge = (alpha > 0) & ~solid
    if not solid.any() or not edge.any():
        return
    _, labels = cv2.distanceTransformWithLabels(
        (~solid).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    sources = np.argwhere(solid)
    ys, xs = np.nonzero(edge)
    nearest = sources[labels[ys, xs] - 1]
    arr[ys, xs, :3] = arr[nearest[:, 0], nearest[:, 1], :3]
