"""Image analysis (draft): statistics in the design doc's four keys, plus a free-space map.

The diffusion backend answers the same keys with Qwen2-VL; the designer and the
placement logic read ``free_space`` either way, since it comes from the pixels and mask.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from PIL import Image

REGIONS = ("top", "center", "bottom")
_NAMED = {
    "white": (245, 245, 245), "black": (20, 20, 20), "gray": (128, 128, 128), "beige": (225, 205, 175),
    "brown": (125, 85, 55), "red": (200, 50, 50), "orange": (235, 140, 60), "yellow": (235, 210, 90),
    "green": (80, 150, 80), "teal": (60, 150, 150), "blue": (70, 110, 200), "navy": (30, 40, 90),
    "purple": (130, 80, 170), "pink": (235, 160, 190), "gold": (205, 170, 90),
}


def _colour_name(rgb: np.ndarray) -> str:
    return min(_NAMED, key=lambda k: float(np.sum((np.array(_NAMED[k]) - rgb) ** 2)))


def region_bounds(region: str, height: int) -> tuple[int, int]:
    """Rows covered by a placement region (a third of the canvas, with margins)."""
    third = height / 3
    i = REGIONS.index(region)
    return int(third * i), int(third * (i + 1))


def free_space(image: Image.Image, mask: np.ndarray | None) -> dict[str, float]:
    """Score 0..1 per region: high = calm (few edges) and clear of the product."""
    grey = cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(grey, 60, 160).astype(np.float32) / 255.0
    h = grey.shape[0]
    scores: dict[str, float] = {}
    for region in REGIONS:
        y0, y1 = region_bounds(region, h)
        detail = float(edges[y0:y1].mean())
        covered = float((mask[y0:y1] > 127).mean()) if mask is not None else 0.0
        scores[region] = round(max(0.0, 1.0 - detail * 8.0 - covered * 3.0), 3)
    return scores


def analyze_draft(image: Image.Image, mask: np.ndarray | None) -> dict[str, Any]:
    rgb = np.asarray(image.convert("RGB"))
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (96, max(1, round(96 * h / w))), interpolation=cv2.INTER_AREA)
    pixels = small.reshape(-1, 3).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
    _, labels, centres = cv2.kmeans(pixels, 4, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    counts = np.bincount(labels.ravel(), minlength=4)
    order = np.argsort(-counts)
    palette = [
        {"hex": "#" + "".join(f"{int(c):02x}" for c in centres[i]), "name": _colour_name(centres[i]),
         "share": round(float(counts[i] / counts.sum()), 3)}
        for i in order
    ]
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    brightness = float(lab[..., 0].mean() / 255.0)
    contrast = float(lab[..., 0].std() / 128.0)
    warmth = float((lab[..., 2].mean() - 128) / 40.0)
    left, right = lab[:, : w // 2, 0].mean(), lab[:, w // 2 :, 0].mean()
    light_from = "left" if left > right + 4 else "right" if right > left + 4 else "front"
    space = free_space(image, mask)
    best = max(space, key=lambda k: space[k])

    if mask is not None and (mask > 127).any():
        ys, xs = np.nonzero(mask > 127)
        cx, cy = xs.mean() / w, ys.mean() / h
        horiz = "left" if cx < 0.4 else "right" if cx > 0.6 else "centre"
        vert = "upper" if cy < 0.4 else "lower" if cy > 0.6 else "middle"
        product_share = float((mask > 127).mean())
        spatial = (f"The product sits in the {vert} {horiz} of the frame and covers {product_share:.0%} of it; "
                   f"the calmest free space is the {best} ({space[best]:.2f}).")
        bbox = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
    else:
        spatial, bbox = f"No product mask; the calmest region is the {best}.", None
    mood = "bright and airy" if brightness > 0.62 else "dark and dramatic" if brightness < 0.35 else "balanced"
    temp = "warm" if warmth > 0.15 else "cool" if warmth < -0.1 else "neutral"
    colours = ", ".join(f"{p['name']} ({p['share']:.0%})" for p in palette[:3])
    return {
        "spatial": spatial,
        "color_material": f"Dominant colours: {colours}; overall tone {temp}.",
        "lighting_mood": f"{mood.capitalize()} light (brightness {brightness:.2f}, contrast {contrast:.2f}), "
                         f"{temp} temperature, key light from the {light_from}.",
        "overall": f"A product shot on a {palette[0]['name']} {temp} scene, {mood}.",
        "free_space": space,
        "palette": palette,
        "brightness": round(brightness, 3),
        "product_bbox": bbox,
    }
