"""The font catalogue: which families exist, what they draw, and which fallbacks a copy needs.

One job: ``FontCatalog`` over one fonts folder (list_fonts' ``fonts``, family validation in
``check_family_list``, the emitted ``font_stack`` and ``missing_glyphs``), built on fontconfig's
listing (``fontconfig``), real outlines (``outlines``) and script detection (``scripts``).
``shared_catalog`` keeps one per folder for the process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pipeline.cssvalues import GENERIC_FAMILIES, parse_font_family
from pipeline.fonts.fontconfig import css_weight, fc, fc_list, font_id, fontconfig_file
from pipeline.fonts.outlines import face, is_visible
from pipeline.fonts.scripts import (
    FC_LANG,
    SCRIPT_FONTS,
    SCRIPT_SAMPLES,
    SCRIPTS,
    char_scripts,
    detect_scripts,
    embeddable_chars,
    text_lang,
)
from pipeline.schemas import FontInfo

T = TypeVar("T")


def _dedupe(names: list[str]) -> list[str]:
    """First occurrence of each family, case-insensitively."""
    seen: set[str] = set()
    out = []
    for n in names:
        if n.lower() not in seen:
            seen.add(n.lower())
            out.append(n)
    return out


class FontCatalog:
    """The fonts of one fonts folder plus the system's, as fontconfig (and so Chromium) sees them."""

    def __init__(self, fonts_dir: Path) -> None:
        self.fonts_dir = fonts_dir.resolve()
        self._cache: dict[object, object] = {}
        self._lock = threading.Lock()

    def _cached(self, key: object, make: Callable[[], T]) -> T:
        """A memo over this catalogue's fontconfig state (first computation wins under threads)."""
        if key not in self._cache:
            value = make()
            with self._lock:
                self._cache.setdefault(key, value)
        return self._cache[key]  # type: ignore[return-value]

    @property
    def conf(self) -> Path:
        return fontconfig_file(self.fonts_dir)

    def _entries(self) -> tuple[tuple[str, str, str, str, int], ...]:
        """(family, style, fontconfig weight, file, face index) for every font: one fc-list scan."""
        def scan() -> tuple[tuple[str, str, str, str, int], ...]:
            rows = []
            for line in fc_list(self.conf, ":", "%{family[0]}|%{style[0]}|%{weight}|%{file}|%{index}\n"):
                parts = line.split("|")
                if len(parts) == 5 and parts[0] and parts[3]:
                    idx = int(parts[4]) if parts[4].isdigit() else 0
                    rows.append((parts[0], parts[1], parts[2], parts[3], idx))
            # Stable, regular faces first: the face a family's coverage is judged on comes first.
            rows.sort(key=lambda r: (r[0].lower(), r[1].lower() not in ("regular", "book", "normal"), r[3], r[4]))
            return tuple(rows)
        return self._cached("entries", scan)

    def files(self) -> dict[str, tuple[str, ...]]:
        """Family -> font files (kept server-side: list_fonts never shows paths)."""
        return {fam: tuple(dict.fromkeys(p for p, _ in faces)) for fam, faces in self.faces().items()}

    def faces(self) -> dict[str, tuple[tuple[str, int], ...]]:
        """Family -> (file, face index) of each of its faces."""
        def build() -> dict[str, tuple[tuple[str, int], ...]]:
            out: dict[str, list[tuple[str, int]]] = {}
            for family, _, _, file, idx in self._entries():
                out.setdefault(family, []).append((file, idx))
            return {k: tuple(v) for k, v in out.items()}
        return self._cached("faces", build)

    def _family_key(self) -> dict[str, str]:
        return self._cached("keys", lambda: {k.lower(): k for k in self.faces()})

    def is_bundled(self, family: str) -> bool:
        return any(Path(p).resolve().parent == self.fonts_dir for p, _ in self.faces().get(family, ()))

    def family_draws(self, family: str, ch: str) -> bool | None:
        """Like ``Face.draws`` for the first face of ``family`` whose cmap has ``ch``."""
        for path, idx in self.faces().get(family, ()):
            f = face(path, idx)
            if f is not None and (d := f.draws(ch)) is not None:
                return d
        return None

    def covers(self, family: str, chars: str) -> bool:
        return all(self.family_draws(family, c) for c in chars)

    # -- fallback choice --------------------------------------------------------------------
    def _generic(self, name: str, lang: str | None) -> str | None:
        """The family fontconfig gives Chromium for a generic name (sans-serif...)."""
        pattern = name if not lang else f"{name}:lang={lang}"
        def match() -> str | None:
            out = fc(self.conf, ["fc-match", "--format", "%{family[0]}", pattern])
            return out[0] if out else None
        return self._cached(("generic", pattern), match)

    def _fc_sorted(self, chars: str, lang: str | None) -> list[tuple[str, int]]:
        """Faces in fontconfig's fallback order for these characters (what Chromium asks it)."""
        pattern = ":charset=" + " ".join(f"{ord(c):x}" for c in chars) + (f":lang={lang}" if lang else "")
        def sort() -> list[tuple[str, int]]:
            out = []
            for line in fc(self.conf, ["fc-match", "-s", "--format", "%{file}|%{index}\n", pattern]):
                path, _, idx = line.partition("|")
                out.append((path, int(idx) if idx.isdigit() else 0))
            return out
        return self._cached(("sorted", pattern), sort)

    def script_font(self, script: str) -> str | None:
        """An installed family that really draws ``script``: the preferred one if installed, else
        the first in fontconfig's own order for that script's language and characters."""
        def choose() -> str | None:
            sample = SCRIPT_SAMPLES[script]
            keys = self._family_key()
            for name in SCRIPT_FONTS.get(script, ()):
                family = keys.get(name.lower())
                if family and self.covers(family, sample):
                    return family
            for path, idx in self._fc_sorted(sample, FC_LANG.get(script)):
                f = face(path, idx)
                if f is not None and all(f.draws(c) for c in sample):
                    fam = next((fam for fam, fs in self.faces().items() if (path, idx) in fs), None)
                    if fam and not self.is_bundled(fam):  # bundled ones are embedded, by the copy's family only
                        return fam
            return None
        return self._cached(("script", script), choose)

    def font_stack(self, families: list[str], text: str) -> list[str]:
        """The font-family list to emit for ``text``: the requested families, then for each script
        of the copy a font that really draws it (the right CJK region first), then emoji, then the
        requested generic families (``sans-serif`` if none). Latin, Cyrillic and Greek get a font
        only when the requested families leave some of their characters undrawn."""
        named = [f for f in families if f.lower() not in GENERIC_FAMILIES]
        generics = [f.lower() for f in families if f.lower() in GENERIC_FAMILIES and f.lower() != "emoji"]
        out = list(named)
        by_script: dict[str, list[str]] = {}
        for ch, s in zip(text, char_scripts(text), strict=True):
            if s:
                by_script.setdefault(s, []).append(ch)
        for script in [*detect_scripts(text), "emoji"]:
            if script in ("latin", "cyrillic", "greek") and all(
                any(self.family_draws(self._family_key().get(n.lower(), n), c) for n in named)
                for c in by_script.get(script, [])
            ):
                continue
            if (family := self.script_font(script)) is not None:
                out.append(family)
        out += generics or ["sans-serif"]
        return _dedupe(out)

    def missing_glyphs(self, text: str, families: list[str] | None = None) -> list[str]:
        """Characters of ``text`` that no font draws, following what Chromium does with the stack
        the worker emits (``font_stack``): per character, the first family whose cmap has it wins,
        blank or not, except the requested bundled families, which are embedded with a
        ``unicode-range`` of the characters they really draw; then fontconfig's fallback order.
        Spaces, joiners and variation selectors need no ink and are skipped."""
        families = list(families or [])
        lang = text_lang(text)
        keys = self._family_key()
        stack: list[tuple[str, str | None]] = []  # (family, what its embedded faces draw, None if not embedded)
        for name in self.font_stack(families, text):
            family = self._generic(name, lang) if name.lower() in GENERIC_FAMILIES else keys.get(name.lower())
            if family:
                embedded = family in {keys.get(f.lower()) for f in families} and self.is_bundled(family)
                ranges = "".join(embeddable_chars(p, text, i) for p, i in self.faces()[family]) if embedded else None
                stack.append((family, ranges))
        missing = []
        for ch in dict.fromkeys(c for c in text if is_visible(c)):
            verdict: bool | None = None
            for family, ranges in stack:
                d = (True if ch in ranges else None) if ranges is not None else self.family_draws(family, ch)
                if d is not None:
                    verdict = d
                    break
            if verdict is None:
                for path, idx in self._fc_sorted(ch, lang):
                    f = face(path, idx)
                    if f is not None and (d := f.draws(ch)) is not None:
                        verdict = d
                        break
            if not verdict:
                missing.append(ch)
        return sorted(missing)

    def scripts_of(self, family: str) -> list[str]:
        """Scripts the family draws, judged on outlines of a few characters of each."""
        return [s for s in SCRIPTS if self.covers(family, SCRIPT_SAMPLES[s])]

    def fonts(self) -> tuple[FontInfo, ...]:
        def build() -> tuple[FontInfo, ...]:
            hangul_files = set(fc_list(self.conf, ":charset=ac00-d7a3", "%{file}\n"))
            families: dict[str, dict] = {}
            for family, style, weight, file, _ in self._entries():
                entry = families.setdefault(family, {"styles": set(), "weights": set(), "hangul": False,
                                                     "bundled": False})
                entry["styles"].add(style)
                entry["weights"].add(css_weight(weight))
                entry["hangul"] |= file in hangul_files
                entry["bundled"] |= Path(file).resolve().parent == self.fonts_dir
            return tuple(
                FontInfo(
                    id=font_id(fam), family=fam, styles=sorted(e["styles"]), weights=sorted(e["weights"]),
                    hangul=e["hangul"], scripts=self.scripts_of(fam), bundled=e["bundled"],
                )
                for fam, e in sorted(families.items(), key=lambda kv: (not kv[1]["bundled"], kv[0].lower()))
            )
        return self._cached("fonts", build)

    def resolve(self, name: str) -> str | None:
        """Family name for a family or id (case-insensitive), or None if unknown."""
        key = name.strip().lower()
        keys = self._family_key()
        if key in keys:
            return keys[key]
        return next((fam for fam in keys.values() if font_id(fam) == key), None)

    def check_family_list(self, value: str) -> str:
        """Validate a CSS font-family list against known fonts; returns it normalised to families."""
        names = parse_font_family(value)
        out: list[str] = []
        for n in names:
            if n.lower() in GENERIC_FAMILIES:
                out.append(n.lower())
                continue
            family = self.resolve(n)
            if family is None:
                known = ", ".join(sorted(f for f in self.faces() if self.is_bundled(f))) or "none bundled"
                raise ValueError(f"unknown font {n!r}: call list_fonts (bundled: {known}) or use a generic family")
            out.append(family)
        return ", ".join(out)


_SHARED: dict[Path, FontCatalog] = {}


def shared_catalog(fonts_dir: Path | None = None) -> FontCatalog:
    """One catalogue per fonts folder for the process (the worker's stack choice uses it)."""
    if fonts_dir is None:
        from pipeline.config import BUNDLED_FONTS_DIR

        fonts_dir = BUNDLED_FONTS_DIR
    key = fonts_dir.resolve()
    if key not in _SHARED:
        _SHARED[key] = FontCatalog(key)
    return _SHARED[key]
