"""Embed the chosen bundled fonts in the text layer as ``data:`` ``@font-face`` rules.

Each face is subset to the characters of the copy that it really draws (a few KB instead of
~1 MB), with a ``unicode-range`` of exactly those characters, so the page never needs a font
request and renders the same whatever fonts the host has installed. The range matters: the
bundled NanumSquare maps thousands of CJK ideographs to empty glyphs, and Chromium takes the
first family whose font has a character; a web font with this family name also hides the
installed file of the same name. Characters outside the range fall through to the next family
of the stack (``FontCatalog.font_stack``: a CJK, Arabic... font that draws them, from fontconfig).
"""

from __future__ import annotations

import base64
import io
import logging
from functools import lru_cache
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTFont

from pipeline.fonts import embeddable_chars

logging.getLogger("fontTools").setLevel(logging.WARNING)  # the subsetter narrates every table at INFO

_SUBSET_OPTIONS = subset.Options()
_SUBSET_OPTIONS.layout_features = ["*"]  # keep kerning and ligatures
_SUBSET_OPTIONS.notdef_outline = True
_SUBSET_OPTIONS.name_IDs = ["*"]


@lru_cache(maxsize=64)
def _face_info(path: str) -> tuple[str, int, str]:
    font = TTFont(path, lazy=True)
    family = font["name"].getBestFamilyName() or Path(path).stem
    weight = int(font["OS/2"].usWeightClass) if "OS/2" in font else 400
    style = "italic" if "head" in font and font["head"].macStyle & 0b10 else "normal"
    return family, weight, style


@lru_cache(maxsize=256)
def _subset(path: str, chars: str) -> bytes:
    font = TTFont(path)
    subsetter = subset.Subsetter(_SUBSET_OPTIONS)
    subsetter.populate(text=chars)
    subsetter.subset(font)
    buf = io.BytesIO()
    font.save(buf)
    return buf.getvalue()


def bundled_faces(fonts_dir: Path) -> dict[str, list[str]]:
    """Family name -> font files shipped in ``fonts_dir``."""
    faces: dict[str, list[str]] = {}
    for path in sorted(fonts_dir.glob("*.[ot]tf")):
        family, _, _ = _face_info(str(path))
        faces.setdefault(family, []).append(str(path))
    return faces


def unicode_range(chars: str) -> str:
    """A CSS ``unicode-range`` value for the characters, consecutive code points merged."""
    cps = sorted({ord(c) for c in chars})
    parts: list[str] = []
    start = prev = None
    for cp in [*cps, None]:
        if cp is not None and prev is not None and cp == prev + 1:
            prev = cp
            continue
        if start is not None:
            parts.append(f"U+{start:X}" if start == prev else f"U+{start:X}-{prev:X}")
        start = prev = cp
    return ", ".join(parts)


def font_face_css(families: list[str], text: str, fonts_dir: Path) -> str:
    """``@font-face`` rules (data: URLs, subset to what they draw of ``text``, see
    ``pipeline.fonts.embeddable_chars``) for the bundled families named. Every named bundled face
    gets a rule, even one that draws nothing of the copy but a space: its range then keeps the
    installed file's blank glyphs out of the page."""
    faces = bundled_faces(fonts_dir)
    rules = []
    for family in families:
        for path in faces.get(family, ()):
            _, weight, style = _face_info(path)
            # What it draws of the copy and its case variants (a style may uppercase it), by script.
            drawn = "".join(sorted(embeddable_chars(path, text))) or " "
            data = base64.b64encode(_subset(path, drawn)).decode()
            rules.append(
                f'@font-face {{ font-family: "{family}"; font-weight: {weight}; font-style: {style}; '
                f'src: url(data:font/ttf;base64,{data}) format("truetype"); unicode-range: {unicode_range(drawn)}; }}'
            )
    return "\n".join(rules)
