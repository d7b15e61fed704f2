"""Hyphenation of Latin-script copy (issue #10): the renderer's Chromium has no hyphenation
dictionaries, so long words get soft hyphens from pyphen before the copy goes into the HTML.

Checked in real Chromium, on the template designer's document and on a sanitised LLM answer:
a long German or English word in a narrow box wraps at a dictionary break point with a visible
hyphen and stays inside its box; when the word fits, the picture is the one without soft hyphens.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cv2
import numpy as np
import pyphen
import pytest
from PIL import Image

from pipeline.config import BUNDLED_FONTS_DIR, Settings
from pipeline.fonts import fontconfig_file
from pipeline.worker.design.fontembed import font_face_css
from pipeline.worker.design.hyphenate import SHY, copy_language, hyphenate, hyphenate_html
from pipeline.worker.design.sanitize import build_document, sanitize_html
from pipeline.worker.layout import Box, LayoutPlan
from pipeline.worker.render.browser import CHROMIUM_FLAGS, TextRenderer
from pipeline.worker.stages.design import DesignSpec, design_template
from tests.conftest import REPO

ARTIFACTS = str(REPO / "test-artifacts")  # ignored by git, like every test's pictures


# ---- where the soft hyphens go -------------------------------------------------------------
def test_long_words_get_soft_hyphens_at_the_dictionarys_break_points() -> None:
    out = hyphenate("Donaudampfschifffahrtsgesellschaft jetzt", "de")
    word = out.split(" ")[0]
    assert word.replace(SHY, "") == "Donaudampfschifffahrtsgesellschaft" and out.endswith(" jetzt")
    assert word.split(SHY) == pyphen.Pyphen(lang="de", left=2, right=3).inserted(word.replace(SHY, "")).split("-")
    assert len(word.split(SHY)) >= 6
    assert hyphenate("Extraordinary", "en").count(SHY) >= 2
    assert hyphenate("Summer sale tonight", "en") == "Summer sale tonight"  # short words are never split


@pytest.mark.parametrize("token", [
    "www.example.com/Sommerschlussverkauf", "https://shop.example.de/Angebote", "angebote@example.de",
    "€1.299,99", "Sommerschlussverkauf2026", "19,99€", "50%",
])
def test_urls_addresses_numbers_and_prices_stay_whole(token: str) -> None:
    assert hyphenate(f"Sommerschlussverkauf {token}", "de").split(" ")[1] == token


def test_markup_entities_and_other_scripts_stay_whole() -> None:
    html = '<div class="copy">Sommer&shy;<strong class="extraordinary">Schlussverkauf</strong> &amp; mehr</div>'
    out = hyphenate_html(html, "de")
    assert out.replace(SHY, "") == html  # only soft hyphens were added ...
    assert 'class="extraordinary"' in out and "&shy;" in out and "&amp;" in out  # ... never in tags or entities
    assert "Schluss" + SHY + "ver" + SHY + "kauf" in out
    assert hyphenate("夏の限定セール", "de") == "夏の限定セール"
    assert hyphenate("Sommerschlussverkauf", None) == "Sommerschlussverkauf"


@pytest.mark.parametrize(("copy", "lang"), [
    ("Sommerschlussverkauf für alle", "de"), ("Extraordinary offers for everyone", "en"),
    ("Découvrez nos nouveautés", "fr"), ("¡Oferta extraordinaria para todos!", "es"),
    ("여름 세일 Sonderangebot", None), ("夏の限定セール", None), ("Распродажа предложений", "ru"),
])
def test_the_copys_language_picks_the_dictionary(copy: str, lang: str | None) -> None:
    assert copy_language(copy) == lang


# ---- in real Chromium -----------------------------------------------------------------------
class ThreadRenderer:
    """The real TextRenderer on a thread of its own (sync Playwright keeps an event loop in its thread,
    and the ``dom`` fixture's is in this one)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1)
        self._r = self._pool.submit(TextRenderer, Settings().chromium_path, BUNDLED_FONTS_DIR).result()

    def render(self, html: str, width: int, height: int) -> Image.Image:
        return self._pool.submit(self._r.render, html, width, height).result()

    def close(self) -> None:
        self._pool.submit(self._r.close).result()
        self._pool.shutdown()


@pytest.fixture(scope="module")
def renderer() -> Iterator[ThreadRenderer]:
    r = ThreadRenderer()
    yield r
    r.close()


@pytest.fixture(scope="module")
def dom() -> Iterator[Any]:
    """The same Chromium and fonts with JavaScript on, to read where lines break (the renderer has it off)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        env = dict(os.environ, FONTCONFIG_FILE=str(fontconfig_file(BUNDLED_FONTS_DIR, True)))
        browser = pw.chromium.launch(executable_path=Settings().chromium_path, args=CHROMIUM_FLAGS, env=env)
        yield browser
        browser.close()


_LINES_JS = """sel => {
  const el = document.querySelector(sel);
  const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  const out = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (let i = 0; i < node.data.length; i++) {
      const r = document.createRange(); r.setStart(node, i); r.setEnd(node, i + 1);
      // Its last box: a character just after a break also reports a box at the end of the line
      // before (and its bounding rectangle spans both lines).
      const boxes = r.getClientRects();
      const b = boxes[boxes.length - 1];
      if (b) out.push([node.data[i], Math.round(b.top), b.left, b.right]);
    }
  }
  return out;
}"""


def _lines(browser: Any, doc: str, size: tuple[int, int], selector: str) -> list[str]:
    """The text of each rendered line of ``selector`` (soft hyphens kept where they are)."""
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    try:
        page.set_content(doc)
        page.evaluate("document.fonts.ready")
        chars = page.evaluate(_LINES_JS, selector)
    finally:
        page.close()
    lines: dict[int, str] = {}
    for ch, top, left, right in chars:
        if right > left or ch == SHY:  # skip collapsed whitespace
            lines[top] = lines.get(top, "") + ch
    return [lines[t] for t in sorted(lines)]


def _template(word: str, box: Box, font_px: int, size: tuple[int, int]) -> str:
    spec = DesignSpec(text=word, style_prompt="", font_family="NanumSquare, sans-serif", font_weight="bold",
                      text_color="#1d1d1f", text_size=72, position="center", width=size[0], height=size[1])
    plan = LayoutPlan(canvas=size, product_box=None, copy_box=box, ground=None, panel=False, font_px=font_px,
                      lines=3, region="center", lang="de", measure_px=box.w)
    css = font_face_css(["NanumSquare"], word, BUNDLED_FONTS_DIR)
    return design_template(spec, None, None, None, css, plan).html


def _ink(img: Image.Image) -> np.ndarray:
    return np.asarray(img.getchannel("A")) > 96


def _dash_at_line_ends(ink: np.ndarray) -> list[bool]:
    """Per line of ink (rows separated by blank rows): whether its rightmost glyph is a dash
    (a short, wide bar in the middle of the line)."""
    rows = np.flatnonzero(ink.any(axis=1))
    bands, start = [], rows[0]
    for a, b in zip(rows, rows[1:], strict=False):
        if b > a + 1:
            bands.append((start, a + 1))
            start = b
    bands.append((start, rows[-1] + 1))
    out = []
    for top, bottom in bands:
        n, _, stats, _ = cv2.connectedComponentsWithStats(ink[top:bottom].astype(np.uint8), connectivity=8)
        x, y, w, h, _ = max(stats[1:], key=lambda s: s[0] + s[2])
        line_h = bottom - top
        out.append(bool(w > 1.8 * h and h < 0.25 * line_h and 0.2 * line_h < y < 0.8 * line_h))
    return out


WORD_DE = "Donaudampfschifffahrtsgesellschaft"


def test_template_wraps_a_long_word_with_a_visible_hyphen(renderer: ThreadRenderer, dom: Any) -> None:
    size, box = (640, 480), Box(170, 60, 300, 360)
    doc = _template(WORD_DE, box, 52, size)
    assert SHY in doc
    lines = _lines(dom, doc, size, ".copy")
    assert len(lines) >= 3, lines
    breaks = pyphen.Pyphen(lang="de", left=2, right=3).positions(WORD_DE)
    done = 0
    for line in lines[:-1]:  # every line but the last ends at a dictionary break point
        assert line.endswith(SHY), lines
        done += len(line.replace(SHY, ""))
        assert done in breaks, (lines, breaks)
    assert "".join(lines).replace(SHY, "") == WORD_DE
    img = renderer.render(doc, *size)
    os.makedirs(ARTIFACTS, exist_ok=True)
    img.save(os.path.join(ARTIFACTS, "hyphenation_template_de.png"))
    ink = _ink(img)
    xs = np.flatnonzero(ink.any(axis=0))
    assert xs.min() >= box.x and xs.max() < box.right  # nothing overflows the copy box
    dashes = _dash_at_line_ends(ink)
    assert len(dashes) == len(lines) and all(dashes[:-1]) and not dashes[-1], dashes


def test_a_word_that_fits_shows_no_hyphen(renderer: ThreadRenderer, dom: Any) -> None:
    size, box = (900, 300), Box(40, 40, 820, 220)
    doc = _template("Sommerschlussverkauf", box, 56, size)
    assert SHY in doc  # the break points are there ...
    assert len(_lines(dom, doc, size, ".copy")) == 1
    plain = renderer.render(doc.replace(SHY, ""), *size)
    shy = renderer.render(doc, *size)
    assert np.array_equal(np.asarray(shy), np.asarray(plain))  # ... and invisible when nothing breaks
    assert not any(_dash_at_line_ends(_ink(shy)))


def test_an_llm_design_is_hyphenated_too(renderer: ThreadRenderer, dom: Any) -> None:
    word = "Incomprehensibilities"
    answer = (f'<div class="c" style="width: 260px; margin: 40px; font-size: 56px; font-family: NanumSquare; '
              f'color: #222">{word}</div>')
    clean = sanitize_html(answer)
    doc = build_document(clean, 400, 400, font_face_css(["NanumSquare"], clean.text, BUNDLED_FONTS_DIR))
    lines = _lines(dom, doc, (400, 400), ".c")
    assert len(lines) >= 2 and all(line.endswith(SHY) for line in lines[:-1]), lines
    img = renderer.render(doc, 400, 400)
    img.save(os.path.join(ARTIFACTS, "hyphenation_llm_en.png"))
    ink = _ink(img)
    assert np.flatnonzero(ink.any(axis=0)).max() < 40 + 260
    assert all(_dash_at_line_ends(ink)[:-1])
