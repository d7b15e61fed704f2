"""Which characters a font really draws, judged on outlines read straight from the file.

One job: ink. The bundled NanumSquare fonts map thousands of CJK ideographs to glyphs with no
contours, and Chromium takes the first font whose cmap has a character, blank or not; so a
character counts as drawn only if its glyph has ink. ``Face`` reads one face through mmap
(cmap, glyf/loca, CFF via ``cff``, COLR and CFF2 via fontTools); ``face`` caches readers;
``drawn_chars`` filters a string; ``is_visible`` says which characters need ink at all.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import unicodedata
from functools import lru_cache

from pipeline.fonts.cff import CffIndex, cff_dict_charstrings, t2_draws

_NO_INK_CATEGORIES = frozenset({"Cf", "Zs", "Zl", "Zp", "Cc"})


def is_visible(ch: str) -> bool:
    """Whether a character must leave ink: not a space, control, joiner or variation selector
    (combining marks count: a font that maps one to an empty glyph drops it)."""
    cp = ord(ch)
    if 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF or cp == 0x034F:
        return False
    return unicodedata.category(ch) not in _NO_INK_CATEGORIES



class Face:
    """One face of a font file (a ``.ttc`` holds several), read lazily through mmap: the cmap and
    the outline of a glyph are looked up per character, never the whole font, so checking a few
    characters of a 20 MB CJK collection takes microseconds."""

    def __init__(self, path: str, index: int = 0) -> None:
        self.path, self.index = path, index
        self._draws: dict[str, bool | None] = {}
        self._lock = threading.Lock()
        self._fallback = None  # a fontTools reader for what the raw reader does not handle
        with open(path, "rb") as f:
            self.buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        b = self.buf
        base = 0
        if b[:4] == b"ttcf":
            base = struct.unpack_from(">I", b, 12 + 4 * index)[0]
        num = struct.unpack_from(">H", b, base + 4)[0]
        self.tables: dict[bytes, tuple[int, int]] = {}
        for k in range(num):
            tag, _, off, length = struct.unpack_from(">4sIII", b, base + 12 + 16 * k)
            self.tables[tag] = (off, length)
        self._cmap = self._pick_cmap()
        if b"glyf" in self.tables and b"loca" in self.tables and b"head" in self.tables:
            self.kind = "glyf"
            self._long_loca = struct.unpack_from(">h", b, self.tables[b"head"][0] + 50)[0] == 1
        elif b"CFF " in self.tables:
            self.kind = "cff"
            cff = self.tables[b"CFF "][0]
            names = CffIndex(b, cff + b[cff + 2])
            top = CffIndex(b, names.end())
            start, end = top.item(0)
            off = cff_dict_charstrings(bytes(b[start:end]))
            if off is None:
                raise ValueError("CFF without CharStrings")
            self._charstrings = CffIndex(b, cff + off)
        elif b"CFF2" in self.tables:
            self.kind = "fonttools"
        else:
            self.kind = "bitmap"  # CBDT/sbix colour bitmaps: a mapped glyph is a drawn glyph

    # -- cmap ----------------------------------------------------------------------------
    def _pick_cmap(self) -> tuple[int, int] | None:
        """(offset, format) of the subtable HarfBuzz would use: full Unicode first, then BMP."""
        if b"cmap" not in self.tables:
            return None
        b, cmap = self.buf, self.tables[b"cmap"][0]
        found: dict[tuple[int, int], tuple[int, int]] = {}
        for k in range(struct.unpack_from(">H", b, cmap + 2)[0]):
            pid, eid, off = struct.unpack_from(">HHI", b, cmap + 4 + 8 * k)
            fmt = struct.unpack_from(">H", b, cmap + off)[0]
            found[(pid, eid)] = (cmap + off, fmt)
        for key in ((3, 10), (0, 6), (0, 4), (3, 1), (0, 3), (0, 2), (0, 1), (0, 0)):
            if key in found and found[key][1] in (4, 12):
                return found[key]
        return None

    def glyph_id(self, cp: int) -> int:
        """The glyph for a code point, 0 (.notdef) when the cmap has none."""
        if self._cmap is None:
            return 0
        pos, fmt = self._cmap
        if fmt == 12:
            return self._glyph_format12(pos, cp)
        if cp > 0xFFFF:
            return 0
        return self._glyph_format4(pos, cp)

    def _glyph_format12(self, pos: int, cp: int) -> int:
        """Format 12 (segmented coverage, full Unicode): binary search over the groups."""
        b = self.buf
        n = struct.unpack_from(">I", b, pos + 12)[0]
        lo, hi = 0, n
        while lo < hi:
            mid = (lo + hi) // 2
            start, end, gid = struct.unpack_from(">III", b, pos + 16 + 12 * mid)
            if cp < start:
                hi = mid
            elif cp > end:
                lo = mid + 1
            else:
                return gid + cp - start
        return 0

    def _glyph_format4(self, pos: int, cp: int) -> int:
        """Format 4 (BMP segments with deltas and an optional glyph-id array)."""
        b = self.buf
        seg2 = struct.unpack_from(">H", b, pos + 6)[0]
        ends, starts = pos + 14, pos + 16 + seg2
        lo, hi = 0, seg2 // 2
        while lo < hi:  # first segment whose end >= cp
            mid = (lo + hi) // 2
            if struct.unpack_from(">H", b, ends + 2 * mid)[0] < cp:
                lo = mid + 1
            else:
                hi = mid
        if lo >= seg2 // 2:
            return 0
        start = struct.unpack_from(">H", b, starts + 2 * lo)[0]
        if cp < start:
            return 0
        delta = struct.unpack_from(">h", b, starts + seg2 + 2 * lo)[0]
        ro_pos = starts + 2 * seg2 + 2 * lo
        ro = struct.unpack_from(">H", b, ro_pos)[0]
        if ro == 0:
            return (cp + delta) & 0xFFFF
        g = struct.unpack_from(">H", b, ro_pos + ro + 2 * (cp - start))[0]
        return (g + delta) & 0xFFFF if g else 0

    # -- outlines ------------------------------------------------------------------------
    def _glyph_has_ink(self, gid: int) -> bool:
        b = self.buf
        if self.kind == "glyf":
            loca = self.tables[b"loca"][0]
            if self._long_loca:
                a, z = struct.unpack_from(">II", b, loca + 4 * gid)
            else:
                a, z = (2 * v for v in struct.unpack_from(">HH", b, loca + 2 * gid))
            if z <= a:
                return self._colr_layers(gid)
            return struct.unpack_from(">h", b, self.tables[b"glyf"][0] + a)[0] != 0 or self._colr_layers(gid)
        if self.kind == "cff":
            start, end = self._charstrings.item(gid)
            return t2_draws(bytes(b[start:end])) or self._colr_layers(gid)
        if self.kind == "bitmap":
            return True
        return self._fonttools_ink(gid)

    def _tt(self):
        if self._fallback is None:
            from fontTools.ttLib import TTFont

            self._fallback = TTFont(self.path, fontNumber=self.index, lazy=True)
        return self._fallback

    def _colr_layers(self, gid: int) -> bool:
        """Colour fonts may draw a glyph whose own outline is empty through COLR layers."""
        if b"COLR" not in self.tables:
            return False
        colr = self._tt()["COLR"]
        name = self._tt().getGlyphName(gid)
        if colr.version == 0:
            return name in colr.ColorLayers
        records = colr.table.BaseGlyphRecordArray.BaseGlyphRecord if colr.table.BaseGlyphRecordArray else []
        paints = colr.table.BaseGlyphList.BaseGlyphPaintRecord if colr.table.BaseGlyphList else []
        return any(r.BaseGlyph == name for r in [*records, *paints])

    def _fonttools_ink(self, gid: int) -> bool:
        from fontTools.pens.boundsPen import ControlBoundsPen

        font = self._tt()
        glyphs = font.getGlyphSet()
        pen = ControlBoundsPen(glyphs)
        glyphs[font.getGlyphName(gid)].draw(pen)
        return pen.bounds is not None or self._colr_layers(gid)

    def draws(self, ch: str) -> bool | None:
        """None: the cmap has no glyph for ``ch``; True: it has one with ink (or ``ch`` needs none);
        False: it maps ``ch`` to an empty glyph, a blank where a letter should be."""
        if ch in self._draws:
            return self._draws[ch]
        with self._lock:
            try:
                gid = self.glyph_id(ord(ch))
                result = None if gid == 0 else (True if not is_visible(ch) else self._glyph_has_ink(gid))
            except (struct.error, IndexError, ValueError, KeyError, AttributeError):
                result = None  # a damaged table: treat the character as not covered
            self._draws[ch] = result
        return result


@lru_cache(maxsize=1024)
def _face_at(path: str, index: int, mtime_ns: int) -> Face | None:
    try:
        return Face(path, index)
    except (OSError, ValueError, struct.error, IndexError):
        return None


def face(path: str, index: int = 0) -> Face | None:
    """A cached reader for one face of a font file (None if it cannot be read)."""
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        return None
    return _face_at(path, index, mtime)


def drawn_chars(path: str, chars: str, index: int = 0) -> str:
    """The characters of ``chars`` that the face really draws (or maps, for spaces and joiners)."""
    f = face(path, index)
    return "".join(c for c in dict.fromkeys(chars) if f is not None and f.draws(c))
