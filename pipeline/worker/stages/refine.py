"""Refinement (draft): harmonise the product's tones with the scene's light.

The product's colour statistics are pulled part of the way towards the scene's (in Lab),
and its edges pick up a little of the blurred surroundings ("light wrap"), which is what
makes a pasted object look lit by the room. ``strength`` scales both, like img2img's.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image


def harmonise(image: Image.Image, mask: np.ndarray, strength: float) -> Image.Image:
    rgb = np.asarray(image.convert("RGB"))
    m = mask.astype(np.float32) / 255.0
    inside, outside = m > 0.5, m < 0.05
    if inside.sum() < 16 or outside.sum() < 16 or strength <= 0:
        return image.convert("RGB")
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    prod_mean, scene_mean = lab[inside].mean(axis=0), lab[outside].mean(axis=0)
    # Move a/b (colour cast) more than L (exposure): the product's own colours must stay itself.
    pull = np.array([0.15, 0.35, 0.35], np.float32) * strength
    shifted = lab + (scene_mean - prod_mean) * pull
    # Light wrap: blurred scene bleeding onto the product's rim.
    blurred = cv2.GaussianBlur(lab, (0, 0), sigmaX=max(2.0, rgb.shape[1] / 200))
    rim = np.clip(cv2.GaussianBlur(1.0 - m, (0, 0), sigmaX=max(2.0, rgb.shape[1] / 300)) * m * 2.0, 0, 1)
    wrap = rim[..., None] * 0.35 * strength
    shifted = shifted * (1 - wrap) + blurred * wrap
    out = lab * (1 - m[..., None]) + shifted * m[..., None]
    out_rgb = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)
    return Image.fromarray(out_rgb, "RGB")
