"""Copy in any script renders: fallback fonts chosen per script, coverage judged on outlines.

The bundled NanumSquare maps CJK ideographs (and U+30FC) to glyphs with no contours; Chromium
takes the first family whose cmap has a character, so with it first in the stack Japanese and
Chinese copy came out mostly blank, and a cmap-based "missing glyphs" check was fooled. These
tests render with the real Chromium, the real template designer and the fonts embedded the
way the design stage embeds them, and look at the pixels.
"""

from __future__ import annotations

import base64
import html
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from fontTools.fontBuilder import FontBuilder
from fontTools.misc.psCharStrings import T2CharString
from fontTools.pens.boundsPen import ControlBoundsPen
from fontTools.pens.ttGlyphPen import TTGlyphPen
from fontTools.ttLib import TTFont
from PIL import Image

from pipeline.config import BUNDLED_FONTS_DIR, Settings
from pipeline.cssvalues import css_font_stack, parse_font_family
from pipeline.fonts import (
    FontCatalog,
    copy_attributes,
    detect_scripts,
    embeddable_chars,
    face,
    is_visible,
    text_direction,
)
from pipeline.fonts import scripts as scripts_module
from pipeline.jobs import JobManager
from pipeline.schemas import GenerateRequest
from pipeline.worker.design.fontembed import font_face_css
from pipeline.worker.design.sanitize import build_document, sanitize_html
from pipeline.worker.render.browser import TextRenderer
from pipeline.worker.stages.design import DesignSpec, design_template
from tests.helpers import READY_S, wait_for_job

from .conftest import ARTIFACTS, EXAMPLE

DEFAULT_FAMILY = GenerateRequest.model_fields["font_family"].default  # "NanumSquare, sans-serif"
COPIES = {
    "japanese": "夏の限定セール、今だけ半額！",
    "chinese": "双十一大促 全场五折",
    "korean": "촉촉한 하루의 시작, 베르데 세럼",
    "arabic": "تخفيضات الصيف",
    "hebrew": "מבצע קיץ לכל המשפחה",
    "thai": "ลดราคาฤดูร้อน",
    "devanagari": "गर्मियों की सेल",
}
SIZE = 768
INK = 160  # alpha above this is glyph, not the soft drop shadow around it


class ThreadRenderer:
    """The real TextRenderer on a thread of its own (sync Playwright keeps an event loop in its
    thread, which must not be the thread that runs this module's async test)."""

    def __init__(self, fonts_dir: Path = BUNDLED_FONTS_DIR, system_fonts: bool = True) -> None:
        self._pool = ThreadPoolExecutor(1)
        self._r = self._pool.submit(TextRenderer, Settings().chromium_path, fonts_dir, 15, system_fonts).result()

    def render(self, page: str, width: int = SIZE, height: int = SIZE) -> Image.Image:
        return self._pool.submit(self._r.render, page, width, height).result()

    def close(self) -> None:
        self._pool.submit(self._r.close).result()
        self._pool.shutdown()


@pytest.fixture(scope="module")
def renderer() -> Iterator[ThreadRenderer]:
    catalog = FontCatalog(BUNDLED_FONTS_DIR)
    for script in ("japanese", "chinese-simplified", "arabic", "hebrew", "thai", "devanagari"):
        assert catalog.script_font(script), f"no installed font draws {script}: run scripts/install-system.sh"
    r = ThreadRenderer()
    yield r
    r.close()


def save(name: str, img: Image.Image) -> None:
    """Keep what the test looked at (on a dark backdrop, the copy is white) for a person to see."""
    ARTIFACTS.mkdir(exist_ok=True)
    bg = Image.new("RGBA", img.size, (38, 56, 84, 255))
    bg.alpha_composite(img.convert("RGBA"))
    bg.convert("RGB").save(ARTIFACTS / f"scripts_{name}.png")


def ink(img: Image.Image) -> np.ndarray:
    return np.asarray(img.getchannel("A")) > INK


def blobs(mask: np.ndarray) -> list[np.ndarray]:
    """Connected ink blobs (8-connected, specks dropped) as boolean masks cropped to their boxes."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    out = []
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        if area >= 6:
            out.append(labels[y:y + h, x:x + w] == i)
    return out


def is_tofu(blob: np.ndarray) -> bool:
    """A .notdef box: a hollow rectangle, every edge inked along its length and nothing inside."""
    h, w = blob.shape
    if h < 8 or w < 5:
        return False
    edges = [blob[:2].any(axis=0).mean(), blob[-2:].any(axis=0).mean(), blob[:, :2].any(axis=1).mean(),
             blob[:, -2:].any(axis=1).mean()]
    inside = blob[h // 5: h - h // 5, w // 5: w - w // 5]
    return min(edges) > 0.9 and inside.mean() < 0.05


def template(text: str, font_family: str = DEFAULT_FAMILY, size: int = SIZE) -> tuple[str, str, int]:
    """(page, embedded @font-face css, font px) as the design stage makes them (steps.design)."""
    spec = DesignSpec(text=text, style_prompt="", font_family=font_family, font_weight="bold",
                      text_color="#ffffff", text_size=72, position="center", width=size, height=size)
    font_css = font_face_css(parse_font_family(font_family), text, BUNDLED_FONTS_DIR)
    design = design_template(spec, None, None, None, font_css)
    return design.html, font_css, design.font_px


def single_char_page(ch: str, text: str, font_css: str, px: int) -> str:
    """One character of the copy alone, with exactly the font stack and faces emitted for the copy."""
    stack = css_font_stack(parse_font_family(DEFAULT_FAMILY), text)
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><style>{font_css}\n'
        f"html, body {{ margin: 0; background: transparent; }}\n"
        f"div {{ position: absolute; left: 60px; top: 40px; color: #fff; font-weight: bold; font-size: {px}px;"
        f" font-family: {stack}; }}</style></head><body><div{copy_attributes(text)}>{html.escape(ch)}</div></body></html>"
    )


# ---- every glyph of every script is drawn -------------------------------------------------
@pytest.mark.parametrize("name", sorted(COPIES))
def test_copy_draws_every_character(name: str, renderer: ThreadRenderer) -> None:
    text = COPIES[name]
    page, font_css, px = template(text)
    stack = css_font_stack(parse_font_family(DEFAULT_FAMILY), text)
    assert f"font-family: {stack};" in page, "the template emits the stack chosen for the copy's scripts"
    assert FontCatalog(BUNDLED_FONTS_DIR).missing_glyphs(text, parse_font_family(DEFAULT_FAMILY)) == []
    layer = renderer.render(page)
    save(name, layer)
    mask = ink(layer)
    found = blobs(mask)
    visible = [c for c in text if is_visible(c)]
    assert mask.sum() > 0.08 * px * px * len(visible), f"{name}: too little ink for {len(visible)} characters"
    assert len(visible) // 3 <= len(found) <= 4 * len(visible), f"{name}: {len(found)} ink blobs"
    assert not any(is_tofu(b) for b in found), f"{name}: a missing-glyph box was drawn"
    # Each character alone, with the same faces and stack: blank or boxed characters show up here.
    for ch in dict.fromkeys(visible):
        alone = ink(renderer.render(single_char_page(ch, text, font_css, px), 256, 256))
        assert alone.sum() > 0.005 * px * px, f"{name}: {ch!r} (U+{ord(ch):04X}) is drawn blank"
        assert not any(is_tofu(b) for b in blobs(alone)), f"{name}: {ch!r} (U+{ord(ch):04X}) is a box"


@pytest.mark.parametrize("name", ["japanese", "chinese"])
def test_cjk_copy_is_not_left_to_the_blank_bundled_glyphs(name: str, renderer: ThreadRenderer) -> None:
    """What used to happen: NanumSquare first in the stack claims the ideographs with empty glyphs.
    Our page draws far more ink than the same page with NanumSquare alone, and in one typeface:
    the bundled face's range leaves the whole script (kana too) to the CJK font."""
    text = COPIES[name]
    page, font_css, _ = template(text)
    stack = css_font_stack(parse_font_family(DEFAULT_FAMILY), text)
    ours = ink(renderer.render(page))
    nanum_only = ink(renderer.render(page.replace(font_css, "").replace(stack, '"NanumSquare"')))
    assert ours.sum() > 2.5 * nanum_only.sum(), (ours.sum(), nanum_only.sum())
    region = "JP" if name == "japanese" else "SC"
    assert stack.index(f"Noto Sans CJK {region}") < stack.index("sans-serif")
    assert all(c == " " for c in embeddable_chars(str(BUNDLED_FONTS_DIR / "NanumSquareB.ttf"), text))
    assert "U+590F" not in font_css  # 夏: an empty glyph in NanumSquare, never inside its unicode-range


def test_llm_document_naming_only_the_bundled_font_still_draws_cjk(renderer: ThreadRenderer) -> None:
    """An LLM's page may name NanumSquare alone: the embedded face's unicode-range leaves the
    ideographs to Chromium's own fallback (told the language by build_document's lang=)."""
    text = COPIES["japanese"]
    font_css = font_face_css(parse_font_family(DEFAULT_FAMILY), text, BUNDLED_FONTS_DIR)
    clean = sanitize_html(f"<style>.ad {{ position: absolute; left: 40px; top: 60px; font: bold 48px NanumSquare;"
                          f" color: #fff; }}</style><div class=ad>{text}</div>")
    doc = build_document(clean, SIZE, 200, font_css)
    assert '<html dir="ltr" lang="ja">' in doc
    ours = ink(renderer.render(doc, SIZE, 200))
    save("llm_japanese", renderer.render(doc, SIZE, 200))
    blank_glyphs = ink(renderer.render(build_document(clean, SIZE, 200), SIZE, 200))  # the installed file alone
    assert ours.sum() > 2.5 * blank_glyphs.sum(), (ours.sum(), blank_glyphs.sum())
    rtl = build_document(sanitize_html(f"<div>{COPIES['arabic']}</div>"), SIZE, 200)
    assert '<html dir="rtl" lang="ar">' in rtl


def test_korean_keeps_nanumsquare(renderer: ThreadRenderer) -> None:
    text = COPIES["korean"]
    page, font_css, _ = template(text)
    stack = css_font_stack(parse_font_family(DEFAULT_FAMILY), text)
    assert stack.startswith('"NanumSquare"') and "U+AC00" not in font_css
    ours = ink(renderer.render(page))
    nanum_only = ink(renderer.render(page.replace(stack, '"NanumSquare"')))
    overlap = (ours & nanum_only).sum() / max(1, (ours | nanum_only).sum())
    assert overlap > 0.97, overlap


def test_traditional_copy_gets_the_traditional_font() -> None:
    stack = css_font_stack(parse_font_family(DEFAULT_FAMILY), "雙十一大促 全場五折")
    assert stack.index("Noto Sans CJK TC") < stack.index("sans-serif") and "CJK SC" not in stack


# ---- right to left ------------------------------------------------------------------------
def _spans(mask: np.ndarray, min_gap: float) -> list[tuple[int, int]]:
    """Horizontal ink runs separated by gaps wider than ``min_gap`` px (words, roughly)."""
    cols = np.nonzero(mask.any(axis=0))[0]
    out, start, prev = [], cols[0], cols[0]
    for c in cols[1:]:
        if c - prev > min_gap:
            out.append((start, prev))
            start = c
        prev = c
    out.append((start, prev))
    return out


@pytest.mark.parametrize(("text", "first_word"), [("تخفيضات الصيف 50%", "تخفيضات"), ("מבצע קיץ!", "מבצע")])
def test_rtl_copy_starts_at_the_right(text: str, first_word: str, renderer: ThreadRenderer) -> None:
    """dir="rtl": the first word of the copy is the rightmost ink, the number or the "!" that
    ends it sits at the left. The same page forced to ltr puts them elsewhere (the check bites)."""
    assert text_direction(text) == "rtl"
    page, _, px = template(text)
    assert 'dir="rtl"' in page
    word_width = np.ptp(np.nonzero(ink(renderer.render(template(first_word)[0])).any(axis=0))[0])

    def first_word_is_rightmost(p: str, name: str) -> bool:
        layer = renderer.render(p)
        save(name, layer)
        x0, x1 = _spans(ink(layer), 0.15 * px)[-1]
        return abs((x1 - x0) - word_width) <= max(3, 0.03 * word_width)

    tag = "arabic" if text_direction(first_word) == "rtl" and "ت" in text else "hebrew"
    assert first_word_is_rightmost(page, f"{tag}_rtl")
    assert not first_word_is_rightmost(page.replace('dir="rtl"', 'dir="ltr"'), f"{tag}_forced_ltr")


def test_direction_and_language_attributes() -> None:
    assert text_direction("تخفيضات الصيف") == "rtl" and text_direction("מבצע") == "rtl"
    assert text_direction("50% تخفيضات") == "rtl"  # digits are weak: the first strong letter decides
    assert text_direction("SALE تخفيضات") == "ltr" and text_direction("여름 세일") == "ltr"
    assert copy_attributes("تخفيضات الصيف") == ' dir="rtl" lang="ar"'
    assert copy_attributes("夏の限定セール") == ' dir="ltr" lang="ja"'
    assert copy_attributes("Summer SALE") == ' dir="ltr"'  # no language claimed for Latin
    assert 'dir="rtl"' not in template(COPIES["japanese"])[0]


def test_script_detection() -> None:
    assert detect_scripts(COPIES["japanese"]) == ["japanese"]
    assert detect_scripts("セール") == ["japanese"]  # kana alone
    assert detect_scripts(COPIES["chinese"]) == ["chinese-simplified"]
    assert detect_scripts("雙十一大促 全場五折") == ["chinese-traditional"]
    assert detect_scripts("全部五折") == ["chinese-simplified"]  # no telltale character: simplified
    assert detect_scripts("여름 夏の") == ["japanese", "hangul"]  # the Han owner's region first
    assert detect_scripts("大韓民國 만세") == ["hangul"]  # Hanja among Hangul
    assert detect_scripts("SALE 🎉 Скидки Εκπτώσεις") == ["latin", "emoji", "cyrillic", "greek"]
    for name, script in [("arabic", "arabic"), ("hebrew", "hebrew"), ("thai", "thai"), ("devanagari", "devanagari")]:
        assert detect_scripts(COPIES[name]) == [script]
    pairs = scripts_module._SIMP_TRAD.split()  # the telltale table: distinct pairs of distinct characters
    assert all(len(p) == 2 and p[0] != p[1] for p in pairs) and len(set(pairs)) == len(pairs)
    assert not scripts_module._SIMPLIFIED_ONLY & scripts_module._TRADITIONAL_ONLY


# ---- outlines, not the cmap ---------------------------------------------------------------
def _build_font(path: Path, family: str, cff: bool) -> None:
    """A tiny font: "A" is a square, U+E123 and 夏 are mapped to glyphs with no outline at all."""
    names = [".notdef", "space", "A", "blankE123", "blank590F"]
    fb = FontBuilder(1000, isTTF=not cff)
    fb.setupGlyphOrder(names)
    fb.setupCharacterMap({0x20: "space", 0x41: "A", 0xE123: "blankE123", 0x590F: "blank590F"})
    if cff:
        square = T2CharString(program=[500, 100, 0, "rmoveto", 400, 0, "rlineto", 0, 700, "rlineto", -400, 0,
                                       "rlineto", "endchar"])
        empty = T2CharString(program=[500, "endchar"])
        fb.setupCFF(family, {"FullName": family}, {n: square if n in (".notdef", "A") else empty for n in names}, {})
    else:
        pen = TTGlyphPen(None)
        pen.moveTo((100, 0))
        for point in ((500, 0), (500, 700), (100, 700)):
            pen.lineTo(point)
        pen.closePath()
        box = pen.glyph()
        fb.setupGlyf({n: box if n in (".notdef", "A") else TTGlyphPen(None).glyph() for n in names})
    fb.setupHorizontalMetrics({n: (600, 0) for n in names})
    fb.setupHorizontalHeader(ascent=800, descent=-200)
    fb.setupNameTable({"familyName": family, "styleName": "Regular"})
    fb.setupOS2()
    fb.setupPost()
    fb.save(str(path))


@pytest.mark.parametrize("cff", [False, True], ids=["glyf", "cff"])
def test_missing_glyphs_sees_empty_outlines(cff: bool, tmp_path: Path) -> None:
    family = "Blankface Cff" if cff else "Blankface"
    fonts = tmp_path / "fonts"
    fonts.mkdir()
    path = fonts / ("blank.otf" if cff else "blank.ttf")
    _build_font(path, family, cff)
    f = face(str(path))
    assert f is not None and f.kind == ("cff" if cff else "glyf")
    assert (f.draws("A"), f.draws("\ue123"), f.draws("夏"), f.draws(" "), f.draws("B")) == (True, False, False, True, None)
    catalog = FontCatalog(fonts)
    assert catalog.resolve(family) == family
    # No installed font has U+E123 (private use): only the blank glyph of the requested family.
    assert catalog.missing_glyphs("\ue123", ["sans-serif"]) == ["\ue123"]
    # The cmap "has" U+E123, but nothing draws it; 夏 is blank here too, but a CJK font draws it.
    assert catalog.missing_glyphs("A夏 \ue123", [family, "sans-serif"]) == ["\ue123"]
    assert catalog.missing_glyphs("A夏", [family]) == []
    assert set(embeddable_chars(str(path), "A夏\ue123")) == {" ", "A"}


def test_outline_reader_agrees_with_fonttools() -> None:
    """The mmap reader (cmap + glyf/CFF outlines without loading the font) against fontTools'
    own drawing, on the bundled fonts (thousands of empty glyphs) and the CJK collection (CFF)."""
    rnd = random.Random(7)
    paths = [(str(p), 0) for p in sorted(BUNDLED_FONTS_DIR.glob("*.ttf"))]
    cjk = FontCatalog(BUNDLED_FONTS_DIR).faces().get("Noto Sans CJK SC", ())
    paths += list(cjk[:1])
    empties = 0
    for path, index in paths:
        tt = TTFont(path, fontNumber=index, lazy=True)
        cmap, glyphs = tt.getBestCmap(), tt.getGlyphSet()
        mine = face(path, index)
        assert mine is not None
        for cp in rnd.sample(sorted(cmap), 400) + [0x590F, 0x30FC, 0xAC00]:
            if cp not in cmap or not is_visible(chr(cp)):
                continue
            pen = ControlBoundsPen(glyphs)
            glyphs[cmap[cp]].draw(pen)
            assert mine.draws(chr(cp)) is (pen.bounds is not None), (path, hex(cp))
            assert mine.glyph_id(cp) == tt.getGlyphID(cmap[cp])
            empties += pen.bounds is None
    assert empties > 100  # the bundled fonts' blank glyphs were among those compared


def test_list_fonts_reports_scripts() -> None:
    fonts = {f.family: f for f in FontCatalog(BUNDLED_FONTS_DIR).fonts()}
    nanum = fonts["NanumSquare"]
    assert nanum.hangul and {"hangul", "latin"} <= set(nanum.scripts)
    assert not {"japanese", "chinese-simplified", "chinese-traditional"} & set(nanum.scripts)  # blank ideographs
    assert {"japanese", "chinese-simplified", "chinese-traditional", "hangul"} <= set(fonts["Noto Sans CJK JP"].scripts)
    assert "arabic" in fonts["Noto Sans Arabic"].scripts and "thai" in fonts["Noto Sans Thai"].scripts
    assert fonts["Noto Color Emoji"].scripts == ["emoji"]


# ---- end to end ---------------------------------------------------------------------------
@pytest.mark.anyio
async def test_japanese_job_renders_its_copy(tmp_path: Path) -> None:
    product = base64.b64encode(EXAMPLE.read_bytes()).decode()
    text = COPIES["japanese"]
    async with JobManager(Settings(data_dir=tmp_path / "data")) as m:
        assert await m.wait_ready(READY_S)
        job = await m.submit(GenerateRequest(product_image=product, text_content=text, width=512, height=512))
        await wait_for_job(m, job.job_id, {"completed", "failed"}, timeout=120)
        st = m.status(job.job_id)
        assert st.status == "completed", st.error
        job_dir = m.store.job_dir(job.job_id)
        layer = Image.open(job_dir / "text.png")
        design = (job_dir / "design.html").read_text()
    save("job_japanese", layer)
    assert "Noto Sans CJK JP" in design or st.designer != "template"
    mask = ink(layer)
    # Fourteen full-width characters at the template's size (72 px at 1024, so 36 px here): the
    # blank-glyph layer had about a quarter of this.
    assert mask.sum() > 0.12 * 36 * 36 * len(text), mask.sum()
    assert len(blobs(mask)) >= len(text)

