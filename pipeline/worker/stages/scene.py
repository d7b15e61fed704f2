"""What a one-pass scene model is given: the product placed on the canvas, where to paint, the product alone.

The layout plan decides where the product stands; ``place_product`` puts the cut-out there on a
neutral canvas (no shadow: the model paints the contact shadow, reflections and light itself).
``paint_mask`` covers everything but the product's eroded core (``fidelity.product_core``), so the
model also repaints the product's outline into the scene; the core comes back bit for bit (or
relit within ``relight``) from ``fidelity.keep_product`` afterwards.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from pipeline.worker.layout import Box
from pipeline.worker.stages.fidelity import product_core

NEUTRAL = (128, 128, 128)  # under the painted area: the models start it from noise (strength 1) or mask it out
REFERENCE_MAX_SIDE = 1024  # FLUX.2 [klein] scales larger references down to about 1024² itself


def place_product(cutout: Image.Image, canvas: tuple[int, int], box: Box) -> tuple[Image.Image, np.ndarray]:
    """The cut-out at the plan's box on a neutral canvas, and its mask there (uint8, 255 = product)."""
    w, h = max(1, min(box.w, canvas[0])), max(1, min(box.h, canvas[1]))
    x, y = min(max(0, box.x), canvas[0] - w), min(max(0, box.y), canvas[1] - h)
    prod = cutout.convert("RGBA").resize((w, h), Image.Resampling.LANCZOS)
    out = Image.new("RGB", canvas, NEUTRAL)
    out.paste(prod, (x, y), prod)
    mask = np.zeros((canvas[1], canvas[0]), np.uint8)
    mask[y:y + h, x:x + w] = np.asarray(prod.getchannel("A"))
    return out, mask


def paint_mask(mask: np.ndarray) -> np.ndarray:
    """255 where the model paints: everything but the product's eroded core, feathered across the edge ring
    (pipelines that binarise the mask paint the whole ring; the restore blends it back the same way)."""
    _, weight = product_core(mask)
    return np.clip(np.rint((1.0 - weight) * 255), 0, 255).astype(np.uint8)


def product_reference(cutout: Image.Image) -> Image.Image:
    """The product alone, cropped to its alpha, on white (the conditioning image a reference-aware model sees)."""
    rgba = cutout.convert("RGBA")
    bbox = rgba.getchannel("A").getbbox() or (0, 0, *rgba.size)
    crop = rgba.crop(bbox)
    scale = min(1.0, REFERENCE_MAX_SIDE / max(crop.size))
    if scale < 1:
        crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))),
                           Image.Resampling.LANCZOS)
    # At least 64 px a side: the pipelines snap references to multiples of 16 and drop anything smaller.
    side = (max(64, crop.width), max(64, crop.height))
    out = Image.new("RGB", side, (255, 255, 255))
    out.paste(crop, ((side[0] - crop.width) // 2, (side[1] - crop.height) // 2), crop)
    return out


def scene_prompt(scene: str, composition: str) -> str:
    """The scene and how the product sits in it, as one prompt (one pass does both jobs)."""
    scene, composition = scene.strip().rstrip("."), composition.strip()
    return f"{scene}. {composition}" if composition else scene
