"""The HTML/CSS sanitiser (nh3 + tinycss2) on its own: what a designer may use survives, what could
fetch, run, escape or override the canvas does not. The hostile-page tests are in test_design.py."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.config import BUNDLED_FONTS_DIR, Settings
from pipeline.worker.design.sanitize import build_document, sanitize_css, sanitize_declarations, sanitize_html
from pipeline.worker.render.browser import TextRenderer
from tests.conftest import ARTIFACTS

DESIGN = """```html
<!doctype html><html><head><title>ad</title><style>
/* the designer's stylesheet */
.ad { position: absolute; left: 40px; top: 40px; display: inline-block; font: 800 72px 'NanumSquare', sans-serif;
      background: linear-gradient(90deg, #ff0000, #0000ff); -webkit-background-clip: text;
      background-clip: text; -webkit-text-fill-color: transparent; letter-spacing: -1px;
      transform: rotate(-3deg) translateY(calc(10px + 2%)); text-shadow: 0 2px 4px rgba(0, 0, 0, .4); }
.ad > span:not(.x) { display: block; }
@media (max-width: 100px) { .ad { color: red } }
</style></head><body><div class="ad" dir="ltr" lang="ko" style="filter: drop-shadow(0 0 2px #000)">
세일 <span>SALE</span></div></body></html>
```"""


def test_designer_css_survives_exactly() -> None:
    s = sanitize_html(DESIGN)
    assert s.css.splitlines() == [
        ".ad { position: absolute; left: 40px; top: 40px; display: inline-block; "
        "font: 800 72px \"NanumSquare\", sans-serif; background: linear-gradient(90deg, #ff0000, #0000ff); "
        "-webkit-background-clip: text; background-clip: text; -webkit-text-fill-color: transparent; "
        "letter-spacing: -1px; transform: rotate(-3deg) translateY(calc(10px + 2%)); "
        "text-shadow: 0 2px 4px rgba(0, 0, 0, .4); }",
        ".ad > span:not(.x) { display: block; }",
    ]
    assert s.body.strip() == ('<div class="ad" dir="ltr" lang="ko" style="filter: drop-shadow(0 0 2px #000)">'
                              "\n세일 <span>SALE</span></div>")
    assert s.text == "세일 SALE" and s.removed == ("css:@media", "title")


@pytest.mark.parametrize(("declarations", "kept", "note"), [
    ("color: red; background: url(http://x/a.png)", "color: red", "css:background"),
    ("background-image: image-set('a.png' 1x)", "", "css:background-image"),
    ("width: expression(alert(1))", "", "css:width"),
    ("width: expr/**/ession(alert(1))", "", "css:width"),  # a comment cannot glue a function name
    ("background: \\75 rl(http://x/)", "", "css:background"),  # escapes: dropped, whatever they spell
    ("c\\olor: red", "", "css:color"),
    ("color: \\72 ed", "", "css:color"),
    # Only the declaration written with the escape goes, on whichever line it is.
    ("color: red;\r\n  font-family: '😀';\n  top: \\31 px;\n  left: 2px", "color: red; font-family: \"😀\"; left: 2px",
     "css:top"),
    ("behavior: url(x.htc); -moz-binding: url(x.xml)", "", "css:behavior"),
    ("content: 'x'; cursor: pointer; --var: red", "", "css:content"),
    ("color: red !important", "color: red", None),  # our canvas rules must keep winning
    ("font-family: 'a</style><script>'", "", "css:font-family"),
    ("width: " + "calc(" * 5000 + "1px" + ")" * 5000, "", "css:width"),  # no RecursionError
    ("color: red; @import url(x); top: 1px", "color: red; top: 1px", "css:@import"),
])
def test_declarations(declarations: str, kept: str, note: str | None) -> None:
    notes: set[str] = set()
    assert sanitize_declarations(declarations, notes) == kept
    assert note is None or note in notes, notes


def test_stylesheet_rules_and_selectors() -> None:
    notes: set[str] = set()
    css = sanitize_css(
        "@import 'x.css'; @font-face { font-family: x; src: url(x.woff) } "
        "div</style><script>{ color: red } a\\3c b { color: red } "
        "h1, .a .b, #c > p + p ~ p, [lang=ko], li:nth-child(2n + 1) { color: blue } "
        "p { & span { color: red } color: green } " + "a:not(" * 500 + "b" + ")" * 500 + " { color: red }",
        notes,
    )
    assert css.splitlines() == ["h1, .a .b, #c > p + p ~ p, [lang=ko], li:nth-child(2n + 1) { color: blue; }",
                                "p { color: green; }"]
    assert {"css:@import", "css:@font-face", "css:selector", "css:nested rule"} <= notes


def test_markup_allowlist_and_notes() -> None:
    s = sanitize_html(
        '<div onclick="x()" data-x="1" class="ok name" id="a;b" dir="RTL" lang="ar-EG"><img src=x onerror=y>'
        '<a href="javascript:x">안녕</a><iframe src="http://x"></iframe><!-- comment --><p dir="sideways">'
        "&lt;b&gt; &amp;</p></div><template><div>hidden</div></template>"
    )
    # Attributes as nh3 writes them (its order); dir lowercased, the invalid id and p's dir dropped.
    assert s.body in ('<div class="ok name" dir="rtl" lang="ar-EG">안녕<p>&lt;b&gt; &amp;</p></div>',
                      '<div class="ok name" lang="ar-EG" dir="rtl">안녕<p>&lt;b&gt; &amp;</p></div>')
    assert s.text == "안녕 <b> &"
    assert s.removed == ("@data-x", "@onclick", "a", "iframe", "img", "template")
    with pytest.raises(ValueError, match="too large"):
        sanitize_html("<div>" + "x" * 400_000 + "</div>")


def test_sanitised_design_renders_as_designed(tmp_path: Path) -> None:
    """The kept CSS still does what the designer meant in the real renderer: gradient-filled copy."""
    doc = build_document(sanitize_html(DESIGN), 512, 256)
    with ThreadPoolExecutor(1) as pool:  # sync Playwright keeps a loop in its thread
        def render() -> Image.Image:
            r = TextRenderer(Settings().chromium_path, BUNDLED_FONTS_DIR, 15)
            try:
                return r.render(doc, 512, 256)
            finally:
                r.close()

        layer = pool.submit(render).result()
    ARTIFACTS.mkdir(exist_ok=True)
    layer.save(ARTIFACTS / "sanitised_gradient_copy.png")
    a = np.asarray(layer.convert("RGBA")).astype(int)
    opaque = a[..., 3] > 200
    reddish = opaque & (a[..., 0] > 150) & (a[..., 2] < 100)
    bluish = opaque & (a[..., 2] > 150) & (a[..., 0] < 100)
    assert reddish.sum() > 300 and bluish.sum() > 300, (reddish.sum(), bluish.sum())
    assert a[0, 0, 3] == 0 and a[-1, -1, 3] == 0  # the canvas stays transparent
