"""The copy's script and lines: language for line breaking, generous advance widths, greedy line counts.

No layout engine: widths are deliberate over-estimates and breaks are taken only where Chromium may
take them too (spaces; CJK characters; never before closing punctuation), so a line count here is an
upper bound of what the template's CSS draws.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class TextStyle:
    """What changes the copy's width besides the font size (from the style prompt)."""

    lang: str = "en"
    letter_spacing_em: float = 0.0
    uppercase: bool = False


# Code point ranges that name a language for line breaking and hyphenation (first match wins).
_SCRIPT_RANGES = (
    ("ko", ((0xAC00, 0xD7A3), (0x1100, 0x11FF), (0x3130, 0x318F))),
    ("ja", ((0x3040, 0x30FF),)),
    ("zh", ((0x4E00, 0x9FFF), (0x3400, 0x4DBF))),
    ("ar", ((0x0600, 0x06FF),)),
    ("he", ((0x0590, 0x05FF),)),
    ("ru", ((0x0400, 0x04FF),)),
)


def _char_lang(ch: str) -> str | None:
    cp = ord(ch)
    for lang, ranges in _SCRIPT_RANGES:
        if any(lo <= cp <= hi for lo, hi in ranges):
            return lang
    return "en" if ch.isalpha() else None


def script_lang(text: str) -> str:
    """The copy's language as far as line breaking and hyphenation care (an HTML lang tag)."""
    counts: dict[str, int] = {}
    for ch in text:
        if (key := _char_lang(ch)) is not None:
            counts[key] = counts.get(key, 0) + 1
    if counts.get("ko"):
        return "ko"  # Hangul with some Hanja or Latin is still Korean
    if counts.get("ja"):
        return "ja"  # kana decide Japanese over Chinese
    return max(counts, key=lambda k: counts[k]) if counts else "en"


def is_rtl(lang: str) -> bool:
    return lang in ("ar", "he")


def char_em(ch: str) -> float:
    """A generous advance width in em (bold sans fonts, the colour emoji font)."""
    cp = ord(ch)
    if ch in " \u00a0\u3000":
        return 1.0 if ch == "\u3000" else 0.34
    if unicodedata.category(ch) in ("Mn", "Me", "Cf") or 0xFE00 <= cp <= 0xFE0F or 0x1F3FB <= cp <= 0x1F3FF:
        return 0.0  # combining marks, variation selectors, ZWJ, skin tones: no advance of their own
    if cp >= 0x1F000 or 0x2600 <= cp <= 0x27BF or 0x2B00 <= cp <= 0x2BFF:
        return 1.32  # colour emoji are wider than an em
    if unicodedata.east_asian_width(ch) in ("W", "F"):
        return 1.02
    if ch in "mwMW@%&—…":
        return 1.06
    if ch in "ijlI.,:;'!|`":
        return 0.4
    if ch.isupper() or ch.isdigit() or ch in "#$?~€£₩¥":
        return 0.78
    return 0.66


def _is_cjk_char(ch: str) -> bool:
    cp = ord(ch)
    return 0x2E80 <= cp <= 0x9FFF or 0xF900 <= cp <= 0xFAFF or 0xFF00 <= cp <= 0xFFEF or 0x20000 <= cp <= 0x3FFFF


# No line may start with these (Chromium's line breaker and CJK kinsoku agree on them).
_NO_START = set(",.!?:;)]}%、。，．！？：；）」』】〉》〕｝ー・…‥゛゜ぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮヵヶ")
# No line may end with these.
_NO_END = set("([{「『【〈《〔｛$₩¥£€")


def _atoms(paragraph: str, lang: str) -> list[tuple[str, bool]]:
    """The paragraph as unbreakable pieces, each with whether a space precedes it.

    Breaks only where Chromium may break: at spaces, and for Chinese/Japanese between CJK
    characters. Korean (``keep-all``) and Latin break at spaces only (hyphenation and breaks
    after hyphens would only make fewer lines)."""
    atoms: list[tuple[str, bool]] = []
    for i, word in enumerate(paragraph.split(" ")):
        if not word:
            continue
        spaced = bool(atoms) or i > 0
        if lang in ("zh", "ja"):
            pieces: list[str] = []
            for ch in word:
                glue = pieces and (ch in _NO_START or not _is_cjk_char(ch) and not _is_cjk_char(pieces[-1][-1])
                                   or pieces[-1][-1] in _NO_END)
                if glue:
                    pieces[-1] += ch
                else:
                    pieces.append(ch)
            atoms.append((pieces[0], spaced))
            atoms.extend((p, False) for p in pieces[1:])
        else:
            atoms.append((word, spaced))
    return atoms


def text_width_em(s: str, style: TextStyle = TextStyle()) -> float:
    if style.uppercase:
        s = s.upper()
    return sum(char_em(c) + (style.letter_spacing_em if char_em(c) else 0.0) for c in s)


def count_lines(text: str, font_px: int, width_px: int, style: TextStyle = TextStyle()) -> int:
    """Lines the copy takes at ``font_px`` in a column ``width_px`` wide (greedy, an upper bound)."""
    avail = width_px / font_px
    space = char_em(" ") + style.letter_spacing_em
    lines = 0
    for paragraph in text.split("\n"):
        lines += 1
        used = 0.0
        for atom, spaced in _atoms(paragraph, style.lang):
            w = text_width_em(atom, style)
            if used and used + (space if spaced else 0.0) + w <= avail:
                used += (space if spaced else 0.0) + w
                continue
            if used:
                lines += 1
                used = 0.0
            if w <= avail:
                used = w
                continue
            # Longer than the column: overflow-wrap: anywhere breaks it between characters.
            for ch in atom:
                cw = text_width_em(ch, style)
                if used and used + cw > avail:
                    lines += 1
                    used = 0.0
                used += cw
    return lines


def text_measure(text: str, font_px: int, width_px: int, style: TextStyle = TextStyle()) -> int:
    """The narrowest line length that still sets the copy in as few lines as ``width_px`` does.

    CSS cannot shrink a wrapped block to its longest line, so a panel would span the whole box;
    with this as its max-width it hugs the copy. Safe: the estimate's widths are upper bounds and
    greedy wrapping of narrower pieces never takes more lines."""
    target = count_lines(text, font_px, width_px, style)
    lo, hi = 1, width_px
    while lo < hi:
        mid = (lo + hi) // 2
        if count_lines(text, font_px, mid, style) <= target:
            hi = mid
        else:
            lo = mid + 1
    return min(width_px, hi + 2)
