"""Mask clean-up shared by the cut-out's steps: one coherent region, enclosed holes filled.

One job: morphology on binary masks. ``fill_holes`` fills every enclosed pocket;
``fill_enclosed`` only those the product's body encloses; ``main_region`` keeps the largest
region and what clearly belongs to it; ``clean`` chains them after a small opening.
"""

from __future__ import annotations

import cv2
import numpy as np


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill enclosed background pockets (a white label inside a product stays product)."""
    h, w = mask.shape
    flood = np.zeros((h + 2, w + 2), np.uint8)
    flood[1:-1, 1:-1] = mask
    canvas = np.zeros((h + 4, w + 4), np.uint8)
    cv2.floodFill(flood, canvas, (0, 0), 255)
    return mask | cv2.bitwise_not(flood[1:-1, 1:-1])


def main_region(mask: np.ndarray, min_ratio: float = 0.15, weight: np.ndarray | None = None) -> np.ndarray:
    """The largest connected region (by area, or by summed `weight`, e.g. a centre prior)
    plus regions that clearly belong to it (large and close)."""
    n, labels, stats, cents = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 2:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    if weight is None:
        main = int(np.argmax(areas)) + 1
    else:
        main = int(np.argmax(np.bincount(labels.ravel(), weights=weight.ravel(), minlength=n)[1:])) + 1
    keep = [main]
    x, y, w, h = stats[main, :4]
    diag = float(np.hypot(w, h))
    main_mask = (labels == main).astype(np.uint8)
    dist = cv2.distanceTransform(1 - main_mask, cv2.DIST_L2, 3)
    for i in range(1, n):
        if i == main or stats[i, cv2.CC_STAT_AREA] < areas.max() * min_ratio:
            continue
        if float(dist[labels == i].min()) <= 0.15 * diag:
            keep.append(i)
    return np.isin(labels, keep).astype(np.uint8) * 255


def clean(mask: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    mask = main_region(mask, weight=weight)
    return fill_enclosed(mask)


def fill_enclosed(mask: np.ndarray) -> np.ndarray:
    """Fill holes that the product's body encloses (a white label on a white backdrop), not
    gaps that only thin parts close off (between two cherry stems, inside a trumpet's loop)."""
    k = max(3, round(max(mask.shape) * 0.025)) | 1
    body = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    enclosed = fill_holes(body) & ~body
    return mask | enclosed
