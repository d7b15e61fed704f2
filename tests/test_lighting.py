"""Light and ground read from the scene's pixels drive the shadow and the relight (stages/lighting.py).

The mirror test: a scene lit from the left throws the product's shadow to the right; the same scene
mirrored throws it to the left. Run on a rendered draft scene and on a real photo.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from pipeline.worker.stages.background import plan_scene, render_scene
from pipeline.worker.stages.composite import composite
from pipeline.worker.stages.fidelity import SUBTLE_BUDGET, ciede2000, product_core, srgb_to_lab
from pipeline.worker.stages.lighting import Light, directional_shade, estimate_light
from pipeline.worker.stages.refine import harmonise

CORPUS = Path(__file__).parent / "data" / "corpus"


def left_lit_scene(size: int = 384) -> tuple[Image.Image, float]:
    plan = replace(plan_scene("studio backdrop, soft light", 4), light_x=0.25)
    return render_scene(plan, size, size, 4), plan.horizon


def product() -> Image.Image:
    img = Image.new("RGBA", (90, 150), (0, 0, 0, 0))
    img.paste(Image.new("RGBA", (70, 140), (40, 110, 190, 255)), (10, 10))
    return img


def shadow_side(scene: Image.Image) -> float:
    """Where the shadow's mass lies, relative to the product's centre (px; > 0 = to the right)."""
    light = estimate_light(scene)
    out, mask = composite(scene, product(), light=light)
    darker = np.asarray(scene, np.float32).mean(axis=2) - np.asarray(out, np.float32).mean(axis=2)
    darker[mask > 0] = 0
    darker = np.clip(darker, 0, None)
    xs = np.arange(scene.width, dtype=np.float32)[None, :]
    centre = float(np.nonzero(mask > 127)[1].mean())
    return float((darker * xs).sum() / darker.sum()) - centre


def test_draft_scene_light_and_ground_are_read_from_pixels() -> None:
    scene, horizon = left_lit_scene()
    light = estimate_light(scene)
    assert light.side == "left" and light.x < 0.4 and light.strength > 0.3
    assert light.horizon is not None and abs(light.horizon - horizon) < 0.02
    assert light.horizon < light.stand < 0.93  # the product stands on the floor, below the ground line
    mirrored = estimate_light(ImageOps.mirror(scene))
    assert mirrored.side == "right" and abs(mirrored.x - (1 - light.x)) < 0.02
    flat = estimate_light(Image.new("RGB", (300, 300), (180, 180, 180)))
    assert flat.side == "front" and flat.horizon is None and flat.stand == 0.86


@pytest.mark.parametrize("scene", ["draft", "photo"])
def test_shadow_falls_away_from_the_light_and_mirrors(scene: str) -> None:
    if scene == "draft":
        image, _ = left_lit_scene()
    else:  # a real photo lit from the left (a yellow duck over water, light from the upper left)
        image = Image.open(CORPUS / "c_duck_aqua.jpg").convert("RGB")
        assert estimate_light(image).side == "left"
    right = shadow_side(image)
    left = shadow_side(ImageOps.mirror(image))
    assert right > 4 and left < -4, (right, left)
    assert abs(right + left) < 0.25 * abs(right)  # the mirror image's shadow is the mirror image


def test_a_stronger_light_throws_a_longer_shadow() -> None:
    scene = Image.new("RGB", (384, 384), (200, 200, 200))
    reach = []
    for strength in (0.0, 1.0):
        out, mask = composite(scene, product(), light=Light(0.2, strength, None, 0.86))
        darker = (np.asarray(scene, np.float32) - np.asarray(out, np.float32)).mean(axis=2) > 2
        darker[mask > 0] = False
        reach.append(int(np.nonzero(darker.any(axis=0))[0].max()))
    assert reach[1] > reach[0]


def test_relight_shades_the_side_facing_the_light_within_the_rule() -> None:
    scene, _ = left_lit_scene(256)
    out, mask = composite(scene, product(), light=estimate_light(scene))
    core, _ = product_core(mask)
    light = estimate_light(scene)
    cols = np.nonzero(core.any(axis=0))[0]
    mid = (cols.min() + cols.max()) / 2
    left_half = core & (np.arange(256)[None, :] < mid)
    right_half = core & (np.arange(256)[None, :] > mid)

    def halves(img: Image.Image) -> tuple[float, float]:
        lab = srgb_to_lab(np.asarray(img))
        return float(lab[..., 0][left_half].mean()), float(lab[..., 0][right_half].mean())

    full = harmonise(out, mask, 0.8, "full", light)
    base = harmonise(out, mask, 0.8, "full", None)
    (fl, fr), (bl, br) = halves(full), halves(base)
    assert fl - fr > (bl - br) + 1.0  # lit from the left: the left half gained on the right half
    subtle = harmonise(out, mask, 0.8, "subtle", light)
    de = ciede2000(srgb_to_lab(np.asarray(out)[core]), srgb_to_lab(np.asarray(subtle)[core]))
    assert de.max() <= SUBTLE_BUDGET + 0.05
    none = harmonise(out, mask, 0.8, "none", light)
    assert np.array_equal(np.asarray(none)[core], np.asarray(out)[core])
    mirrored = directional_shade(mask, 1 - light.x, light.strength)
    assert np.allclose(mirrored, -directional_shade(mask, light.x, light.strength))
