"""Refinement (draft): harmonise the product's tones with the scene's light, within what ``relight`` allows.

The product's colour statistics are pulled part of the way towards the scene's (in CIE Lab),
and its edges pick up a little of the blurred surroundings ("light wrap"), which is what
makes a pasted object look lit by the room. ``strength`` scales both, like img2img's.

``relight`` follows the same rule as the model backends (``stages/fidelity.py``):
``none`` pulls nothing and keeps the light wrap on the rim outside the product's eroded core;
``subtle`` limits the pull per pixel to ``SUBTLE_BUDGET`` CIEDE2000, so a red product stays
its own red on a warm wooden scene; ``full`` pulls as far as the scene asks.

``light`` (``lighting.estimate_light`` of the scene) also shades the product's side facing the light
a little brighter and the far side darker, under the same ``relight`` rule.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from pipeline.schemas import Relight
from pipeline.worker.stages.fidelity import (
    SUBTLE_BUDGET,
    lab_to_srgb,
    limit_change,
    product_core,
    smooth,
    srgb_to_lab,
)
from pipeline.worker.stages.lighting import Light, directional_shade

_PULL = np.array([0.15, 0.35, 0.35], np.float32)  # a/b (colour cast) more than L (exposure)


def _scene_mean(rgb: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """Mean Lab of the scene, from a thumbnail (the mean needs no more, and 4096 px canvases stay cheap)."""
    h, w = outside.shape
    step = max(1, round(max(h, w) / 256))
    return srgb_to_lab(rgb[::step, ::step][outside[::step, ::step]]).mean(axis=0)


def harmonise(image: Image.Image, mask: np.ndarray, strength: float, relight: Relight = "subtle",
              light: Light | None = None) -> Image.Image:
    rgb = np.asarray(image.convert("RGB"))
    m_full = mask.astype(np.float32) / 255.0
    inside, outside = m_full > 0.5, m_full < 0.05
    if inside.sum() < 16 or outside.sum() < 16 or strength <= 0:
        return image.convert("RGB")
    scene_mean = _scene_mean(rgb, outside)
    # Work on the product's box, grown by the light wrap's reach: everything else is left as it is.
    wrap_sigma = max(2.0, rgb.shape[1] / 200)
    rim_sigma = max(2.0, rgb.shape[1] / 300)
    pad = int(3 * max(wrap_sigma, rim_sigma)) + 2
    on_any = mask > 0  # the product's rows and columns from projections (np.nonzero lists every pixel)
    ys, xs = np.flatnonzero(on_any.any(axis=1)), np.flatnonzero(on_any.any(axis=0))
    box = (slice(max(0, ys[0] - pad), ys[-1] + pad + 1), slice(max(0, xs[0] - pad), xs[-1] + pad + 1))
    crop, m = rgb[box], m_full[box]
    lab = srgb_to_lab(crop)
    prod_mean = lab[m > 0.5].mean(axis=0)
    pull = _PULL * strength if relight != "none" else np.zeros(3, np.float32)
    shifted = lab + (scene_mean - prod_mean) * pull
    if light is not None and relight != "none":  # the side facing the scene's light a little brighter
        shifted[..., 0] += directional_shade(m, light.x, light.strength, 6.0 * strength)
    if relight == "subtle":  # per pixel, on the product only (the rest of the box keeps its own pixels)
        on = m > 0
        shifted[on] = limit_change(lab[on], shifted[on], SUBTLE_BUDGET)
    # Light wrap: blurred scene bleeding onto the product's rim.
    blurred = smooth(lab, wrap_sigma)
    rim = np.clip(smooth(1.0 - m, rim_sigma) * m * 2.0, 0, 1)
    if relight != "full":  # the wrap stays on the rim: the product's core keeps its own colours
        rim *= 1.0 - product_core(mask[box])[1]
    wrap = (rim * 0.35 * strength)[..., None]
    shifted = shifted * (1 - wrap) + blurred * wrap
    touched = m > 0  # outside the product the pixels are copied, not round-tripped through Lab
    mt = m[touched][:, None]
    out = lab_to_srgb(lab[touched] * (1 - mt) + shifted[touched] * mt)
    result = rgb.copy()
    result[box][touched] = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return Image.fromarray(result, "RGB")
