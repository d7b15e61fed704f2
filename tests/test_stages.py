"""The draft stages on real pixels: cut-out accuracy, determinism, shadows, analysis, design."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline.worker.stages.analyze import analyze_draft
from pipeline.worker.stages.background import generate_draft
from pipeline.worker.stages.composite import composite
from pipeline.worker.stages.cutout import apply_mask, cut_out, has_useful_alpha
from pipeline.worker.stages.design import DesignSpec, choose_region, design_template, fit_font_size
from pipeline.worker.stages.refine import harmonise
from tests.conftest import synthetic_product


def segment_draft(img: Image.Image) -> Image.Image:
    return apply_mask(img, cut_out(img).mask)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.mark.parametrize("kind", ["bottle", "box", "can"])
@pytest.mark.parametrize("bg", [(236, 236, 232), (40, 40, 44), (210, 225, 240)])
def test_classical_cutout_is_accurate(kind: str, bg: tuple[int, int, int]) -> None:
    img, truth = synthetic_product(kind, 512, bg)
    mask = cut_out(img).mask > 127
    assert iou(mask, truth) > 0.93, f"{kind} on {bg}: IoU {iou(mask, truth):.3f}"


def test_existing_alpha_is_used_as_is() -> None:
    img, truth = synthetic_product("box", 256)
    rgba = img.convert("RGBA")
    rgba.putalpha(Image.fromarray((truth * 255).astype(np.uint8)))
    assert has_useful_alpha(rgba)
    cut = segment_draft(rgba)
    ys, xs = np.nonzero(truth)
    assert cut.size == (xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
    assert not has_useful_alpha(img.convert("RGBA"))  # fully opaque alpha carries no cut-out


def test_background_is_deterministic_and_follows_the_prompt() -> None:
    a, _ = generate_draft("wooden table, warm sunlight", 256, 256, seed=3)
    b, _ = generate_draft("wooden table, warm sunlight", 256, 256, seed=3)
    c, _ = generate_draft("wooden table, warm sunlight", 256, 256, seed=4)
    night, _ = generate_draft("dark night city, navy", 256, 256, seed=3)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    assert np.asarray(night).mean() < np.asarray(a).mean() - 40
    warm = np.asarray(a, np.float32).mean(axis=(0, 1))
    assert warm[0] > warm[2] + 20  # wood and sunlight read warm: red above blue


def test_composite_places_product_on_ground_with_shadow() -> None:
    bg, plan = generate_draft("studio", 512, 512, seed=1)
    cut = segment_draft(synthetic_product("box", 512)[0])
    comp, mask = composite(bg, cut, light_x=0.3, ground=0.86)
    ys, xs = np.nonzero(mask > 127)
    assert abs(ys.max() - int(512 * 0.86)) <= 2 and abs((xs.min() + xs.max()) / 2 - 256) < 4
    # Just below the product the floor is darker than the bare background (contact shadow).
    below = slice(ys.max() + 2, ys.max() + 8), slice(xs.min() + 20, xs.max() - 20)
    assert np.asarray(comp)[below].mean() < np.asarray(bg)[below].mean() - 10


def test_refine_moves_product_towards_scene_and_keeps_background() -> None:
    bg, _ = generate_draft("warm sunset beach", 256, 256, seed=2)
    cut = segment_draft(synthetic_product("can", 256)[0])
    comp, mask = composite(bg, cut)
    out = np.asarray(harmonise(comp, mask, strength=1.0), np.float32)
    src = np.asarray(comp, np.float32)
    outside = mask == 0
    assert np.abs(out[outside] - src[outside]).max() <= 2
    assert np.abs(out[mask > 200] - src[mask > 200]).mean() > 1.0
    assert np.array_equal(np.asarray(harmonise(comp, mask, 0.0)), np.asarray(comp))


def test_analysis_has_the_design_doc_keys_and_sees_free_space() -> None:
    bg, _ = generate_draft("studio", 512, 512, seed=1)
    comp, mask = composite(bg, segment_draft(synthetic_product("bottle", 512)[0]))
    a = analyze_draft(comp, mask)
    assert {"spatial", "color_material", "lighting_mood", "overall", "free_space"} <= set(a)
    assert a["free_space"]["top"] > a["free_space"]["bottom"]


def test_region_choice_avoids_the_product() -> None:
    mask = np.zeros((300, 300), np.uint8)
    mask[20:90] = 255  # product in the top third
    assert choose_region("auto", {"top": 1.0, "center": 0.5, "bottom": 0.4}, mask) == "center"
    assert choose_region("top", None, mask) == "top"  # explicit wins


def test_template_escapes_copy_and_fits_long_text() -> None:
    spec = DesignSpec(text="<script>alert(1)</script> & 세일", style_prompt="neon", font_family="NanumSquare, sans-serif",
                      font_weight="bold", text_color=None, text_size=72, position="top", width=1024, height=1024)
    d = design_template(spec, None, None, None)
    assert "<script>" not in d.html and "&lt;script&gt;" in d.html
    assert fit_font_size("가" * 120, 72, 880, 300) < 40
    assert fit_font_size("SALE", 72, 880, 300) == 72


def test_cutout_edges_carry_no_backdrop_colour() -> None:
    img, _ = synthetic_product("box", 512, bg=(250, 250, 250))  # a red box on near-white
    cut = np.asarray(segment_draft(img)).astype(int)
    alpha = cut[..., 3]
    edge = (alpha > 0) & (alpha < 243)
    assert edge.sum() > 500  # the edge stays soft...
    assert np.abs(cut[edge][:, :3] - np.array([200, 60, 50])).max() <= 3  # ...but is coloured like the product
