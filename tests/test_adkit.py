"""Ads a marketer can ship (issue 13): structured copy (headline, subline, price, badge, call to
action) with a tiny safe emphasis markup, and the placement presets' safe zones.

The template's documents are rendered by real Chromium: every part must draw inside the layout
plan's copy box (each part checked alone by hiding the others, which keeps the layout), clear
of the product, in reading order; emphasis must really be heavier or highlighted; markup that
is not ours stays text. Then whole jobs through the real job manager and worker.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from pipeline.config import Settings
from pipeline.jobs import JobManager
from pipeline.placements import PLACEMENTS
from pipeline.schemas import GenerateRequest
from pipeline.worker.design.prompt import build_prompt
from pipeline.worker.design.sanitize import contains_copy, sanitize_html
from pipeline.worker.layout import Box, CopyParts, margin_px, plain_copy, plan_layout, requested_font_px
from pipeline.worker.stages.design import DesignSpec, design_template, render_markup
from tests.conftest import ARTIFACTS, EXAMPLE, REPO
from tests.helpers import READY_S
from tests.test_design import ThreadRenderer

SIZES = [(1080, 1080), (1080, 1350), (1080, 1920), (1200, 628), (1920, 1080)]
BOTTLE = (400, 760)
PARTS_KO = dict(text="여름 **세일** 시작", subline="촉촉한 하루의 시작, ==베르데== 하이드라 세럼", price="₩19,900",
                badge="-30%", cta="지금 구매하기")
PARTS_EN = dict(text="Summer **Sale**", subline="Hydrating serum for ==all-day== glow, now with a free refill",
                price="$29.90", badge="NEW", cta="Shop now")
CLASSES = ("copy", "sub", "price", "badge", "button")  # reading order


def _spec(size: tuple[int, int], position: str, **parts: str) -> DesignSpec:
    return DesignSpec(
        text=parts["text"], style_prompt="Modern bold design", font_family="NanumSquare, sans-serif",
        font_weight="bold", text_color=None, text_size=72, position=position, width=size[0], height=size[1],
        subline=parts.get("subline", ""), price=parts.get("price", ""), badge=parts.get("badge", ""),
        cta=parts.get("cta", ""),
    )


def _only(doc: str, cls: str) -> str:
    """The document with every part but ``cls`` invisible: same layout, only that part's ink."""
    hide = f"<style>.block * {{ visibility: hidden }} .{cls}, .{cls} * {{ visibility: visible }}</style>"
    return doc.replace("</head>", hide + "</head>")


def _ink(img: Image.Image) -> np.ndarray:
    return np.asarray(img.getchannel("A")) > 32


def _bounds(ink: np.ndarray) -> Box:
    ys, xs = np.nonzero(ink)
    return Box(int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))


@pytest.fixture(scope="module")
def renderer() -> Iterator[ThreadRenderer]:
    r = ThreadRenderer()
    yield r
    r.close()


# ---- the template on its own, rendered -----------------------------------------------------
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("position", ["center", "bottom", "auto"])
def test_every_part_renders_inside_the_copy_box_in_reading_order(
    size: tuple[int, int], position: str, renderer: ThreadRenderer
) -> None:
    for name, parts in (("ko", PARTS_KO), ("en", PARTS_EN)):
        spec = _spec(size, position, **parts)
        plan = plan_layout(size, BOTTLE, spec.parts, position, requested_font_px(72, size),
                           ground=round(size[1] * 0.85))
        assert plan.copy_box is not None and plan.product_box is not None
        assert not plan.copy_box.overlaps(plan.product_box)
        doc = design_template(spec, None, None, None, plan=plan).html
        whole = renderer.render(doc, *size)
        if position == "auto":
            ARTIFACTS.mkdir(exist_ok=True)
            whole.save(ARTIFACTS / f"adkit_parts_{name}_{size[0]}x{size[1]}.png")
        b, tol = plan.copy_box, 4
        tops = []
        for cls in CLASSES:
            ink = _ink(renderer.render(_only(doc, cls), *size))
            assert ink.sum() > 150, (name, size, position, cls, "not drawn")
            got = _bounds(ink)
            assert b.x - tol <= got.x and got.right <= b.right + tol, (name, size, position, cls, b, got)
            assert b.y - tol <= got.y and got.bottom <= b.bottom + tol, (name, size, position, cls, b, got)
            tops.append(got.y)
        # Headline, subline, the price row, then the button, top to bottom (badge shares the price's row).
        assert tops[0] < tops[1] < min(tops[2], tops[3]) and max(tops[2], tops[3]) < tops[4], (name, size, tops)
        all_ink = _ink(whole)
        p = plan.product_box
        assert not all_ink[max(0, p.y): p.bottom, max(0, p.x): p.right].any(), (name, size, position, "ink on product")


def test_button_is_a_filled_pill_and_badge_a_red_pill(renderer: ThreadRenderer) -> None:
    size = (1080, 1350)
    spec = _spec(size, "bottom", **PARTS_EN)
    plan = plan_layout(size, BOTTLE, spec.parts, "bottom", requested_font_px(72, size), ground=1150)
    doc = design_template(spec, None, None, None, plan=plan).html
    button = renderer.render(_only(doc, "button"), *size)
    a = _ink(button)
    box = _bounds(a)
    # A button is a solid shape, not letters: most of its box is opaque.
    assert a[box.y: box.bottom, box.x: box.right].mean() > 0.7 and box.w > 2 * box.h
    badge = np.asarray(renderer.render(_only(doc, "badge"), *size).convert("RGBA")).astype(int)
    red = (badge[..., 0] > 200) & (badge[..., 1] < 110) & (badge[..., 2] < 110) & (badge[..., 3] > 200)
    assert red.sum() > 400


def test_emphasis_is_bold_and_highlighted(renderer: ThreadRenderer) -> None:
    size = (1080, 1080)

    def render(subline: str, headline: str = "Summer") -> Image.Image:
        spec = _spec(size, "top", text=headline, subline=subline)
        plan = plan_layout(size, None, spec.parts, "top", 80)
        return renderer.render(design_template(spec, None, None, None, plan=plan).html, *size)

    # **...** draws visibly heavier strokes, in the normal-weight subline and in the bold headline.
    def solid(img: Image.Image) -> int:
        return int((np.asarray(img.getchannel("A")) > 200).sum())

    plain = solid(render("HOLIDAY OFFERS HERE", "BIG SUMMER SALE"))
    bold = solid(render("**HOLIDAY OFFERS HERE**", "BIG SUMMER SALE"))
    assert bold > plain * 1.1, (plain, bold)
    bold_head = solid(render("HOLIDAY OFFERS HERE", "**BIG SUMMER SALE**"))
    assert bold_head > plain * 1.1, (plain, bold_head)
    # ==...== lays a yellow marker behind the words.
    marked = np.asarray(render("everyday", headline="==Summer== Sale").convert("RGBA")).astype(int)
    yellow = (marked[..., 0] > 220) & (marked[..., 1] > 180) & (marked[..., 2] < 80) & (marked[..., 3] > 200)
    assert yellow.sum() > 2000
    unmarked = np.asarray(render("everyday", headline="Summer Sale").convert("RGBA")).astype(int)
    assert ((unmarked[..., 0] > 220) & (unmarked[..., 1] > 180) & (unmarked[..., 2] < 80)).sum() == 0


def test_markup_is_ours_only_everything_else_stays_text(renderer: ThreadRenderer) -> None:
    hostile = '<script>alert(1)</script><img src=x onerror=alert(2)> & <b>"x"</b>'
    assert render_markup(hostile) == (
        "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt; &amp; "
        "&lt;b&gt;&quot;x&quot;&lt;/b&gt;")
    assert render_markup("**a<b>**") == "<strong>a&lt;b&gt;</strong>"
    assert render_markup("==**x**==") == "<mark><strong>x</strong></mark>"
    assert render_markup("2 ** 3 and a==b") == "2 ** 3 and a==b"  # unpaired markers are just text
    assert plain_copy("**Sale** ==now==") == "Sale now"
    size = (1080, 1080)
    spec = _spec(size, "top", text="**<i>x</i>**", subline=hostile, cta="</div><style>*{color:red}</style>")
    doc = design_template(spec, None, None, None, plan=plan_layout(size, None, spec.parts, "top", 60)).html
    assert "<script" not in doc and "<img" not in doc and "<i>" not in doc and "<style>*" not in doc
    assert "&lt;script&gt;" in doc and "&lt;i&gt;x&lt;/i&gt;" in doc
    layer = renderer.render(_only(doc, "sub"), *size)
    assert _ink(layer).sum() > 1000  # the tags are drawn as letters


def test_planner_box_grows_with_the_parts_and_long_parts_keep_legible() -> None:
    size = (1080, 1350)
    req = requested_font_px(72, size)
    alone = plan_layout(size, BOTTLE, "Summer Sale", "bottom", req)
    full = plan_layout(size, BOTTLE, CopyParts("Summer Sale", "A subline", "$9", "NEW", "Shop now"), "bottom", req)
    assert alone.copy_box is not None and full.copy_box is not None and full.product_box is not None
    assert full.copy_box.h > alone.copy_box.h * 2
    assert not full.copy_box.overlaps(full.product_box)
    # A plain headline plans exactly as before (same box, same font, same measure).
    assert plan_layout(size, BOTTLE, CopyParts("Summer Sale"), "bottom", req) == alone
    m = margin_px(size)
    long = CopyParts("Summer Sale", "long subline " * 15, "$9", "NEW", "Shop now")
    plan = plan_layout(size, BOTTLE, long, "bottom", req)
    assert plan.copy_box is not None and plan.copy_box.y >= m and plan.copy_box.bottom <= size[1] - m


def test_llm_designers_get_the_parts_and_must_set_each() -> None:
    parts = CopyParts(PARTS_EN["text"], PARTS_EN["subline"], PARTS_EN["price"], PARTS_EN["badge"], PARTS_EN["cta"])
    prompt = build_prompt(
        text=parts.headline, style="", font_stack="sans-serif", weight="bold", color=None, size_px=60,
        position="auto", copy_box=(10, 10, 500, 500), width=1080, height=1080, analysis=None, product_bbox=None,
        parts=parts,
    ).user
    for label, value in (("Headline", parts.headline), ("Subline", parts.subline), ("Price", parts.price),
                         ("Badge", parts.badge), ("Call to action", parts.cta)):
        assert f'{label}' in prompt and f'"{value}"' in prompt
    assert "<strong>" in prompt and "<mark>" in prompt
    answer = sanitize_html(
        "<html><body><h1>Summer <strong>Sale</strong></h1><p>Hydrating serum for <mark>all-day</mark> glow, now "
        "with a free refill</p><span>$29.90</span><span>NEW</span></body></html>")
    assert all(contains_copy(answer.text, plain_copy(t)) for t in parts.texts()[:4])
    assert not contains_copy(answer.text, plain_copy(parts.cta))


def test_request_fields_checked_in_one_line() -> None:
    req = GenerateRequest(product_image="a.png", text_content="Sale", subline="sub", cta="Buy", badge="-30%",
                          price="₩19,900")
    assert (req.subline, req.cta, req.badge, req.price) == ("sub", "Buy", "-30%", "₩19,900")
    for bad, msg in (({"cta": "Buy"}, "cta needs text_content"), ({"text_content": "x", "badge": "x" * 21}, "badge"),
                     ({"text_content": "x", "price": "1\x00"}, "price contains a control character")):
        with pytest.raises(ValidationError, match=msg):
            GenerateRequest(product_image="a.png", **bad)


# ---- whole jobs through the real worker ----------------------------------------------------
@pytest.fixture(scope="module")
async def jobs(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[JobManager]:
    tmp = tmp_path_factory.mktemp("adkit")
    async with JobManager(Settings(data_dir=tmp / "d", output_dir=tmp / "out")) as m:
        assert await m.wait_ready(READY_S), "worker did not become ready"
        yield m


def _design_box(design_html: str, size: tuple[int, int]) -> Box:
    """The copy box the template used, from its body padding (top right bottom left)."""
    t, r, b, lft = map(int, re.search(r"padding: (\d+)px (\d+)px (\d+)px (\d+)px", design_html).groups())
    return Box(lft, t, size[0] - r - lft, size[1] - b - t)


@pytest.mark.anyio
@pytest.mark.parametrize("size", [(1080, 1920), (1200, 628)], ids=lambda s: f"{s[0]}x{s[1]}")
async def test_job_sets_every_part_inside_the_copy_box_off_the_product(
    jobs: JobManager, product_b64: str, size: tuple[int, int]
) -> None:
    job = await jobs.submit(GenerateRequest(
        product_image=product_b64, text_content=PARTS_KO["text"], subline=PARTS_KO["subline"],
        price=PARTS_KO["price"], badge=PARTS_KO["badge"], cta=PARTS_KO["cta"], width=size[0], height=size[1],
        use_llm_html=False, seed=5,
    ))
    with anyio.fail_after(120):
        while (st := jobs.status(job.job_id, with_metrics=False)).status not in ("completed", "failed", "stopped"):
            await jobs.wait_for_change(job.job_id, 0.3)
    assert st.status == "completed", st.error
    folder = jobs.store.job_dir(job.job_id)
    final = Image.open(folder / "final.png")
    assert final.size == size
    ARTIFACTS.mkdir(exist_ok=True)
    final.save(ARTIFACTS / f"adkit_job_{size[0]}x{size[1]}.png")
    doc = (folder / "design.html").read_text()
    expected = ("촉촉한 하루의 시작, <mark>베르데</mark>", "₩19,900", "-30%", "지금 구매하기", "<strong>세일</strong>")
    for value in expected:
        assert value in doc
    box = _design_box(doc, size)
    ink = _ink(Image.open(folder / "text.png"))
    got = _bounds(ink)
    assert box.x - 4 <= got.x and got.right <= box.right + 4 and box.y - 4 <= got.y and got.bottom <= box.bottom + 4
    product = np.asarray(Image.open(folder / "mask.png")) > 127
    assert (ink & product).sum() == 0 and product.sum() > 0
    assert st.warnings == [], st.warnings


# ---- placements: presets and their safe zones ----------------------------------------------
def test_placement_presets_have_the_platform_sizes_and_story_safe_zone() -> None:
    sizes = {name: (p.width, p.height) for name, p in PLACEMENTS.items()}
    assert sizes == {"square": (1080, 1080), "portrait": (1080, 1350), "story": (1080, 1920),
                     "landscape": (1200, 628), "wide": (1920, 1080)}
    assert PLACEMENTS["story"].safe_px() == (269, 384)  # top 14%, bottom 20% of 1920


@pytest.mark.parametrize("name", list(PLACEMENTS))
@pytest.mark.parametrize("position", ["top", "center", "bottom", "auto"])
def test_copy_stays_inside_each_placements_safe_zone(name: str, position: str, renderer: ThreadRenderer) -> None:
    p = PLACEMENTS[name]
    size = (p.width, p.height)
    top, bottom = p.safe_px()
    m = margin_px(size)
    spec = _spec(size, position, **PARTS_KO)
    for product in (BOTTLE, None):  # a job's plan (product placed by us) and step 2's copy-only plan
        plan = plan_layout(size, product, spec.parts, position, requested_font_px(72, size),
                           ground=round(size[1] * 0.85), safe=(top, bottom))
        b = plan.copy_box
        assert b is not None and b.y >= max(m, top) and b.bottom <= size[1] - max(m, bottom), (name, position, b)
        if product is not None:
            assert plan.product_box is not None and not b.overlaps(plan.product_box)
        # The rendered text layer's ink (checked on its alpha) stays out of the unsafe bands too.
        ink = _ink(renderer.render(design_template(spec, None, None, None, plan=plan).html, *size))
        assert ink.sum() > 2000
        assert not ink[: max(m, top) - 2].any() and not ink[size[1] - max(m, bottom) + 2:].any(), (name, position)
        if name == "story" and position == "bottom" and product is not None:
            ARTIFACTS.mkdir(exist_ok=True)
            Image.fromarray(ink.astype(np.uint8) * 255).save(ARTIFACTS / "adkit_story_bottom_ink.png")


def test_story_safe_zone_moves_the_copy_compared_with_no_zone() -> None:
    p = PLACEMENTS["story"]
    size = (p.width, p.height)
    parts = CopyParts(PARTS_EN["text"], PARTS_EN["subline"], PARTS_EN["price"], PARTS_EN["badge"], PARTS_EN["cta"])
    free = plan_layout(size, BOTTLE, parts, "bottom", requested_font_px(72, size), ground=1600)
    safe = plan_layout(size, BOTTLE, parts, "bottom", requested_font_px(72, size), ground=1600, safe=p.safe_px())
    assert free.copy_box is not None and safe.copy_box is not None
    assert free.copy_box.bottom > size[1] - p.safe_px()[1]  # without the zone the copy sits in the reply bar
    assert safe.copy_box.bottom <= size[1] - p.safe_px()[1]


def test_cli_sends_the_structured_copy(tmp_path: Path) -> None:
    """``adgen generate`` (a real MCP client starting the server over stdio) passes every part."""
    out = tmp_path / "ad.png"
    env = dict(os.environ, ADGEN_DATA_DIR=str(tmp_path / "d"), ADGEN_OUTPUT_DIR=str(tmp_path / "out"))
    proc = subprocess.run(
        [sys.executable, "-m", "mcp_server.cli", "generate", str(EXAMPLE), "--text", "Summer **Sale**",
         "--subline", "Hydrating serum", "--cta", "Shop now", "--badge=-30%", "--price", "₩19,900",
         "--size", "600x750", "--seed", "3", "--out", str(out), "--data-dir", str(tmp_path / "d")],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(out).size == (600, 750)
    doc = next((tmp_path / "d").rglob("design.html")).read_text().replace("\u00ad", "")  # soft hyphens: hyphenate.py
    for value in ("Summer <strong>Sale</strong>", "Hydrating serum", "Shop now", "-30%", "₩19,900"):
        assert value in doc


def test_sanitiser_allowlist_keeps_whole_property_names() -> None:
    """LLM designs need font-size, padding-right...: a wrapped word list once split them in two."""
    from pipeline.worker.design.sanitize import CSS_FUNCTIONS, CSS_PROPERTIES

    assert not [p for p in CSS_PROPERTIES | CSS_FUNCTIONS if p.endswith("-") or p.startswith("-") and p.count("-") == 1]
    assert {"font-size", "padding-right", "grid-template-rows", "-webkit-text-stroke", "border-right"} <= CSS_PROPERTIES
