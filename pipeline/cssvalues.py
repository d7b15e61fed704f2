"""Strict validators for the few CSS values a request may carry (colours, gradients, fonts).

These values end up inside a stylesheet, so they are checked against a small grammar
instead of being escaped: anything outside it (``url(``, ``;``, braces, quotes,
backslashes, comments) is refused with a message the caller can act on.
"""

from __future__ import annotations

import re
from pathlib import Path

NAMED_COLORS = frozenset(
    (
        "black white red green blue yellow orange purple pink brown gray grey silver gold navy teal maroon "
        "olive lime aqua cyan magenta fuchsia coral crimson salmon tomato khaki ivory beige lavender indigo "
        "violet turquoise tan chocolate orchid plum transparent currentcolor darkred darkblue darkgreen "
        "darkgray darkgrey lightgray lightgrey lightblue lightgreen skyblue steelblue royalblue midnightblue "
        "slategray whitesmoke snow linen wheat goldenrod firebrick hotpink deeppink forestgreen seagreen "
        "darkorange orangered mintcream honeydew"
    ).split()
)

_NUM = r"[+-]?(?:\d+\.?\d*|\.\d+)"
_HEX = r"#(?:[0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})"
_FUNC_ARG = rf"{_NUM}(?:%|deg)?"
_FUNC = rf"(?:rgba?|hsla?)\(\s*{_FUNC_ARG}(?:\s*[,/ ]\s*{_FUNC_ARG}){{2,3}}\s*\)"
_COLOR = rf"(?:{_HEX}|{_FUNC}|[a-zA-Z]+)"
_COLOR_RE = re.compile(rf"^{_COLOR}$")
_STOP = rf"{_COLOR}(?:\s+{_NUM}(?:%|px))?(?:\s+{_NUM}(?:%|px))?"
_DIRECTION = rf"(?:{_NUM}(?:deg|turn|rad)|to\s+(?:top|bottom|left|right)(?:\s+(?:top|bottom|left|right))?)"
_SIDE = r"(?:center|top|bottom|left|right)"
_RADIAL_SHAPE = rf"(?:circle|ellipse)(?:\s+at\s+{_SIDE}(?:\s+{_SIDE})?)?"
_GRADIENT_RE = re.compile(
    rf"^(?:repeating-)?(?:linear-gradient\(\s*(?:{_DIRECTION}\s*,\s*)?|radial-gradient\(\s*(?:{_RADIAL_SHAPE}\s*,\s*)?)"
    rf"{_STOP}(?:\s*,\s*{_STOP})+\s*\)$"
)
_FONT_NAME_RE = re.compile(r"^[\w \-.가-힣]+$")

GENERIC_FAMILIES = frozenset({"serif", "sans-serif", "monospace", "cursive", "fantasy", "system-ui", "emoji"})


def _colour_words_ok(value: str) -> bool:
    words = re.findall(r"(?<![#\w-])([a-zA-Z]+)(?![\w(-])", value)
    allowed = NAMED_COLORS | {"to", "top", "bottom", "left", "right", "at", "center", "circle", "ellipse"}
    return all(w.lower() in allowed for w in words)


def validate_color(value: str) -> str:
    """Accept a CSS colour or a linear/radial gradient of colours; raise ValueError otherwise."""
    v = value.strip()
    if len(v) > 300:
        raise ValueError("colour value is too long (300 characters at most)")
    is_plain = bool(_COLOR_RE.match(v)) and (v.startswith("#") or "(" in v or v.lower() in NAMED_COLORS)
    is_gradient = bool(_GRADIENT_RE.match(v))
    if not (is_plain or is_gradient) or not _colour_words_ok(v):
        raise ValueError(
            "text_color must be a CSS colour (#RRGGBB, rgb(), hsl(), a colour name) or a "
            "linear-/radial-gradient of such colours, e.g. 'linear-gradient(45deg, #FFD700, #FFA500)'"
        )
    return v


def is_gradient(value: str) -> bool:
    return "gradient(" in value


def parse_font_family(value: str) -> list[str]:
    """Split a CSS font-family list into bare names; raise ValueError on anything unsafe."""
    names = [n.strip().strip("'\"").strip() for n in value.split(",")]
    names = [n for n in names if n]
    if not names or len(names) > 6:
        raise ValueError("font_family must list 1 to 6 font names, e.g. 'NanumSquare, sans-serif'")
    for n in names:
        if len(n) > 64 or not _FONT_NAME_RE.match(n):
            raise ValueError(f"font name {n[:40]!r} has characters that are not allowed")
    return names


def css_font_stack(names: list[str], text: str | None = None, fonts_dir: Path | None = None) -> str:
    """Render validated names back to a CSS list; generic families stay unquoted.

    With ``text`` (the copy), the list is the one to emit for it: the names, then a font that
    really draws each script of the copy (the right CJK region first), then emoji, then the
    generic families (``pipeline.fonts.FontCatalog.font_stack``, over the fonts fontconfig has
    with ``fonts_dir``, by default the bundled folder, added)."""
    if text is not None:
        # pipeline.fonts imports this module, so it is imported when used.
        from pipeline.fonts import shared_catalog

        names = shared_catalog(fonts_dir).font_stack(names, text)
    return ", ".join(n if n.lower() in GENERIC_FAMILIES else f'"{n}"' for n in names)
