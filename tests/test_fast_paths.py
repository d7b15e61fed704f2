"""The draft path's shortcuts give what the plain way gives (issue #10's 1.5 s budget).

Each test does the work the slow, obvious way in the test itself (a whole-canvas blur, the textbook
colour formulas in float64, a font subset straight from the file, Pillow's PNG) and checks the fast
path against it, on real pixels and the real bundled fonts.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw, ImageFont

from pipeline.config import BUNDLED_FONTS_DIR
from pipeline.fonts import embeddable_chars
from pipeline.worker.artifacts import ArtifactWriter
from pipeline.worker.deliver import deliver
from pipeline.worker.design import fontembed
from pipeline.worker.provenance import PNG_KEY, read_png, write_png
from pipeline.worker.stages import contrast
from pipeline.worker.stages.background import generate_draft
from pipeline.worker.stages.colour import ciede2000, lab_to_srgb, srgb_to_lab
from pipeline.worker.stages.composite import _blur_near, composite
from pipeline.worker.stages.fidelity import measure, product_core, restore
from pipeline.worker.stages.refine import harmonise
from tests.conftest import EXAMPLE, synthetic_product


# ---- colour maths --------------------------------------------------------------------------
def _lab_textbook(rgb: np.ndarray) -> np.ndarray:
    """sRGB -> Lab (D65) as the textbooks write it, float64 throughout."""
    c = rgb.astype(np.float64) / 255
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = np.einsum("ij,...j->...i", m, lin) / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def test_lab_conversions_match_the_textbook_formulas() -> None:
    rgb = np.random.default_rng(3).integers(0, 256, (200, 300, 3)).astype(np.uint8)
    lab = srgb_to_lab(rgb)
    assert lab.dtype == np.float32 and lab.shape == rgb.shape
    np.testing.assert_allclose(lab, _lab_textbook(rgb), atol=2e-3)
    flat = srgb_to_lab(rgb.reshape(-1, 3))  # (N, 3) rows: the shape that was slow through BLAS
    np.testing.assert_allclose(flat, lab.reshape(-1, 3), atol=1e-4)
    assert np.abs(lab_to_srgb(lab) - rgb).max() < 0.01
    assert srgb_to_lab(np.zeros((0, 3), np.uint8)).shape == (0, 3)


def test_ciede2000_in_float32_stays_within_a_hundredth_of_float64() -> None:
    rng = np.random.default_rng(4)
    a = _lab_textbook(rng.integers(0, 256, (20000, 3)))
    b = a + rng.normal(0, 3, a.shape)
    exact = ciede2000(a, b)  # float64 in, float64 out
    fast = ciede2000(a.astype(np.float32), b.astype(np.float32))
    assert exact.dtype == np.float64 and fast.dtype == np.float32
    assert np.abs(exact - fast).max() < 0.01
    assert exact.mean() > 1.0  # the pairs really differ


# ---- fidelity: restore and measure on one precomputed product ------------------------------
@pytest.fixture(scope="module")
def placed_scene() -> tuple[Image.Image, np.ndarray]:
    bg, _ = generate_draft("warm wooden table, soft light", 512, 512, seed=3)
    img, truth = synthetic_product("can", 256, (236, 236, 232))
    rgba = img.convert("RGBA")
    rgba.putalpha(Image.fromarray((truth * 255).astype(np.uint8)))
    return composite(bg, rgba, light_x=0.3)


def _measure_tight(reference: Image.Image, image: Image.Image, mask: np.ndarray) -> float:
    """Mean CIEDE2000 over the eroded core, computed in the product's tight box (pad 8) from scratch."""
    ys, xs = np.nonzero(mask > 0)
    box = (slice(max(0, ys.min() - 8), ys.max() + 9), slice(max(0, xs.min() - 8), xs.max() + 9))
    core, _ = product_core(mask[box])
    ref, img = np.asarray(reference)[box][core], np.asarray(image)[box][core]
    return float(ciede2000(_lab_textbook(ref), _lab_textbook(img)).mean())


@pytest.mark.parametrize("relight", ["none", "subtle", "full"])
def test_measure_in_the_shared_box_is_the_tight_box_figure(
    placed_scene: tuple[Image.Image, np.ndarray], relight: str
) -> None:
    comp, mask = placed_scene
    refined = harmonise(comp, mask, 0.8, "full")
    kept = restore(refined, comp, mask, relight)
    fid = measure(comp, kept, mask)
    assert fid is not None
    assert abs(fid.delta_e_mean - _measure_tight(comp, kept, mask)) < 0.01
    if relight == "none":  # (SSIM windows reach into the edge ring, which the refinement did change)
        assert fid.delta_e_mean < 1e-6 and fid.ssim > 0.95
    else:
        assert fid.delta_e_mean > 0.5  # the scene's light did reach the product


# ---- composite: shadows blurred near the product only --------------------------------------
@pytest.mark.parametrize("where", ["middle", "corner", "edge"])
def test_blur_near_equals_a_whole_canvas_blur(where: str) -> None:
    layer = np.zeros((400, 600), np.float32)
    y, x = {"middle": (180, 250), "corner": (0, 0), "edge": (390, 300)}[where]
    cv2.ellipse(layer, (x, y), (60, 12), 0, 0, 360, 1.0, -1)
    for sigma in (2.0, 7.5, 23.0):
        np.testing.assert_allclose(_blur_near(layer, sigma), cv2.GaussianBlur(layer, (0, 0), sigma), atol=1e-6)
    assert not _blur_near(np.zeros((10, 10), np.float32), 3.0).any()


def test_composite_changes_only_the_product_and_its_shadow(placed_scene: tuple[Image.Image, np.ndarray]) -> None:
    comp, mask = placed_scene
    bg, _ = generate_draft("warm wooden table, soft light", 512, 512, seed=3)
    out, scene = np.asarray(comp).astype(int), np.asarray(bg).astype(int)
    changed = np.any(out != scene, axis=-1)
    floor = changed & (mask == 0)
    assert floor.sum() > 500 and (out[floor] <= scene[floor]).all()  # the shadow only darkens the floor ...
    top = np.flatnonzero((mask > 0).any(axis=1))[0]
    assert not changed[:top].any()  # ... and the scene above the product is the scene, bit for bit


# ---- contrast: measured on the copy's surroundings only -------------------------------------
@pytest.mark.parametrize("where", ["middle", "corner"])
def test_contrast_measured_around_the_copy_is_the_whole_page_s(where: str) -> None:
    """measure_page composites and measures only the copy's surroundings; every line's box, ratio and
    threshold must be what measuring the whole story-size canvas gives (a corner: rings cut by the canvas)."""
    step1 = Image.open(EXAMPLE).convert("RGB").resize((1080, 1920))
    font = ImageFont.truetype(str(BUNDLED_FONTS_DIR / "NanumSquareB.ttf"), 64)
    small = ImageFont.truetype(str(BUNDLED_FONTS_DIR / "NanumSquareR.ttf"), 28)
    layer = Image.new("RGBA", step1.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    x, y = (300, 900) if where == "middle" else (2, 2)
    draw.rectangle((x, y + 150, x + 260, y + 215), fill=(20, 90, 200, 230))  # a button behind one line
    draw.text((x, y), "Summer Sale", font=font, fill=(250, 250, 250, 255))
    draw.text((x, y + 90), "Hydrating serum, all day", font=small, fill=(40, 40, 40, 255))
    draw.text((x + 20, y + 165), "Shop now", font=small, fill=(255, 255, 255, 255))

    def render(html: str, clip: tuple[int, int, int, int] | None) -> Image.Image:  # the glyph-only page
        out = Image.new("RGBA", layer.size, (0, 0, 0, 0))
        assert clip is not None
        out.paste(layer.crop(clip), clip[:2])
        return out

    whole = contrast.measure(Image.alpha_composite(step1.convert("RGBA"), layer).convert("RGB"), layer)
    assert len(whole.lines) >= 3 and any(line.required == 4.5 for line in whole.lines)
    assert contrast.measure_page("<p>x</p>", render, step1, layer) == whole


# ---- fonts: subsets from the per-process drawable copy --------------------------------------
COPIES = ["광고 1", "여름 세일 50% OFF!", "Summer Sale — ½ price “now”", "夏の限定セール、今だけ半額！",
          "Ünïcödé façade ß", "촉촉한 하루의 시작 ✨ SALE 50%", " "]


@pytest.mark.parametrize("name", ["NanumSquareB.ttf", "NanumMyeongjo.ttf"])
def test_subsets_from_the_drawable_copy_are_the_files_own(name: str) -> None:
    path = str(BUNDLED_FONTS_DIR / name)
    fontembed._drawable(path)  # what the worker's warm-up thread builds
    for copy in COPIES:
        chars = "".join(sorted(embeddable_chars(path, copy))) or " "
        fast, slow = fontembed._subset(path, chars), fontembed._subset(path, chars, from_file=True)
        assert fast == slow, copy
        cmap = TTFont(io.BytesIO(fast)).getBestCmap()
        assert {ord(c) for c in chars if c != " "} <= set(cmap), copy
    assert len(fontembed._drawable(path)) < Path(path).stat().st_size  # blank glyphs left out


def test_font_face_css_before_and_after_the_warm_up_is_the_same() -> None:
    text = "가나다 라마 12,900원"
    first = fontembed.font_face_css(["NanumSquareRound"], text, BUNDLED_FONTS_DIR)  # from the files
    for path in fontembed.bundled_faces(BUNDLED_FONTS_DIR)["NanumSquareRound"]:
        fontembed._drawable(path)
    fontembed._subset.cache_clear()
    assert fontembed.font_face_css(["NanumSquareRound"], text, BUNDLED_FONTS_DIR) == first


def test_drawable_copies_are_kept_on_disk_and_a_damaged_one_is_rebuilt(tmp_path: Path, monkeypatch) -> None:
    path = str(BUNDLED_FONTS_DIR / "NanumSquareR.ttf")
    built = fontembed._build_drawable(path)
    monkeypatch.setattr(fontembed, "_drawable_fonts", {})  # a fresh worker's memory
    fontembed.use_disk_cache(tmp_path)
    try:
        assert fontembed._drawable(path) == built  # built once and written...
        files = list((tmp_path / "fonts").glob("NanumSquareR-*.bin"))
        assert len(files) == 1 and files[0].read_bytes()[:-32] == built
        assert not list((tmp_path / "fonts").glob(".part-*"))  # no half-written file left behind

        def no_build(path: str) -> bytes:
            raise AssertionError("rebuilt although the disk copy was there")

        fontembed._drawable_fonts.clear()
        with monkeypatch.context() as m:
            m.setattr(fontembed, "_build_drawable", no_build)
            assert fontembed._drawable(path) == built  # ...and read back by the next worker

        whole = files[0].read_bytes()
        files[0].write_bytes(whole[: len(whole) // 3] + whole[-32:])  # cut short
        fontembed._drawable_fonts.clear()
        assert fontembed._drawable(path) == built and files[0].read_bytes() == whole  # rebuilt, rewritten
    finally:
        fontembed.use_disk_cache(None)


# ---- artifacts written in the background ---------------------------------------------------
def test_artifact_writer_writes_the_same_pixels_and_waits_on_flush(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    images = {
        "rgb.png": Image.fromarray(rng.integers(0, 256, (300, 200, 3), dtype=np.uint8), "RGB"),
        "rgba.png": Image.fromarray(rng.integers(0, 256, (120, 90, 4), dtype=np.uint8), "RGBA"),
        "mask.png": Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8), "L"),
        "palette.png": Image.new("P", (16, 16), 3),
    }
    writer = ArtifactWriter()
    for name, img in images.items():
        writer.png(img, tmp_path / "job" / name)
    writer.flush()
    for name, img in images.items():
        back = Image.open(tmp_path / "job" / name)
        assert back.mode == img.mode, name
        assert np.array_equal(np.asarray(back.convert("RGBA")), np.asarray(img.convert("RGBA"))), name
    assert not list((tmp_path / "job").glob("*.tmp"))


def test_artifact_writer_reports_a_failed_write_at_flush(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("a file where the job folder should be")
    writer = ArtifactWriter()
    writer.png(Image.new("RGB", (8, 8)), tmp_path / "taken" / "composite.png")
    writer.png(Image.new("RGB", (8, 8)), tmp_path / "ok.png")
    with pytest.raises(OSError):
        writer.flush()
    assert (tmp_path / "ok.png").is_file()  # the other write still happened
    writer.flush()  # nothing pending any more


def test_background_png_carries_the_same_provenance_as_pillows(tmp_path: Path) -> None:
    """step1.png and final.png are encoded off the critical path by OpenCV with Pillow's provenance chunks
    spliced in: a valid PNG (every CRC checked), the same pixels, the same iTXt, XMP and EXIF."""
    img = Image.fromarray(np.random.default_rng(7).integers(0, 256, (48, 80, 3), dtype=np.uint8), "RGB")
    prov = {"generator": "adgen test", "job_id": "b" * 32, "seed": 9, "models": [], "backend": "draft",
            "note": "여름 세일 -50%"}
    writer = ArtifactWriter()
    writer.png(img, tmp_path / "bg.png", prov)
    writer.flush()
    reference = write_png(img, tmp_path / "pil.png", prov)
    with Image.open(tmp_path / "bg.png") as ours:
        ours.verify()  # chunk CRCs and structure
    with Image.open(tmp_path / "bg.png") as ours, Image.open(reference) as theirs:
        assert np.array_equal(np.asarray(ours), np.asarray(img))
        assert read_png(tmp_path / "bg.png") == prov
        for key in ("Software", "Description", PNG_KEY, "XML:com.adobe.xmp"):
            assert ours.info[key] == theirs.info[key]
        assert dict(ours.getexif()) == dict(theirs.getexif()) and ours.getexif()[0x0131] == "adgen test"


def test_png_delivery_copies_the_jobs_final_png(tmp_path: Path) -> None:
    img = Image.fromarray(np.random.default_rng(6).integers(0, 256, (64, 96, 3), dtype=np.uint8), "RGB")
    prov = {"generator": "adgen test", "job_id": "a" * 32, "seed": 1}
    final = write_png(img, tmp_path / "final.png", prov)
    out = deliver(img, tmp_path / "out", "ad.png", "png", 90, prov, encoded=final)
    assert out.read_bytes() == final.read_bytes()
    assert read_png(out) == prov and PNG_KEY in Image.open(out).info
    jpeg = deliver(img, tmp_path / "out", "ad.jpg", "jpeg", 90, prov, encoded=final)  # other formats encode
    assert Image.open(jpeg).format == "JPEG"
