"""The layout planner: product and copy planned together, for every position and common ad size.

First the pure planner (boxes never overlap, margins, legible minimum, warnings, refusal), then
its size estimate against what real Chromium draws, then whole jobs through the real worker:
the text layer's ink must stay off the product mask and inside the margins, and the delivered
picture must have exactly the requested size.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import numpy as np
import pytest
from PIL import Image

from pipeline.config import Settings
from pipeline.jobs import JobManager
from pipeline.schemas import GenerateRequest
from pipeline.worker.errors import UserFacingError
from pipeline.worker.layout import (
    POSITIONS,
    Box,
    margin_px,
    min_font_px,
    plan_layout,
    requested_font_px,
    script_lang,
    with_scenery,
)
from pipeline.worker.stages.composite import composite
from pipeline.worker.stages.design import DesignSpec, design_template, text_style
from tests.conftest import ARTIFACTS
from tests.helpers import READY_S
from tests.test_design import ThreadRenderer

SIZES = [(1080, 1350), (1080, 1920), (1200, 628), (1920, 1080), (1080, 1080)]
BOTTLE = (400, 760)  # a tall product cut-out, like examples/product.jpg's bottle
WIDE_PRODUCT = (900, 420)  # a shoe box lying down
COPY_KO = "촉촉한 하루의 시작, 베르데 세럼"
LONG_KO = "하루 종일 촉촉하게 지켜주는 베르데 하이드라 세럼, 지금 주문하면 한 병 더 드립니다. "


def _plan(size: tuple[int, int], position: str, copy: str = COPY_KO, product: tuple[int, int] | None = BOTTLE,
          text_size: int = 72):
    return plan_layout(size, product, copy, position, requested_font_px(text_size, size), ground=round(size[1] * 0.85))


def _safe_area(size: tuple[int, int]) -> Box:
    m = margin_px(size)
    return Box(m, m, size[0] - 2 * m, size[1] - 2 * m)


# ---- the planner on its own ----------------------------------------------------------------
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("product", [BOTTLE, WIDE_PRODUCT], ids=["tall", "wide"])
def test_copy_and_product_never_overlap_and_copy_keeps_its_margins(
    size: tuple[int, int], position: str, product: tuple[int, int]
) -> None:
    plan = _plan(size, position, product=product)
    assert plan.copy_box is not None and plan.product_box is not None
    assert not plan.copy_box.overlaps(plan.product_box), plan
    assert plan.copy_box.inside(_safe_area(size)), plan
    assert plan.product_box.inside(Box(0, 0, *size)), plan
    assert plan.ground == plan.product_box.bottom
    assert plan.font_px >= min_font_px(size)
    assert not plan.panel and plan.warnings == []
    # Short copy never costs the product much, whatever the position.
    nat_h = min(size[1] * 0.56, size[0] * 0.5 * product[1] / product[0])
    assert plan.product_box.h >= 0.4 * nat_h, plan
    if position == "center":  # centred copy really is around the middle of the canvas
        mid = plan.copy_box.y + plan.copy_box.h / 2
        assert 0.38 * size[1] <= mid <= 0.62 * size[1], plan
    if position == "bottom" and plan.region == "bottom":
        assert plan.copy_box.bottom == size[1] - margin_px(size)


def test_positions_mean_what_they_say() -> None:
    top, bottom = _plan((1080, 1920), "top"), _plan((1080, 1920), "bottom")
    assert top.copy_box.bottom < top.product_box.y  # copy above the product
    assert bottom.copy_box.y > bottom.product_box.bottom  # product lifted above the copy
    # On a wide canvas, auto puts the copy beside the product (reading side first).
    wide = _plan((1920, 1080), "auto")
    assert wide.region == "left" and wide.copy_box.right < wide.product_box.x
    # Right-to-left copy mirrors it.
    rtl = _plan((1920, 1080), "auto", copy="تخفيضات الصيف الكبرى")
    assert rtl.region == "right" and rtl.product_box.right < rtl.copy_box.x


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("position", POSITIONS)
def test_overlong_copy_keeps_the_legible_minimum_and_says_so(size: tuple[int, int], position: str) -> None:
    # Most of what the whole safe area holds at the minimum size: too long for any comfortable size.
    f, m = min_font_px(size), margin_px(size)
    chars = (size[0] - 2 * m) / (1.1 * f) * (size[1] - 2 * m) / (1.3 * f) * 0.9
    plan = _plan(size, position, copy=LONG_KO * int(chars / len(LONG_KO) + 1))
    assert plan.font_px == min_font_px(size) >= 14
    assert plan.warnings and "legible minimum" in plan.warnings[0]
    assert plan.copy_box.inside(_safe_area(size))
    if not plan.panel:
        assert not plan.copy_box.overlaps(plan.product_box)
    else:  # only the last resort puts the copy over the product, on a panel, and says so
        assert any("panel" in w for w in plan.warnings)


def test_copy_too_long_to_keep_apart_goes_on_a_panel_and_says_so() -> None:
    size = (1080, 1080)
    f, m = min_font_px(size), margin_px(size)
    chars = (size[0] - 2 * m) / (1.1 * f) * (size[1] - 2 * m) / (1.3 * f) * 1.15
    plan = _plan(size, "top", copy=LONG_KO * int(chars / len(LONG_KO) + 1))
    assert plan.panel and plan.font_px == f and plan.copy_box.inside(_safe_area(size))
    assert any("panel" in w for w in plan.warnings)


def test_requested_size_below_the_minimum_is_raised_to_it() -> None:
    plan = _plan((1200, 628), "top", text_size=8)
    assert plan.font_px == min_font_px((1200, 628)) == 14


def test_copy_that_cannot_fit_at_all_is_refused_in_one_line() -> None:
    with pytest.raises(UserFacingError) as err:
        _plan((256, 256), "center", copy="가나다라마바사 " * 400)
    msg = str(err.value)
    assert msg.startswith("text_content:") and "\n" not in msg and "가나다" not in msg


def test_without_a_product_auto_picks_the_calm_third_away_from_a_known_product() -> None:
    calm_bottom = {"top": 0.2, "center": 0.5, "bottom": 0.9}
    plan = plan_layout((1080, 1080), None, COPY_KO, "auto", 72, free_space=calm_bottom)
    assert plan.product_box is None and plan.region == "bottom"
    assert plan.copy_box.inside(_safe_area((1080, 1080))) and plan.copy_box.y >= 1080 * 2 / 3
    held = plan_layout((1080, 1080), None, COPY_KO, "auto", 72, free_space=calm_bottom, avoid=Box(300, 760, 400, 300))
    assert held.region == "center"


def test_busy_scenery_under_the_copy_gets_a_panel() -> None:
    plan = _plan((1080, 1080), "top")
    rng = np.random.default_rng(0)
    gravel = Image.fromarray(rng.integers(0, 255, (1080, 1080, 3), dtype=np.uint8))
    assert with_scenery(plan, gravel).panel
    assert not with_scenery(plan, Image.new("RGB", (1080, 1080), (200, 180, 160))).panel


def test_script_decides_line_breaking() -> None:
    assert [script_lang(t) for t in (COPY_KO, "夏季大促销", "新発売！しっとり", "Summer sale", "여름 SALE")] == \
        ["ko", "zh", "ja", "en", "ko"]
    docs = {}
    for lang, copy in (("ko", COPY_KO), ("zh", "夏季大促销"), ("en", "Summer sale")):
        spec = DesignSpec(text=copy, style_prompt="", font_family="NanumSquare, sans-serif", font_weight="bold",
                          text_color="#ffffff", text_size=72, position="top", width=800, height=800)
        docs[lang] = design_template(spec, None, None, None).html
    assert "keep-all" in docs["ko"] and "keep-all" not in docs["zh"] and "keep-all" not in docs["en"]
    assert '<html lang="en"' in docs["en"] and "hyphens: auto" in docs["en"]
    assert all("overflow-wrap: anywhere" in d for d in docs.values())


def test_composite_puts_the_product_exactly_in_its_box() -> None:
    plan = _plan((1200, 628), "bottom")
    product = Image.new("RGBA", BOTTLE, (30, 120, 60, 255))
    _, mask = composite(Image.new("RGB", (1200, 628), (200, 190, 180)), product, box=plan.product_box)
    ys, xs = np.nonzero(mask > 127)
    b = plan.product_box
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (b.x, b.y, b.right, b.bottom)


# ---- the estimate against real Chromium ----------------------------------------------------
@pytest.fixture(scope="module")
def renderer() -> Iterator[ThreadRenderer]:
    r = ThreadRenderer()
    yield r
    r.close()


COPIES = {
    "korean": COPY_KO,
    "korean-long": "하루 종일 촉촉하게 지켜주는 베르데 하이드라 세럼, 지금 주문하면 한 병 더 드립니다",
    "english-long": "Introducing the revolutionary Verde Hydra Serum: extraordinary radiance, internationally acclaimed",
    "chinese": "全新上市，清爽保湿精华，给你一整天的水润光彩",
    "japanese": "新発売！しっとり潤う、ヴェルデ・ハイドラセラム。一日中うるおいをキープ",
    "emoji-lines": "SUMMER SALE 🎉\n최대 50% OFF ✨\n지금 바로",
    "one-long-word": "Supercalifragilisticexpialidociousness",
}


@pytest.mark.parametrize("name", sorted(COPIES))
def test_rendered_copy_stays_inside_its_box(name: str, renderer: ThreadRenderer) -> None:
    """The estimate is an upper bound of what Chromium draws: the ink (shadow included) stays in
    the copy box, for every script, with the effects that widen or spread the copy."""
    copy = COPIES[name]
    for size, position, style in (((1080, 1920), "center", "neon glow"), ((1200, 628), "auto", "3d wide uppercase"),
                                  ((1080, 1350), "bottom", "bold")):
        plan = plan_layout(size, BOTTLE, copy, position, requested_font_px(72, size), ground=round(size[1] * 0.85),
                           style=text_style(copy, style))
        spec = DesignSpec(text=copy, style_prompt=style, font_family="NanumSquare, sans-serif", font_weight="bold",
                          text_color="#ffffff", text_size=72, position=position, width=size[0], height=size[1])
        ink = np.asarray(renderer.render(design_template(spec, None, None, None, plan=plan).html, *size).getchannel("A"))
        ys, xs = np.nonzero(ink > 32)
        assert len(ys) > 500, (name, size)
        b, tol = plan.copy_box, 4
        assert b.x - tol <= xs.min() and xs.max() < b.right + tol, (name, size, position, b, xs.min(), xs.max())
        assert b.y - tol <= ys.min() and ys.max() < b.bottom + tol, (name, size, position, b, ys.min(), ys.max())
        assert not plan.copy_box.overlaps(plan.product_box)


# ---- whole jobs through the real worker ----------------------------------------------------
@pytest.fixture(scope="module")
async def jobs(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[JobManager]:
    tmp = tmp_path_factory.mktemp("layout")
    async with JobManager(Settings(data_dir=tmp / "d", output_dir=tmp / "out")) as m:
        assert await m.wait_ready(READY_S), "worker did not become ready"
        yield m


async def _run(m: JobManager, product_b64: str, size: tuple[int, int], position: str, copy: str = COPY_KO,
               expect: str = "completed"):
    job = await m.submit(GenerateRequest(
        product_image=product_b64, text_content=copy, width=size[0], height=size[1], text_position=position,
        use_llm_html=False, seed=11,
    ))
    with anyio.fail_after(120):
        while (st := m.status(job.job_id, with_metrics=False)).status not in ("completed", "failed", "stopped"):
            await m.wait_for_change(job.job_id, 0.3)
    assert st.status == expect, st.error
    return st, m.store.job_dir(job.job_id)


@pytest.mark.anyio
@pytest.mark.parametrize("size", [(1080, 1920), (1200, 628)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("position", ["center", "bottom"])
async def test_job_copy_stays_off_the_product_and_inside_the_margins(
    jobs: JobManager, product_b64: str, size: tuple[int, int], position: str
) -> None:
    st, folder = await _run(jobs, product_b64, size, position)
    final = Image.open(folder / "final.png")
    assert final.size == size
    ARTIFACTS.mkdir(exist_ok=True)
    final.save(ARTIFACTS / f"layout_{size[0]}x{size[1]}_{position}.png")
    ink = np.asarray(Image.open(folder / "text.png").getchannel("A")) > 32
    product = np.asarray(Image.open(folder / "mask.png")) > 127
    assert ink.sum() > 2000 and product.sum() > 0.03 * product.size  # both really there
    assert (ink & product).sum() == 0, f"{(ink & product).sum()} ink pixels on the product"
    ys, xs = np.nonzero(ink)
    m = margin_px(size)
    assert xs.min() >= m - 2 and xs.max() < size[0] - m + 2 and ys.min() >= m - 2 and ys.max() < size[1] - m + 2
    if position == "center":  # still reads as centred copy
        assert 0.3 * size[1] < (ys.min() + ys.max()) / 2 < 0.7 * size[1]
    else:
        assert ys.min() > np.nonzero(product)[0].max()  # bottom copy sits below the product
    assert st.warnings == []


@pytest.mark.anyio
@pytest.mark.parametrize("size", [(1080, 1350), (1920, 1080), (1080, 1080)], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_job_delivers_exactly_the_requested_size(jobs: JobManager, product_b64: str, size: tuple[int, int]) -> None:
    st, folder = await _run(jobs, product_b64, size, "auto")
    final = Image.open(folder / "final.png")
    assert final.size == size
    final.save(ARTIFACTS / f"layout_{size[0]}x{size[1]}_auto.png")
    if st.output_file:
        assert Image.open(st.output_file).size == size
    ink = np.asarray(Image.open(folder / "text.png").getchannel("A")) > 32
    assert (ink & (np.asarray(Image.open(folder / "mask.png")) > 127)).sum() == 0


@pytest.mark.anyio
async def test_job_with_overlong_copy_warns_and_keeps_it_legible(jobs: JobManager, product_b64: str) -> None:
    longest = (LONG_KO * 8)[:300]  # the most copy a request may carry
    st, folder = await _run(jobs, product_b64, (400, 300), "bottom", copy=longest)
    assert any("legible minimum of 14 px" in w for w in st.warnings), st.warnings
    ink = np.asarray(Image.open(folder / "text.png").getchannel("A")) > 32
    product = np.asarray(Image.open(folder / "mask.png")) > 127
    assert (ink & product).sum() == 0 and product.sum() > 0 and Image.open(folder / "final.png").size == (400, 300)
    # Where even the minimum cannot fit, the job fails with one line saying why.
    st, _ = await _run(jobs, product_b64, (256, 256), "bottom", copy=longest, expect="failed")
    assert st.error.startswith("text_content: too long for a 256x256 canvas") and "\n" not in st.error


def test_diffusion_backend_generates_on_its_grid_and_delivers_the_exact_size(tmp_path: Path, tiny_hub) -> None:
    """FLUX works on multiples of 16: the backend generates at the nearest ones and resizes, so a
    250x170 request comes back 250x170 from both the background and the refinement pass."""
    pytest.importorskip("diffusers", reason="model stages need the [models] extra")
    from pipeline.worker.backends.diffusion import DiffusionBackend, flux_size
    from tests.test_models import model_settings

    assert flux_size(1080, 1350) == (1088, 1344) and flux_size(1200, 628) == (1200, 624)
    backend = DiffusionBackend(model_settings(tmp_path, tiny_hub))
    bg, _ = backend.background("studio", "", 250, 170, 1, 3.5, lambda f, s: None)
    assert bg.size == (250, 170)
    mask = np.zeros((170, 250), np.uint8)
    mask[40:150, 100:150] = 255
    refined = backend.refine(bg, mask, "studio", "", 0.6, 3.5, 1, lambda f, s: None)
    assert refined.size == (250, 170)
