"""Font discovery: the bundled fonts/ folder plus whatever fontconfig knows on the system.

The renderer sees exactly the same set (it runs Chromium with the same fontconfig file),
so a font that list_fonts reports is a font the text layer can use.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tempfile
import unicodedata
from functools import lru_cache
from pathlib import Path

from pipeline.cssvalues import GENERIC_FAMILIES, parse_font_family
from pipeline.schemas import FontInfo


def fontconfig_file(fonts_dir: Path, include_system: bool = True) -> Path:
    """A fontconfig file that adds the bundled fonts to the system's (or uses them alone)."""
    system = "  <include ignore_missing=\"yes\">/etc/fonts/fonts.conf</include>\n" if include_system else ""
    text = (
        '<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig>\n'
        f"{system}  <dir>{fonts_dir.resolve()}</dir>\n"
        f"  <cachedir>{Path(tempfile.gettempdir()) / 'adgen-fontcache'}</cachedir>\n</fontconfig>\n"
    )
    digest = hashlib.sha1(text.encode()).hexdigest()[:12]
    conf = Path(tempfile.gettempdir()) / f"adgen-fonts-{os.getuid()}-{digest}.conf"
    if not conf.exists() or conf.read_text() != text:
        tmp = conf.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, conf)
    return conf


# fontconfig weight -> CSS weight
_WEIGHTS = {0: 100, 40: 200, 50: 300, 55: 350, 75: 400, 80: 400, 100: 500, 180: 600, 200: 700, 205: 800, 210: 900, 215: 950}


def _css_weight(fc_weight: str) -> int:
    try:
        w = int(float(fc_weight))
    except ValueError:
        return 400
    return _WEIGHTS.get(w, min(_WEIGHTS.values(), key=lambda v: abs(v - w * 4)))


def _fc_list(conf: Path, pattern: str, fmt: str) -> list[str]:
    env = dict(os.environ, FONTCONFIG_FILE=str(conf))
    try:
        out = subprocess.run(["fc-list", pattern, "--format", fmt], env=env, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return out.stdout.splitlines()


@lru_cache(maxsize=256)
def _cmap(path: str) -> frozenset[str]:
    from fontTools.ttLib import TTCollection, TTFont

    try:
        fonts = TTCollection(path, lazy=True).fonts if path.lower().endswith((".ttc", ".otc")) else [TTFont(path, lazy=True)]
        return frozenset(chr(cp) for font in fonts[:1] for cp in font.getBestCmap() or {})
    except Exception:
        return frozenset()


def font_id(family: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", family.lower()).strip("-")


class FontCatalog:
    def __init__(self, fonts_dir: Path) -> None:
        self.fonts_dir = fonts_dir.resolve()

    @lru_cache(maxsize=1)
    def _entries(self) -> tuple[tuple[str, str, str, str], ...]:
        """(family, style, fontconfig weight, file) for every font: one fc-list scan serves all lookups."""
        rows = []
        for line in _fc_list(fontconfig_file(self.fonts_dir), ":", "%{family[0]}|%{style[0]}|%{weight}|%{file}\n"):
            parts = line.split("|")
            if len(parts) == 4 and parts[0] and parts[3]:
                rows.append((parts[0], parts[1], parts[2], parts[3]))
        return tuple(rows)

    @lru_cache(maxsize=1)
    def files(self) -> dict[str, tuple[str, ...]]:
        """Family -> font files (kept server-side: list_fonts never shows paths)."""
        out: dict[str, list[str]] = {}
        for family, _, _, file in self._entries():
            out.setdefault(family, []).append(file)
        return {k: tuple(v) for k, v in out.items()}

    def missing_glyphs(self, text: str, families: list[str] | None = None) -> list[str]:
        """Characters of ``text`` that no font covers (``families`` first, then every installed font,
        as Chromium's per-character fallback does). Joiners and variation selectors are skipped."""
        wanted = {ch for ch in text if unicodedata.category(ch) not in ("Cf", "Mn", "Me", "Zs", "Cc", "Zl", "Zp")}
        files = self.files()
        # The requested families first, then the rest; dict keys keep order and drop repeats.
        order = dict.fromkeys([f for fam in (families or []) for f in files.get(fam, ())])
        order.update(dict.fromkeys(f for fs in files.values() for f in fs))
        for file in order:
            if not wanted:
                break
            wanted -= _cmap(file)
        return sorted(wanted)

    @lru_cache(maxsize=1)
    def fonts(self) -> tuple[FontInfo, ...]:
        hangul_files = set(_fc_list(fontconfig_file(self.fonts_dir), ":charset=ac00-d7a3", "%{file}\n"))
        families: dict[str, dict] = {}
        for family, style, weight, file in self._entries():
            entry = families.setdefault(family, {"styles": set(), "weights": set(), "hangul": False, "bundled": False})
            entry["styles"].add(style)
            entry["weights"].add(_css_weight(weight))
            entry["hangul"] |= file in hangul_files
            entry["bundled"] |= Path(file).resolve().parent == self.fonts_dir
        return tuple(
            FontInfo(
                id=font_id(fam), family=fam, styles=sorted(e["styles"]), weights=sorted(e["weights"]),
                hangul=e["hangul"], bundled=e["bundled"],
            )
            for fam, e in sorted(families.items(), key=lambda kv: (not kv[1]["bundled"], kv[0].lower()))
        )

    def resolve(self, name: str) -> str | None:
        """Family name for a family or id (case-insensitive), or None if unknown."""
        key = name.strip().lower()
        for f in self.fonts():
            if key in (f.family.lower(), f.id):
                return f.family
        return None

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
                known = ", ".join(f.family for f in self.fonts() if f.bundled) or "none bundled"
                raise ValueError(f"unknown font {n!r}: call list_fonts (bundled: {known}) or use a generic family")
            out.append(family)
        return ", ".join(out)
