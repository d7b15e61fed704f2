"""Embed the chosen bundled fonts in the text layer as ``data:`` ``@font-face`` rules.

Each face is subset to the characters of the copy (a few KB instead of ~1 MB), so the page
never needs a font request and renders the same whatever fonts the host has installed.
System fonts (emoji, CJK fallback) still come from fontconfig.
"""

from __future__ import annotations

import base64
import io
import logging
from functools import lru_cache
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTFont

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


def font_face_css(families: list[str], text: str, fonts_dir: Path) -> str:
    """``@font-face`` rules (data: URLs, subset to ``text``) for the bundled families named."""
    faces = bundled_faces(fonts_dir)
    chars = "".join(sorted(set(text + " ")))
    rules = []
    for family in families:
        for path in faces.get(family, ()):
            _, weight, style = _face_info(path)
            data = base64.b64encode(_subset(path, chars)).decode()
            rules.append(
                f'@font-face {{ font-family: "{family}"; font-weight: {weight}; font-style: {style}; '
                f'src: url(data:font/ttf;base64,{data}) format("truetype"); }}'
            )
    return "\n".join(rules)
