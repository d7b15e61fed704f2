"""Font discovery: the bundled fonts/ folder plus whatever fontconfig knows on the system.

The renderer sees exactly the same set (it runs Chromium with the same fontconfig file),
so a font that list_fonts reports is a font the text layer can use.

Coverage is judged on real outlines, not on the cmap: the bundled NanumSquare fonts map
thousands of CJK ideographs (and U+30FC) to glyphs with no contours, and Chromium takes the
first font in the stack whose cmap has a character, blank or not. So a character counts as
drawn by a font only if its glyph has ink (``Face.draws``); the copy's scripts pick fallback
fonts that really draw them (``FontCatalog.font_stack``), and the bundled fonts are embedded
with a ``unicode-range`` of what they really draw (``pipeline.worker.design.fontembed``), so
Chromium falls through to the next family for the rest.

Modules, one job each: ``fontconfig`` (the config file and fc-list/fc-match), ``cff`` (CFF
charstrings), ``outlines`` (``Face``: which characters a face really draws), ``scripts``
(script detection, ``dir``/``lang``, what a bundled face embeds) and ``catalog``
(``FontCatalog``: families, fallback stacks, missing glyphs). Everything other modules use is
re-exported here.
"""

from __future__ import annotations

from pipeline.fonts.catalog import FontCatalog, shared_catalog
from pipeline.fonts.fontconfig import font_id, fontconfig_file
from pipeline.fonts.outlines import Face, drawn_chars, face, is_visible
from pipeline.fonts.scripts import (
    CJK_SCRIPTS,
    RTL_SCRIPTS,
    SCRIPT_FONTS,
    SCRIPT_LANG,
    SCRIPT_SAMPLES,
    SCRIPTS,
    char_scripts,
    copy_attributes,
    detect_scripts,
    embeddable_chars,
    text_direction,
    text_lang,
)

__all__ = [
    "CJK_SCRIPTS",
    "RTL_SCRIPTS",
    "SCRIPTS",
    "SCRIPT_FONTS",
    "SCRIPT_LANG",
    "SCRIPT_SAMPLES",
    "Face",
    "FontCatalog",
    "char_scripts",
    "copy_attributes",
    "detect_scripts",
    "drawn_chars",
    "embeddable_chars",
    "face",
    "font_id",
    "fontconfig_file",
    "is_visible",
    "shared_catalog",
    "text_direction",
    "text_lang",
]
