"""Soft hyphens in the copy's long words, in the copy's language (pyphen's dictionaries).

The renderer's Chromium ships no hyphenation dictionaries, so ``hyphens: auto`` does nothing
there and a long word overflows its box or leaves ragged lines. Chromium does honour soft
hyphens (U+00AD): invisible unless a line breaks there, then drawn as a hyphen. So before the
copy goes into a document, each long word of a Latin (or Cyrillic) script copy gets them where
its language's dictionary allows a break. Never inside URLs, e-mail addresses, numbers or prices
(any token with a digit), markup, entities, or CJK, Hangul, Arabic or Hebrew text.

``hyphenate_html`` works on markup we made or sanitised (nh3's output: every ``<`` starts a tag),
touching text between tags only.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import pyphen  # type: ignore[import-untyped]  # no stubs or py.typed

from pipeline.worker.layout import script_lang

SHY = "\u00ad"
HYPHENS = "-\u2010"  # what Chromium draws at a soft hyphen: the font's U+2010, else U+002D
MIN_WORD = 8  # letters; shorter words are never split (a headline's "Sum-mer" looks worse than a tighter line)
_LEFT, _RIGHT = 2, 3  # at least 2 letters before a break and 3 after (no "-ly" or "-s" lines)

# A few short, frequent words per language decide between Latin-script dictionaries; letters only
# one language uses count double, and typical letter groups half (a lone compound like
# "Sommerschlussverkauf" is still German). English is the default.
_GROUPS = {"de": ("sch", "ung", "keit", "heit", "lich", "chaft", "tz", "pf", "ck"),
           "en": ("th", "wh", "ing", "tion", "ough"), "fr": ("eau", "aux", "eux", "oi", "qu"),
           "es": ("ción", "ll", "ue"), "it": ("zione", "gli", "cch"), "nl": ("ij", "oe", "aa", "uu"),
           "pt": ("ção", "lh", "nh")}
_MARKERS: dict[str, tuple[frozenset[str], str]] = {
    "de": (frozenset("der die das und für mit nicht jetzt nur ist ein eine im auf zum zur sie wir".split()), "äöüß"),
    "fr": (frozenset("le la les et pour avec une des du est en sur nos vos au aux maintenant".split()), "éèêàçùœ"),
    "es": (frozenset("el los las y para con una del es por ahora nuestro oferta ya".split()), "ñ¡¿"),
    "it": (frozenset("il lo gli e per con una della è di ora nostro offerta solo".split()), "ò"),
    "nl": (frozenset("de het een en voor met niet nu onze alleen van ook".split()), "ĳ"),
    "pt": (frozenset("o os as e para com uma do da é em agora nosso oferta só".split()), "ãõ"),
    "en": (frozenset("the and for with now only our your of to in on at off new sale".split()), ""),
}
_WORD = re.compile(r"[^\W\d_]+")  # runs of letters (any script); digits and marks end them
_TAG_OR_ENTITY = re.compile(r"(<[^>]*>|&#?\w+;)")
_URLISH = re.compile(r"://|^www\.|@|\w\.\w{2,}|/")


def copy_language(text: str) -> str | None:
    """The pyphen dictionary for the copy, or None when its script is not hyphenated (CJK, Hangul,
    Arabic, Hebrew). Latin-script copy is told apart by its frequent words and letters."""
    lang = script_lang(text)
    if lang == "ru":
        return "ru"
    if lang != "en":
        return None
    lower = text.lower()
    words = _WORD.findall(lower)
    best, best_score = "en", 0.0
    for code, (common, letters) in _MARKERS.items():
        score = (sum(w in common for w in words) + 2 * sum(lower.count(c) for c in letters)
                 + 0.5 * sum(lower.count(g) for g in _GROUPS.get(code, ())))
        if score > best_score:
            best, best_score = code, score
    return best


@lru_cache(maxsize=16)
def _dictionary(lang: str) -> pyphen.Pyphen | None:
    found = pyphen.language_fallback(lang)
    return pyphen.Pyphen(lang=found, left=_LEFT, right=_RIGHT) if found else None


def _script_ok(word: str, lang: str) -> bool:
    script = "CYRILLIC" if lang == "ru" else "LATIN"
    return all(unicodedata.name(ch, "").startswith(script) for ch in word)


def _token(token: str, dic: pyphen.Pyphen, lang: str) -> str:
    """One whitespace-separated token: its long words hyphenated, unless it is a URL or has a digit."""
    if any(ch.isdigit() for ch in token) or _URLISH.search(token) or SHY in token:
        return token
    return _WORD.sub(
        lambda m: dic.inserted(m.group(), SHY) if len(m.group()) >= MIN_WORD and _script_ok(m.group(), lang)
        else m.group(),
        token,
    )


def hyphenate(text: str, lang: str | None) -> str:
    """Plain text with soft hyphens in its long words (``lang``: a pyphen dictionary; None: unchanged)."""
    dic = _dictionary(lang) if lang else None
    if dic is None or lang is None:
        return text
    return "".join(_token(t, dic, lang) if t.strip() else t for t in re.split(r"(\s+)", text))


def hyphenate_html(markup: str, lang: str | None) -> str:
    """``hyphenate`` on the text between tags of markup (entities and tags untouched)."""
    if not lang or _dictionary(lang) is None:
        return markup
    parts = _TAG_OR_ENTITY.split(markup)
    # Odd indices are tags and entities; even ones are text. A word split by an entity (rare) stays whole
    # on both sides of it, which only means fewer break points.
    return "".join(p if i % 2 else hyphenate(p, lang) for i, p in enumerate(parts))
